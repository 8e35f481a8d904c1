"""`hydralm demo` end to end, the way `make demo` runs it, on a tiny job: its own local Ray, the
embedded vLLM, `hydralm labels|train|fit-users` as separate processes, the HYDRA app and the
answers. What a person reads is checked: the stage lines, the answers, the summary line and the
stage times are on the terminal; Ray's, Ray Data's and vLLM's output is in the log file the demo
names, not on the terminal; no traceback anywhere on a clean run.

Its own Ray (the demo starts and stops one, as `make demo` does), so it shares nothing with the
session fixtures: about two minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from serving_helpers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# configs/demo.yaml cut down: 6 users (4 training, 2 new), one query each, one epoch.
TINY_JOB = """\
task: synth-tag
data:
  synth: {{users: 6, queries_per_user: 1, items_per_user: 8, seed: 0}}
users: {{num_test_users: 2, seed: 0}}
generator: {{backend: embedded, max_concurrency: 16, timeout_s: 120}}
labels:
  k_retrieve: 4
  pseudo_queries_per_user: 1
  similar_per_pseudo: 2
  n_candidates: 4
  k_prompt: 2
  users_per_shard: 4
  adapter_retrieval: bm25
reranker: {{max_length: 64}}
adapter: {{max_length: 96}}
train: {{epochs: 1, batch_size: 16, num_workers: 1, cpus_per_worker: 2}}
fit: {{epochs: 2, num_buckets: 2}}
work_dir: {work_dir}
"""

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
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    job = tmp / "job.yaml"
    job.write_text(TINY_JOB.format(work_dir=tmp / "work"), encoding="utf-8")
    log = tmp / "demo.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HYDRALM_API_KEYS")}
    env["HYDRALM_LOG_FILE"] = str(log)
    proc = subprocess.run(
        [sys.executable, "-m", "hydralm.cli", "demo", "--config", str(job), "--queries", "2",
         "--port", str(free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc, log


def _lines(text: str) -> list[str]:
    """Terminal lines, progress-bar redraws (carriage returns) split apart."""
    return [part for line in text.splitlines() for part in line.split("\r") if part.strip()]


def test_the_demo_answers_and_ends_with_the_summary_and_the_stage_times(demo_run):
    proc, log = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith(f"[demo] Ray's, Ray Data's and vLLM's logs go to {log}"), out[:500]
    for stage in ("1/5 deploying", "2/5 hydralm labels", "3/5 hydralm train",
                  "4/5 hydralm fit-users", "5/5 serving the HYDRA app"):
        assert f"[demo] {stage}" in out, stage
    assert out.count("query: ") == 2
    assert re.search(r"^correct on these 2 queries: non-personalized \d, .*personalized "
                     r"\(HYDRA\) \d$", out, re.M), out[-2000:]
    times = re.search(r"^\[demo\] stage times: (.*); total [\d.]+ min$", out, re.M)
    assert times, out[-2000:]
    for stage in ("generator", "labels", "train", "fit-users", "HYDRA app", "answers",
                  "refit loop"):
        assert re.search(rf"\b{stage} \d+ s\b", times.group(1)), (stage, times.group(1))


def test_the_online_loop_appends_refits_and_answers_with_the_new_heads(demo_run):
    """One shown user gets 3 new items through the API; `fit-users --refit` refits them from the
    history store; their heads then record the store's version and HYDRA answers again."""
    proc, _ = demo_run
    out = proc.stdout
    assert "[demo] the online loop: 3 new history items of user" in out, out[-2000:]
    appended = re.search(r"appended 3 items \(.*\): history now (\d+) items", out)
    assert appended and int(appended.group(1)) == 8 + 3, out[-2000:]    # items_per_user + 3
    versions = re.search(r"fitted on history version (\S+) -> (\d+)$", out, re.M)
    assert versions and versions.group(1) != versions.group(2), out[-2000:]
    assert re.search(r"HYDRA's answer after the refit: '.*' \(heads: user; gold ", out), out[-2000:]


def test_each_long_stage_shows_its_progress_bar(demo_run):
    proc, _ = demo_run
    for bar in ("waiting for the embedded generator", "labels: ", "train reranker",
                "train adapter", "fit reranker", "fit adapter"):
        assert bar in proc.stderr, bar


def test_the_terminal_holds_no_ray_or_vllm_output(demo_run):
    proc, log = demo_run
    terminal = _lines(proc.stdout) + _lines(proc.stderr)
    noisy = [line for line in terminal if NOISE.search(line)]
    assert noisy == [], noisy[:20]
    assert len(_lines(proc.stdout)) < 80, proc.stdout
    # ... because it went to the log file: the demo's Ray, its stages joining it, vLLM.
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Started a local Ray instance" in text
    assert "Connected to Ray cluster" in text
    assert "vllm" in text.lower()


def test_a_clean_run_leaves_no_traceback_in_its_log(demo_run):
    proc, log = demo_run
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")
