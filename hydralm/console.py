"""What a person sees when a job command runs: hydralm's own lines, progress bars and results.

A job (`hydralm labels|train|fit-users|eval|demo`) starts Ray, Ray Data, Ray Train and vLLM,
which log a great deal: worker output, execution plans, progress lines, warnings. Inside
`quiet_console(...)` all of it goes to one log file instead, caught where it is written (file
descriptors 1 and 2, and `sys.stdout`/`sys.stderr`), so nothing reaches the terminal by a path
nobody thought of. hydralm writes to the terminal on purpose only:

- `echo(...)` for results and stage lines (the terminal's stdout),
- `err()` as the stream of progress bars and error messages (the terminal's stderr),
- hydralm's own loggers (`hydralm`, `training`, `serving`): warnings and errors on the terminal,
  everything from INFO in the log file.

Outside `quiet_console` (`--verbose`, tests, library use) `echo` prints and `err()` is
`sys.stderr`: everything behaves as without this module. The child processes a command starts
inherit the redirected descriptors, so their output lands in the same file; a child that is a
hydralm job itself is handed the terminal (`HYDRALM_LOG_FILE` names the shared file).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hydralm.settings import env_str, home_dir

__all__ = ["OWN_LOGGERS", "QUIET_COMMANDS", "Console", "current", "echo", "err",
           "log_path_for", "quiet_console", "tail"]

# Commands that start Ray: quiet by default, everything with `hydralm --verbose COMMAND`.
QUIET_COMMANDS = frozenset({"demo", "eval", "fit-users", "labels", "train"})
# The project's own packages: their loggers stay visible (warnings and errors).
OWN_LOGGERS = ("hydralm", "training", "serving")

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Console:
    """The terminal streams saved by `quiet_console` and the log file everything else goes to."""

    out: TextIO
    err: TextIO
    log_path: Path


_current: Console | None = None


def current() -> Console | None:
    """The console of the running `quiet_console`, or None outside one."""
    return _current


def err() -> TextIO:
    """Where progress bars and error messages go: the terminal's stderr."""
    return _current.err if _current is not None else sys.stderr


def echo(text: str = "", *, end: str = "\n") -> None:
    """Print a line for the person at the terminal (results, stage lines)."""
    stream = _current.out if _current is not None else sys.stdout
    stream.write(text + end)
    stream.flush()


def log_path_for(command: str) -> Path:
    """The log file of one run of `command`: HYDRALM_LOG_FILE when set (a demo hands its own to
    the stages it starts), else a new file under $HYDRALM_HOME/logs."""
    named = env_str("HYDRALM_LOG_FILE")
    if named:
        return Path(named).expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return home_dir() / "logs" / f"{command}-{stamp}-{os.getpid()}.log"


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of a log file (empty when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except OSError:
        return []


def _terminal(stream: TextIO, fd: int) -> tuple[TextIO, bool]:
    """A stream that keeps reaching what `stream` reaches once descriptor `fd` is redirected:
    a new stream on a copy of `fd` when `stream` writes to it, else `stream` itself (a test's
    capture buffer). Returns (stream, whether it is new and must be closed)."""
    try:
        writes_to_fd = stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        writes_to_fd = False
    if not writes_to_fd:
        return stream, False
    stream.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace"), True


def _own_handlers(log_stream: TextIO, console_err: TextIO) -> list[logging.Handler]:
    to_file = logging.StreamHandler(log_stream)
    to_file.setFormatter(logging.Formatter(_FILE_FORMAT))
    to_console = logging.StreamHandler(console_err)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(logging.Formatter(_CONSOLE_FORMAT))
    return [to_file, to_console]


@contextlib.contextmanager
def quiet_console(command: str, *, level: str = "INFO") -> Iterator[Console]:
    """Send everything written to stdout/stderr (this process's and its children's) to the
    command's log file; yield the saved terminal streams. Restored on exit."""
    global _current
    path = log_path_for(command)
    path.parent.mkdir(parents=True, exist_ok=True)
    out, close_out = _terminal(sys.stdout, 1)
    error, close_err = _terminal(sys.stderr, 2)
    log_stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    saved_fds = (os.dup(1), os.dup(2))
    saved_streams = (sys.stdout, sys.stderr)
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in OWN_LOGGERS]
    saved_loggers = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in [root, *loggers]]
    handlers = _own_handlers(log_stream, error)
    os.dup2(log_stream.fileno(), 1)
    os.dup2(log_stream.fileno(), 2)
    sys.stdout = sys.stderr = log_stream
    root.handlers = [handlers[0]]   # every other library's records: the file only
    root.setLevel(level)
    for lg in loggers:
        lg.handlers, lg.propagate = handlers[:], False
        lg.setLevel(level)
    logging.captureWarnings(True)   # warnings go through logging (py.warnings) to the file
    _current = Console(out, error, path)
    try:
        yield _current
    finally:
        _current = None
        logging.captureWarnings(False)
        for lg, lg_handlers, propagate, lg_level in saved_loggers:
            lg.handlers, lg.propagate = lg_handlers, propagate
            lg.setLevel(lg_level)
        log_stream.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        log_stream.close()
        for stream, close in ((out, close_out), (error, close_err)):
            stream.flush()
            if close:
                stream.close()
