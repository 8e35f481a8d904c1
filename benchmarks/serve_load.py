"""Load benchmark of the scoring path: cross-user batching against per-user designs.

Builds a registry of MiniLM bases with a random head per user (scores are meaningless; shapes and
costs are real), then drives each design with the same bounded open-loop load: requests arrive at
a fixed rate, each from a user drawn by Zipf popularity, each scoring 10 reranker pairs and then 8
adapter pairs (one /v1/rerank and one /v1/score call of a personalized request). An arrival that
finds `--max-inflight` requests open is shed (counted, not sent), so queues stay bounded.

Designs, all on one local Ray with the same torch threads and encoder precision (`--precision`,
default auto: bf16 where the CPU has amx_bf16 or avx512_bf16, else fp32):
- ceiling: the encoder's raw forward throughput at its best batch size (in a Ray actor, like the
  replicas: same process kind, priority and threads), sampled once per round; at the run's
  precision (auto: the best this machine has), and once at fp32 for reference;
- hydralm: the Scorer deployment (buckets + @serve.batch + continuous cross-user batching);
- per_user_batching: shared bases and a head LRU, but batches only ever hold one user's requests
  (Serve multiplexing by user id, as @serve.batch splits by model id);
- per_user_model: one Serve multiplexed model per user (bases + heads loaded per user from the
  registry, an LRU of a few), as Serve's model-multiplexing guide does.

Against the hardware: the encoder FLOPs of the request mix (token counts of the real pairs, see
benchmarks/_hardware.py) turn pairs/s into achieved GFLOP/s, set against the CPU's estimated peak
for the precision used (`hardware`: model, flags, peak and the inputs of the estimate).

Writes benchmarks/results/serve_load.json and serve_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from _hardware import encoder_flops, hardware  # noqa: E402  (benchmarks/ is on sys.path)

from hydralm.artifacts import Registry  # noqa: E402
from hydralm.model import BaseEncoder, default_encoder_path  # noqa: E402
from hydralm.model.precision import resolve_precision  # noqa: E402
from hydralm.scoring import publish_random_registry  # noqa: E402
from serving.scorer_config import ScorerArgs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RERANK_PAIRS, SCORE_PAIRS = 10, 8
PAIRS = RERANK_PAIRS + SCORE_PAIRS
DESIGNS = ("hydralm", "per_user_batching", "per_user_model")
WORDS = ("film plot actor scene story train river night city music love war ship storm song "
         "dream road house light winter summer friend enemy secret garden letter mountain sea "
         "king queen child doctor detective island forest journey memory fire rain").split()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small run (under a minute)")
    p.add_argument("--users", type=int, default=1000, help="distinct users, each with heads")
    p.add_argument("--duration-s", type=float, default=30.0, help="measured load per design")
    p.add_argument("--slice-s", type=float, default=5.0,
                   help="designs take turns in slices of this length (interleaved rounds)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="unmeasured load per design")
    p.add_argument("--load-factor", type=float, default=3.0,
                   help="offered requests/s as a multiple of the ceiling's requests/s")
    p.add_argument("--max-inflight", type=int, default=24, help="open requests before shedding")
    p.add_argument("--timeout-s", type=float, default=30.0,
                   help="client timeout of a request (rerank + score); a timeout is an error")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of user popularity")
    p.add_argument("--threads", type=int, default=2, help="torch threads (ceiling and replicas)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="encoder precision of every design and the ceiling (auto: bf16 where "
                        "the CPU has native bf16)")
    p.add_argument("--designs", default=",".join(DESIGNS), help="comma-separated subset")
    p.add_argument("--models-per-replica", type=int, default=4,
                   help="per_user_model: users' models kept per replica")
    p.add_argument("--forward-pairs", type=int, default=None,
                   help="pairs per base encoder call in every design (default: the Scorer's "
                        "CPU default, max_forward_pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.users = min(args.users, 100)
        # one short round; few requests in flight, so drains are short and none times out
        args.duration_s, args.slice_s, args.warmup_s = 2.0, 2.0, 0.25
        args.max_inflight, args.timeout_s = 8, 30.0
    unknown = set(args.designs.split(",")) - set(DESIGNS)
    if unknown:
        p.error(f"--designs: unknown {sorted(unknown)}, choose from {list(DESIGNS)}")
    return args


# -- workload ------------------------------------------------------------------------------------

def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_requests(count: int, rng: random.Random) -> list[tuple[list, list, list, list]]:
    """Request bodies: (rerank firsts, rerank seconds, score firsts, score seconds), sized like a
    LaMP query (a query against 10 history items; a 4-item RAG prompt against 8 candidates)."""
    out = []
    for _ in range(count):
        query, prompt = _text(rng, 20), _text(rng, 140)
        items = [_text(rng, rng.randint(25, 50)) for _ in range(RERANK_PAIRS)]
        candidates = [_text(rng, rng.randint(3, 12)) for _ in range(SCORE_PAIRS)]
        out.append(([query] * RERANK_PAIRS, items, [prompt] * SCORE_PAIRS, candidates))
    return out


def zipf_picker(users: list[str], s: float, rng: random.Random):
    order = users[:]
    rng.shuffle(order)                  # popularity independent of name (and so of bucket)
    weights = [1.0 / (rank + 1) ** s for rank in range(len(order))]
    return lambda: rng.choices(order, weights)[0]


class Ceiling:
    """The encoder alone in this process: pairs/s at its best batch size on this request mix
    (each request's 10 rerank + 8 score pairs at each kind's rate)."""

    def __init__(self, bodies, threads: int, precision: str) -> None:
        torch.set_num_threads(threads)
        self.encoder = BaseEncoder()
        self.encoder.set_precision(precision)
        self.pairs = {"reranker": ([f for b in bodies for f in b[0]],
                                   [s for b in bodies for s in b[1]]),
                      "adapter": ([f for b in bodies for f in b[2]],
                                  [s for b in bodies for s in b[3]])}
        self.batch: dict[str, int] = {}
        self._samples: list[float] = []

    def _rate(self, kind: str, batch: int, seconds: float) -> float:
        firsts, seconds_ = self.pairs[kind]
        done, start = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - start < seconds:
            self.encoder.embed(firsts[:batch], seconds_[:batch], batch_size=batch)
            done += batch
        return done / (time.perf_counter() - start)

    def calibrate(self, seconds: float, sizes=(4, 8, 16, 32, 64, 128)) -> dict[str, int]:
        """Pick each kind's best batch size of `sizes` (each timed for `seconds`)."""
        for kind in self.pairs:
            self._rate(kind, 8, 0.0)                                        # warm-up
            rates = {b: self._rate(kind, b, seconds) for b in sizes}
            self.batch[kind] = max(rates, key=rates.get)
        return self.batch

    def sample(self, seconds: float) -> float:
        """One measurement of the ceiling at the calibrated batch sizes."""
        rate = {k: self._rate(k, self.batch[k], seconds / 2) for k in self.pairs}
        value = PAIRS / (RERANK_PAIRS / rate["reranker"] + SCORE_PAIRS / rate["adapter"])
        self._samples.append(value)
        return value

    def samples(self) -> list[float]:
        return self._samples


