"""ray_cluster.yaml passes the launcher schema shipped in the installed ray package and Ray's own
offline checks, installs what the images install, and fits the Serve config."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from image_rules import base_image_problems, install_problems
from launcher_rules import launcher_capacity, launcher_problems
from project_facts import REPO, pip_installs, project, read_dockerfile
from serve_rules import serve_fit_problems

LAUNCHER = REPO / "ray_cluster.yaml"
DOCKER = REPO / "deploy" / "docker"


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text(encoding="utf-8"))


def test_launcher_config_is_valid(launcher):
    assert launcher_problems(launcher) == []


def test_head_takes_no_work(launcher):
    head = launcher["available_node_types"][launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0}


def test_node_types_run_the_pinned_ray_images(launcher):
    gpu = launcher["available_node_types"]["gpu"]
    assert base_image_problems(launcher["docker"]["image"], "cpu", project(), "docker") == []
    assert base_image_problems(gpu["docker"]["worker_image"], "gpu", project(), "gpu") == []
    assert gpu["resources"]["GPU"] >= 1


@pytest.mark.parametrize("flavour, commands", [
    ("cpu", lambda cfg: cfg["setup_commands"]),
    ("gpu", lambda cfg: cfg["available_node_types"]["gpu"]["worker_setup_commands"]),
])
def test_setup_commands_install_what_the_image_does(launcher, flavour, commands):
    ours = [" ".join(c.split()) for c in commands(launcher)]
    assert ours == list(read_dockerfile(DOCKER / f"Dockerfile.{flavour}").run_commands)
    assert install_problems(pip_installs(ours), flavour, project(), flavour) == []


def test_every_node_exports_metrics_on_the_scraped_port(launcher):
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    assert sum("--metrics-export-port=8080" in c for c in starts) == 2


def test_credentials_reach_ray_from_outside_the_repository(launcher):
    """The secrets directory is synced from the user's home, and `ray start` exports its env."""
    (remote,) = [r for r, local in launcher["file_mounts"].items() if local.startswith("~/")]
    starts = [launcher["head_start_ray_commands"][-1], launcher["worker_start_ray_commands"][-1]]
    assert all(f"set -a && . {remote}/env && set +a" in " ".join(c.split()) for c in starts)


def test_serve_config_fits_the_launcher_cluster(launcher, serve_cluster_config):
    capacity = launcher_capacity(launcher)
    assert serve_fit_problems(serve_cluster_config, "serve-cluster", capacity) == []


BAD = {
    "unknown top-level key": ("max_worker", 3, r"\(root\): Additional properties .*'max_worker'"),
    "node type without resources": ('available_node_types.cpu.resources', None,
                                    r"available_node_types.cpu: 'resources' is a required"),
    "resources as text": ("available_node_types.cpu.resources.CPU", "16",
                          r"available_node_types.cpu.resources.CPU: '16' is not of type "
                          r"'integer'"),
    "head type that does not exist": ("head_node_type", "ray.head", r"\(ray up\): `head_node_type`"
                                      r" must be one of `available_node_types`"),
    "more minimum workers than allowed": ("available_node_types.cpu.min_workers", 20,
                                          r"\(ray up\): The specified global `max_workers` is "
                                          r"smaller than the sum of `min_workers`"),
    "min above max per type": ("available_node_types.gpu.min_workers", 5,
                               r"available_node_types.gpu.min_workers: must not exceed "
                               r"max_workers \(4\), got 5"),
    "typo'd docker key": ("docker.pull_before_runn", True,
                          r"docker: Additional properties .*'pull_before_runn'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_broken_launcher_config_is_caught(launcher, name):
    path, value, expect = BAD[name]
    config = copy.deepcopy(launcher)
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    problems = launcher_problems(config)
    assert any(re.search(expect, p) for p in problems), problems
