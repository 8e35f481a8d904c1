"""`hydralm demo`: the whole main job on embedded defaults, end to end, on this machine.

One local, loopback-only Ray holds everything. The embedded vLLM is deployed once (Ray Serve LLM)
and the training stages run as the CLI a user would type (`hydralm labels|train|fit-users`),
joining this Ray as separate driver processes, so serving and training stay apart. Then the
HYDRA app is deployed on the registry they wrote, a few new users' queries are sent, and the
non-personalized answer is printed beside the personalized one with the history behind it.
Everything the demo started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from hydralm.config import load_yaml
from hydralm.errors import HydraError
from hydralm.jobconfig import load_job_config
from hydralm.settings import loopback_ray

__all__ = ["register"]

log = logging.getLogger(__name__)

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGES = ("labels", "train", "fit-users")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole job on embedded defaults: data, labels, train, fit, serve",
        description="Synthetic users -> labels from the embedded vLLM -> train the shared bases "
                    "and heads (Ray Train) -> fit new users' heads -> serve the HYDRA app (Ray "
                    "Serve) -> send a few new users' queries and print the non-personalized and "
                    "the personalized answer side by side. Local Ray on 127.0.0.1; stops "
                    "everything it started. Re-running reuses finished stages and the "
                    "generator's response cache.")
    p.add_argument("--config", type=Path, default=REPO_CONFIGS / "demo.yaml",
                   help="the training job's YAML (default: configs/demo.yaml)")
    p.add_argument("--serve-config", type=Path, default=REPO_CONFIGS / "serve.yaml",
                   help="the Serve config whose apps are deployed (default: configs/serve.yaml)")
    p.add_argument("--queries", type=int, default=4, help="new users' queries to show (4)")
    p.add_argument("--port", type=int, default=8000, help="Serve HTTP port on 127.0.0.1 (8000)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    job = load_job_config(args.config)
    apps = _serve_apps(args.serve_config, args.port)
    import ray
    from ray import serve

    loopback_ray()
    # The replicas' logs (vLLM, Serve) stay in Ray's log files; the training stages print their
    # own progress. Logical CPUs above the 2 cores: the engine's bundle, the Scorer and a
    # training stage share the machine in turn, and none must wait for another to release one.
    for name in ("ray.serve", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=384 * 1024**2,
             log_to_driver=False)
    started = time.monotonic()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        llm_url = _deploy_llm(apps["hydralm-llm"], args.port)
        _run_training(args.config, llm_url, ray.get_runtime_context().gcs_address)
        base = _deploy_hydra(apps["hydralm"], job, llm_url, args.port)
        _show_answers(base, job, args.queries)
        _say(f"done in {(time.monotonic() - started) / 60:.1f} min")
    finally:
        _say("stopping Serve and Ray")
        serve.shutdown()
        ray.shutdown()
    return 0


def _serve_apps(path: Path, port: int) -> dict[str, dict[str, Any]]:
    """The apps of a Serve config by name, with the HTTP port put where the args name it."""
    apps = {app["name"]: app for app in load_yaml(path).get("applications", [])}
    missing = {"hydralm-llm", "hydralm"} - set(apps)
    if missing:
        raise HydraError(f"{path}: the demo needs applications {sorted(missing)}")
    for app in apps.values():
        emb = app.get("args", {}).get("generator", app.get("args", {})).get("embedded")
        if isinstance(emb, dict):
            emb["http_port"] = port
    return apps


def _deploy_llm(app: dict[str, Any], port: int) -> str:
    from ray import serve

    from serving.llm import build_llm_app

    _say("1/5 deploying the embedded generator (vLLM via Ray Serve LLM; about a minute)")
    serve.run(build_llm_app(app["args"]), name=app["name"], route_prefix=app["route_prefix"],
              blocking=False)
    url = f"http://127.0.0.1:{port}{app['route_prefix']}/v1"
    _wait_ok(f"{url}/models", timeout_s=600, what="the embedded generator")
    return url


def _run_training(config: Path, llm_url: str, address: str) -> None:
    env = {**os.environ, "HYDRALM_GENERATOR_BASE_URL": llm_url, "RAY_ADDRESS": address}
    for i, stage in enumerate(STAGES, start=2):
        _say(f"{i}/5 hydralm {stage} --config {config}")
        cmd = [sys.executable, "-m", "hydralm.cli", stage, "--config", str(config),
               "--ray-address", address]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise HydraError(f"`hydralm {stage}` failed (see its output above)")


def _deploy_hydra(app: dict[str, Any], job, llm_url: str, port: int) -> str:
    from ray import serve

    from serving.app import build_app

    _say("5/5 serving the HYDRA app on the registry the job wrote")
    paths = job.paths
    split = json.loads(Path(paths.split_file).read_text(encoding="utf-8"))
    args = dict(app["args"])
    args.update(task=job.task, registry=paths.registry, base_history=split["dataset"],
                history_path=str(Path(paths.work_dir) / "serving" / "history.db"))
    args["generator"] = {**args.get("generator", {}), "base_url": llm_url}
    serve.run(build_app(args), name=app["name"], route_prefix=app["route_prefix"],
              blocking=False)
    base = f"http://127.0.0.1:{port}{'' if app['route_prefix'] == '/' else app['route_prefix']}"
    _wait_ok(f"{base}/readyz", timeout_s=300, what="the HYDRA app")
    return base


SHOWN = {"zero_shot": "non-personalized", "rag_bm25": "prompt-personalized (BM25 RAG)",
         "hydra": "personalized (HYDRA)"}


def _show_answers(base: str, job, n_queries: int) -> None:
    """One query from each of the first `n_queries` new users, answered by every method of
    SHOWN, with the history items HYDRA's reranker put into the prompt."""
    from hydralm.data import Dataset

    split = json.loads(Path(job.paths.split_file).read_text(encoding="utf-8"))
    dataset = Dataset(split["dataset"])
    queries = [qs[0] for user in split["test"] if (qs := dataset.queries(user))][:n_queries]
    hits = dict.fromkeys(SHOWN, 0)
    with httpx.Client(timeout=120.0) as client:
        for q in queries:
            answers = {}
            for method in SHOWN:
                resp = client.post(f"{base}/v1/personalize",
                                   json={"user": q.user_id, "input": q.input, "method": method})
                resp.raise_for_status()
                answers[method] = resp.json()
            _print_query(q, answers, dataset.profile(q.user_id))
            for method, answer in answers.items():
                hits[method] += answer["answer"].strip() == (q.gold or "")
    print(f"\ncorrect on these {len(queries)} queries: "
          + ", ".join(f"{SHOWN[m]} {n}" for m, n in hits.items())
          + "\n(a handful of queries says little: `hydralm eval` measures the gains with "
            "confidence intervals; docs/RESULTS.md has the tables)")


