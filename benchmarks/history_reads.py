"""The history read each personalized request makes (`HistoryStore.get(user)`): p50/p99 latency with
PostgreSQL holding 100k users of 50 items each, against SQLite at the same size as the baseline.

A real PostgreSQL (Debian's package, started here on loopback by tests/postgres_server.py, default
settings: fsync on, 128 MB shared_buffers) is loaded through `PostgresHistoryStore.seed` (COPY, 500
users per transaction); the SQLite file through `SqliteHistoryStore.seed`. Then both stores answer
the same random users' reads:
- sequential: one thread, one read at a time (the latency a request sees on an idle store);
- concurrent: `--threads` threads at once (an ingress replica runs the reads in a thread pool),
  PostgreSQL pool of as many connections.
Each read goes through the store's real path (PostgreSQL: pooled connection checked before use,
one SELECT, JSON decoding of the 50 items). Target: p99 at most 10 ms on loopback.

    python benchmarks/history_reads.py            # 100k users x 50 items, 20,000 reads
    python benchmarks/history_reads.py --quick    # 5k users, 2,000 reads (under a minute)

Result: benchmarks/results/history_reads.json (quick: history_reads_quick.json)
  {"users", "items_per_user", "postgres": {"load_s", "sequential": {"p50_ms", "p99_ms", ...},
   "concurrent": {...}}, "sqlite": {...}, "target_p99_ms", "meets_target", "hardware", ...}
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import base_parser, write_result  # noqa: E402

from hydralm.history import SqliteHistoryStore  # noqa: E402
from hydralm.history_pg import PostgresHistoryStore  # noqa: E402
from hydralm.model.precision import cpu_flags, cpu_model  # noqa: E402

TARGET_P99_MS = 10.0
TAGS = ("comedy", "drama", "action", "sci-fi", "romance", "horror", "thriller", "fantasy")
WORDS = ("river", "train", "castle", "robot", "garden", "storm", "violin", "desert", "harbor",
         "comet", "forest", "market", "engine", "lantern", "glacier", "orchard", "canyon")


def histories(users: int, items: int, seed: int = 0):
    """synth-tag-shaped items: an id, a description of about 60 characters and a tag."""
    rng = random.Random(seed)
    for u in range(users):
        yield f"u{u:07d}", [{"id": f"{u}-{i}", "tag": rng.choice(TAGS),
                             "description": " ".join(rng.choices(WORDS, k=9))}
                            for i in range(items)]


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in samples_s)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100.0 * len(ms)))], 3)

    return {"reads": len(ms), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "p999_ms": pct(99.9), "max_ms": round(ms[-1], 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


def sequential(store, users: list[str], items: int) -> dict[str, float]:
    samples = []
    for user in users:
        start = time.perf_counter()
        got = store.get(user)
        samples.append(time.perf_counter() - start)
        assert len(got) == items, (user, len(got))
    return percentiles(samples)


def concurrent(store, users: list[str], items: int, threads: int) -> dict[str, float]:
    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(part: list[str]) -> None:
        mine = []
        barrier.wait()
        for user in part:
            start = time.perf_counter()
            got = store.get(user)
            mine.append(time.perf_counter() - start)
            assert len(got) == items
        with lock:
            samples.extend(mine)

    workers = [threading.Thread(target=worker, args=(users[t::threads],)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {**percentiles(samples), "threads": threads,
            "reads_per_s": round(len(samples) / wall, 1)}


def measure(store, args, users: list[str]) -> dict[str, Any]:
    sequential(store, users[: min(500, len(users))], args.items)   # warm-up: connections, cache
    return {"sequential": sequential(store, users, args.items),
            "concurrent": concurrent(store, users, args.items, args.threads)}


def run_postgres(args, users: list[str]) -> dict[str, Any]:
    from postgres_server import LocalPostgres

    with LocalPostgres() as pg:
        store = PostgresHistoryStore(pg.create_database(), pool_min=args.threads,
                                     pool_max=args.threads, timeout_s=10.0)
        try:
            start = time.perf_counter()
            store.seed(histories(args.users, args.items))
            load_s = time.perf_counter() - start
            with store._pool.connection() as conn:  # noqa: SLF001 - benchmark-only inspection
                conn.execute("ANALYZE")
                version = conn.execute("SHOW server_version").fetchone()[0]
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            return {"load_s": round(load_s, 1), "server_version": version,
                    "database_mb": round(size / 2**20, 1), **measure(store, args, users)}
        finally:
            store.close()


def run_sqlite(args, users: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hydralm-bench-") as tmp:
        path = Path(tmp) / "history.db"
        store = SqliteHistoryStore(path)
        start = time.perf_counter()
        store.seed(histories(args.users, args.items))
        load_s = time.perf_counter() - start
        return {"load_s": round(load_s, 1), "database_mb": round(path.stat().st_size / 2**20, 1),
                **measure(store, args, users)}


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--users", type=int, default=None, help="default 100,000 (quick 5,000)")
    parser.add_argument("--items", type=int, default=50, help="items per user")
    parser.add_argument("--reads", type=int, default=None, help="default 20,000 (quick 2,000)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the concurrent run")
    args = parser.parse_args()
    args.users = args.users or (5_000 if args.quick else 100_000)
    args.reads = args.reads or (2_000 if args.quick else 20_000)
    rng = random.Random(1)
    users = [f"u{rng.randrange(args.users):07d}" for _ in range(args.reads)]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "users": args.users, "items_per_user": args.items, "reads": args.reads,
        "postgres": run_postgres(args, users), "sqlite": run_sqlite(args, users),
        "target_p99_ms": TARGET_P99_MS}
    result["meets_target"] = result["postgres"]["sequential"]["p99_ms"] <= TARGET_P99_MS
    result["hardware"] = {"cpu_model": cpu_model(), "flags": sorted(cpu_flags())}
    result["settings"] = {"threads": args.threads, "quick": args.quick,
                          "seconds": round(time.perf_counter() - started, 1)}
    name = "history_reads_quick" if args.quick else "history_reads"
    path = write_result(name, result, args.out)
    pg, lite = result["postgres"], result["sqlite"]
    print(f"{args.users} users x {args.items} items, {args.reads} reads: PostgreSQL p50 "
          f"{pg['sequential']['p50_ms']} ms p99 {pg['sequential']['p99_ms']} ms "
          f"({args.threads} threads: p99 {pg['concurrent']['p99_ms']} ms, "
          f"{pg['concurrent']['reads_per_s']} reads/s); SQLite p50 "
          f"{lite['sequential']['p50_ms']} ms p99 {lite['sequential']['p99_ms']} ms -> {path}")


if __name__ == "__main__":
    main()