@dataclass
class Slice:
    """What one stretch of load on one design gave."""

    window_s: float
    in_window: int = 0                    # requests completed before the arrivals stopped
    elapsed_s: float = 0.0                # first arrival to last completion (drain included)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    shed: int = 0
    timed_out: int = 0


async def drive(score, pick, bodies, rate: float, window_s: float, max_inflight: int,
                timeout_s: float) -> Slice:
    """Bounded open loop: arrivals at `rate`/s for `window_s`; each request gives up after
    `timeout_s` (a client timeout, counted as an error), and the slice ends when none is open."""
    out, open_tasks = Slice(window_s), set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(user: str, body) -> None:
        began = loop.time()
        try:
            async with asyncio.timeout(timeout_s):
                await score("reranker", user, body[0], body[1])
                await score("adapter", user, body[2], body[3])
        except TimeoutError:
            out.timed_out += 1
            return
        except Exception as exc:           # counted per request; the run goes on
            out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        out.latencies.append(loop.time() - began)
        out.in_window += loop.time() <= start + window_s

    while (due := start + out.sent / rate) < start + window_s:
        await asyncio.sleep(max(0.0, due - loop.time()))
        out.sent += 1
        if len(open_tasks) >= max_inflight:
            out.shed += 1
            continue
        task = loop.create_task(one(pick(), bodies[out.sent % len(bodies)]))
        open_tasks.add(task)
        task.add_done_callback(open_tasks.discard)
    if open_tasks:
        await asyncio.wait(open_tasks)     # each ends by its own timeout at the latest
    out.elapsed_s = loop.time() - start
    return out


