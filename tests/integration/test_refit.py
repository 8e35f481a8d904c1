"""The online loop on a local Ray: users append history through the API, `hydralm fit-users
--refit` refits exactly the users whose history changed (labels from the embedded SmolLM2, heads
fitted on the frozen base, published with their history versions), and the serving app answers
with the new heads on its next registry poll, without a restart. A refit killed midway leaves a
consistent registry and its re-run fits only what is left.

Small on purpose: a tiny random encoder as both bases (the fit's cost is not the point here), four
users in the SQLite history store, small label sizes."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from serving_helpers import wait_until
from training_fixtures import build_tiny_encoder

from hydralm.artifacts import Registry
from hydralm.data import user_bucket
from hydralm.history import SqliteHistoryStore
from hydralm.jobconfig import load_job_config

pytestmark = pytest.mark.integration

APP = "hydralm-refit"
KINDS = ("reranker", "adapter")
TAGS = ("sci-fi", "romance", "thriller", "comedy", "action", "horror")


def _items(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}{k}", "tag": TAGS[k % len(TAGS)],
             "description": f"{prefix} story {k}: a {TAGS[k % len(TAGS)]} film about "
                            f"{['robots', 'lovers', 'spies', 'clowns', 'boxers', 'ghosts'][k % 6]}"}
            for k in range(n)]


# alice: a head from an earlier fit (random, no history version); erin: no head yet; dave: too
# little history for a first head; bob: a head and no history at all (never touched).
HISTORIES = {"alice": _items("a", 6), "erin": _items("e", 5), "dave": _items("d", 2)}
RERANK = {"query": "robots in space", "items": _items("q", 4)}


def _run(path: Path, **extra) -> dict:
    from training.cli import cmd_fit

    args = argparse.Namespace(config=path, model="both", ray_address=None, no_progress=True,
                              json=True, verbose=False, refit=True, **extra)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cmd_fit(args) == 0
    return json.loads(out.getvalue())


def _entries(registry: Registry) -> dict[tuple[str, str], object]:
    return {(kind, user): entry for kind in KINDS for user, entry in
            registry.iter_head_entries(kind)}


@pytest.fixture(scope="module")
def setup(llm_base_url, tmp_path_factory) -> dict:
    """A registry with random heads for alice and bob (the training users of its zero-fit
    router), the history store, and the job config."""
    from hydralm.model import ModelConfig
    from hydralm.model.zero_fit import Router, history_profile
    from hydralm.scoring import publish_random_registry
    from hydralm.tasks import get_task

    root = tmp_path_factory.mktemp("refit")
    encoder = build_tiny_encoder(root / "encoder")
    model = {"encoder_path": str(encoder), "max_length": 32}
    registry = Registry(str(root / "registry"))
    task = get_task("synth-tag")
    router = Router.from_profiles({u: history_profile(task.item_text(i) for i in items)
                                   for u, items in (("alice", HISTORIES["alice"]),
                                                    ("bob", _items("b", 4)))})
    publish_random_registry(registry, ["alice", "bob"], config=ModelConfig(**model),
                            router=router)
    store = SqliteHistoryStore(root / "history.db")
    for user, items in HISTORIES.items():
        store.append(user, items)
    doc = {
        "task": "synth-tag",
        "data": {"synth": {"users": 4, "queries_per_user": 1, "items_per_user": 6}},
        "users": {"num_test_users": 1},
        "generator": {"base_url": llm_base_url, "model": "smollm2", "max_concurrency": 8,
                      "timeout_s": 120, "cache": str(root / "generator-cache")},
        "labels": {"k_retrieve": 3, "k_prompt": 2, "pseudo_queries_per_user": 2,
                   "similar_per_pseudo": 2, "n_candidates": 2, "users_per_shard": 2,
                   "concurrent_shards": 1, "adapter_retrieval": "bm25"},
        "reranker": model, "adapter": model,
        "fit": {"epochs": 3, "num_buckets": 2, "cpus_per_task": 0.25},
        "refit": {"history_path": str(root / "history.db"), "min_items": 3},
        "registry": str(root / "registry"), "work_dir": str(root / "work"),
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert user_bucket("alice", 2) != user_bucket("erin", 2)   # the crash test needs that
    return {"root": root, "job": path, "registry": registry, "store": store}


@pytest.fixture(scope="module")
def api(serve_http_port, llm_base_url, setup):
    """The serving app on the same registry and history file, polling the registry every second."""
    from ray import serve

    from serving.app import build_app

    args = {"task": "synth-tag", "registry": str(setup["root"] / "registry"),
            "history_path": str(setup["root"] / "history.db"),
            "generator": {"backend": "openai", "base_url": llm_base_url, "model": "smollm2",
                          "max_tokens": 16, "timeout_s": 120},
            "n_candidates": 2, "k_prompt": 2,
            "scorer": {"num_cpus": 0.25, "num_buckets": 2, "poll_interval_s": 1.0},
            "ingress": {"num_cpus": 0}}
    serve.run(build_app(args), name=APP, route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_http_port}", timeout=120) as client:
        yield client
    serve.delete(APP)


def _rerank(api: httpx.Client, user: str) -> dict:
    r = api.post("/v1/rerank", json={"user": user, **RERANK})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def killed_then_rerun(setup, api) -> dict:
    """Run 1 fails in alice's bucket before saving (a job killed midway); run 2 is the re-run."""
    from training.refit import plan_refit_run, run_refit

    personalized = api.post("/v1/personalize", json={"user": "erin", "input": "robots in space"})
    assert personalized.status_code == 200, personalized.text
    before = {"entries": _entries(setup["registry"]), "erin": _rerank(api, "erin"),
              "erin_personalized": personalized.json()}
    crash = user_bucket("alice", 2)
    cfg = load_job_config(setup["job"])
    with pytest.raises(Exception, match=f"injected failure in bucket {crash}"):
        run_refit(cfg, plan_refit_run(cfg, KINDS), base_url=cfg.generator.base_url,
                  crash_bucket=crash, progress=False)
    after_crash = _entries(setup["registry"])
    problems = setup["registry"].verify()
    start = time.monotonic()
    rerun = _run(setup["job"])
    return {"before": before, "after_crash": after_crash, "problems": problems, "rerun": rerun,
            "rerun_s": time.monotonic() - start, "after": _entries(setup["registry"])}


