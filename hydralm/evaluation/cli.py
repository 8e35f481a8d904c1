"""`hydralm eval-compare A B`: two eval runs compared query by query (`compare.py`)."""

from __future__ import annotations

import argparse
import json

from hydralm.evaluation.compare import compare_runs, format_comparison

__all__ = ["register"]


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one method, got {text!r}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-compare", help="compare two eval runs on the same queries (paired)",
        description="Compare two `hydralm eval` results on the same users and test queries (or, "
                    "with --training, the training users' held-out queries): per method and "
                    "metric, B minus A with the paired bootstrap interval of `hydralm eval` "
                    "(positive: B better, whichever way the metric points) and the share of "
                    "queries answered alike. Each result file's run.work_dir must still hold its "
                    "per-seed predictions. Use it to measure a change on the same labels: copy "
                    "the old run's generator-cache into an empty work directory, run the new code "
                    "there, decide on --training, then read the test users (docs/evaluation.md).")
    p.add_argument("a", help="the baseline run's result JSON (quality_<dataset>_<task>.json)")
    p.add_argument("b", help="the other run's result JSON")
    p.add_argument("--methods", type=_names,
                   help="comma-separated rows to compare (default: every row both runs have)")
    p.add_argument("--training", action="store_true",
                   help="compare the HYDRA methods on the training users' held-out queries, "
                        "answered with their heads fitted from their own history (saved where "
                        "the guard is calibrated on fitted heads): what a change is chosen on, "
                        "never the test users")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap replicates (1000)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    doc = compare_runs(args.a, args.b, methods=args.methods, resamples=args.resamples,
                       part="training" if args.training else "test")
    print(json.dumps(doc, indent=1) if args.json else format_comparison(doc))
    return 0
