"""The `hydralm` console command.

Subcommands are plugins: each package registers `register(subparsers)` functions under the
`hydralm.commands` entry-point group in pyproject.toml. The library registers the commands that
need no Ray (`data`, `env`); `training` and `serving` register theirs, so this module never imports
them and the library stays free of Ray.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from hydralm.errors import HydraError
from hydralm.settings import KNOBS, env_str

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


def _register_env(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("env", help="list the environment knobs hydralm reads",
                              description="List every environment variable hydralm reads, with "
                                          "its current value and what it does.")
    p.set_defaults(func=_cmd_env)


def _cmd_env(args: argparse.Namespace) -> int:
    for knob in KNOBS.values():
        value = env_str(knob.name)
        shown = "***" if ("KEY" in knob.name and value) else value
        print(f"{knob.name}={shown}\n    {knob.doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hydralm",
        description="HYDRA personalization of a black-box LLM on Ray: data, labels from the "
                    "black box, training, per-user head fitting, serving and evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_env(subparsers)
    plugins = sorted(entry_points(group="hydralm.commands"), key=lambda e: e.name)
    for ep in plugins:
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            # A plugin whose package is not installed (e.g. a stale editable install) is skipped
            # with a warning; any other import error is a bug and propagates.
            print(f"hydralm: command {ep.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else env_str("HYDRALM_LOG_LEVEL"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HydraError as exc:
        print(f"hydralm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hydralm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
