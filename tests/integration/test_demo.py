"""`hydralm demo` end to end, the way `make demo` runs it, on CI's job (configs/ci-small.yaml):
its own local Ray, `hydralm labels|train|fit-users --config` as separate processes (the commands
docs/training.md shows), the HYDRA app, the answers and the online loop. What a person reads is
checked: the stage lines, the answers, the summary line and the stage times are on the terminal;
Ray's and Ray Data's output is in the log file the demo names, not on the terminal; no traceback
anywhere on a clean run. Then what the job left: labels for both models and stages, a registry a
fresh process loads, and re-runs of labels and fit-users that skip what is done.

Its own Ray (the demo starts and stops one, as `make demo` does); the generator is the session's
embedded vLLM (`--generator-url`), so the demo does not start a second one (the embedded app it
would deploy is the session's own: configs/serve.yaml's, tests/integration/conftest.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml
from serving_helpers import free_port

from hydralm.artifacts import Registry
from hydralm.jobconfig import load_job_config
from training.cli import cmd_fit, cmd_labels
from training.label_store import read_labels, read_manifest
from training.users import load_split

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODELS = ("reranker", "adapter")

# What Ray, Ray Data, Ray Train, Serve and vLLM print, in their own formats.
NOISE = re.compile("|".join([
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}",     # Ray's and vLLM's timestamps
    r"\w+\.(?:py|cc):\d+",                       # file:line of a log record
    r"\(\w+ pid=\d+",                            # a worker's forwarded output
    r"\b(?:INFO|DEBUG)\b",                       # a log level of anyone's INFO record
    r"Traceback \(most recent call last\)",
    r"[Ee]xecution plan|ray-data|ray\.data|ray\.train|ray\.serve|vllm",
]))


@pytest.fixture(scope="module")
def job(tmp_path_factory, llm_base_url) -> Path:
    """configs/ci-small.yaml with its work directory in a temporary one and the session's
    generator named (the demo hands its stages the URL; the re-runs below read it here)."""
    doc = yaml.safe_load((REPO / "configs" / "ci-small.yaml").read_text(encoding="utf-8"))
    tmp = tmp_path_factory.mktemp("demo")
    doc["work_dir"] = str(tmp / "work")
    doc["generator"].update(base_url=llm_base_url)
    path = tmp / "ci-small.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_run(job, llm_base_url):
    log = job.parent / "demo.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HYDRALM_API_KEYS")}
    env["HYDRALM_LOG_FILE"] = str(log)
    proc = subprocess.run(
        [sys.executable, "-m", "hydralm.cli", "demo", "--config", str(job), "--queries", "2",
         "--port", str(free_port()), "--generator-url", llm_base_url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc, log


def _lines(text: str) -> list[str]:
    """Terminal lines, progress-bar redraws (carriage returns) split apart."""
    return [part for line in text.splitlines() for part in line.split("\r") if part.strip()]


def test_the_demo_answers_and_ends_with_the_summary_and_the_stage_times(demo_run, llm_base_url):
    proc, log = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith(f"[demo] Ray's, Ray Data's and vLLM's logs go to {log}"), out[:500]
    for stage in (f"1/5 using the generator at {llm_base_url}", "2/5 hydralm labels",
                  "3/5 hydralm train", "4/5 hydralm fit-users", "5/5 serving the HYDRA app"):
        assert f"[demo] {stage}" in out, stage
    assert out.count("query: ") == 2
    assert re.search(r"^correct on these 2 queries: non-personalized \d, .*personalized "
                     r"\(HYDRA\) \d$", out, re.M), out[-2000:]
    times = re.search(r"^\[demo\] stage times: (.*); total [\d.]+ min$", out, re.M)
    assert times, out[-2000:]
    for stage in ("generator", "labels", "train", "fit-users", "HYDRA app", "answers",
                  "refit loop"):
        assert re.search(rf"\b{stage} \d+ s\b", times.group(1)), (stage, times.group(1))


def test_the_online_loop_appends_refits_and_answers_with_the_new_heads(demo_run, job):
    """One shown user gets 3 new items through the API (and a newcomer the same 3, answered by
    zero-fit heads); `fit-users --refit` refits the user from the history store; their heads
    then record the store's version and HYDRA answers again."""
    proc, _ = demo_run
    out = proc.stdout
    assert "[demo] the online loop: 3 new history items of user" in out, out[-2000:]
    appended = re.search(r"appended 3 items \(.*\): history now (\d+) items", out)
    items = load_job_config(job).data.synth.items_per_user
    assert appended and int(appended.group(1)) == items + 3, out[-2000:]
    # a user with history and no head is answered at once by zero-fit heads
    assert re.search(r"a newcomer with only these 3 items and no head: HYDRA's answer '.*' "
                     r"\(heads: zero_fit:", out), out[-2000:]
    versions = re.search(r"fitted on history version (\S+) -> (\d+)$", out, re.M)
    assert versions and versions.group(1) != versions.group(2), out[-2000:]
    assert re.search(r"HYDRA's answer after the refit: '.*' \(heads: user; gold ", out), out[-2000:]


