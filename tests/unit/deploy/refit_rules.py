"""Checks of the scheduled refit: a CronJob whose Job runs three kubectl steps (delete the previous
RayJob, create it from a template in a mounted ConfigMap, wait for it), the RayJob template itself
(its schema, cluster rules and a `hydralm fit-users --refit` entrypoint on a mounted JobConfig), the
permissions the steps need, and a refit config that matches the retraining job and serving."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pydantic
import yaml
from kuberay_rules import cluster_spec, containers, groups
from retrain_rules import REFIT_STAGES, mounted_job_config, retrain_job_problems

from hydralm.jobconfig import JobConfig

__all__ = ["SAME_AS_RETRAIN", "refit_cron_problems"]

# What the refit must share with the retraining job: the users, how their labels are made, the
# models' settings, how heads are fitted, and where everything is.
SAME_AS_RETRAIN = ("task", "data", "users", "labels", "reranker", "adapter", "fit", "registry",
                   "work_dir")
# kubectl verbs each step needs on rayjobs (delete --wait and wait watch the object).
_VERBS = {"delete": {"delete", "get", "list", "watch"}, "create": {"create"},
          "wait": {"get", "list", "watch"}}
_POD = "spec.jobTemplate.spec.template.spec"


def _steps(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pod's containers in the order they run: init containers, then the main ones."""
    init = [(f"{_POD}.initContainers[{i}]", c) for i, c in enumerate(pod.get("initContainers", []))]
    main = [(f"{_POD}.containers[{i}]", c) for i, c in enumerate(pod.get("containers", []))]
    return init + main


def _kubectl(container: dict[str, Any]) -> list[str]:
    """The kubectl arguments of a step (command + args, with `kubectl` itself dropped)."""
    tokens = [str(t) for t in container.get("command", []) + container.get("args", [])]
    return tokens[1:] if tokens[:1] == ["kubectl"] else tokens


def _template(pod: dict[str, Any], container: dict[str, Any], path: str,
              configmaps: dict[str, dict[str, Any]]) -> tuple[Any, str]:
    """The document behind `create -f PATH` (a key of a ConfigMap mounted in the step)."""
    args = _kubectl(container)
    target = PurePosixPath(args[args.index("-f") + 1]) if "-f" in args[:-1] else None
    if target is None:
        return None, f"{path}: the create step must read its RayJob with -f PATH, got {args!r}"
    volumes = {v.get("name"): v.get("configMap", {}) for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        base = PurePosixPath(mount.get("mountPath", "/"))
        if not target.is_relative_to(base) or target == base:
            continue
        source = volumes.get(mount.get("name"), {})
        rel = str(target.relative_to(base))
        key = next((i.get("key") for i in source.get("items", []) if i.get("path") == rel),
                   None if source.get("items") else rel)
        text = configmaps.get(source.get("name"), {}).get("data", {}).get(key)
        if text is not None:
            return yaml.safe_load(text), ""
    return None, f"{path}.volumeMounts: {target} is not a key of a ConfigMap mounted there"


def _step_problems(pod: dict[str, Any], configmaps: dict[str, dict[str, Any]]
                   ) -> tuple[dict[str, Any] | None, list[str]]:
    """(the RayJob template, problems): delete, create -f, wait, all on one RayJob name."""
    steps = _steps(pod)
    verbs = [(_kubectl(c)[:1] or [""])[0] for _, c in steps]
    if verbs != ["delete", "create", "wait"]:
        return None, [f"{_POD}: the steps must be kubectl delete, create, wait (in order), "
                      f"got {verbs!r}"]
    template, problem = _template(pod, steps[1][1], steps[1][0], configmaps)
    if template is None:
        return None, [problem]
    name = template.get("metadata", {}).get("name")
    found = []
    if template.get("kind") != "RayJob" or not name:
        found.append(f"{steps[1][0]}: the template must be a RayJob with a fixed metadata.name "
                     f"(delete and wait name it), got kind {template.get('kind')!r} name {name!r}")
    delete, wait = _kubectl(steps[0][1]), _kubectl(steps[2][1])
    if delete[1:3] != ["rayjob", name]:
        found.append(f"{steps[0][0]}: must delete the previous rayjob {name!r}, got {delete!r}")
    if wait[1:2] != [f"rayjob/{name}"] or not any(a.startswith("--for=") for a in wait):
        found.append(f"{steps[2][0]}: must wait --for=... on rayjob/{name}, got {wait!r}")
    return template, found


def _rbac_problems(pod: dict[str, Any], rbac: list[dict[str, Any]]) -> list[str]:
    """The pod's ServiceAccount exists and a Role bound to it grants every verb the steps use."""
    account = pod.get("serviceAccountName")
    if not any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == account for d in rbac):
        return [f"{_POD}.serviceAccountName: no ServiceAccount {account!r} in these manifests"]
    roles = {d["metadata"]["name"]: d for d in rbac if d["kind"] == "Role"}
    granted: set[str] = set()
    for binding in (d for d in rbac if d["kind"] == "RoleBinding"):
        if any(s.get("kind") == "ServiceAccount" and s.get("name") == account
               for s in binding.get("subjects", [])):
            for rule in roles.get(binding["roleRef"]["name"], {}).get("rules", []):
                if "ray.io" in rule.get("apiGroups", []) and "rayjobs" in rule.get("resources", []):
                    granted |= set(rule.get("verbs", []))
    needed = set().union(*_VERBS.values())
    missing = sorted(needed - granted)
    return [f"{_POD}.serviceAccountName: {account!r} may not {', '.join(missing)} rayjobs in "
            "ray.io (no Role bound to it grants that)"] if missing else []


