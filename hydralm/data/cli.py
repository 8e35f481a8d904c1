"""`hydralm data ...`: convert LaMP files to Parquet, make synthetic users, summarize a dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hydralm.data.lamp import iter_lamp
from hydralm.data.lamp_files import SPLITS, find_lamp_files
from hydralm.data.parquet import Dataset, write_dataset
from hydralm.data.schema import SYNTHETIC_TASKS, TASK_NAMES
from hydralm.data.summary import summarize_records
from hydralm.data.synth import write_synthetic
from hydralm.errors import ConfigError

__all__ = ["register"]

_FORMATTER = argparse.RawDescriptionHelpFormatter


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` with its actions `convert`, `synth` and `summary` to the hydralm command."""
    data = subparsers.add_parser("data", help="LaMP files -> Parquet, synthetic users, summaries",
                                 description="Prepare data: validate and convert LaMP files, "
                                             "generate synthetic users, summarize a dataset.")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    _add_convert(actions)
    _add_synth(actions)
    _add_summary(actions)


def _add_convert(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "convert", help="validate LaMP questions/outputs files and write a Parquet dataset",
        formatter_class=_FORMATTER,
        description="Stream a LaMP questions file (and its outputs, if any), validate every "
                    "record, and write a Parquet dataset (local dir or s3://) with one profile "
                    "bucket per crc32(user) % 16. Nothing is left at --out if it fails.",
        epilog="examples:\n"
               "  hydralm data convert --task LaMP-2N --lamp-dir data/lamp --split dev "
               "--out data/lamp2n-dev\n"
               "  hydralm data convert --task LaMP-1 --questions train_questions.json \\\n"
               "      --outputs train_outputs.json --out s3://bucket/lamp1-train")
    p.add_argument("--task", required=True, choices=TASK_NAMES, help="the LaMP task")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--questions", help="questions JSON file (local or s3://)")
    src.add_argument("--lamp-dir", help="directory with official LaMP file names (needs --split)")
    p.add_argument("--outputs", help="outputs JSON file with the golds (with --questions)")
    p.add_argument("--split", choices=SPLITS, help="split to find in --lamp-dir")
    p.add_argument("--out", required=True, help="dataset directory to write (local or s3://)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_convert)


def _add_synth(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "synth", help="generate synthetic users in LaMP format (synth-tag, synth-title, synth-rate)",
        formatter_class=_FORMATTER,
        description="Write LaMP-format questions/outputs files of synthetic users whose history "
                    "decides their answers: synth-tag (LaMP-2M-style movie tagging, each user "
                    "favours 2-3 tags), synth-title (LaMP-5-style paper titles, each user has "
                    "a title style) and synth-rate (LaMP-3-style review scores 1-5, each user "
                    "rates with their own tendency). Same seed, same bytes. See docs/data.md.",
        epilog="example:\n"
               "  hydralm data synth --task all --users 50 --seed 0 --out data/synth --parquet\n"
               "  -> data/synth/synth_tag_train_questions.json, ..._outputs.json,\n"
               "     and with --parquet the datasets data/synth/synth-tag-train/, ...")
    p.add_argument("--task", default="all", choices=[*SYNTHETIC_TASKS, "all"],
                   help="which synthetic task (default: all)")
    p.add_argument("--users", type=_positive_int, default=50, help="number of users (50)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--queries-per-user", type=_positive_int, default=4, help="queries (4)")
    p.add_argument("--items-per-user", type=_positive_int, default=20, help="history items (20)")
    p.add_argument("--first-user", type=int, default=0,
                   help="number of the first user, u0000 by default; give disjoint ranges to "
                        "different splits")
    p.add_argument("--split", choices=SPLITS, default="train", help="split name in file names")
    p.add_argument("--out", required=True, help="output directory (local or s3://)")
    p.add_argument("--parquet", action="store_true",
                   help="also convert each task to a Parquet dataset OUT/<task>-<split>")
    p.add_argument("--overwrite", action="store_true", help="replace existing Parquet datasets")
    p.set_defaults(func=_cmd_synth)


def _add_summary(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "summary", help="counts of a Parquet dataset or a LaMP questions file",
        formatter_class=_FORMATTER,
        description="Print users, history items, queries and per-user spreads of a Parquet "
                    "dataset directory, or of a LaMP questions JSON file (then --task is needed; "
                    "the file is streamed and validated).",
        epilog="examples:\n"
               "  hydralm data summary data/lamp2n-dev\n"
               "  hydralm data summary --task LaMP-1 train_questions.json")
    p.add_argument("uri", help="dataset directory or questions .json (local or s3://)")
    p.add_argument("--task", choices=TASK_NAMES, help="task of a questions .json file")
    p.add_argument("--outputs", help="outputs file to check against a questions file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_summary)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            value = " / ".join(f"{k} {v}" for k, v in value.items())
        print(f"{key.replace('_', ' ')}: {value}")


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.lamp_dir is not None:
        if args.split is None or args.outputs is not None:
            raise ConfigError("--lamp-dir needs --split (and finds the outputs itself), got "
                              f"split={args.split!r} outputs={args.outputs!r}")
        questions, outputs = find_lamp_files(args.lamp_dir, args.task, args.split)
    else:
        questions, outputs = args.questions, args.outputs
    records = iter_lamp(questions, outputs, task=args.task)
    write_dataset(records, args.out, task=args.task, progress=not args.no_progress,
                  overwrite=args.overwrite)
    summary = {"questions": str(questions), "outputs": str(outputs) if outputs else None,
               **Dataset(args.out).summary()}
    _print_summary(summary, args.json)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    tasks = SYNTHETIC_TASKS if args.task == "all" else (args.task,)
    written = write_synthetic(args.out, args.users, args.seed, tasks=tasks,
                              queries_per_user=args.queries_per_user,
                              items_per_user=args.items_per_user, first_user=args.first_user,
                              split=args.split)
    for task, files in written.items():
        print(f"{task}: {files.questions}\n{task}: {files.outputs}")
        if args.parquet:
            target = f"{str(args.out).rstrip('/')}/{task}-{args.split}"
            meta = write_dataset(iter_lamp(*files, task=task), target, task=task,
                                 progress=False, overwrite=args.overwrite)
            print(f"{task}: {target} ({meta['num_users']} users, {meta['num_items']} items, "
                  f"{meta['num_queries']} queries)")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    if str(args.uri).endswith(".json"):
        if args.task is None:
            raise ConfigError(f"{args.uri} is a questions file: pass --task")
        records = iter_lamp(args.uri, args.outputs, task=args.task)
        _print_summary({"uri": args.uri, **summarize_records(records, args.task)}, args.json)
    else:
        _print_summary(Dataset(args.uri).summary(), args.json)
    return 0