def test_each_long_stage_shows_its_progress_bar(demo_run):
    proc, _ = demo_run
    for bar in ("waiting for the HYDRA app", "labels: ", "train reranker",
                "train adapter", "fit reranker", "fit adapter"):
        assert bar in proc.stderr, bar


def test_the_terminal_holds_no_ray_or_vllm_output(demo_run):
    proc, log = demo_run
    terminal = _lines(proc.stdout) + _lines(proc.stderr)
    noisy = [line for line in terminal if NOISE.search(line)]
    assert noisy == [], noisy[:20]
    assert len(_lines(proc.stdout)) < 80, proc.stdout
    # ... because it went to the log file: the demo's Ray, its stages joining it.
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Started a local Ray instance" in text
    assert "Connected to Ray cluster" in text


def test_a_clean_run_leaves_no_traceback_in_its_log(demo_run):
    proc, log = demo_run
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")


# What the job's stages left, and re-runs of them (in this process, on the session's Ray).

def _run(command, path: Path, **extra) -> object:
    args = argparse.Namespace(config=path, model="both", ray_address=None, no_progress=True,
                              json=True, verbose=False, **extra)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert command(args) == 0
    return json.loads(out.getvalue())


def test_labels_cover_both_models_and_stages(demo_run, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    labels = cfg.labels
    for kind in MODELS:
        for stage in ("train", "fit"):
            manifest = read_manifest(cfg, kind, stage)
            assert manifest["rows"] > 0 and manifest["users"] == len(split.users(stage))
        fit = read_labels(cfg, kind, "fit")
        assert set(pc.unique(fit["source"]).to_pylist()) <= {"pseudo", "gold"}
        assert set(pc.unique(fit["user_id"]).to_pylist()) == set(split.test)
    # Per training user: each query's BM25 top k_retrieve, each pseudo-query's similar items.
    per_user = (cfg.data.synth.queries_per_user * labels.k_retrieve
                + labels.pseudo_queries_per_user * labels.similar_per_pseudo)
    assert read_manifest(cfg, "reranker", "train")["rows"] == len(split.train) * per_user


def test_train_and_fit_fill_the_registry(demo_run, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    registry = Registry(cfg.paths.registry)
    assert registry.base_version() is not None
    for kind in MODELS:
        # the online loop's newcomer has enough history for a first head: its refit fits them
        users = registry.list_users(kind)
        newcomers = [u for u in users if u.endswith("-newcomer")]
        assert len(newcomers) == 1 and users == sorted([*split.train, *split.test, *newcomers])
    assert registry.verify() == []


# Serving's loader (RegistryView: the form check, a residual head's shared layer) and bank.
LOAD_SCRIPT = """
import json, sys
from hydralm.artifacts import Registry
from hydralm.model import HydraModel
from hydralm.scoring.forward import temporary_bank
from hydralm.scoring.registry_view import RegistryView
registry = Registry(sys.argv[1])
view = RegistryView(registry)
users = json.loads(sys.argv[2])
version = registry.base_version()
encoders, _ = view.load_encoders(["reranker", "adapter"], version, "cpu")
out = {"version": version, "problems": registry.verify()}
for kind, encoder in encoders.items():
    heads = [view.load_head(kind, u, version) for u in users]
    heads.append(view.load_global_head(kind, version))
    out[kind + "_forms"] = sorted({type(h).__name__ for h in heads})
    model = HydraModel(encoder, temporary_bank(heads, "cpu"))
    n = len(heads)
    out[kind] = model.score(["q"] * n, ["an item"] * n, list(range(n))).tolist()
print(json.dumps(out))
"""


def test_a_fresh_process_loads_the_registry(demo_run, job):
    cfg = load_job_config(job)
    split = load_split(cfg)
    users = list(split.train + split.test)
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, cfg.paths.registry,
                             json.dumps(users)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["version"] == Registry(cfg.paths.registry).base_version()
    assert loaded["problems"] == []
    for kind in MODELS:
        assert len(loaded[kind]) == len(users) + 1
        assert all(0.0 <= s <= 1.0 for s in loaded[kind])
    # each kind's default form: the reranker's users dense, the adapter's residual (the global
    # head, dense, is their shared layer)
    assert loaded["reranker_forms"] == ["HeadState"]
    assert loaded["adapter_forms"] == ["HeadState", "ResidualHeadState"]


def test_rerunning_labels_and_fit_skips_what_is_done(demo_run, job, ray_local):
    cfg = load_job_config(job)
    rows = {(kind, stage): read_manifest(cfg, kind, stage)["rows"]
            for kind in MODELS for stage in ("train", "fit")}
    labels = _run(cmd_labels, job, stage="both")
    assert all(s["shards_done_before"] == s["shards"] and s["generator_calls"] == 0
               for s in labels)
    assert {(s["model"], s["stage"]): s["rows"] for s in labels} == rows
    fit = _run(cmd_fit, job)
    assert all(m["fitted"] == 0 and m["already_fitted"] == m["new_users"]
               for m in fit["models"])