def merge(slices: list[Slice], rate: float) -> dict:
    """A design's figures over its slices: throughput as the requests completed over the time
    from a slice's first arrival to its last completion (every design is saturated: the offered
    load is a multiple of the ceiling), latency over every completed request.

    Not only the completions inside the arrival window: a design that batches everything in
    flight finishes its first requests only after about max_inflight requests' worth of work
    (p50 ~5 s here), so in a 5 s window most of its work completes after the window closes and
    an in-window count undercounts it (kept as `in_window_pairs_per_s`)."""
    window = sum(s.window_s for s in slices)
    elapsed = sum(s.elapsed_s for s in slices)
    ordered = sorted(x for s in slices for x in s.latencies)
    done = len(ordered)
    errors = [e for s in slices for e in s.errors]
    timed_out = sum(s.timed_out for s in slices)
    return {
        "requests_per_s": done / elapsed if elapsed else 0.0,
        "pairs_per_s": done * PAIRS / elapsed if elapsed else 0.0,
        "in_window_pairs_per_s": sum(s.in_window for s in slices) * PAIRS / window,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        if ordered else None,
        "errors": len(errors) + timed_out,
        "completed": len(ordered), "offered_rps": rate, "sent": sum(s.sent for s in slices),
        "shed": sum(s.shed for s in slices), "timed_out": timed_out,
        "error_samples": sorted(set(errors))[:3],
    }


# -- running the designs ---------------------------------------------------------------------------

def _baselines():
    """The baseline deployments; their module is shipped to Ray by value (benchmarks/ is not an
    installed package, so replicas could not import it by name)."""
    from baselines import serve_designs
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(serve_designs)
    return serve_designs.PerUserBatching, serve_designs.PerUserModel


def deploy_all(designs: list[str], args, registry_uri: str) -> dict:
    """Deploy the designs at once (their replicas load in parallel); a score function each."""
    from ray import serve

    from serving.scorer import RemotePairScorer, build_scorer

    scorer_args = ScorerArgs(registry_uri=registry_uri, num_cpus=0, torch_threads=args.threads,
                             head_cache_capacity=max(2 * args.users, 16),
                             max_forward_pairs=args.forward_pairs, precision=args.precision)
    pairs = scorer_args.forward_pairs("cpu")     # every design's encoder calls are this size
    per_user_batching, per_user_model = _baselines()
    apps = {"hydralm": lambda: build_scorer(scorer_args),
            "per_user_batching": lambda: per_user_batching.bind(
                registry_uri, args.threads, args.users, pairs, args.precision),
            "per_user_model": lambda: per_user_model.bind(
                registry_uri, args.threads, args.models_per_replica, pairs, args.precision)}
    handles = serve.run_many([serve.RunTarget(apps[d](), name=d, route_prefix=None)
                              for d in designs])
    scorers = {}
    for design, handle in zip(designs, handles, strict=True):
        if design == "hydralm":
            scorers[design] = RemotePairScorer(handle, scorer_args.num_buckets).score
        else:
            async def score(kind, user_id, firsts, seconds, handle=handle):
                routed = handle.options(multiplexed_model_id=user_id)    # one model per user
                return await routed.score.remote(kind, user_id, firsts, seconds)
            scorers[design] = score
    return scorers, dict(zip(designs, handles, strict=True))


