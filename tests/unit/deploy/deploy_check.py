"""Load the deployment manifests and check one document against everything that applies to it:
its schema (a KubeRay CRD, a hand-written CRD subset, or the core Kubernetes API through
kubernetes-validate, all strict), the cluster rules of kuberay_rules, and per-kind rules (the
RayService's serve config, the RayJob's entrypoint) injected by the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from jsonschema.protocols import Validator
from k8s_openapi import crd_validator, format_error, iter_problems
from kuberay_rules import ClusterFacts, check_ray_cluster
from project_facts import REPO

__all__ = ["K8S_VERSION", "KUBERAY_CRD_FILES", "KUBERAY_DIR", "KUBERAY_KINDS", "LOCAL_CRD_DIR",
           "SHARED_KUBERAY_SCHEMAS", "DeployChecker", "Manifest", "core_problems",
           "load_crd_validators", "load_manifests"]

KUBERAY_DIR = REPO / "deploy" / "kuberay"
# Published KubeRay CRDs, shared beside the repository (absent on a bare clone: tests skip).
SHARED_KUBERAY_SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay"
KUBERAY_CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")
# Hand-written CRD subsets (the ServiceMonitor), kept with the tests.
LOCAL_CRD_DIR = Path(__file__).resolve().parent / "schemas"
KUBERAY_KINDS = frozenset({"RayCluster", "RayJob", "RayService"})
# The Kubernetes API the core objects are checked against (any supported cluster version works).
K8S_VERSION = "1.33"

KindRule = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a manifest file."""

    file: str  # relative to the repository
    index: int  # position in the file
    doc: dict[str, Any]

    @property
    def label(self) -> str:
        meta = self.doc.get("metadata", {})
        return f"{self.file}#{self.index}:{self.doc.get('kind')}/{meta.get('name')}"


def load_manifests(directory: Path = KUBERAY_DIR) -> list[Manifest]:
    """Every non-empty document of every *.yaml in `directory`, in file order."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        rel = str(path.relative_to(REPO))
        found.extend(Manifest(rel, i, doc) for i, doc in enumerate(docs) if doc)
    return found


def load_crd_validators(paths: Iterable[Path]) -> dict[tuple[str, str], Validator]:
    """(apiVersion, kind) -> strict validator, for every served version of every CRD file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KubeRay CRDs are ~1 MB each
    validators = {}
    for path in paths:
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            validators[(f"{group}/{version['name']}", kind)] = crd_validator(crd, version["name"])
    return validators


def core_problems(doc: dict[str, Any], version: str = K8S_VERSION) -> list[str]:
    """Problems of a core Kubernetes object per kubernetes-validate, strict (unknown fields are
    errors); an object it has no schema for is itself a problem."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [format_error(exc)]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"(root): {exc.message}"]
    return []


@dataclass
class DeployChecker:
    """Checks a manifest document against its schema and the project's rules."""

    crds: dict[tuple[str, str], Validator]
    facts: ClusterFacts
    kind_rules: dict[str, list[KindRule]] = field(default_factory=dict)
    # Kinds whose schema is unavailable here (the KubeRay CRDs without ../shared): rules only.
    skip_schema: frozenset[str] = frozenset()

    def problems(self, doc: dict[str, Any]) -> list[str]:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if doc.get("kind") in self.skip_schema:
            found = []
        elif key in self.crds:
            found = list(iter_problems(self.crds[key], doc))
        elif doc.get("kind") in KUBERAY_KINDS or doc.get("kind", "").endswith("Monitor"):
            known = sorted(f"{v} {k}" for v, k in self.crds)
            found = [f"apiVersion: no schema for {key[0]!r} kind {key[1]!r}; known: {known}"]
        else:
            found = core_problems(doc)
        if doc.get("kind") in KUBERAY_KINDS:
            found += check_ray_cluster(doc, self.facts)
        for rule in self.kind_rules.get(doc.get("kind"), []):
            found += rule(doc)
        return found
