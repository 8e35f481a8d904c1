"""A broken manifest is caught: each case edits one field of the good manifests in memory, the
checker is rebuilt from the edited set (so cross-references see the edit), and some problem must
name the edited path and say what is wrong.

Cases marked `crd` need the KubeRay CRD schemas and skip without ../shared; the rest run anyway.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from deploy_check import KUBERAY_KINDS, Manifest
from deploy_setup import make_checker

DELETE = object()
_TOKEN = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\["([^"]+)"\]')


def _steps(path: str) -> list[str | int]:
    """'a.b[0]["c.d"]' -> ['a', 'b', 0, 'c.d']."""
    steps, pos = [], 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        assert match, f"bad path {path!r} at {pos}"
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (quoted or name))
        pos = match.end()
    return steps


def edit(node: Any, path: str, value: Any) -> None:
    """Set (or with DELETE remove) `path` inside `node`, in place."""
    *parents, leaf = _steps(path)
    for step in parents:
        node = node[step]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value


@dataclass(frozen=True)
class Bad:
    kind: str  # the document edited (every one of that kind holding the path's embedded key)
    path: str  # inside it; a path starting with "serveConfigV2." / "<key>.yaml." edits that
    value: Any  # embedded YAML document instead
    expect: str  # regex a problem must match; it names the path to fix
    crd: bool = False  # caught by a KubeRay CRD schema (skips without ../shared)


_CPU = 'spec.rayClusterConfig.workerGroupSpecs[0]'
_GPU = 'spec.rayClusterConfig.workerGroupSpecs[1]'
_HEAD_C = 'spec.rayClusterConfig.headGroupSpec.template.spec.containers[0]'
_GPU_C = f'{_GPU}.template.spec.containers[0]'
_JOB_HEAD_C = 'spec.rayClusterSpec.headGroupSpec.template.spec.containers[0]'
_ARGS = 'spec.serveConfigV2.applications[1].args'
_CM = r"ConfigMap 'hydralm-retrain-config' data\['retrain.yaml'\]"

CASES = {
    # The KubeRay CRD schemas, unknown fields rejected.
    "typo'd container key": Bad("RayService", f"{_HEAD_C}.imagePullPolicyy", "Always", re.escape(
        f"{_HEAD_C}: Additional properties are not allowed ('imagePullPolicyy'"), crd=True),
    "typo'd spec key": Bad("RayService", "spec.rayClusterConfig.enableInTreeAutoscalling", True,
                           r"spec.rayClusterConfig: Additional properties .*enableInTreeAutoscalling",
                           crd=True),
    "missing group name": Bad("RayService", f"{_CPU}.groupName", DELETE, re.escape(
        f"{_CPU}: 'groupName' is a required property"), crd=True),
    "replicas as text": Bad("RayCluster", "spec.workerGroupSpecs[0].replicas", "two",
                            r"spec.workerGroupSpecs\[0\].replicas: 'two' is not of type 'integer'",
                            crd=True),
    "bad CPU quantity": Bad("RayJob", f"{_JOB_HEAD_C}.resources.limits.cpu", "2 cores",
                            re.escape(f"{_JOB_HEAD_C}.resources.limits.cpu: '2 cores' does not "
                                      "match"), crd=True),
    "int32 overflow": Bad("RayJob", "spec.backoffLimit", 2**40,
                          r"spec.backoffLimit: 1099511627776 is not a 'int32'", crd=True),
    "duplicate env var": Bad("RayCluster", "spec.headGroupSpec.template.spec.containers[0].env[5]",
                             {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
                             r"containers\[0\].env: duplicate entry \{'name': 'AWS_DEFAULT_REGION'",
                             crd=True),
    "unknown API version": Bad("RayService", "apiVersion", "ray.io/v2",
                               r"apiVersion: no schema for 'ray.io/v2' kind 'RayService'", crd=True),
    "bad object name": Bad("RayJob", "metadata.name", "Hydra_Retrain",
                           r"metadata.name: 'Hydra_Retrain' does not match", crd=True),
    # The project's rules for Ray clusters.
    "wrong rayVersion": Bad("RayService", "spec.rayClusterConfig.rayVersion", "2.59.0",
                            r"spec.rayClusterConfig.rayVersion: must be the pinned Ray "
                            r"\(ray\[serve,train\]==2.60.\*\), got '2.59.0'"),
    "head takes CPUs": Bad("RayJob", 'spec.rayClusterSpec.headGroupSpec.rayStartParams["num-cpus"]',
                           "2", r"headGroupSpec.rayStartParams.num-cpus: must be \"0\".*got '2'"),
    "GPU limit without request": Bad(
        "RayService", f'{_GPU_C}.resources.requests["nvidia.com/gpu"]', DELETE,
        re.escape(f"{_GPU_C}.resources.requests.nvidia.com/gpu: must equal the limit '1', "
                  "got None")),
    "CPU request below limit": Bad("RayCluster",
                                   "spec.workerGroupSpecs[0].template.spec.containers[0]"
                                   ".resources.requests.cpu", "4",
                                   r"requests.cpu: must equal the limit '8', got '4'"),
    "credential as a literal": Bad(
        "RayService", f"{_HEAD_C}.env[1]", {"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2"},
        re.escape(f"{_HEAD_C}.env[1]: AWS_SECRET_ACCESS_KEY is a credential and must come from "
                  "a Secret")),
    "secret key that does not exist": Bad(
        "Secret", "stringData.HYDRALM_API_KEYS", DELETE,
        r"env\[3\].valueFrom.secretKeyRef: no key 'HYDRALM_API_KEYS' in a Secret "
        r"'hydralm-credentials'"),
    "GPU worker on the CPU image": Bad("RayService", f"{_GPU_C}.image",
                                       "registry.example.com/hydralm-cpu:0.1.0",
                                       re.escape(f"{_GPU_C}.image: must be "
                                                 "'registry.example.com/hydralm-gpu:0.1.0'")),
    "unscraped worker group": Bad("RayCluster",
                                  'spec.workerGroupSpecs[1].rayStartParams["metrics-export-port"]',
                                  DELETE, r"workerGroupSpecs\[1\].rayStartParams"
                                          r".metrics-export-port: must be \"8080\""),
    "pods the metrics Service misses": Bad(
        "Service", "spec.selector", {"app.kubernetes.io/part-of": "other"},
        r"headGroupSpec.template.metadata.labels: the metrics Service selects"),
    "replicas above max": Bad("RayService", f"{_CPU}.replicas", 9,
                              re.escape(f"{_CPU}.replicas: must lie in [minReplicas, maxReplicas]"
                                        " = [1, 4], got 9")),
    # serveConfigV2: Ray Serve's schema, our args models, the wiring, the fit.
    "unknown app arg": Bad("RayService", "serveConfigV2.applications[1].args.scorerr", {},
                           re.escape(f"{_ARGS}.scorerr: Extra inputs are not permitted")),
    "unknown scorer arg": Bad("RayService", "serveConfigV2.applications[1].args.scorer.num_cpu", 1,
                              re.escape(f"{_ARGS}.scorer.num_cpu: Extra inputs are not permitted")),
    "unknown Serve field": Bad("RayService", "serveConfigV2.applications[0].deployments",
                               [{"name": "LLMServer", "num_replicaz": 2}],
                               r"spec.serveConfigV2.applications\[0\].deployments\[0\]: "
                               r"Additional properties are not allowed \('num_replicaz'"),
    "typo'd Serve key": Bad("RayService", "serveConfigV2.proxy_locatoin", "EveryNode",
                            r"spec.serveConfigV2: Additional properties .*'proxy_locatoin'"),
    "bad Serve value": Bad("RayService", "serveConfigV2.proxy_location", "Everywhere",
                           r"spec.serveConfigV2.proxy_location: Input should be"),
    "args that contradict": Bad("RayService", "serveConfigV2.applications[1].args.k_prompt", 20,
                                r"k_prompt \(20\) must not exceed k_retrieve \(10\)"),
    "unknown builder": Bad("RayService", "serveConfigV2.applications[1].import_path",
                           "serving.app:app", r"applications\[1\].import_path: must be one of"),
    "generator route nowhere": Bad(
        "RayService", "serveConfigV2.applications[1].args.generator.embedded.route_prefix", "/gen",
        re.escape(f"{_ARGS}.generator.embedded.route_prefix: no serving.llm:build_llm_app "
                  "application at '/gen'")),
    "scorer bigger than a worker": Bad(
        "RayService", "serveConfigV2.applications[1].args.scorer.num_cpus", 16,
        re.escape(f"{_ARGS}.scorer: a replica needs 16 CPU and 0 GPU, more than any worker")),
    "more LLM replicas than GPUs": Bad(
        "RayService", "serveConfigV2.applications[0].args.embedded.num_gpus", 4,
        r"spec.serveConfigV2: 4 GPU at maximum replicas, but the worker groups offer 2"),
    # The retraining RayJob: the real CLI, its mounted job config, shared storage, serving's side.
    "unknown CLI command": Bad("RayJob", "spec.entrypoint", "hydralm retrain --config /etc/x.yaml",
                               r"spec.entrypoint: 'hydralm retrain --config /etc/x.yaml' is not "
                               r"a valid hydralm command: .*invalid choice: 'retrain'"),
    "stages chained in the submitter": Bad(
        "RayJob", "spec.entrypoint", "hydralm labels --config /etc/hydralm/retrain.yaml && "
        "hydralm train --config /etc/hydralm/retrain.yaml",
        r"spec.entrypoint: chain the stages inside one bash -c '...': a bare && or ; runs the "
        r"later ones in KubeRay's submitter pod"),
    "stage on a Ray of its own": Bad(
        "RayJob", "spec.entrypoint", "hydralm labels --config /etc/hydralm/retrain.yaml",
        r"spec.entrypoint: 'hydralm labels --config /etc/hydralm/retrain.yaml' must join the "
        r"job's cluster with --ray-address auto"),
    "config nobody mounts": Bad(
        "RayJob", "spec.entrypoint", "bash -c 'hydralm labels --config /opt/job.yaml && hydralm "
        "train --config /opt/job.yaml && hydralm fit-users --config /opt/job.yaml'",
        r"spec.rayClusterSpec.headGroupSpec: no volume mounted at '/opt/job.yaml'"),
    "unknown job config key": Bad("ConfigMap", "retrain.yaml.trian", {"epochs": 1},
                                  f"{_CM}.trian: Extra inputs are not permitted"),
    "job writes to local disk": Bad("ConfigMap", "retrain.yaml.work_dir", "/tmp/hydralm",
                                    f"{_CM}.work_dir: a multi-node job needs s3:// storage"),
    "heads where serving never looks": Bad(
        "ConfigMap", "retrain.yaml.registry", "s3://hydralm-example/registry-v2",
        f"{_CM}.registry: serving uses 's3://hydralm-example/registry', "
        "got 's3://hydralm-example/registry-v2'"),
    "labels from another model": Bad("ConfigMap", "retrain.yaml.generator.model", "qwen",
                                     f"{_CM}.generator.model: serving uses 'smollm2'"),
    "train workers bigger than a node": Bad("ConfigMap", "retrain.yaml.train.cpus_per_worker", 12,
                                            f"{_CM}.train.cpus_per_worker: 12 CPU, more than"),
    # The scheduled refit: the CronJob's steps, its RBAC, the RayJob template, the refit config.
    "refit runs overlap": Bad("CronJob", "spec.concurrencyPolicy", "Allow",
                              r"spec.concurrencyPolicy: must be Forbid"),
    "refit waits on another RayJob": Bad(
        "CronJob", "spec.jobTemplate.spec.template.spec.containers[0].args[1]", "rayjob/other",
        r"containers\[0\]: must wait --for=\.\.\. on rayjob/hydralm-refit"),
    "refit steps out of order": Bad(
        "CronJob", "spec.jobTemplate.spec.template.spec.initContainers", DELETE,
        r"must be kubectl delete, create, wait \(in order\), got \['wait'\]"),
    "refit may not delete": Bad("Role", "rules[0].verbs", ["get", "list", "watch", "create"],
                                r"'hydralm-refit' may not delete rayjobs"),
    "refit job that does not refit": Bad(
        "ConfigMap", "rayjob.yaml.spec.entrypoint",
        "hydralm fit-users --config /etc/hydralm/refit.yaml --ray-address auto",
        r"<RayJob template>.spec.entrypoint: .* must refit \(--refit\)"),
    "refit template with a typo": Bad("ConfigMap", "rayjob.yaml.spec.backofLimit", 1,
                                      r"<RayJob template>.spec: Additional properties .*backofLimit",
                                      crd=True),
    "refit template head takes CPUs": Bad(
        "ConfigMap", 'rayjob.yaml.spec.rayClusterSpec.headGroupSpec.rayStartParams["num-cpus"]',
        "1", r"<RayJob template>.*headGroupSpec.rayStartParams.num-cpus: must be \"0\""),
    "refit labels unlike the retraining": Bad(
        "ConfigMap", "refit.yaml.labels.pseudo_queries_per_user", 3,
        r"data\['refit.yaml'\].labels: the refit must match the retraining job's labels"),
    "refit reads another history store": Bad(
        "ConfigMap", "refit.yaml.refit.history_backend", "sqlite",
        r"data\['refit.yaml'\].refit.history_backend: serving appends to 'postgres'"),
    "refit labels with another LLM": Bad(
        "ConfigMap", "refit.yaml.generator.base_url", "http://llm.example.com/v1",
        r"refit.yaml'\].generator.base_url: serving uses 'http://hydralm-serve-svc:8000/llm/v1'"),
    "refit without the database": Bad(
        "ConfigMap", "rayjob.yaml.spec.rayClusterSpec.headGroupSpec.template.spec.containers[0]"
        ".env[3]", DELETE, r"headGroupSpec.template.spec.containers\[0\].env: the refit reads the "
                           r"PostgreSQL history store"),
    # Core objects (kubernetes-validate, strict) and the ServiceMonitor (hand-written subset).
    "typo'd Service key": Bad("Service", "spec.portz", [],
                              r"spec: Additional properties are not allowed \('portz'"),
    "Secret value not a string": Bad("Secret", "stringData.AWS_ACCESS_KEY_ID", 123,
                                     r"stringData.AWS_ACCESS_KEY_ID: 123 is not of type 'string'"),
    "ConfigMap data not a string": Bad("ConfigMap", "data.extra", {"a": 1},
                                       r"data.extra: \{'a': 1\} is not of type 'string'"),
    "bad scrape interval": Bad("ServiceMonitor", "spec.endpoints[0].interval", "15 seconds",
                               r"spec.endpoints\[0\].interval: '15 seconds' does not match"),
    "typo'd ServiceMonitor key": Bad("ServiceMonitor", "spec.endpoints[0].portt", "metrics",
                                     r"spec.endpoints\[0\]: Additional properties .*'portt'"),
}


def _edited(manifests: list[Manifest], case: Bad) -> list[Manifest]:
    out = []
    for m in manifests:
        doc = copy.deepcopy(m.doc)
        if doc.get("kind") == case.kind:
            _apply(doc, case)
        out.append(Manifest(m.file, m.index, doc))
    return out


_EMBEDDED = (("serveConfigV2", "spec"), ("retrain.yaml", "data"), ("refit.yaml", "data"),
             ("rayjob.yaml", "data"))


def _apply(doc: dict[str, Any], case: Bad) -> None:
    for embedded, holder in _EMBEDDED:
        if case.path.startswith(embedded + "."):
            parent = doc[holder]
            if embedded not in parent:
                return   # another document of this kind
            inner = yaml.safe_load(parent[embedded])
            edit(inner, case.path[len(embedded) + 1:], case.value)
            parent[embedded] = yaml.safe_dump(inner)
            return
    edit(doc, case.path, case.value)


@pytest.mark.parametrize("name", list(CASES))
def test_broken_manifest_is_caught(name, request, manifests):
    case = CASES[name]
    validators = request.getfixturevalue("monitoring_validators")
    skip = KUBERAY_KINDS
    if case.crd:
        validators = {**validators, **request.getfixturevalue("kuberay_validators")}
        skip = frozenset()
    edited = _edited(manifests, case)
    checker = make_checker(validators, edited, skip_schema=skip)
    problems = [p for m in edited for p in checker.problems(m.doc)]
    assert any(re.search(case.expect, p) for p in problems), "\n".join(problems) or "no problem"


def test_edit_paths_reach_what_they_name():
    doc = {"a": {"b": [{"c.d": 1}]}}
    edit(doc, 'a.b[0]["c.d"]', 2)
    assert doc == {"a": {"b": [{"c.d": 2}]}}
    edit(doc, 'a.b[0]["c.d"]', DELETE)
    assert doc == {"a": {"b": [{}]}}
