"""Every manifest in deploy/kuberay validates: KubeRay kinds against the published CRDs (unknown
fields rejected), core kinds with kubernetes-validate --strict, the ServiceMonitor against its
hand-written CRD subset, and all of them against the project's rules."""

from __future__ import annotations

import pytest
from deploy_check import core_problems, load_manifests
from deploy_setup import METRICS_SERVICE, by_kind

EXPECTED = {
    ("RayService", "hydralm"),
    ("RayJob", "hydralm-retrain"),
    ("RayCluster", "hydralm-interactive"),
    ("ConfigMap", "hydralm-retrain-config"),
    ("ConfigMap", "hydralm-refit-config"),
    ("CronJob", "hydralm-refit"),
    ("ServiceAccount", "hydralm-refit"),
    ("Role", "hydralm-refit"),
    ("RoleBinding", "hydralm-refit"),
    ("Secret", "hydralm-credentials"),
    ("Service", METRICS_SERVICE),
    ("ServiceMonitor", "hydralm"),
}
LABELS = [m.label for m in load_manifests()]
CORE_LABELS = [m.label for m in load_manifests() if m.doc["apiVersion"] == "v1"]


def test_deploy_kuberay_holds_the_documented_objects(manifests):
    found = {(m.doc["kind"], m.doc["metadata"]["name"]) for m in manifests}
    assert found == EXPECTED


@pytest.mark.parametrize("label", LABELS)
def test_manifest_passes_every_schema_and_rule(label, manifests, checker):
    doc = next(m.doc for m in manifests if m.label == label)
    assert checker.problems(doc) == []


@pytest.mark.parametrize("label", LABELS)
def test_manifest_passes_the_rules_without_the_crds(label, manifests, rules_checker):
    """The half that needs no ../shared: it runs on a bare clone too."""
    doc = next(m.doc for m in manifests if m.label == label)
    assert rules_checker.problems(doc) == []


@pytest.mark.parametrize("label", CORE_LABELS)
def test_core_objects_are_valid_kubernetes(label, manifests):
    doc = next(m.doc for m in manifests if m.label == label)
    assert core_problems(doc) == []


def test_service_monitor_scrapes_the_metrics_service(manifests):
    monitor = by_kind(manifests, "ServiceMonitor")
    service = by_kind(manifests, "Service", METRICS_SERVICE)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names


def test_every_secret_key_is_used_and_every_used_key_exists(manifests, facts):
    """The example Secret and the secretKeyRefs agree both ways (an unused key is a stale doc)."""
    used = set()
    for m in manifests:
        for container in _containers(m.doc):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
    defined = {(name, key) for name, keys in facts.secret_keys.items() for key in keys}
    assert used == defined


def _containers(node):
    """Every container spec anywhere in a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers":
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)
