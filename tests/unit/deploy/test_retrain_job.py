"""The retraining job config: the ConfigMap of the RayJob and deploy/retrain-cluster.yaml are one
config, a valid JobConfig on shared storage that fits both clusters and feeds what serving serves;
the RayJob runs the stages in order."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from deploy_setup import by_kind
from launcher_rules import launcher_capacity
from project_facts import REPO, shell_commands
from retrain_rules import RETRAIN_STAGES, job_config_problems

from hydralm.jobconfig import JobConfig, load_job_config

RETRAIN_CLUSTER = REPO / "deploy" / "retrain-cluster.yaml"


@pytest.fixture(scope="module")
def job() -> JobConfig:
    return load_job_config(RETRAIN_CLUSTER)


def test_configmap_holds_the_cluster_job_config(manifests):
    data = by_kind(manifests, "ConfigMap", "hydralm-retrain-config")["data"]
    expected = yaml.safe_load(RETRAIN_CLUSTER.read_text(encoding="utf-8"))
    assert yaml.safe_load(data["retrain.yaml"]) == expected


def test_job_fits_the_launcher_cluster_and_feeds_serving(job, serve_cluster_config):
    launcher = yaml.safe_load((REPO / "ray_cluster.yaml").read_text(encoding="utf-8"))
    problems = job_config_problems(job, "retrain-cluster", launcher_capacity(launcher),
                                   serve_cluster_config)
    assert problems == []


def test_rayjob_runs_every_stage_on_the_mounted_config(manifests):
    entrypoint = shlex.split(by_kind(manifests, "RayJob")["spec"]["entrypoint"])
    assert entrypoint[:2] == ["bash", "-c"] and len(entrypoint) == 3
    commands = shell_commands(entrypoint[2])
    assert [c.split()[1] for c in commands] == RETRAIN_STAGES
    assert all(c.endswith("--config /etc/hydralm/retrain.yaml --ray-address auto")
               for c in commands)


@pytest.mark.parametrize("changes, expected", [
    ({"registry": "/data/registry"}, "retrain-cluster.registry: a multi-node job needs s3://"),
    ({"data": {"parquet": "users.parquet"}},
     "retrain-cluster.data.parquet: a multi-node job needs s3://"),
    ({"task": "LaMP-2N", "data": {"lamp_dir": "s3://b/lamp"}, "labels": {"users_per_shard": 32}},
     "retrain-cluster.task: serving uses 'synth-tag', got 'LaMP-2N'"),
    ({"train": {"num_workers": 40, "cpus_per_worker": 4, "storage_path": "s3://b/c"}},
     "retrain-cluster.train.num_workers: 160 CPU in all"),
    ({"fit": {"cpus_per_task": 32}}, "retrain-cluster.fit.cpus_per_task: 32 CPU, more than"),
])
def test_broken_job_config_is_caught(serve_cluster_config, changes, expected):
    raw: dict[str, Any] = yaml.safe_load(RETRAIN_CLUSTER.read_text(encoding="utf-8"))
    raw.update(changes)
    launcher = yaml.safe_load((REPO / "ray_cluster.yaml").read_text(encoding="utf-8"))
    problems = job_config_problems(JobConfig.from_dict(raw), "retrain-cluster",
                                   launcher_capacity(launcher), serve_cluster_config)
    assert any(p.startswith(expected) for p in problems), problems