def settle(handles: dict, deadline_s: float = 120.0) -> None:
    """Wait until per_user_model builds no model left over from cancelled requests, so its
    leftovers do not slow the next design's slice or the ceiling."""
    if "per_user_model" not in handles:
        return
    end = time.monotonic() + deadline_s
    while handles["per_user_model"].busy.remote().result() and time.monotonic() < end:
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_designs(args, registry_uri: str, users: list[str], bodies) -> tuple[dict, dict]:
    """Deploy every design, then run interleaved rounds (a ceiling sample, then a slice of load
    on each design), so a busy neighbour on a shared machine slows all of them alike. The
    ceiling runs in a Ray actor like the replicas (same process kind, priority and threads)."""
    import ray
    from ray import serve

    designs = args.designs.split(",")
    rounds = max(1, round(args.duration_s / args.slice_s))
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             log_to_driver=False)
    print(f"ray started in {time.perf_counter() - start:.1f} s", flush=True)
    slices: dict[str, list[Slice]] = {d: [] for d in designs}
    try:
        ceiling = ray.remote(num_cpus=0)(Ceiling).remote(bodies, args.threads, args.precision)
        batch = _calibrate(ceiling, args.quick)
        rate = args.load_factor * ray.get(ceiling.sample.remote(args.slice_s / 2)) / PAIRS
        print(f"best batch sizes {batch}; offered load {rate:.2f} requests/s", flush=True)
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        start = time.perf_counter()
        scorers, handles = deploy_all(designs, args, registry_uri)
        print(f"deployed {designs} in {time.perf_counter() - start:.1f} s", flush=True)
        picks = {d: zipf_picker(users, args.zipf, random.Random(args.seed + 1)) for d in designs}
        for d in designs:
            asyncio.run(drive(scorers[d], picks[d], bodies, rate, args.warmup_s,
                              args.max_inflight, args.timeout_s))
            settle(handles)
        if "hydralm" in handles:          # the replica's forward passes: measured slices only
            handles["hydralm"].reset_stats.remote().result()
        loaded_s = 0.0
        for r in range(rounds):
            sample = ray.get(ceiling.sample.remote(args.slice_s / 2))
            for d in designs:
                began = time.perf_counter()
                slices[d].append(asyncio.run(drive(scorers[d], picks[d], bodies, rate,
                                                   args.slice_s, args.max_inflight,
                                                   args.timeout_s)))
                loaded_s += (time.perf_counter() - began) if d == "hydralm" else 0.0
                settle(handles)
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{d} {len(slices[d][-1].latencies) * PAIRS / slices[d][-1].elapsed_s:.0f}"
                for d in designs)
                + f" pairs/s; ceiling {sample:.0f}", flush=True)
        samples = ray.get(ceiling.samples.remote())[1:]   # the rounds' samples, not the first
        fp32 = samples
        if resolve_precision(args.precision) != "fp32":   # the fp32 ceiling, for reference
            ray.kill(ceiling)
            reference = ray.remote(num_cpus=0)(Ceiling).remote(bodies, args.threads, "fp32")
            _calibrate(reference, args.quick)
            fp32 = [ray.get(reference.sample.remote(args.slice_s / 2))]
        replica = (forward_profile(handles["hydralm"].stats.remote().result(), loaded_s)
                   if "hydralm" in handles else None)
    finally:
        serve.shutdown()
        ray.shutdown()
    merged = {d: merge(slices[d], rate) for d in designs}
    if replica:
        merged["hydralm"]["replica"] = replica
    return merged, {"batch": batch, "samples": samples, "fp32_samples": fp32}


def _calibrate(ceiling, quick: bool) -> dict[str, int]:
    import ray

    return ray.get(ceiling.calibrate.remote(0.2, (4, 8, 16)) if quick
                   else ceiling.calibrate.remote(1.0))


def mix_flops(bodies) -> dict[str, float]:
    """Encoder GFLOP per pair at the request mix (RERANK_PAIRS reranker + SCORE_PAIRS adapter
    pairs), from the real token counts of the pairs (truncated as the encoder truncates)."""
    from transformers import AutoConfig, AutoTokenizer

    path = default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    max_length = min(256, tokenizer.model_max_length)     # ModelConfig's default max_length

    def tokens(firsts, seconds) -> list[int]:
        ids = tokenizer(list(firsts), list(seconds), truncation="longest_first",
                        max_length=max_length)["input_ids"]
        return [len(x) for x in ids]

    rerank = encoder_flops(config, tokens([f for b in bodies for f in b[0]],
                                          [s for b in bodies for s in b[1]]))
    adapter = encoder_flops(config, tokens([f for b in bodies for f in b[2]],
                                           [s for b in bodies for s in b[3]]))
    mix = (RERANK_PAIRS * rerank["gflop_per_pair"] + SCORE_PAIRS * adapter["gflop_per_pair"])
    return {"gflop_per_pair": mix / PAIRS,
            "reranker_tokens_per_pair": rerank["mean_tokens"],
            "adapter_tokens_per_pair": adapter["mean_tokens"]}


def forward_profile(stats: dict, loaded_s: float) -> dict:
    """Where the hydralm replica's time went during the measured slices: its forward passes (pairs
    per pass, pairs/s inside a pass, to set against the ceiling) and the share of the loaded time
    the forward thread was busy (the rest is Serve, batching, routing and waiting for work)."""
    forwards = stats["forwards"]
    seconds = sum(f["seconds"] for f in forwards)
    pairs = sum(f["pairs"] for f in forwards)
    return {"forward_passes": len(forwards),
            "pairs_per_pass": pairs / len(forwards) if forwards else None,
            "heads_per_pass": statistics.fmean(f["heads"] for f in forwards) if forwards else None,
            "in_pass_pairs_per_s": pairs / seconds if seconds else None,
            "forward_busy_fraction": seconds / loaded_s if loaded_s else None,
            "max_forward_pairs": stats.get("max_forward_pairs")}


