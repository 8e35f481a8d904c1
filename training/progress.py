"""A progress bar on the driver's terminal for a loop that runs in a Ray worker.

Ray Train's workers are other processes, and their output reaches the driver only mixed into the
log stream (which a job's console sends to its log file). So rank 0 posts its position to a tiny
actor, and the driver draws it:

```
driver: with driver_bar("train reranker") as board:    worker (rank 0):
            trainer.fit(... board ...)                   with RemoteBar(board, total, desc) as bar:
        a thread polls board.get() twice a second            bar.update(1)   # posts at most
        and redraws one tqdm bar on the terminal                             # twice a second
```
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray
from tqdm import tqdm

from hydralm.console import err

__all__ = ["ProgressBoard", "RemoteBar", "driver_bar"]

log = logging.getLogger(__name__)

_POLL_S = 0.5


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The latest (desc, n, total) a worker posted."""

    def __init__(self) -> None:
        self._state: dict[str, Any] = {"desc": "", "n": 0, "total": 0}

    def post(self, desc: str, n: int, total: int) -> None:
        self._state = {"desc": desc, "n": n, "total": total}

    def get(self) -> dict[str, Any]:
        return self._state


class RemoteBar:
    """A worker's progress bar that posts to a board (none: a no-op); a context manager."""

    def __init__(self, board: Any, total: int, desc: str, *, every_s: float = _POLL_S) -> None:
        self._board, self.total, self.desc, self._every = board, total, desc, every_s
        self.n, self._posted = 0, 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._board is not None and time.monotonic() - self._posted >= self._every:
            self._post()

    def _post(self) -> None:
        self._posted = time.monotonic()
        self._board.post.remote(self.desc, self.n, self.total)

    def __enter__(self) -> RemoteBar:
        if self._board is not None:
            self._post()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._board is not None:
            self._post()


@contextlib.contextmanager
def driver_bar(desc: str, *, enabled: bool = True) -> Iterator[Any]:
    """Yield a ProgressBoard handle for the workers (None when disabled) and draw what they post
    as one bar on the terminal until the block ends."""
    if not enabled:
        yield None
        return
    board = ProgressBoard.remote()
    stop = threading.Event()
    bar = tqdm(total=0, desc=desc, unit=" step", file=err())
    shown = [("", 0)]   # the (desc, total) the bar shows

    def draw() -> None:
        try:
            state = ray.get(board.get.remote(), timeout=5.0)
        except (ray.exceptions.RayError, TimeoutError):   # e.g. Ray shutting down
            log.debug("progress board unreachable", exc_info=True)
            return
        if state["total"] and (state["desc"], state["total"]) != shown[0]:
            shown[0] = (state["desc"], state["total"])
            bar.reset(total=state["total"])
            bar.set_description(f"{desc} {state['desc']}", refresh=False)
        bar.n = state["n"]
        bar.refresh()

    def loop() -> None:
        while not stop.wait(_POLL_S):
            draw()

    thread = threading.Thread(target=loop, name=f"progress-{desc}", daemon=True)
    thread.start()
    try:
        yield board
    finally:
        stop.set()
        thread.join()
        draw()
        bar.close()
        with contextlib.suppress(ray.exceptions.RayError):
            ray.kill(board)
