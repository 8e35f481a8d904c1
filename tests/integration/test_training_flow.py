"""The whole training job from the CLI functions on configs/ci-small.yaml with the embedded vLLM:
labels -> train -> fit-users, then a fresh process loads the registry, and re-runs skip what is
done. Generator answers go to a response cache kept between test sessions, so a repeated run
makes no generator call."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml

from hydralm.artifacts import Registry
from hydralm.jobconfig import load_job_config
from hydralm.settings import home_dir
from training.cli import cmd_fit, cmd_labels, cmd_train
from training.label_store import read_labels
from training.users import load_split

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

LOAD_SCRIPT = """
import json, sys
from hydralm.artifacts import Registry
from hydralm.model import HeadBank, HydraModel
from hydralm.scoring.bundle import load_bundle_encoders
registry = Registry(sys.argv[1])
users = json.loads(sys.argv[2])
version = registry.base_version()
encoders = load_bundle_encoders(registry, ["reranker", "adapter"], version)
out = {"version": version, "problems": registry.verify()}
for kind, encoder in encoders.items():
    heads = [registry.load_head(kind, u) for u in users] + [registry.load_global_head(kind)]
    model = HydraModel(encoder, HeadBank.from_states(heads, dropout=0.0))
    n = len(heads)
    out[kind] = model.score(["q"] * n, ["an item"] * n, list(range(n))).tolist()
print(json.dumps(out))
"""


def _run(command, path: Path, **extra) -> object:
    args = argparse.Namespace(config=path, model="both", ray_address=None, no_progress=True,
                              json=True, verbose=False, **extra)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert command(args) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def job(llm_base_url, tmp_path_factory) -> Path:
    doc = yaml.safe_load((REPO / "configs" / "ci-small.yaml").read_text())
    tmp = tmp_path_factory.mktemp("ci-small")
    doc["work_dir"] = str(tmp / "work")
    doc["generator"].update(base_url=llm_base_url,
                            cache=str(home_dir() / "cache" / "tests-training-ci-small"))
    path = tmp / "ci-small.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def flow(job) -> dict[str, object]:
    """The three commands in their documented order, with their JSON summaries."""
    return {"labels": _run(cmd_labels, job, stage="both"), "train": _run(cmd_train, job),
            "fit": _run(cmd_fit, job)}


def test_labels_cover_both_models_and_stages(flow, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    runs = {(s["model"], s["stage"]): s for s in flow["labels"]}
    assert set(runs) == {(m, s) for m in ("reranker", "adapter") for s in ("train", "fit")}
    assert all(s["rows"] > 0 and s["users"] == len(split.users(s["stage"]))
               for s in runs.values())
    # ci-small: 2 queries x 5 BM25 items + 3 pseudo-queries x 3 similar items per training user.
    assert runs["reranker", "train"]["rows"] == len(split.train) * (2 * 5 + 3 * 3)
    for kind in ("reranker", "adapter"):
        fit = read_labels(cfg, kind, "fit")
        assert set(pc.unique(fit["source"]).to_pylist()) <= {"pseudo", "gold"}
        assert set(pc.unique(fit["user_id"]).to_pylist()) == set(split.test)


def test_train_and_fit_fill_the_registry(flow, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    registry = Registry(cfg.paths.registry)
    assert registry.base_version() == flow["train"]["base_version"]
    assert [m["model"] for m in flow["train"]["models"]] == ["reranker", "adapter"]
    for fit in flow["fit"]["models"]:
        assert (fit["fitted"], fit["without_data"]) == (len(split.test), 0)
    for kind in ("reranker", "adapter"):
        assert registry.list_users(kind) == sorted(split.train + split.test)
    assert registry.verify() == []


def test_a_fresh_process_loads_the_registry(flow, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    users = list(split.train + split.test)
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, cfg.paths.registry,
                             json.dumps(users)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == flow["train"]["base_version"] and loaded["problems"] == []
    for kind in ("reranker", "adapter"):
        assert len(loaded[kind]) == len(users) + 1
        assert all(0.0 <= s <= 1.0 for s in loaded[kind])


def test_rerunning_labels_and_fit_skips_what_is_done(flow, job):
    labels = _run(cmd_labels, job, stage="both")
    assert all(s["shards_done_before"] == s["shards"] and s["generator_calls"] == 0
               for s in labels)
    assert [s["rows"] for s in labels] == [s["rows"] for s in flow["labels"]]
    fit = _run(cmd_fit, job)
    assert all(m["fitted"] == 0 and m["already_fitted"] == m["new_users"]
               for m in fit["models"])
