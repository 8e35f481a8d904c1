"""Generator throughput and latency at concurrency 1, 8 and 32.

Against the embedded vLLM (started on a local Ray, about a minute on CPU) or any OpenAI-compatible
server given by --base-url. Each level sends a bounded number of distinct short chat requests
(cache off) through GeneratorClient and reports requests/s, output tokens/s and p50/p99 latency.
`--cpu-reserved-cores default,0` runs the levels once per value of embedded.cpu_reserved_cores,
each on a fresh engine, and reports each level's tokens/s against the first value's.
Writes benchmarks/results/generator.json:
  {"backend", "model", "hardware", "runs": [{"concurrency", "requests_per_s", "tokens_per_s",
   "p50_ms", "p99_ms", ...}], "variants": [{"cpu_reserved_cores", "startup_s", "runs",
   "tokens_per_s_ratio"}], ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from _common import base_parser, write_result
from _hardware import hardware

from hydralm.generator import ChatRequest, GeneratorClient, GeneratorConfig
from training.llm import embedded_generator, local_ray

log = logging.getLogger("benchmarks.generator")

TOPICS = ["rain", "coffee", "trains", "the sea", "autumn", "chess", "bread", "music", "snow",
          "bicycles", "libraries", "mountains", "cats", "gardens", "bridges", "clocks"]


def _parse_args():
    p = base_parser(__doc__)
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible base URL (with /v1); default: start the embedded vLLM")
    p.add_argument("--model", default="smollm2", help="served model name (default smollm2)")
    p.add_argument("--concurrency", default="1,8,32",
                   help="comma-separated concurrency levels (default 1,8,32)")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per level (default: 4x concurrency, at least 16; --quick: 2x, "
                        "at least 8)")
    p.add_argument("--max-tokens", type=int, default=32, help="completion length (default 32)")
    p.add_argument("--cpu-reserved-cores", default="default",
                   help="comma-separated values of embedded.cpu_reserved_cores, each run on a "
                        "fresh embedded engine and compared with the first ('default': vLLM's "
                        "own, one core kept for its scheduler); e.g. default,0")
    return p.parse_args()


def _reserved(value: str) -> int | None:
    return None if value == "default" else int(value)


def _prompts(count: int, level: int) -> list[ChatRequest]:
    # Distinct prompts, so prefix caching cannot turn the run into a cache benchmark.
    return [ChatRequest(messages=({"role": "user", "content":
                                   f"Write one sentence about {TOPICS[i % len(TOPICS)]} "
                                   f"(note {level}-{i})."},), temperature=0.0)
            for i in range(count)]


async def _run_level(cfg: GeneratorConfig, base_url: str, level: int,
                     count: int) -> dict[str, Any]:
    """A closed loop: `level` workers each send their next request when the last one returns,
    so a latency is the server's answer time, not time queued in the client."""
    client = GeneratorClient(cfg.model_copy(update={"max_concurrency": level}), base_url=base_url)
    pending = iter(_prompts(count, level))
    latencies: list[float] = []

    async def worker() -> None:
        for req in pending:
            start = time.perf_counter()
            await client.generate(req)
            latencies.append(time.perf_counter() - start)

    async with client:
        await client.generate(_prompts(1, -level)[0])  # warm the connection
        tokens_before = client.stats.completion_tokens
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level)))
        wall = time.perf_counter() - start
    latencies.sort()
    tokens = client.stats.completion_tokens - tokens_before
    return {"concurrency": level, "requests": count,
            "requests_per_s": round(count / wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1,
                                                 int(0.99 * len(latencies)))], 1),
            "wall_s": round(wall, 2), "retries": client.stats.retries}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_variant(args, levels: list[int], backend: str, reserved: int | None) -> dict[str, Any]:
    """Start the generator (embedded: with `reserved` cores kept off its OpenMP threads) and run
    every concurrency level on it."""
    cfg = GeneratorConfig.from_dict({
        "backend": backend, "base_url": args.base_url, "model": args.model, "cache": None,
        "max_tokens": args.max_tokens, "timeout_s": 120,
        "embedded": {"http_port": _free_port(), "cpu_reserved_cores": reserved}})
    start = time.perf_counter()
    runs = []
    with embedded_generator(cfg) as base_url:
        startup_s = time.perf_counter() - start
        log.info("generator ready at %s after %.1fs", base_url, startup_s)
        for level in levels:
            count = args.requests or max(8 if args.quick else 16, (2 if args.quick else 4) * level)
            runs.append(asyncio.run(_run_level(cfg, base_url, level, count)))
            log.info("concurrency %d: %s", level, runs[-1])
    return {"cpu_reserved_cores": "default" if reserved is None else reserved,
            "startup_s": round(startup_s, 1), "runs": runs}


def main() -> int:
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    levels = [int(c) for c in args.concurrency.split(",")]
    backend = "openai" if args.base_url else "embedded"
    reserved = [_reserved(v) for v in args.cpu_reserved_cores.split(",")]
    if backend == "openai" and reserved != [None]:
        raise SystemExit("--cpu-reserved-cores applies to the embedded generator only")
    start = time.perf_counter()
    with local_ray() if backend == "embedded" else contextlib.nullcontext():
        variants = [_run_variant(args, levels, backend, r) for r in reserved]
    first = {run["concurrency"]: run["tokens_per_s"] for run in variants[0]["runs"]}
    for variant in variants:
        variant["tokens_per_s_ratio"] = {
            str(run["concurrency"]): round(run["tokens_per_s"] / first[run["concurrency"]], 3)
            for run in variant["runs"] if first[run["concurrency"]]}
    result = {"backend": backend, "model": args.model, "base_url": args.base_url,
              "device": "cpu" if backend == "embedded" else "unknown", "quick": args.quick,
              "hardware": hardware("bf16"), "max_tokens": args.max_tokens,
              "startup_s": variants[0]["startup_s"],
              "total_s": round(time.perf_counter() - start, 1), "runs": variants[0]["runs"],
              "variants": variants}
    path = write_result("generator", result, args.out)
    print(f"wrote {path}")
    for variant in variants:
        print(f"cpu_reserved_cores {variant['cpu_reserved_cores']} (up in "
              f"{variant['startup_s']:.0f} s):")
        for run in variant["runs"]:
            ratio = variant["tokens_per_s_ratio"].get(str(run["concurrency"]))
            print(f"  concurrency {run['concurrency']:>3}: {run['requests_per_s']:6.2f} req/s, "
                  f"{run['tokens_per_s']:7.1f} tok/s (x{ratio} the first), p50 "
                  f"{run['p50_ms']:7.1f} ms, p99 {run['p99_ms']:7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
