"""Fixtures of the deployment tests: the manifests, the schemas (loaded once per session), and the
checkers that apply every schema and rule to a manifest document.

The KubeRay CRD schemas live beside the repository in ../shared/schemas/kuberay; where that is
absent, the tests that need them skip with the reason, and everything else still runs.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from deploy_check import (
    KUBERAY_CRD_FILES,
    KUBERAY_KINDS,
    LOCAL_CRD_DIR,
    SHARED_KUBERAY_SCHEMAS,
    DeployChecker,
    Manifest,
    load_crd_validators,
    load_manifests,
)
from deploy_setup import SERVE_CLUSTER, facts_from, make_checker
from kuberay_rules import ClusterFacts


@pytest.fixture(scope="session")
def manifests() -> list[Manifest]:
    return load_manifests()


@pytest.fixture(scope="session")
def kuberay_validators():
    """Strict validators of the KubeRay CRDs; skips where ../shared/schemas/kuberay is absent."""
    paths = [SHARED_KUBERAY_SCHEMAS / name for name in KUBERAY_CRD_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"KubeRay CRD schemas not found ({', '.join(missing)}): "
                    "../shared/schemas/kuberay is absent")
    return load_crd_validators(paths)


@pytest.fixture(scope="session")
def monitoring_validators():
    return load_crd_validators(sorted(LOCAL_CRD_DIR.glob("*.yaml")))


@pytest.fixture(scope="session")
def facts(manifests) -> ClusterFacts:
    return facts_from(manifests)


@pytest.fixture(scope="session")
def serve_cluster_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CLUSTER.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def checker(kuberay_validators, monitoring_validators, manifests) -> DeployChecker:
    """Every schema and rule; skips where the KubeRay CRD schemas are absent."""
    return make_checker({**kuberay_validators, **monitoring_validators}, manifests)


@pytest.fixture(scope="session")
def rules_checker(monitoring_validators, manifests) -> DeployChecker:
    """Every rule, and every schema but the KubeRay CRDs': runs without ../shared."""
    return make_checker(dict(monitoring_validators), manifests, skip_schema=KUBERAY_KINDS)
