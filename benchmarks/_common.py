"""Helpers shared by the benchmark scripts: the common flags and an atomic JSON writer.

Not a benchmark itself (`make bench-quick` runs it like the others; it does nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hydralm.atomic import write_atomic

__all__ = ["RESULTS_DIR", "base_parser", "write_result"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def base_parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every benchmark takes (--quick, --out)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small bounded run for CI / `make bench-quick`")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default benchmarks/results/<name>.json)")
    return parser


def write_result(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """Write `data` as JSON to `out` or benchmarks/results/<name>.json with
    `hydralm.atomic.write_atomic` (a reader never sees half a file); returns the path."""
    path = out or RESULTS_DIR / f"{name}.json"
    return write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
