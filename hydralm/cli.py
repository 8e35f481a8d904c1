"""The `hydralm` console command.

Subcommands are plugins: each package registers `register(subparsers)` functions under the
`hydralm.commands` entry-point group in pyproject.toml. The library registers the commands that
need no Ray (`data`, `env`); `training` and `serving` register theirs, so this module never imports
them and the library stays free of Ray. A command line naming a command loads that command's
plugin only (`hydralm serve` does not import the training stack: seconds of start-up); without
one (`hydralm --help`) every plugin is loaded to list them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

from hydralm.console import QUIET_COMMANDS, Console, quiet_console, tail
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only `command`'s when it names a plugin command."""
    parser = argparse.ArgumentParser(
        prog="hydralm",
        description="HYDRA personalization of a black-box LLM on Ray: data, labels from the "
                    "black box, training, per-user head fitting, serving and evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging; for the job commands (labels, train, fit-users, "
                             "eval, demo) also Ray's, Ray Data's and vLLM's output on the "
                             "terminal instead of in their log file (the flag may also follow "
                             "the command)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_env(subparsers)
    plugins = sorted(entry_points(group="hydralm.commands"), key=lambda e: e.name)
    if any(ep.name == command for ep in plugins):
        plugins = [ep for ep in plugins if ep.name == command]
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


VERBOSE_FLAGS = ("-v", "--verbose")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --verbose anywhere on the line: `hydralm --verbose train ...` or `hydralm train ... -v`.
    verbose = any(a in VERBOSE_FLAGS for a in argv)
    argv = [a for a in argv if a not in VERBOSE_FLAGS]
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    args.verbose = verbose
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in QUIET_COMMANDS and not verbose:
        with quiet_console(args.command, level=env_str("HYDRALM_LOG_LEVEL")) as console:
            return _run_quiet(args, console)
    logging.basicConfig(
        level=logging.DEBUG if verbose else env_str("HYDRALM_LOG_LEVEL"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except HydraError as exc:
        print(f"hydralm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hydralm {args.command}: interrupted", file=sys.stderr)
        return 130


def _run_quiet(args: argparse.Namespace, console: Console) -> int:
    """Run a job command whose Ray/vLLM output goes to the console's log file: a failure is
    one line on the terminal with the log's last lines, its traceback in the log."""
    name = f"hydralm {args.command}"
    shown = _shown_path(console.log_path)
    # A demo's stages (HYDRALM_LOG_FILE set) and the demo itself: the demo names the file.
    if not env_str("HYDRALM_LOG_FILE") and not getattr(args, "names_its_log", False):
        print(f"{name}: Ray's, Ray Data's and vLLM's logs go to {shown} (--verbose shows "
              "them here)", file=console.err, flush=True)
    try:
        return int(args.func(args) or 0)
    except HydraError as exc:
        log.debug("%s failed", name, exc_info=True)
        print(f"{name}: error: {exc}\n(log: {shown})", file=console.err, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted (log: {shown})", file=console.err, flush=True)
        return 130
    except Exception as exc:
        traceback.print_exc()   # into the log file
        sys.stderr.flush()
        first = (str(exc).strip().splitlines() or [""])[0]
        lines = "\n".join(f"  | {line}" for line in tail(console.log_path, 30))
        print(f"{name}: failed: {type(exc).__name__}: {first}\nthe last lines of {shown}:\n"
              f"{lines}", file=console.err, flush=True)
        return 1


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
