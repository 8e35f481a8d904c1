"""Soak test of the serving app: sustained open-loop load, one path at a time, on a local Ray.

Paths (each its own stretch of load on the same deployment):
- scoring:  /v1/rerank (10 history items) and /v1/score (8 candidates), alternating: the two HYDRA
            models alone (Scorer deployment, MiniLM bases, a random head per user);
- pipeline: /v1/personalize, the full HYDRA pipeline: BM25, reranker, the embedded SmolLM2 on
            vLLM (Ray Serve LLM) sampling the candidates, adapter.

Open loop: requests arrive at a fixed rate whatever the answers do; an arrival that finds
--max-inflight requests open is shed (counted as an error). The rate is the one the machine can
hold: by default --utilization times the rate of one client sending serially (measured first).
Every request carries an API key and is for one of --users users (their histories seeded first).

Checked per path and written to benchmarks/results/soak.json: zero 5xx (and zero errors), p99
within its bound (--p99-factor times the unloaded median, measured in the same calibration), and
resident memory flat: the summed RSS of the path's Serve replica processes (and their children,
e.g. vLLM's engine) over the first minute against the last minute, growth at most
max(50 MB, 5%). --quick runs ~20 s per path and compares the first and last quarter.

Start-up (not counted in duration_s): Ray ~10 s, registry and Serve app ~30-60 s, the embedded
vLLM ~45-90 s (pipeline only). Loopback only: Serve on 127.0.0.1, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import base_parser, write_result  # noqa: E402

from hydralm.tasks import get_task  # noqa: E402

PATHS = ("scoring", "pipeline")
APP, LLM_APP = "hydralm", "hydralm-llm"
KEY = "soak-key-0000000000000000"
WORDS = ("robots galaxy paris love ghost house detective fog boxer fight alien farm wedding "
         "chef rome war bridge whale novel painter storm train river night city music").split()


def parse_args(argv=None):
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of "
                                                            f"{list(PATHS)}")
    p.add_argument("--duration-s", type=float, default=600.0, help="load per path (10 min)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="requests/s for every path; 0: --utilization x the serial rate")
    p.add_argument("--utilization", type=float, default=0.5,
                   help="offered rate as a fraction of one serial client's rate")
    p.add_argument("--max-inflight", type=int, default=32, help="open requests before shedding")
    p.add_argument("--timeout-s", type=float, default=120.0, help="client timeout per request")
    p.add_argument("--p99-factor", type=float, default=5.0,
                   help="p99 bound as a multiple of the unloaded median latency")
    p.add_argument("--users", type=int, default=40, help="users (3/4 with their own heads)")
    p.add_argument("--rss-interval-s", type=float, default=5.0, help="RSS sampling period")
    p.add_argument("--llm-startup-timeout-s", type=float, default=1200.0,
                   help="deadline for the embedded vLLM to answer (slow on a busy machine)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration_s, args.rss_interval_s, args.users = 15.0, 1.0, min(args.users, 12)
    args.paths = [x for x in args.paths.split(",") if x]
    if not args.paths or set(args.paths) - set(PATHS):
        p.error(f"--paths: choose from {list(PATHS)}, got {args.paths}")
    return args


# -- resident memory of the Serve replicas ------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(tree.get(out[-1], []))
    return out


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")


def _process_name(title: str) -> str:
    """A Ray worker's title without the method it runs now ("ray::ServeReplica:app:Scorer" for
    "...:Scorer.handle_request_with_rejection"), so one process keeps one name across samples."""
    return re.sub(r"\.[A-Za-z_]\w*$", "", title) if title.startswith("ray::") else title


def replica_rss_mb(apps: tuple[str, ...]) -> dict[str, float]:
    """RSS in MB of this driver's Serve replica processes of `apps` and their children (e.g.
    vLLM's engine), by process title (the same titles summed)."""
    tree, out = _children(), {}
    for pid in _descendants(os.getpid(), tree):
        with contextlib.suppress(OSError):
            if any(_title(pid).startswith(f"ray::ServeReplica:{app}:") for app in apps):
                for member in _descendants(pid, tree):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        status = Path(f"/proc/{member}/status").read_text()
                        kb = int(status.split("VmRSS:")[1].split()[0])
                        name = _process_name(_title(member))
                        out[name] = out.get(name, 0.0) + kb / 1024
    return out