def _config_problems(template: dict[str, Any], configmaps: dict[str, dict[str, Any]],
                     serve_history_backend: str | None) -> list[str]:
    """The refit config matches the retraining job's and serving's history store."""
    entry = shlex.split(template.get("spec", {}).get("entrypoint", ""))
    config = entry[entry.index("--config") + 1] if "--config" in entry[:-1] else ""
    refit, where = mounted_job_config(template, config, configmaps)
    retrain_text = configmaps.get("hydralm-retrain-config", {}).get("data", {}).get("retrain.yaml")
    if isinstance(refit, list) or retrain_text is None:
        return []   # reported by the entrypoint rules / no retraining job to compare with
    try:
        retrain = JobConfig.model_validate(yaml.safe_load(retrain_text))
    except pydantic.ValidationError:
        return []   # reported on the retraining job
    found = [f"{where}.{name}: the refit must match the retraining job's {name}"
             for name in SAME_AS_RETRAIN if getattr(refit, name) != getattr(retrain, name)]
    if serve_history_backend is not None and refit.refit.history_backend != serve_history_backend:
        found.append(f"{where}.refit.history_backend: serving appends to "
                     f"{serve_history_backend!r}, got {refit.refit.history_backend!r}")
    if refit.refit.history_backend == "postgres":
        path, cluster = cluster_spec(template)
        for gpath, group in groups(cluster, path):
            for cpath, container in containers(group, gpath):
                names = {e.get("name") for e in container.get("env", [])
                         if e.get("valueFrom", {}).get("secretKeyRef")}
                if "HYDRALM_HISTORY_DSN" not in names:
                    found.append(f"{cpath}.env: the refit reads the PostgreSQL history store: "
                                 "HYDRALM_HISTORY_DSN must come from the Secret")
    return found


def refit_cron_problems(doc: dict[str, Any], configmaps: dict[str, dict[str, Any]],
                        rbac: list[dict[str, Any]], serve_config: dict[str, Any] | None,
                        serve_history_backend: str | None,
                        rayjob_problems: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """Everything wrong with the refit CronJob `doc`; `rayjob_problems` checks the RayJob
    template against its schema and the cluster rules."""
    spec = doc.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    found = []
    if spec.get("concurrencyPolicy") != "Forbid":
        found.append(f"spec.concurrencyPolicy: must be Forbid (a run deletes the previous "
                     f"RayJob), got {spec.get('concurrencyPolicy')!r}")
    template, step_problems = _step_problems(pod, configmaps)
    found += step_problems + _rbac_problems(pod, rbac)
    if template is None or template.get("kind") != "RayJob":
        return found
    found += [f"<RayJob template>.{p}" for p in rayjob_problems(template)]
    found += [f"<RayJob template>.{p}" for p in retrain_job_problems(
        template, configmaps, serve_config, stages_wanted=REFIT_STAGES, refit=True)]
    found += _config_problems(template, configmaps, serve_history_backend)
    job_deadline = spec.get("jobTemplate", {}).get("spec", {}).get("activeDeadlineSeconds")
    ray_deadline = template.get("spec", {}).get("activeDeadlineSeconds")
    if job_deadline is None or ray_deadline is None or ray_deadline >= job_deadline:
        found.append(f"spec.jobTemplate.spec.activeDeadlineSeconds: must exceed the RayJob's "
                     f"activeDeadlineSeconds (the wait step outlives the run), got "
                     f"{job_deadline!r} and {ray_deadline!r}")
    return found
