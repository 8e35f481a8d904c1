"""`hydralm registry ...`: what a registry holds, garbage collection and the conversion of old
registries."""

from __future__ import annotations

import argparse
import json
import re

from hydralm.artifacts.gc import DEFAULT_GRACE_S, collect
from hydralm.artifacts.manifest import DEFAULT_SHARDS, MAX_SHARDS
from hydralm.artifacts.migrate import migrate
from hydralm.artifacts.registry import Registry

__all__ = ["parse_duration", "register"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '15m', '6h' or '2d'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"must be a duration like 90s, 15m, 6h or 2d, "
                                         f"got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _shards(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, {MAX_SHARDS}], got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `registry` with its actions `show`, `gc` and `migrate` to the hydralm command."""
    reg = subparsers.add_parser("registry",
                                help="what a registry holds; upkeep: garbage collection, migration",
                                description="What an artifact registry (a path or "
                                            "s3://bucket/prefix) holds, and its upkeep.")
    reg.set_defaults(func=lambda args: (reg.print_help(), 2)[1])
    actions = reg.add_subparsers(dest="registry_command", metavar="ACTION")

    show = actions.add_parser(
        "show", help="the current base, each kind's head form and counts, the zero-fit router",
        description="Print what the registry holds: its current base, per kind the head form "
                    "and storage dtype, how many user heads and whether a global head, the "
                    "training run (for the adapter, the pair format it was trained on), and the "
                    "zero-fit router; and a warning for an adapter trained on pairs this version "
                    "no longer builds. Reads the manifest and the base's config only.")
    show.add_argument("uri", help="the registry: a path or s3://bucket/prefix")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(func=_cmd_show)

    gc = actions.add_parser(
        "gc", help="remove files no manifest names any more (dry run unless --apply)",
        description="Find files the current manifest no longer names (replaced heads, "
                    "superseded shards and tables, orphans of crashed writes) and, with --apply, "
                    "delete those older than the grace period whose manifests were superseded "
                    "at least the grace period ago. A file superseded recently is recorded and "
                    "deleted by a later run. Prints a summary.")
    gc.add_argument("uri", help="the registry: a path or s3://bucket/prefix")
    gc.add_argument("--apply", action="store_true", help="delete (default: only report)")
    gc.add_argument("--grace", type=parse_duration, default=DEFAULT_GRACE_S,
                    help="how long a reader may keep using an older manifest, and a writer take "
                         f"from writing a file to publishing it (default {DEFAULT_GRACE_S:g}s: "
                         "6h); e.g. 30m, 6h, 2d")
    gc.set_defaults(func=_cmd_gc)

    mig = actions.add_parser(
        "migrate", help="convert a single-index (hydralm-registry/1) registry in place",
        description="Convert a registry written by an earlier hydralm (one index file per kind) "
                    "to the sharded index this version reads. Idempotent: a registry already "
                    "converted is left alone.")
    mig.add_argument("uri", help="the registry: a path or s3://bucket/prefix")
    mig.add_argument("--shards", type=_shards, default=DEFAULT_SHARDS,
                     help=f"index shards per head kind (default {DEFAULT_SHARDS})")
    mig.set_defaults(func=_cmd_migrate)


def _cmd_show(args: argparse.Namespace) -> int:
    # the bundle's format is serving's (hydralm.scoring); imported here so that upkeep alone
    # (gc, migrate) never loads the encoder stack
    from hydralm.scoring.registry_summary import format_summary, summarize_registry

    summary = summarize_registry(Registry(args.uri))
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    print(collect(Registry(args.uri), grace_s=args.grace, apply=args.apply).summary())
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    print(migrate(Registry(args.uri, shards=args.shards)).summary())
    return 0
