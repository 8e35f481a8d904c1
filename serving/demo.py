"""`hydralm demo`: the whole main job on embedded defaults, end to end, on this machine.

One local, loopback-only Ray holds everything. The embedded vLLM is deployed once (Ray Serve LLM;
`--generator-url` uses a generator already running instead) and the training stages run as the
CLI a user would type (`hydralm labels|train|fit-users`), joining this Ray as separate driver
processes, so serving and training stay apart. Then the
HYDRA app is deployed on the registry they wrote, a few new users' queries are sent, and the
non-personalized answer is printed beside the personalized one with the history behind it.
Everything the demo started is stopped at the end.

The terminal shows the demo's stage lines, one progress bar per long stage, the answers and the
time each stage took; Ray's, Ray Data's and vLLM's output (the demo's own and its stages') goes
to one log file, named at the start (`hydralm.console`; `hydralm --verbose demo` shows it all).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from hydralm.config import load_yaml
from hydralm.console import current, echo, err
from hydralm.errors import HydraError
from hydralm.jobconfig import load_job_config
from hydralm.settings import loopback_ray

__all__ = ["register"]

log = logging.getLogger(__name__)

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGES = ("labels", "train", "fit-users")
# Ray Train's controller checks its workers every 2 s by default and waits a check at each step
# of a run's life (start, each report, finish): on a run of a few steps that is seconds of idle
# per model. The driver (the `hydralm train` stage) passes the setting on to the controller.
_STAGE_RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}


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
    p.add_argument("--generator-url", metavar="URL",
                   help="the OpenAI-compatible base URL (with /v1) of a generator already "
                        "running, used instead of deploying the embedded vLLM (for example "
                        "http://127.0.0.1:8001/llm/v1); it must serve the job's model name")
    p.set_defaults(func=cmd_demo, names_its_log=True)


def cmd_demo(args: argparse.Namespace) -> int:
    job = load_job_config(args.config)
    apps = _serve_apps(args.serve_config, args.port)
    console = current()
    if console is not None:
        _say(f"Ray's, Ray Data's and vLLM's logs go to {console.log_path} (`hydralm --verbose "
             "demo` shows them here)")
    import ray
    from ray import serve

    loopback_ray()
    # Logical CPUs above the 2 cores: the engine's bundle, the Scorer and a training stage share
    # the machine in turn, and none must wait for another to release one. The replicas' output
    # (vLLM, Serve) comes to this driver, hence into the log file (or the terminal, verbose).
    times = StageTimes()
    with times("Ray start"):
        ray.init(num_cpus=4, include_dashboard=False, object_store_memory=384 * 1024**2,
                 log_to_driver=True)
    try:
        with times("Ray start"):
            serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        with times("generator"):
            llm_url = (_use_generator(args.generator_url) if args.generator_url
                       else _deploy_llm(apps["hydralm-llm"], args.port))
        _run_training(args, llm_url, ray.get_runtime_context().gcs_address, times)
        with times("HYDRA app"):
            base = _deploy_hydra(apps["hydralm"], job, llm_url, args.port)
        with times("answers"):
            queries = _show_answers(base, job, args.queries)
        if queries and job.data.synth is not None:
            _refit_loop(args, job, base, queries[0], llm_url,
                        ray.get_runtime_context().gcs_address, times)
    finally:
        _say("stopping Serve and Ray")
        with times("shutdown"):
            serve.shutdown()
            ray.shutdown()
        times.report()
    return 0


class StageTimes:
    """Wall time per demo stage, summed over its blocks and reported at the end (`with
    times("labels"): ...`)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - start

    def report(self) -> None:
        total = time.monotonic() - self.started
        stages = ", ".join(f"{name} {s:.0f} s" for name, s in self.seconds.items())
        _say(f"stage times: {stages}; total {total / 60:.1f} min")


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
    from serving.llm import build_llm_app

    _say("1/5 deploying the embedded generator (vLLM via Ray Serve LLM)")
    _deploy(build_llm_app(app["args"]), app)
    url = f"http://127.0.0.1:{port}{app['route_prefix']}/v1"
    _wait_ok(f"{url}/models", app["name"], timeout_s=600, what="the embedded generator")
    return url


