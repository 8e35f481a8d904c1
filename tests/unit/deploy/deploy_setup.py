"""How the deployment checks are assembled from the manifests: the facts they agree on (Secret
keys, the metrics Service's selector) and the checker with its per-kind rules. Shared by the
fixtures (conftest.py) and the bad-case table, which rebuilds it from mutated manifests."""

from __future__ import annotations

from typing import Any

import yaml
from deploy_check import DeployChecker, Manifest
from kuberay_rules import ClusterFacts, cluster_spec
from project_facts import REPO, project
from refit_rules import refit_cron_problems
from retrain_rules import retrain_job_problems
from serve_rules import (
    HYDRALM_APP,
    app_args,
    serve_config_problems,
    serve_fit_problems,
    worker_capacity,
)

__all__ = ["METRICS_SERVICE", "SERVE_CLUSTER", "by_kind", "facts_from", "make_checker"]

# deploy/kuberay/rayservice.yaml's serveConfigV2, as a file for `serve deploy`.
SERVE_CLUSTER = REPO / "deploy" / "serve-cluster.yaml"
METRICS_SERVICE = "hydralm-metrics"


def by_kind(manifests: list[Manifest], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of `kind` (and `name`, when given) among `manifests`."""
    found = [m.doc for m in manifests if m.doc.get("kind") == kind
             and (name is None or m.doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def facts_from(manifests: list[Manifest]) -> ClusterFacts:
    """The Secrets' keys and the metrics Service's selector, as the manifests define them."""
    secrets = {m.doc["metadata"]["name"]: frozenset(m.doc.get("stringData", {}))
               for m in manifests if m.doc.get("kind") == "Secret"}
    services = [m.doc for m in manifests if m.doc.get("kind") == "Service"
                and m.doc.get("metadata", {}).get("name") == METRICS_SERVICE]
    selector = services[0].get("spec", {}).get("selector", {}) if services else {}
    return ClusterFacts(project=project(), secret_keys=secrets, pod_labels=selector)


def _rayservice_rules(doc: dict[str, Any]) -> list[str]:
    try:
        config = yaml.safe_load(doc.get("spec", {}).get("serveConfigV2", ""))
    except yaml.YAMLError as exc:
        return [f"spec.serveConfigV2: not valid YAML: {exc}"]
    path, cluster = cluster_spec(doc)
    found = serve_config_problems(config, "spec.serveConfigV2")
    capacity = worker_capacity(cluster, path)
    return found or serve_fit_problems(config, "spec.serveConfigV2", capacity)


def make_checker(validators, manifests: list[Manifest],
                 skip_schema: frozenset[str] = frozenset()) -> DeployChecker:
    """The checker with the per-kind rules, its facts taken from `manifests`: the RayJob is
    checked against their ConfigMaps and RayService (the registry it writes must be the one
    serving reads), every Ray pod against their Secrets and metrics Service, the refit CronJob's
    RayJob template like a RayJob of its own (plus the RBAC its steps need)."""
    configmaps = {m.doc["metadata"]["name"]: m.doc for m in manifests
                  if m.doc.get("kind") == "ConfigMap"}
    services = [m.doc for m in manifests if m.doc.get("kind") == "RayService"]
    try:
        serve = yaml.safe_load(services[0]["spec"]["serveConfigV2"]) if services else None
    except (KeyError, yaml.YAMLError):
        serve = None
    rbac = [m.doc for m in manifests
            if m.doc.get("kind") in ("ServiceAccount", "Role", "RoleBinding")]
    hydralm = [a for a in (serve or {}).get("applications", [])
               if a.get("import_path") == HYDRALM_APP]
    args = app_args(hydralm[0]) if hydralm else None
    history_backend = getattr(args, "history_backend", None)
    # Schema and cluster rules only: what a RayJob template inside a ConfigMap gets.
    plain = DeployChecker(crds=validators, facts=facts_from(manifests), skip_schema=skip_schema)
    return DeployChecker(crds=validators, facts=facts_from(manifests), skip_schema=skip_schema,
                         kind_rules={
                             "RayService": [_rayservice_rules],
                             "RayJob": [lambda doc: retrain_job_problems(doc, configmaps, serve)],
                             "CronJob": [lambda doc: refit_cron_problems(
                                 doc, configmaps, rbac, serve, history_backend, plain.problems)],
                         })
