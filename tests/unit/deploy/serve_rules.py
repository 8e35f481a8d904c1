"""Checks of a Ray Serve config (a RayService's serveConfigV2, configs/serve.yaml): Ray Serve's own
schema with unknown fields rejected, each application's args against the model its builder
validates with, the wiring between the hydralm app and the embedded LLM app, and whether the
replicas fit the Ray cluster's worker groups."""

from __future__ import annotations

from functools import cache
from typing import Any

import pydantic
from jsonschema import Draft202012Validator
from k8s_openapi import iter_problems, strict_schema
from kuberay_rules import GPU, groups
from ray.serve.schema import ServeDeploySchema

from hydralm.generator import GeneratorConfig
from serving.config import ServeArgs

__all__ = ["APP_ARGS", "HYDRALM_APP", "LLM_APP", "app_args", "cpu_quantity",
           "serve_config_problems", "serve_fit_problems", "worker_capacity"]

HYDRALM_APP = "serving.app:build_app"
LLM_APP = "serving.llm:build_llm_app"
# What each builder validates its args with (build_app: ServeArgs; build_llm_app: GeneratorConfig).
APP_ARGS: dict[str, type[pydantic.BaseModel]] = {HYDRALM_APP: ServeArgs, LLM_APP: GeneratorConfig}


@cache
def _strict_serve_validator() -> Draft202012Validator:
    return Draft202012Validator(strict_schema(ServeDeploySchema.model_json_schema()))


def _pydantic_problems(exc: pydantic.ValidationError, path: str) -> list[str]:
    found = []
    for err in exc.errors():
        where = path
        for part in err["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        found.append(f"{where}: {err['msg']}{got_text}")
    return found


def app_args(app: dict[str, Any]) -> pydantic.BaseModel | None:
    """An application's args parsed by its builder's model; None when they do not validate."""
    model = APP_ARGS.get(app.get("import_path"))
    try:
        return None if model is None else model.model_validate(app.get("args") or {})
    except pydantic.ValidationError:
        return None


def serve_config_problems(config: Any, path: str) -> list[str]:
    """Ray Serve's rules, unknown fields, the apps' args, and the generator wiring."""
    if not isinstance(config, dict):
        return [f"{path}: a Serve config must be a mapping, got {type(config).__name__}"]
    found = list(iter_problems(_strict_serve_validator(), config, path))
    try:
        ServeDeploySchema.model_validate(config)
    except pydantic.ValidationError as exc:
        found += _pydantic_problems(exc, path)
    for i, app in enumerate(config.get("applications") or []):
        where = f"{path}.applications[{i}]"
        model = APP_ARGS.get(app.get("import_path"))
        if model is None:
            found.append(f"{where}.import_path: must be one of {sorted(APP_ARGS)}, "
                         f"got {app.get('import_path')!r}")
            continue
        try:
            model.model_validate(app.get("args") or {})
        except pydantic.ValidationError as exc:
            found += _pydantic_problems(exc, f"{where}.args")
    return found + _wiring_problems(config, path)


def _wiring_problems(config: dict[str, Any], path: str) -> list[str]:
    """The hydralm app's embedded generator must be the LLM app of this config, on Serve's port."""
    apps = list(enumerate(config.get("applications") or []))
    llm = {a.get("route_prefix"): (i, a) for i, a in apps if a.get("import_path") == LLM_APP}
    port = (config.get("http_options") or {}).get("port", 8000)
    found = []
    for i, app in apps:
        args = app_args(app) if app.get("import_path") == HYDRALM_APP else None
        if args is None or args.generator.backend != "embedded" or args.generator.base_url:
            continue
        emb, where = args.generator.embedded, f"{path}.applications[{i}].args.generator"
        if emb.route_prefix not in llm:
            found.append(f"{where}.embedded.route_prefix: no {LLM_APP} application at "
                         f"{emb.route_prefix!r} (LLM apps at {sorted(map(str, llm))})")
            continue
        j, llm_app = llm[emb.route_prefix]
        llm_args = app_args(llm_app)
        if llm_args is not None and llm_args.model != args.generator.model:
            found.append(f"{where}.model: the LLM app (applications[{j}]) serves "
                         f"{llm_args.model!r}, got {args.generator.model!r}")
        if emb.http_port != port:
            found.append(f"{where}.embedded.http_port: Serve listens on {port}, "
                         f"got {emb.http_port!r}")
    return found


def cpu_quantity(value: Any) -> float:
    """A Kubernetes CPU quantity ("8", "500m", 2) in cores."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def worker_capacity(cluster: dict[str, Any], path: str) -> list[tuple[str, float, float, int]]:
    """(path, CPUs, GPUs, maxReplicas) per worker group of a KubeRay cluster spec, from its first
    container's limits (what KubeRay tells Ray the pod has)."""
    found = []
    for gpath, group in groups(cluster, path):
        if "groupName" not in group:  # the head: num-cpus 0, nothing schedules there
            continue
        limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        found.append((gpath, cpu_quantity(limits.get("cpu", 0)), float(limits.get(GPU, 0)),
                      int(group.get("maxReplicas", 0))))
    return found


def serve_fit_problems(config: dict[str, Any], path: str,
                       capacity: list[tuple[str, float, float, int]]) -> list[str]:
    """Each replica fits on some worker, and all replicas at their maximum fit the cluster at its
    maximum: otherwise Serve waits forever for resources the autoscaler can never add.

    `capacity`: (path, CPUs, GPUs, max count) per worker type, e.g. from `worker_capacity`.
    """
    if not capacity:
        return [f"{path}: no worker group for the Serve replicas"]
    need: list[tuple[str, float, float, int]] = []  # (path, cpus, gpus, max replicas)
    for i, app in enumerate(config.get("applications") or []):
        args, where = app_args(app), f"{path}.applications[{i}].args"
        if isinstance(args, ServeArgs):
            for name, part in (("ingress", args.ingress), ("scorer", args.scorer)):
                most = part.autoscaling_config.max_replicas if part.autoscaling_config \
                    else part.num_replicas
                need.append((f"{where}.{name}", part.num_cpus,
                             getattr(part, "num_gpus", 0.0), most))
        elif isinstance(args, GeneratorConfig) and args.embedded.device == "gpu":
            emb = args.embedded
            need.append((f"{where}.embedded", 0.0, float(emb.tensor_parallel_size),
                         emb.num_replicas))
    found = []
    for where, cpus, gpus, _ in need:
        if not any(cpus <= c and gpus <= g for _, c, g, _ in capacity):
            found.append(f"{where}: a replica needs {cpus:g} CPU and {gpus:g} GPU, more than any "
                         f"worker group offers ({[(p, c, g) for p, c, g, _ in capacity]})")
    for resource, index in (("CPU", 1), ("GPU", 2)):
        wanted = sum(n[index] * n[3] for n in need)
        offered = sum(c[index] * c[3] for c in capacity)
        if wanted > offered:
            found.append(f"{path}: {wanted:g} {resource} at maximum replicas, but the worker "
                         f"groups offer {offered:g} at maxReplicas")
    return found