class RssSampler:
    """Samples replica_rss_mb every `interval_s` in a thread: `samples` [(seconds since start,
    total MB)], and the first and latest per-process breakdowns."""

    def __init__(self, apps: tuple[str, ...], interval_s: float) -> None:
        self.apps, self.interval_s = apps, interval_s
        self.samples: list[tuple[float, float]] = []
        self.first: dict[str, float] = {}
        self.latest: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while True:
            self.latest = replica_rss_mb(self.apps)
            self.first = self.first or self.latest
            self.samples.append((time.monotonic() - start, sum(self.latest.values())))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def window_means(self, window_s: float) -> tuple[float, float]:
        end = self.samples[-1][0]
        first = [mb for t, mb in self.samples if t <= window_s]
        last = [mb for t, mb in self.samples if t >= end - window_s]
        return statistics.fmean(first), statistics.fmean(last)

    def by_process(self) -> dict[str, list[float]]:
        """Process title -> [first MB, last MB]."""
        return {t: [round(self.first.get(t, 0.0), 1), round(self.latest.get(t, 0.0), 1)]
                for t in sorted(self.first.keys() | self.latest.keys())}


# -- the open-loop driver -----------------------------------------------------------------------

@dataclass
class Run:
    """What one stretch of load gave."""

    arrivals: int = 0
    shed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    started_s: list[float] = field(default_factory=list)     # of each latency, since the start
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def drive(client: httpx.AsyncClient, requests, rate: float, duration_s: float,
                max_inflight: int) -> Run:
    """Arrivals at `rate`/s for `duration_s`; `requests(i)` gives the i-th (path, body)."""
    run, open_tasks = Run(), set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(path: str, body: dict) -> None:
        began = loop.time()
        try:
            r = await client.post(path, json=body)
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        run.count(status)
        if status == "200":
            run.latencies_ms.append((loop.time() - began) * 1000.0)
            run.started_s.append(began - start)

    while (due := start + run.arrivals / rate) < start + duration_s:
        await asyncio.sleep(max(0.0, due - loop.time()))
        path, body = requests(run.arrivals)
        run.arrivals += 1
        if len(open_tasks) >= max_inflight:
            run.shed += 1
            continue
        task = loop.create_task(one(path, body))
        open_tasks.add(task)
        task.add_done_callback(open_tasks.discard)
    if open_tasks:
        await asyncio.wait(open_tasks)
    return run


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _quantile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


# -- workload -----------------------------------------------------------------------------------

def _text(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words))


def history(user_index: int, labels: list[str]) -> list[dict]:
    return [{"id": f"h{j}", "description": _text(user_index * 31 + j, 12),
             "tag": labels[(user_index + j) % len(labels)]} for j in range(12)]


def workload(path: str, users: list[str], labels: list[str]):
    """The i-th request of a path: (route, body), users in turn."""
    def scoring(i: int) -> tuple[str, dict]:
        user = users[i % len(users)]
        if i % 2 == 0:
            return "/v1/rerank", {"user": user, "query": _text(i, 8),
                                  "item_ids": [f"h{j}" for j in range(10)]}
        return "/v1/score", {"user": user, "query": _text(i, 10), "prompt": _text(i, 120),
                             "candidates": labels[:8]}

    def pipeline(i: int) -> tuple[str, dict]:
        return "/v1/personalize", {"user": users[i % len(users)], "input":
                                   f"Which tag shall we apply to this movie: {_text(i, 10)}"}

    return scoring if path == "scoring" else pipeline


async def calibrate(client: httpx.AsyncClient, requests, count: int) -> float:
    """Median latency (ms) of `count` serial requests (after one warm-up); raises on a non-200."""
    latencies = []
    for i in range(count + 1):
        path, body = requests(10_000 + i)
        began = time.perf_counter()
        r = await client.post(path, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"calibration request {path} answered {r.status_code}: {r.text}")
        latencies.append((time.perf_counter() - began) * 1000.0)
    return statistics.median(latencies[1:])


async def soak_path(base_url: str, path: str, users: list[str], args) -> dict:
    labels = list(get_task("synth-tag").labels)
    requests = workload(path, users, labels)
    limits = httpx.Limits(max_connections=args.max_inflight)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=args.timeout_s, limits=limits,
                                 headers=headers) as client:
        median_ms = await calibrate(client, requests, 2 if args.quick else 8)
        rate = args.rate or args.utilization * 1000.0 / median_ms
        print(f"[{path}] unloaded median {median_ms:.0f} ms -> {rate:.2f} requests/s for "
              f"{args.duration_s:.0f} s", flush=True)
        apps = (APP, LLM_APP) if path == "pipeline" else (APP,)
        with RssSampler(apps, args.rss_interval_s) as rss:
            began = time.monotonic()
            run = await drive(client, requests, rate, args.duration_s, args.max_inflight)
            elapsed = time.monotonic() - began
    return summarize(run, rss, elapsed, rate, median_ms, args)


