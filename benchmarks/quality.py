"""Quality benchmark: zero-shot, ICL, RAG, HYDRA-Reranker, HYDRA-Adapter and HYDRA (plus the
history_knn and oracle_best_of_8 reference rows) on the same users, generator and prompts.

The same command as `hydralm eval` with the same flags (`--quick`: a few minutes on a 2-core
machine); writes benchmarks/results/quality_<dataset>_<task>.{json,md,png}. See
docs/evaluation.md.
"""

from __future__ import annotations

import sys

from hydralm.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