def test_a_killed_refit_leaves_a_consistent_registry(setup, killed_then_rerun):
    r = killed_then_rerun
    store = setup["store"]
    assert r["problems"] == []
    # erin's bucket finished before the failure: her reranker head is there with its version;
    # alice's bucket saved nothing, so her old head is still the one in the registry
    erin = r["after_crash"][("reranker", "erin")]
    assert erin.history_version == store.version("erin")
    assert r["after_crash"][("reranker", "alice")] == r["before"]["entries"][("reranker", "alice")]


def test_the_rerun_fits_only_what_is_left(setup, killed_then_rerun):
    r, store = killed_then_rerun, setup["store"]
    models = {m["model"]: m for m in r["rerun"]["models"]}
    # reranker: erin was saved by the killed run; adapter: its fan-out never started
    assert models["reranker"]["pending"] == 1 and models["reranker"]["unchanged"] == 1
    assert models["reranker"]["fitted"] == 1 and models["adapter"]["fitted"] == 2
    assert all(m["below_min"] == 1 for m in models.values())          # dave
    assert r["rerun"]["shards_done_before"] >= 1                       # the adapter's labels
    for kind in KINDS:
        for user in ("alice", "erin"):
            assert r["after"][(kind, user)].history_version == store.version(user)
        assert r["after"][(kind, "bob")] == r["before"]["entries"][(kind, "bob")]  # untouched
        assert (kind, "dave") not in r["after"]
    assert setup["registry"].verify() == []


def test_nothing_changed_nothing_to_do(setup, killed_then_rerun):
    from training.refit import plan_refit_run

    run = plan_refit_run(load_job_config(setup["job"]), KINDS)
    assert [len(p.pending) for p in run.plans] == [0, 0] and not run.needs_generator
    assert all(p.counts["unchanged"] == 2 for p in run.plans)


def test_serving_picks_up_refit_heads_without_a_restart(setup, api, killed_then_rerun):
    """erin had no head: a bare rerank call got the global head, a personalized answer zero-fit
    heads from her history (through the Scorer deployment); after the refit she is served her
    own. Then she appends through the API, a refit fits her alone, and the next registry poll
    serves the new head."""
    assert killed_then_rerun["before"]["erin"]["head"] == "global"
    personalized = killed_then_rerun["before"]["erin_personalized"]
    assert personalized["head"] == "zero_fit"
    assert personalized["heads"] == {"reranker": "zero_fit", "adapter": "zero_fit"}
    wait_until(lambda: _rerank(api, "erin")["head"] == "user", timeout_s=60,
               what="the Scorer to serve erin's first head")
    served = _rerank(api, "erin")["scores"]
    entries = _entries(setup["registry"])
    appended = time.monotonic()
    r = api.post("/v1/users/erin/history", json={"items": _items("n", 3)})
    assert r.status_code == 200 and r.json()["history_length"] == 8
    summary = _run(setup["job"])
    refit_done = time.monotonic()
    assert summary["users_refit"] == 1 and summary["refit_users"] == ["erin"]
    wait_until(lambda: _rerank(api, "erin")["scores"] != served, timeout_s=60,
               what="the Scorer to serve erin's refit head", interval_s=0.2)
    first_answer = time.monotonic()
    after = _entries(setup["registry"])
    for kind in KINDS:
        assert after[(kind, "erin")].history_version == setup["store"].version("erin")
        assert after[(kind, "erin")].sha256 != entries[(kind, "erin")].sha256
        assert after[(kind, "alice")] == entries[(kind, "alice")]
    print(f"\nrefit loop: append -> refit done {refit_done - appended:.1f} s, -> first answer "
          f"with the new head {first_answer - appended:.1f} s; refit {summary['users_per_s']} "
          f"users/s")

