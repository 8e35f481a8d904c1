"""`hydralm labels`, `hydralm train`, `hydralm fit-users`: the training job's stages from one YAML.
`hydralm fit-users --refit` refits users from what their history store now holds (run it on a
schedule: deploy/kuberay/cronjob-refit.yaml).

Each joins the Ray at --ray-address or starts a local loopback-only Ray, shows progress bars and
prints a summary. `labels` starts the embedded generator only when some label shard is still to
be made (a finished run re-run needs no LLM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from hydralm.console import echo
from hydralm.jobconfig import load_job_config

# The stages (Ray, torch, transformers: seconds of imports) are imported by each command after
# its config validated: `--help` and a bad config answer at once.

__all__ = ["cmd_fit", "cmd_labels", "cmd_train", "register_fit", "register_labels",
           "register_train"]

log = logging.getLogger(__name__)

_ORDER = ("The job's order: hydralm labels -> hydralm train -> hydralm fit-users, all with the "
          "same --config. Re-running a command skips what is done.")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True,
                   help="the job's YAML (see configs/ci-small.yaml and docs/training.md)")
    p.add_argument("--model", choices=["reranker", "adapter", "both"], default="both",
                   help="which model(s) (default both: reranker first)")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto or ray://host:10001); default: start "
                        "a local Ray on 127.0.0.1 with 2 CPUs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def register_labels(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "labels", help="make the reranker and adapter labels from the black-box generator",
        description="Build HYDRA's training labels with the black-box LLM: for training users, "
                    "their queries and pseudo-queries (history items as queries); for new users, "
                    "pseudo-queries from their history only. Reranker: one temperature-0 "
                    "one-shot call per (query, history item) pair. Adapter: N candidates per RAG "
                    "prompt. Writes Parquet label shards under <work_dir>/labels/; finished "
                    "shards are skipped and repeated calls come from the response cache. "
                    + _ORDER)
    _common(p)
    p.add_argument("--stage", choices=["train", "fit", "both"], default="both",
                   help="training users' labels, new users' labels, or both (default)")
    p.set_defaults(func=cmd_labels)


def register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the shared bases and the training users' heads (Ray Train)",
        description="Train the shared base, one head per training user and the global head on "
                    "the training users' labels with Ray Train (DDP; gloo on CPU, NCCL on GPU), "
                    "checkpointing to train.storage_path; resumes from the latest checkpoint "
                    "after a worker failure or when re-run. Then publishes the bases and heads "
                    "to the registry. " + _ORDER)
    _common(p)
    p.set_defaults(func=cmd_train)


def register_fit(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit-users", help="fit new users' heads on the frozen base (sharded over Ray)",
        description="Fit a fresh head for every new user whose head is not yet on the "
                    "registry's current base, from labels built from their own history only. "
                    "The frozen base embeds each pair once (Ray Data); one Ray task per user "
                    "bucket fits its users and saves their heads in one registry update. "
                    "With --refit: the users whose history in the history store "
                    "(refit.history_*) changed since their head was fitted, and users without a "
                    "head with at least refit.min_items items, from their current history only; "
                    "heads record the history version they were fitted on. " + _ORDER)
    _common(p)
    p.add_argument("--refit", action="store_true",
                   help="refit users whose history changed since their head was fitted (reads "
                        "the history store; starts the embedded generator when labels are due)")
    p.set_defaults(func=cmd_fit)


def _models(args: argparse.Namespace) -> list[str]:
    return ["reranker", "adapter"] if args.model == "both" else [args.model]


def _print(summary: Any, args: argparse.Namespace, rows: list[dict[str, Any]],
           columns: list[str]) -> None:
    if args.json:
        echo(json.dumps(summary, indent=1, default=str))
        return
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        echo("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths,
                                                                       strict=True)))


def cmd_labels(args: argparse.Namespace) -> int:
    cfg = load_job_config(args.config)
    from training.llm import embedded_generator
    from training.ray_env import ray_session
    from training.stages import labels_stage, pending_label_shards, plan_label_runs

    stages = ["train", "fit"] if args.stage == "both" else [args.stage]
    with ray_session(args.ray_address):
        plans = plan_label_runs(cfg, _models(args), stages)
        pending = pending_label_shards(plans)
        generator = (embedded_generator(cfg.generator) if pending
                     else contextlib.nullcontext(None))
        with generator as base_url:
            summaries = labels_stage(cfg, plans, base_url=base_url,
                                     progress=not args.no_progress)
    _print(summaries, args, summaries, ["model", "stage", "retrieval", "users", "shards",
                                        "shards_done_before", "rows", "positives",
                                        "generator_calls", "cache_hits"])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_job_config(args.config)
    from training.ray_env import ray_session
    from training.stages import train_stage

    with ray_session(args.ray_address):
        summary = train_stage(cfg, _models(args), progress=not args.no_progress)
    _print(summary, args, summary["models"], ["model", "run", "users", "rows", "epochs",
                                              "global_step", "loss", "resumed_from", "seconds"])
    if not args.json:
        echo(f"published base {summary['base_version']} to {summary['registry']}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    cfg = load_job_config(args.config)
    if getattr(args, "refit", False):
        return _cmd_refit(args, cfg)
    from training.ray_env import ray_session
    from training.stages import fit_stage

    with ray_session(args.ray_address):
        summary = fit_stage(cfg, _models(args), progress=not args.no_progress)
    _print(summary, args, summary["models"], ["model", "base_version", "new_users",
                                              "already_fitted", "fitted", "without_data",
                                              "buckets", "rows", "embed_seconds", "seconds"])
    return 0


def _cmd_refit(args: argparse.Namespace, cfg) -> int:
    from training.llm import embedded_generator
    from training.ray_env import ray_session
    from training.refit import plan_refit_run, refit_columns, run_refit

    with ray_session(args.ray_address):
        run = plan_refit_run(cfg, _models(args))
        generator = (embedded_generator(cfg.generator) if run.needs_generator
                     else contextlib.nullcontext(None))
        with generator as base_url:
            summary = run_refit(cfg, run, base_url=base_url, progress=not args.no_progress)
    _print(summary, args, summary["models"], refit_columns())
    if not args.json:
        echo(f"refit {summary['users_refit']} users in {summary['seconds']} s "
              f"({summary['users_per_s']} users/s, {summary['generator_calls']} generator calls)")
    return 0