def _print_query(q, answers: dict[str, dict], profile) -> None:
    hydra = answers["hydra"]
    items = {str(i.get("id")): i for i in profile}
    text = q.input if len(q.input) <= 160 else "..." + q.input[-157:].split(" ", 1)[-1]
    print("\n" + "=" * 78)
    print(f"user {q.user_id} (a new user: heads fitted on their own history only)")
    print(f"query: {text}")
    print(f"  {'gold answer':<32}: {q.gold}")
    for method, name in SHOWN.items():
        extra = f"  (heads: {hydra['head']})" if method == "hydra" else ""
        print(f"  {name:<32}: {answers[method]['answer']!r}{extra}")
    print("  history behind HYDRA's prompt (the reranker's top items):")
    for item_id in hydra["prompt_item_ids"]:
        item = items.get(item_id, {})
        label = item.get("tag") or item.get("category") or item.get("title") or ""
        print(f"    - [{label}] {str(item.get('description') or item.get('text') or '')[:60]}")
    cands = ", ".join(f"{c['text']!r} {c['score']:.3f}" for c in hydra["candidates"])
    print(f"  the {len(hydra['candidates'])} candidates, adapter scores: {cands}")


def _wait_ok(url: str, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=5.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise HydraError(f"{what} did not become ready at {url} within {timeout_s:.0f} s ({last})")


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)