def _use_generator(url: str) -> str:
    url = url.rstrip("/")
    _say(f"1/5 using the generator at {url} (not deploying the embedded one)")
    try:
        httpx.get(f"{url}/models", timeout=10.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise HydraError(f"--generator-url {url}: GET {url}/models failed ({exc})") from None
    return url


def _run_training(args: argparse.Namespace, llm_url: str, address: str,
                  times: StageTimes) -> None:
    for i, stage in enumerate(STAGES, start=2):
        _say(f"{i}/5 hydralm {stage} --config {args.config}")
        with times(stage):
            _run_stage([stage, "--config", str(args.config), "--ray-address", address], llm_url,
                       address)


def _run_stage(argv: list[str], llm_url: str, address: str) -> None:
    """Run `hydralm ARGV` as its own driver process on this Ray. Under a quiet console the stage
    writes its Ray output to the demo's log file and its own lines to the terminal (it is handed
    the terminal, and the log file by HYDRALM_LOG_FILE)."""
    env = {**os.environ, "HYDRALM_GENERATOR_BASE_URL": llm_url, "RAY_ADDRESS": address,
           **{k: v for k, v in _STAGE_RAY_ENV.items() if k not in os.environ}}
    console = current()
    cmd = [sys.executable, "-m", "hydralm.cli", *argv]
    if console is None:
        cmd.insert(3, "--verbose")
        streams: dict[str, Any] = {}
    else:
        env["HYDRALM_LOG_FILE"] = str(console.log_path)
        streams = {"stdout": console.out, "stderr": console.err}
    code = subprocess.run(cmd, env=env, check=False, **streams).returncode
    if code != 0:
        raise HydraError(f"`hydralm {' '.join(argv[:1])}` failed with exit code {code} (its "
                         "error is above)")


def _deploy_hydra(app: dict[str, Any], job, llm_url: str, port: int) -> str:
    from serving.app import build_app

    _say("5/5 serving the HYDRA app on the registry the job wrote")
    paths = job.paths
    split = json.loads(Path(paths.split_file).read_text(encoding="utf-8"))
    args = dict(app["args"])
    args.update(task=job.task, registry=paths.registry, base_history=split["dataset"],
                history_path=str(Path(paths.work_dir) / "serving" / "history.db"))
    args["generator"] = {**args.get("generator", {}), "base_url": llm_url}
    _deploy(build_app(args), app)
    base = f"http://127.0.0.1:{port}{'' if app['route_prefix'] == '/' else app['route_prefix']}"
    _wait_ok(f"{base}/readyz", app["name"], timeout_s=300, what="the HYDRA app")
    return base


SHOWN = {"zero_shot": "non-personalized", "rag_bm25": "prompt-personalized (BM25 RAG)",
         "hydra": "personalized (HYDRA)"}


def _show_answers(base: str, job, n_queries: int) -> list:
    """One query from each of the first `n_queries` new users, answered by every method of
    SHOWN, with the history items HYDRA's reranker put into the prompt; returns the queries."""
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
    echo(f"\ncorrect on these {len(queries)} queries: "
         + ", ".join(f"{SHOWN[m]} {n}" for m, n in hits.items())
         + "\n(a handful of queries says little: `hydralm eval` measures the gains with "
           "confidence intervals; docs/RESULTS.md has the tables)")
    return queries


def _print_query(q, answers: dict[str, dict], profile) -> None:
    hydra = answers["hydra"]
    items = {str(i.get("id")): i for i in profile}
    text = q.input if len(q.input) <= 160 else "..." + q.input[-157:].split(" ", 1)[-1]
    echo("\n" + "=" * 78)
    echo(f"user {q.user_id} (a new user: heads fitted on their own history only)")
    echo(f"query: {text}")
    echo(f"  {'gold answer':<32}: {q.gold}")
    for method, name in SHOWN.items():
        extra = f"  (heads: {hydra['head']})" if method == "hydra" else ""
        echo(f"  {name:<32}: {answers[method]['answer']!r}{extra}")
    echo("  history behind HYDRA's prompt (the reranker's top items):")
    for item_id in hydra["prompt_item_ids"]:
        item = items.get(item_id, {})
        label = item.get("tag") or item.get("category") or item.get("title") or ""
        echo(f"    - [{label}] {str(item.get('description') or item.get('text') or '')[:60]}")
    cands = ", ".join(f"{c['text']!r} {c['score']:.3f}" for c in hydra["candidates"])
    echo(f"  the {len(hydra['candidates'])} candidates, adapter scores: {cands}")


REFIT_ITEMS = 3   # history items the refit loop appends


def _refit_loop(args: argparse.Namespace, job, base: str, query, llm_url: str, address: str,
                times: StageTimes) -> None:
    """The online loop for one shown user: append new history through the API, refit that user
    from the history store (`hydralm fit-users --refit`), answer the same query again once the
    Scorer has picked the new heads up (its registry poll). First, a newcomer holding only the
    new items shows what a user gets before any fit: zero-fit heads."""
    from hydralm.artifacts import Registry

    user = query.user_id
    registry = Registry(job.paths.registry)
    before = registry.head_entry("adapter", user)
    items = _new_history_items(job, user)
    _say(f"the online loop: {len(items)} new history items of user {user} through the API, a "
         "refit from the history store, the same query again")
    with times("refit loop"), httpx.Client(timeout=120.0) as client:
        resp = client.post(f"{base}/v1/users/{user}/history", json={"items": items})
        resp.raise_for_status()
        length = resp.json()["history_length"]
        echo(f"  appended {len(items)} items ({', '.join(i['tag'] for i in items)}): "
             f"history now {length} items")
        newcomer = f"{user}-newcomer"
        client.post(f"{base}/v1/users/{newcomer}/history",
                    json={"items": items}).raise_for_status()
        resp = client.post(f"{base}/v1/personalize",
                           json={"user": newcomer, "input": query.input, "method": "hydra"})
        resp.raise_for_status()
        echo(f"  a newcomer with only these {len(items)} items and no head: HYDRA's answer "
             f"{resp.json()['answer']!r} (heads: {resp.json()['head']}: the training users' "
             "heads mixed by history, no fit; the refit below fits them a head too)")
        _run_stage(["fit-users", "--config", str(_refit_config(args.config, job)), "--refit",
                    "--ray-address", address], llm_url, address)
        after = registry.head_entry("adapter", user)
        time.sleep(3.0)   # the Scorer checks the registry at most every poll_interval_s (2 s)
        resp = client.post(f"{base}/v1/personalize",
                           json={"user": user, "input": query.input, "method": "hydra"})
        resp.raise_for_status()
    echo(f"  heads of {user}: fitted on history version {_version(before)} -> {_version(after)}")
    echo(f"  HYDRA's answer after the refit: {resp.json()['answer']!r} (heads: "
         f"{resp.json()['head']}; gold {query.gold!r})")


def _version(entry) -> str:
    return "none" if entry is None or entry.history_version is None else str(entry.history_version)


def _new_history_items(job, user: str) -> list[dict]:
    """REFIT_ITEMS new items of a synthetic user, drawn from the same user's preferences.

    A user's items and then their queries come from one random stream, so the draws right after
    their items ARE their queries: the new items are the draws after those, never a query (nor
    its gold) of the user."""
    from hydralm.data.synth import synthesize

    synth = job.data.synth
    seen = synth.items_per_user + synth.queries_per_user
    (record, *_) = synthesize(job.task, 1, synth.seed, queries_per_user=1,
                              items_per_user=seen + REFIT_ITEMS, first_user=int(user.lstrip("u")))
    return list(record.profile[seen:])


def _refit_config(config: Path, job) -> Path:
    """The job's config with its refit reading the history store the demo's app appends to."""
    import yaml

    doc = load_yaml(config)
    doc.setdefault("refit", {})["history_path"] = str(
        (Path(job.paths.work_dir) / "serving" / "history.db").resolve())
    path = Path(job.paths.work_dir) / "refit-job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _deploy(application: Any, app: dict[str, Any]) -> None:
    """Start deploying a Serve app without waiting for it (`_wait_ok` waits, with a bar)."""
    from ray import serve

    serve.run_many([serve.RunTarget(target=application, name=app["name"],
                                    route_prefix=app["route_prefix"])],
                   wait_for_ingress_deployment_creation=False,
                   wait_for_applications_running=False)


def _wait_ok(url: str, app_name: str, *, timeout_s: float, what: str) -> None:
    """Poll until the Serve app `app_name` is RUNNING and `url` answers 200, showing the time
    waited; fail when the app fails to deploy, or after `timeout_s`. Both: the LLM app's ingress
    answers /v1/models while its engine replica is still starting (half a minute on CPU)."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    failed = {ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY}
    start = time.monotonic()
    deadline, last = start + timeout_s, ""
    with tqdm(desc=f"waiting for {what}", bar_format="{desc}: {elapsed}", file=err(),
              leave=False) as bar:
        while time.monotonic() < deadline and last != "ready":
            status = serve.status().applications.get(app_name)
            state = ApplicationStatus(status.status) if status is not None else None
            if state in failed:
                raise HydraError(f"{what} failed to deploy ({status.status}): "
                                 f"{(status.message or '')[-2000:]}")
            try:
                resp = httpx.get(url, timeout=5.0)
                last = f"HTTP {resp.status_code}" if resp.status_code != 200 else (
                    "ready" if state == ApplicationStatus.RUNNING
                    else f"app {state.value if state else 'not deployed'}")
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if last != "ready":
                time.sleep(1.0)
                bar.refresh()
    if last == "ready":
        _say(f"{what} ready after {time.monotonic() - start:.0f} s")
        return
    raise HydraError(f"{what} did not become ready at {url} within {timeout_s:.0f} s ({last})")


def _say(text: str) -> None:
    echo(f"[demo] {text}")