def _p50_by_minute(run: Run) -> list[float | None]:
    minutes = int(max(run.started_s, default=0) // 60) + 1
    return [_round(_quantile([ms for t, ms in zip(run.started_s, run.latencies_ms, strict=True)
                              if m * 60 <= t < (m + 1) * 60], 0.5)) for m in range(minutes)]


def summarize(run: Run, rss: RssSampler, elapsed: float, rate: float, median_ms: float,
              args) -> dict:
    window = elapsed / 4 if args.quick else 60.0
    rss_start, rss_end = rss.window_means(window)
    errors = run.shed + sum(n for s, n in run.statuses.items() if s != "200")
    five_xx = sum(n for s, n in run.statuses.items() if s.startswith("5"))
    p99, bound = _quantile(run.latencies_ms, 0.99), args.p99_factor * median_ms
    return {
        "duration_s": round(elapsed, 1), "requests": run.arrivals, "errors": errors,
        "p50_ms": _round(_quantile(run.latencies_ms, 0.5)), "p99_ms": _round(p99),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rate_rps": round(rate, 3), "statuses": run.statuses, "shed": run.shed,
        "unloaded_median_ms": round(median_ms, 1), "p99_bound_ms": round(bound, 1),
        "rss_window_s": round(window, 1),
        "p50_ms_by_minute": _p50_by_minute(run),
        "rss_by_process_mb": rss.by_process(),
        "rss_samples_mb": [[round(t, 1), round(mb, 1)] for t, mb in rss.samples],
        "checks": {"no_5xx": five_xx == 0, "no_errors": errors == 0,
                   "p99_within_bound": p99 is not None and p99 <= bound,
                   "rss_flat": rss_end - rss_start <= max(50.0, 0.05 * rss_start)},
    }


# -- deployment ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deploy(root: Path, port: int, users: list[str]) -> str:
    """The hydralm app on a fresh registry and history store; its base URL."""
    from ray import serve

    from hydralm.artifacts import Registry
    from hydralm.scoring import publish_random_registry
    from serving.app import build_app
    from serving.auth import hash_key

    publish_random_registry(Registry(str(root / "registry")), users[: len(users) * 3 // 4])
    keys = root / "keys.json"
    keys.write_text(json.dumps({hash_key(KEY): {"tenant": "soak", "user_prefixes": ["u"]}}))
    serve.run(build_app({
        "task": "synth-tag", "registry": str(root / "registry"),
        "history_path": str(root / "history.db"), "auth": {"keys_file": str(keys)},
        "generator": {"backend": "openai", "base_url": f"http://127.0.0.1:{port}/llm/v1",
                      "model": "smollm2", "max_tokens": 16, "timeout_s": 120},
        "scorer": {"num_cpus": 0.5, "torch_threads": 1, "num_buckets": 4},
        "ingress": {"num_cpus": 0},
    }), name=APP, route_prefix="/")
    labels = list(get_task("synth-tag").labels)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        for i, user in enumerate(users):
            r = client.post(f"/v1/users/{user}/history", json={"items": history(i, labels)})
            if r.status_code != 200:
                raise RuntimeError(f"seeding {user}'s history answered {r.status_code}: {r.text}")
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def embedded_llm(port: int, scratch: Path, startup_timeout_s: float):
    from hydralm.generator import GeneratorConfig
    from training.llm import embedded_generator

    cfg = GeneratorConfig.from_dict({
        "model": "smollm2", "max_tokens": 16, "timeout_s": 120,
        "embedded": {"http_port": port, "startup_timeout_s": startup_timeout_s,
                     "env_vars": {"VLLM_CACHE_ROOT": str(scratch)}}})
    with embedded_generator(cfg) as url:
        yield url


def main(argv=None) -> int:
    args = parse_args(argv)
    import ray
    from ray import serve

    root = Path(tempfile.mkdtemp(prefix="hydralm-soak-"))
    users = [f"u{i:03d}" for i in range(args.users)]
    results: dict = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
                     "startup_s": {}}
    t0 = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2)
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results["startup_s"]["ray_and_serve"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        base_url = deploy(root, port, users)
        results["startup_s"]["app_and_histories"] = round(time.monotonic() - t0, 1)
        if "scoring" in args.paths:
            results["scoring"] = asyncio.run(soak_path(base_url, "scoring", users, args))
            write_result("soak", results, args.out)        # kept if a later path fails
        if "pipeline" in args.paths:
            t0 = time.monotonic()
            with embedded_llm(port, root / "vllm-cache", args.llm_startup_timeout_s):
                results["startup_s"]["embedded_llm"] = round(time.monotonic() - t0, 1)
                results["pipeline"] = asyncio.run(soak_path(base_url, "pipeline", users, args))
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    path = write_result("soak", results, args.out)
    for name in args.paths:
        r = results[name]
        print(f"[{name}] {r['requests']} requests in {r['duration_s']} s at {r['rate_rps']}/s: "
              f"{r['errors']} errors, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms "
              f"(bound {r['p99_bound_ms']}), RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB, "
              f"checks {r['checks']}")
    print(f"wrote {path}")
    return 0 if all(all(results[n]["checks"].values()) for n in args.paths) else 1


if __name__ == "__main__":
    sys.exit(main())
