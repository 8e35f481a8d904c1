"""`hydralm eval`: the paper's quality comparison on one task, one data source and one generator.

The config comes from a preset (synthetic users, or LaMP files with --lamp-dir; `--quick` for a
few-minute run), or from a YAML file (`--config`, an `EvalConfig`); flags override either.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hydralm.config import load_yaml
from hydralm.console import echo
from hydralm.data.schema import SYNTHETIC_TASKS, TASK_NAMES
from hydralm.evaluation import LLM_METHODS, EvalConfig, markdown_table
from hydralm.evaluation.presets import preset
from training.eval_run import run_eval

__all__ = ["build_config", "register"]

log = logging.getLogger(__name__)

_EPILOG = """examples:
  hydralm eval --quick                                   # synth-tag, 8+6 users, 1 seed
  hydralm eval --dataset synth-tag                       # the protocol: 100+50 users x 3 seeds
  hydralm eval --config configs/eval-synth-tag.yaml      # a documented config
  hydralm eval --lamp-dir ../shared/lamp --task LaMP-2N --train-users all --test-users all
  hydralm eval --dataset synth-title --base-url http://10.0.0.5:8000/v1 --model my-llm
  hydralm eval --dataset synth-tag --precision bf16 --compare-precision fp32   # bf16 vs fp32
  hydralm eval --dataset synth-tag --compare-head residual:8:bfloat16   # compact heads vs dense
"""


def _count(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', got {text!r}"
                                         ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', got {text!r}")
    return value


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}"
                                         ) from None


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="compare zero-shot, ICL, RAG and HYDRA (quality benchmark)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Run the HYDRA paper's comparison: zero-shot, ICL with 4 random history "
                    "items, RAG with BM25 top-4, HYDRA-Reranker, HYDRA-Adapter and HYDRA, plus "
                    "the reference rows history_knn and oracle_best_of_8, on the same users, "
                    "generator and prompts. Per seed it trains HYDRA (labels -> train -> "
                    "fit-users; test users' heads from their own history only), then scores "
                    "every method with bootstrap 95% CIs. Writes benchmarks/results/"
                    "quality_<dataset>_<task>.json, .md and .png. All generator calls go "
                    "through the response cache: a re-run costs nothing. See docs/evaluation.md.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="an eval YAML (EvalConfig); flags below override it")
    src.add_argument("--dataset", choices=SYNTHETIC_TASKS,
                     help="synthetic users of this task (default synth-tag)")
    src.add_argument("--lamp-dir", help="LaMP files (official names; local dir or s3://): "
                                        "training users from train, test users from dev")
    p.add_argument("--task", choices=TASK_NAMES, help="the task of --lamp-dir's files")
    p.add_argument("--quick", action="store_true",
                   help="a few-minute configuration: 8 training + 6 test users, 1 seed, "
                        "2 queries per user, 1 epoch")
    p.add_argument("--name", help="dataset name in the result file names")
    p.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--train-users", type=_count, default=argparse.SUPPRESS,
                   help="training users per seed, or 'all' (default 100)")
    p.add_argument("--test-users", type=_count, default=argparse.SUPPRESS,
                   help="test users per seed, or 'all' (default 50)")
    p.add_argument("--methods", type=_names,
                   help=f"comma-separated subset of {','.join(LLM_METHODS)} (default: all)")
    p.add_argument("--max-queries-per-user", type=int, help="test queries scored per user")
    p.add_argument("--base-url", help="OpenAI-compatible base URL (with /v1) of a running "
                                      "generator; default: deploy the embedded vLLM")
    p.add_argument("--model", help="served model name at --base-url (default smollm2)")
    p.add_argument("--work-dir", help="per-seed jobs, predictions and the generator cache")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="the frozen bases' number format (default auto: bf16 where native)")
    p.add_argument("--compare-precision", choices=("bf16", "fp32"),
                   help="also run the HYDRA methods with the bases in this precision (same "
                        "bases, heads and queries): rows such as hydra_fp32 and the paired "
                        "differences")
    p.add_argument("--compare-head", type=_head, metavar="FORM[:RANK[:DTYPE]]",
                   help="also fit the test users' heads in this form (e.g. residual:8:bfloat16; "
                        "forms dense, lowrank, residual; dtypes float32, bfloat16, int8) on the "
                        "same bases and labels, and run the HYDRA methods with them: rows such "
                        "as hydra_residual8_bf16 and the paired differences; with the guard "
                        "calibrated on fitted heads, the training users' calibration heads "
                        "too, compared on their held-out queries (what chooses a form)")
    p.add_argument("--results-dir", help="where the results go (default benchmarks/results)")
    p.add_argument("--ray-address", help="join a running Ray cluster; default: a local Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)


def _head(spec: str) -> dict[str, Any]:
    """--compare-head FORM[:RANK[:DTYPE]] as a HeadConfig mapping (validated with the config)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected FORM[:RANK[:DTYPE]], got {spec!r}")
    head: dict[str, Any] = {"form": parts[0]}
    if len(parts) > 1:
        try:
            head["rank"] = int(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"RANK must be an integer, got {parts[1]!r} in "
                                             f"{spec!r}") from None
    if len(parts) > 2:
        head["dtype"] = parts[2]
    return head


def _base(args: argparse.Namespace) -> dict[str, Any]:
    if args.config:
        if args.quick:
            raise SystemExit("hydralm eval: --quick picks a preset; with --config, set the "
                             "sizes in the file")
        return load_yaml(args.config)
    if args.lamp_dir:
        if not args.task:
            raise SystemExit("hydralm eval: --lamp-dir needs --task (e.g. LaMP-2N)")
        return preset(args.task, lamp_dir=args.lamp_dir, quick=args.quick)
    dataset = args.dataset or "synth-tag"
    if args.task not in (None, dataset):
        raise SystemExit(f"hydralm eval: --dataset {dataset} is task {dataset}, got --task "
                         f"{args.task}")
    return preset(dataset, quick=args.quick)


def build_config(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig the command line describes (preset or file, then flags)."""
    data = _base(args)
    users = dict(data.get("users") or {})
    for flag, key in (("train_users", "train"), ("test_users", "test")):
        if hasattr(args, flag):
            users[key] = getattr(args, flag)
    if users:
        data["users"] = users
    if args.lamp_dir and args.task:
        data["task"] = args.task
    for flag, key in (("name", "dataset"), ("seeds", "seeds"), ("methods", "methods"),
                      ("max_queries_per_user", "max_queries_per_user"),
                      ("work_dir", "work_dir"), ("results_dir", "results_dir"),
                      ("precision", "precision"), ("compare_precision", "compare_precision"),
                      ("compare_head", "compare_head")):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    generator = dict(data.get("generator") or {})
    if args.base_url:
        generator["base_url"] = args.base_url
    if args.model:
        generator["model"] = args.model
    if generator:
        data["generator"] = generator
    return EvalConfig.from_dict(data, source=args.config or "hydralm eval")


def _cmd_eval(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    # httpx logs one INFO line per request, bm25s one DEBUG line per index built.
    for noisy in ("httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result, paths = run_eval(cfg, ray_address=args.ray_address, progress=not args.no_progress)
    echo(markdown_table(result))
    run = result.get("run", {})
    echo(f"generator calls: {run.get('generator_calls')}  queries: {run.get('queries')}  "
          f"seconds: {run.get('seconds')}")
    for kind, path in paths.items():
        echo(f"{kind}: {path}")
    return 0
