"""The project's own rules for its KubeRay manifests, beyond what the CRD schema can say.

Each check returns problems as `path: message` strings (empty when the manifest is fine), the path
written as in `k8s_openapi.format_error`, so a reader finds the line to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from project_facts import Project

__all__ = ["CREDENTIAL_VARS", "GPU", "IMAGE_REGISTRY", "METRICS_PORT", "ClusterFacts",
           "check_ray_cluster", "cluster_spec", "containers", "groups"]

GPU = "nvidia.com/gpu"
# The placeholder registry of the manifests; the docs substitute the user's with sed.
IMAGE_REGISTRY = "registry.example.com"
METRICS_PORT = 8080
# Environment variables that carry credentials: they must come from a Secret, never a literal.
CREDENTIAL_VARS = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "HYDRALM_API_KEYS", "HYDRALM_GENERATOR_API_KEY", "HYDRALM_HISTORY_DSN", "OPENAI_API_KEY",
})
# Resources whose request must equal the limit: KubeRay derives Ray's CPU, memory and GPU counts
# from them, and Kubernetes does not overcommit GPUs.
_PINNED_RESOURCES = ("cpu", "memory", GPU)
_CLUSTER_SPEC_FIELD = {"RayCluster": None, "RayService": "rayClusterConfig",
                       "RayJob": "rayClusterSpec"}


@dataclass(frozen=True)
class ClusterFacts:
    """What every Ray cluster manifest must agree with."""

    project: Project
    secret_keys: dict[str, frozenset[str]]  # Secret name -> its keys (secrets.example.yaml)
    pod_labels: dict[str, str] = field(default_factory=dict)  # the metrics Service's selector


def cluster_spec(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The RayCluster spec inside a RayCluster, RayService or RayJob, with its path."""
    kind = doc.get("kind")
    if kind not in _CLUSTER_SPEC_FIELD:
        raise ValueError(f"not a KubeRay kind with a cluster: got {kind!r}")
    inner = _CLUSTER_SPEC_FIELD[kind]
    spec = doc.get("spec", {})
    return ("spec", spec) if inner is None else (f"spec.{inner}", spec.get(inner, {}))


def groups(spec: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The head group and each worker group, with their paths."""
    if "headGroupSpec" in spec:
        yield f"{path}.headGroupSpec", spec["headGroupSpec"]
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        yield f"{path}.workerGroupSpecs[{i}]", group


def containers(group: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    pod = group.get("template", {}).get("spec", {})
    for i, container in enumerate(pod.get("containers", [])):
        yield f"{path}.template.spec.containers[{i}]", container


def check_ray_cluster(doc: dict[str, Any], facts: ClusterFacts) -> list[str]:
    """Every rule below, for the cluster inside `doc`."""
    path, spec = cluster_spec(doc)
    problems = _check_ray_version(spec, path, facts.project)
    problems += _check_head(spec, path)
    for gpath, group in groups(spec, path):
        problems += _check_metrics(group, gpath, facts.pod_labels)
        problems += _check_replicas(group, gpath)
        for cpath, container in containers(group, gpath):
            problems += _check_resources(container, cpath)
            problems += _check_credentials(container, cpath, facts.secret_keys)
            problems += _check_image(container, cpath, facts.project)
    return problems


def _check_ray_version(spec: dict[str, Any], path: str, project: Project) -> list[str]:
    version = spec.get("rayVersion")
    if not isinstance(version, str) or not project.image_ray_version(version):
        return [f"{path}.rayVersion: must be the pinned Ray ({project.ray}), got {version!r}"]
    return []


def _check_head(spec: dict[str, Any], path: str) -> list[str]:
    params = spec.get("headGroupSpec", {}).get("rayStartParams", {})
    if params.get("num-cpus") != "0":
        return [f"{path}.headGroupSpec.rayStartParams.num-cpus: must be \"0\" so no task or "
                f"replica lands on the head, got {params.get('num-cpus')!r}"]
    return []


def _check_replicas(group: dict[str, Any], path: str) -> list[str]:
    if "minReplicas" not in group:  # the head group
        return []
    low, high = group["minReplicas"], group.get("maxReplicas", group["minReplicas"])
    replicas = group.get("replicas", low)
    if not all(isinstance(n, int) for n in (low, high, replicas)):
        return []  # a type error the schema reports
    if not low <= replicas <= high:
        return [f"{path}.replicas: must lie in [minReplicas, maxReplicas] = [{low}, {high}], "
                f"got {replicas!r}"]
    return []


def _check_metrics(group: dict[str, Any], path: str, pod_labels: dict[str, str]) -> list[str]:
    problems = []
    port = group.get("rayStartParams", {}).get("metrics-export-port")
    if port != str(METRICS_PORT):
        problems.append(f"{path}.rayStartParams.metrics-export-port: must be "
                        f"\"{METRICS_PORT}\" (the scraped port), got {port!r}")
    labels = group.get("template", {}).get("metadata", {}).get("labels", {})
    missing = {k: v for k, v in pod_labels.items() if labels.get(k) != v}
    if missing:
        problems.append(f"{path}.template.metadata.labels: the metrics Service selects "
                        f"{missing!r}, got {labels!r}")
    for cpath, container in containers(group, path):
        ports = {(p.get("name"), p.get("containerPort")) for p in container.get("ports", [])}
        if ("metrics", METRICS_PORT) not in ports:
            problems.append(f"{cpath}.ports: needs {{name: metrics, containerPort: "
                            f"{METRICS_PORT}}}, got {sorted(ports, key=str)!r}")
    return problems


def _check_resources(container: dict[str, Any], path: str) -> list[str]:
    resources = container.get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    problems = []
    for name in _PINNED_RESOURCES:
        want, got = limits.get(name), requests.get(name)
        if name != GPU and (want is None or got is None):
            problems.append(f"{path}.resources: {name} needs both a request and a limit, got "
                            f"request {got!r}, limit {want!r}")
        elif want is not None and str(got) != str(want):
            problems.append(f"{path}.resources.requests.{name}: must equal the limit "
                            f"{want!r}, got {got!r}")
        elif want is None and got is not None:
            problems.append(f"{path}.resources.limits.{name}: must equal the request "
                            f"{got!r}, got None")
    return problems


def _check_credentials(container: dict[str, Any], path: str,
                       secret_keys: dict[str, frozenset[str]]) -> list[str]:
    problems = []
    for i, var in enumerate(container.get("env", [])):
        if var.get("name") not in CREDENTIAL_VARS:
            continue
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        where = f"{path}.env[{i}]"
        if ref is None:
            problems.append(f"{where}: {var.get('name')} is a credential and must come from a "
                            f"Secret (valueFrom.secretKeyRef), got {var!r}")
        elif ref.get("key") not in secret_keys.get(ref.get("name"), frozenset()):
            problems.append(f"{where}.valueFrom.secretKeyRef: no key {ref.get('key')!r} in a "
                            f"Secret {ref.get('name')!r} (known: {sorted(secret_keys)!r})")
    return problems


def _check_image(container: dict[str, Any], path: str, project: Project) -> list[str]:
    gpus = container.get("resources", {}).get("limits", {}).get(GPU)
    flavour = "gpu" if gpus not in (None, 0, "0") else "cpu"
    want = f"{IMAGE_REGISTRY}/hydralm-{flavour}:{project.version}"
    if container.get("image") != want:
        return [f"{path}.image: must be {want!r} (deploy/docker/Dockerfile.{flavour}, the "
                f"project version), got {container.get('image')!r}"]
    return []
