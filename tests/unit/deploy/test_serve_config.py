"""The cluster's Serve config: valid for Ray Serve and for our builders' args models, the same in
the RayService and in deploy/serve-cluster.yaml, and differing from configs/serve.yaml only where a
cluster must (each difference listed with its reason)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_setup import by_kind
from project_facts import REPO
from serve_rules import serve_config_problems

LOCAL_SERVE = REPO / "configs" / "serve.yaml"
_LLM = "applications[hydralm-llm].args"
_APP = "applications[hydralm].args"
_GEN = f"{_APP}.generator"

# Every path where the cluster's Serve config differs from configs/serve.yaml, and why. A path
# that no longer differs is stale and fails the test too.
CLUSTER_OVERRIDES = {
    "proxy_location": "EveryNode: the ingress on any node reaches the LLM app through its own "
                      "node's proxy at 127.0.0.1",
    "http_options.host": "0.0.0.0: KubeRay's Service reaches Serve on the pod IP",
    **{f"{prefix}.embedded.{key}": why for prefix in (_LLM, _GEN) for key, why in {
        "device": "vLLM runs on the GPU workers",
        "model_dir": "every GPU node loads the weights from S3; a local path exists on one node",
        "num_gpus": "one engine replica per GPU",
    }.items()},
    f"{_APP}.registry": "S3, shared by every replica and written by the retraining RayJob",
    f"{_APP}.base_history": "the RayJob's users seed the history store",
    f"{_APP}.history_backend": "PostgreSQL, shared by every ingress replica on every node",
    f"{_APP}.ingress.autoscaling_config": "any number of ingress replicas share the history",
    f"{_APP}.scorer.num_cpus": "a cluster node has cores to spare for the encoders",
    f"{_APP}.scorer.autoscaling_config": "Serve autoscaling instead of one replica",
    f"{_APP}.auth.required": "production refuses to start without API keys",
}


def differences(local: Any, cluster: Any, path: str = "") -> set[str]:
    """Paths where two configs differ; applications are matched by name."""
    if isinstance(local, dict) and isinstance(cluster, dict):
        found = set()
        for key in local.keys() | cluster.keys():
            sub = f"{path}.{key}" if path else str(key)
            if key not in local or key not in cluster:
                found.add(sub)
            elif key == "applications" and not path:
                found |= differences(_by_name(local[key]), _by_name(cluster[key]), "")
            else:
                found |= differences(local[key], cluster[key], sub)
        return found
    return set() if local == cluster else {path}


def _by_name(apps: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"applications[{a['name']}]": a for a in apps}


@pytest.fixture(scope="module")
def local_serve() -> dict[str, Any]:
    return yaml.safe_load(LOCAL_SERVE.read_text(encoding="utf-8"))


def test_cluster_serve_config_is_valid(serve_cluster_config):
    assert serve_config_problems(serve_cluster_config, "deploy/serve-cluster.yaml") == []


def test_local_serve_config_is_valid(local_serve):
    assert serve_config_problems(local_serve, "configs/serve.yaml") == []


def test_rayservice_embeds_the_cluster_serve_config(manifests, serve_cluster_config):
    embedded = yaml.safe_load(by_kind(manifests, "RayService")["spec"]["serveConfigV2"])
    assert embedded == serve_cluster_config


def test_cluster_differs_from_local_only_where_it_must(local_serve, serve_cluster_config):
    found = differences(local_serve, serve_cluster_config)
    assert found - CLUSTER_OVERRIDES.keys() == set(), "unexplained differences"
    assert CLUSTER_OVERRIDES.keys() - found == set(), "stale overrides: remove them"


@pytest.mark.parametrize("local, cluster, expected", [
    ({"a": 1}, {"a": 1}, set()),
    ({"a": {"b": 1}}, {"a": {"b": 2}}, {"a.b"}),
    ({"a": 1}, {"b": 1}, {"a", "b"}),
    ({"applications": [{"name": "x", "k": 1}, {"name": "y"}]},
     {"applications": [{"name": "y"}, {"name": "x", "k": 2}]}, {"applications[x].k"}),
])
def test_differences_names_each_differing_path(local, cluster, expected):
    assert differences(local, cluster) == expected