def against_hardware(precision: str, flops: dict, pairs_per_s: float | None,
                     ceiling: float) -> dict:
    """precision, hardware, achieved GFLOP/s and the fraction of the estimated peak."""
    machine = hardware(precision)
    achieved = pairs_per_s * flops["gflop_per_pair"] if pairs_per_s else None
    peak = machine["peak_gflops"]
    return {"precision": precision, "hardware": machine, "encoder_flops": flops,
            "achieved_gflops": achieved,
            "fraction_of_peak": achieved / peak if achieved and peak else None,
            "ceiling_gflops": ceiling * flops["gflop_per_pair"],
            "ceiling_fraction_of_peak": ceiling * flops["gflop_per_pair"] / peak if peak
            else None}


def summarize(args, ceiling: dict, designs: dict, flops: dict) -> dict:
    def ratio(a: str, b: str) -> float | None:
        if a not in designs or b not in designs or not designs[b]["pairs_per_s"]:
            return None
        return designs[a]["pairs_per_s"] / designs[b]["pairs_per_s"]

    mean_ceiling = statistics.fmean(ceiling["samples"])
    fp32_ceiling = statistics.fmean(ceiling["fp32_samples"])
    hydra = designs.get("hydralm")
    return {
        "users": args.users,
        "encoder_ceiling_pairs_per_s": mean_ceiling,
        "encoder_ceiling_fp32_pairs_per_s": fp32_ceiling,
        "precision_speedup": mean_ceiling / fp32_ceiling,
        "designs": designs,
        "efficiency": hydra["pairs_per_s"] / mean_ceiling if hydra else None,
        "speedup_vs_per_user_batching": ratio("hydralm", "per_user_batching"),
        "speedup_vs_per_user_model": ratio("hydralm", "per_user_model"),
        **against_hardware(resolve_precision(args.precision), flops,
                           hydra["pairs_per_s"] if hydra else None, mean_ceiling),
        "settings": {"quick": args.quick, "duration_s": args.duration_s,
                     "slice_s": args.slice_s, "warmup_s": args.warmup_s,
                     "load_factor": args.load_factor, "max_inflight": args.max_inflight,
                     "timeout_s": args.timeout_s,
                     "zipf": args.zipf, "threads": args.threads, "pairs_per_request": PAIRS,
                     "forward_pairs": ScorerArgs(max_forward_pairs=args.forward_pairs)
                     .forward_pairs("cpu"),
                     "models_per_replica": args.models_per_replica, "cpus": os.cpu_count(),
                     "ceiling_batch_sizes": ceiling["batch"],
                     "ceiling_samples": ceiling["samples"]},
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["designs"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [summary["designs"][n]["pairs_per_s"] for n in names], color="tab:blue")
    left.axhline(summary["encoder_ceiling_pairs_per_s"], color="tab:red", linestyle="--",
                 label=f"encoder ceiling ({summary['precision']})")
    if summary["precision"] != "fp32":
        left.axhline(summary["encoder_ceiling_fp32_pairs_per_s"], color="tab:gray",
                     linestyle=":", label="encoder ceiling (fp32)")
    left.set_ylabel("pairs / s")
    left.set_title("throughput")
    left.legend()
    right.bar(names, [summary["designs"][n]["p99_ms"] or 0 for n in names], color="tab:orange")
    right.set_ylabel("ms")
    right.set_title("p99 latency (rerank + score)")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=15)
    fig.suptitle(f"{summary['users']} users, Zipf {summary['settings']['zipf']}, "
                 f"{summary['settings']['threads']} threads, {summary['precision']}; "
                 f"{summary['hardware']['cpu_model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    users = [f"user-{i:05d}" for i in range(args.users)]
    bodies = make_requests(64, rng)
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="hydralm-serve-load-"))
    try:
        start = time.perf_counter()
        registry_uri = str(workdir / "registry")
        publish_random_registry(Registry(registry_uri), users, seed=args.seed)
        print(f"registry with {len(users)} users' heads: {time.perf_counter() - start:.1f} s",
              flush=True)
        designs, ceiling = run_designs(args, registry_uri, users, bodies)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, ceiling, designs, mix_flops(bodies))
    summary["settings"]["load_average"] = [load_before, os.getloadavg()[0]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, args.out / "serve_load.png")
    print(json.dumps({k: summary[k] for k in ("precision", "encoder_ceiling_pairs_per_s",
                                              "encoder_ceiling_fp32_pairs_per_s", "efficiency",
                                              "achieved_gflops", "fraction_of_peak",
                                              "speedup_vs_per_user_batching",
                                              "speedup_vs_per_user_model")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
