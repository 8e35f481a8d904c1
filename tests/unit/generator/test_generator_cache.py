"""The response cache: content addressing, persistence, and many concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

from hydralm.generator import ResponseCache, cache_key

PAYLOAD = {"model": "m", "endpoint": "completions", "prompt": "p", "n": 2}


def test_key_is_canonical_json():
    reordered = dict(reversed(list(PAYLOAD.items())))
    assert cache_key(PAYLOAD) == cache_key(reordered)
    assert cache_key(PAYLOAD) != cache_key({**PAYLOAD, "n": 3})
    assert len(cache_key(PAYLOAD)) == 64


def test_put_then_get_in_a_new_instance(tmp_path):
    ResponseCache(tmp_path).put(PAYLOAD, ["a", "b"])
    fresh = ResponseCache(tmp_path)
    assert fresh.get(PAYLOAD) == ["a", "b"]
    assert fresh.get({**PAYLOAD, "prompt": "other"}) is None
    assert (fresh.hits, fresh.misses) == (1, 1)
    key = cache_key(PAYLOAD)
    entry = tmp_path / key[:2] / key[2:4] / f"{key}.json"
    assert json.loads(entry.read_text())["request"] == PAYLOAD


def test_unreadable_entry_is_a_miss_and_is_replaced(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache_key(PAYLOAD)
    path = tmp_path / key[:2] / key[2:4] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"samples": [1')
    assert cache.get(PAYLOAD) is None
    cache.put(PAYLOAD, ["x"])
    assert cache.get(PAYLOAD) == ["x"]


def _write_many(root: str, writer: int, keys: int) -> None:
    cache = ResponseCache(root)
    for i in range(keys):
        cache.put({**PAYLOAD, "prompt": f"p{i}"}, [f"w{writer}-{i}-{'x' * 2000}"])


def _all_entries_valid(root, keys: int) -> bool:
    cache = ResponseCache(root)
    for i in range(keys):
        samples = cache.get({**PAYLOAD, "prompt": f"p{i}"})
        if samples is None or len(samples) != 1 or not samples[0].endswith("x" * 2000):
            return False
    return True


def test_concurrent_processes_and_a_reader_never_see_torn_entries(tmp_path):
    keys = 40
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w, keys)) for w in range(3)]
    torn: list[str] = []
    done = threading.Event()

    def read_while_writing() -> None:
        # Read the files themselves: a half-written one would not parse (get() hides that).
        while not done.is_set():
            for path in tmp_path.rglob("*.json"):
                try:
                    samples = json.loads(path.read_bytes())["samples"]
                    assert samples[0].endswith("x" * 2000)
                except (ValueError, KeyError, AssertionError) as exc:
                    torn.append(f"{path.name}: {exc!r}")

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    for proc in procs:
        proc.start()
    with ThreadPoolExecutor(4) as pool:  # threads of this process write the same keys too
        list(pool.map(lambda w: _write_many(str(tmp_path), w, keys), range(10, 14)))
    for proc in procs:
        proc.join(timeout=60)
    done.set()
    reader.join(timeout=10)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert not torn
    assert _all_entries_valid(tmp_path, keys)
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind
