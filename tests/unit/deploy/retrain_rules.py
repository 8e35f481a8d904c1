"""Checks of the retraining RayJob: its entrypoint runs the real `hydralm` CLI (parsed by the CLI's
own parser), the job config it reads is a mounted ConfigMap that validates as a JobConfig, it
writes to shared storage, it fits the job's cluster, and it feeds the registry serving reads with
the same black box serving uses."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from functools import cache
from pathlib import PurePosixPath
from typing import Any

import pydantic
import yaml
from kuberay_rules import cluster_spec, containers
from project_facts import shell_commands
from serve_rules import HYDRALM_APP, LLM_APP, app_args, worker_capacity

from hydralm.cli import build_parser
from hydralm.jobconfig import JobConfig

__all__ = ["REFIT_STAGES", "RETRAIN_STAGES", "job_config_problems", "serve_llm_url",
           "mounted_job_config", "parse_cli", "retrain_job_problems"]

# The stages a retraining run goes through, in order; and the refit's one stage (with --refit).
RETRAIN_STAGES = ["labels", "train", "fit-users"]
REFIT_STAGES = ["fit-users"]
# KubeRay's Service in front of the RayService `hydralm`'s Serve proxies (<name>-serve-svc).
SERVE_SERVICE = "hydralm-serve-svc"


@cache
def _parser_for(command: str) -> argparse.ArgumentParser:
    """The `hydralm` parser as `hydralm <command> ...` builds it: that command's plugin only (the
    others import torch at module level: seconds), every plugin when no plugin has that name."""
    return build_parser(command)


def parse_cli(tokens: list[str]) -> tuple[Any, str]:
    """(namespace, "") or (None, argparse's complaint) for `hydralm <tokens>`."""
    command = next((t for t in tokens if not t.startswith("-")), "")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return _parser_for(command).parse_args(tokens), ""
    except SystemExit:
        return None, err.getvalue().strip().splitlines()[-1] if err.getvalue() else "exit"


def _config_arg(tokens: list[str]) -> str | None:
    """The value of --config among `tokens` (read apart from the CLI, so the job config is
    checked even when a command does not parse)."""
    for i, tok in enumerate(tokens):
        if tok == "--config" and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith("--config="):
            return tok.split("=", 1)[1]
    return None


def _entrypoint_commands(entrypoint: str) -> tuple[list[str], list[str]]:
    """(commands, problems): several commands must sit in one `bash -c '...'`. KubeRay's submitter
    pod runs `ray job submit -- <entrypoint>` through its own shell (KubeRay >= 1.4), so after a
    bare `&&` or `;` the rest would run in the submitter pod, not on the cluster."""
    try:
        tokens = shlex.split(entrypoint)
    except ValueError as exc:
        return [], [f"spec.entrypoint: not valid shell: {exc}, got {entrypoint!r}"]
    if tokens[:2] in (["bash", "-c"], ["sh", "-c"]) and len(tokens) == 3:
        return shell_commands(tokens[2]), []
    if {"&&", ";", "||"} & set(tokens) or any(t.endswith(";") for t in tokens):
        return [], [f"spec.entrypoint: chain the stages inside one bash -c '...': a bare && or ; "
                    f"runs the later ones in KubeRay's submitter pod, got {entrypoint!r}"]
    return [" ".join(tokens)], []


def retrain_job_problems(doc: dict[str, Any], configmaps: dict[str, dict[str, Any]],
                         serve_config: dict[str, Any] | None, *,
                         stages_wanted: list[str] = RETRAIN_STAGES,
                         refit: bool = False) -> list[str]:
    """Everything wrong with the RayJob `doc`, given the ConfigMaps and Serve config beside it.
    `refit`: the job is the scheduled refit, whose commands must all run with --refit."""
    commands, found = _entrypoint_commands(doc.get("spec", {}).get("entrypoint", ""))
    stages, config_paths = [], set()
    for cmd in commands:
        tokens = shlex.split(cmd)
        config_paths.add(_config_arg(tokens))
        args, complaint = (None, "not the hydralm CLI") if tokens[:1] != ["hydralm"] \
            else parse_cli(tokens[1:])
        if args is None:
            found.append(f"spec.entrypoint: {cmd!r} is not a valid hydralm command: {complaint}")
            continue
        stages.append(args.command)
        if bool(getattr(args, "refit", False)) != refit:
            found.append(f"spec.entrypoint: {cmd!r} " + (
                "must refit (--refit): the scheduled job fits users whose history changed"
                if refit else "must not refit (--refit) in the retraining job"))
        if getattr(args, "ray_address", None) != "auto":
            found.append(f"spec.entrypoint: {cmd!r} must join the job's cluster with "
                         f"--ray-address auto (else it starts a Ray of its own in the head pod)")
    if not found and stages != stages_wanted:
        found.append(f"spec.entrypoint: must run {' && '.join(stages_wanted)} in order, "
                     f"got {stages!r}")
    if len(config_paths) != 1 or None in config_paths:
        return found + [f"spec.entrypoint: every stage must read the same --config, got "
                        f"{sorted(map(str, config_paths))!r}"]
    job, where = mounted_job_config(doc, config_paths.pop(), configmaps)
    if isinstance(job, list):
        return found + job
    path, cluster = cluster_spec(doc)
    return found + job_config_problems(job, where, worker_capacity(cluster, path), serve_config)


def job_config_problems(job: JobConfig, where: str, capacity: list[tuple[str, float, float, int]],
                        serve_config: dict[str, Any] | None) -> list[str]:
    """A cluster job config: shared storage, fits the workers in `capacity` (as
    serve_rules.worker_capacity gives it), and feeds what `serve_config` serves."""
    return (_shared_storage(job, where) + _fits(job, where, capacity)
            + _feeds_serving(job, where, serve_config))


def mounted_job_config(doc: dict[str, Any], config: str,
                        configmaps: dict[str, dict[str, Any]]) -> tuple[Any, str]:
    """(JobConfig, its path) read from the ConfigMap mounted at `config` in the head, or
    (problems, path)."""
    path, cluster = cluster_spec(doc)
    head = cluster.get("headGroupSpec", {})
    volumes = {v.get("name"): v for v in head.get("template", {}).get("spec", {})
               .get("volumes", [])}
    for cpath, container in containers(head, f"{path}.headGroupSpec"):
        for mount in container.get("volumeMounts", []):
            base = PurePosixPath(mount.get("mountPath", "/"))
            if not PurePosixPath(config).is_relative_to(base) or config == str(base):
                continue
            source = volumes.get(mount.get("name"), {}).get("configMap", {})
            name = source.get("name")
            key = str(PurePosixPath(config).relative_to(base))
            # a volume listing `items` maps chosen keys to paths; without it, path == key
            key = next((i.get("key") for i in source.get("items", []) if i.get("path") == key),
                       None if source.get("items") else key)
            text = configmaps.get(name, {}).get("data", {}).get(key)
            where = f"ConfigMap {name!r} data[{key!r}]"
            if text is None:
                return [f"{cpath}.volumeMounts: {config} is not a key of a ConfigMap in these "
                        f"manifests (looked for {where})"], where
            try:
                return JobConfig.model_validate(yaml.safe_load(text)), where
            except pydantic.ValidationError as exc:
                return [f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                        for e in exc.errors()], where
    return [f"{path}.headGroupSpec: no volume mounted at {config!r}, where the entrypoint "
            "reads its --config (the driver runs on the head)"], ""


def _shared_storage(job: JobConfig, where: str) -> list[str]:
    """Every node must see the same files: local paths differ per pod."""
    paths = job.paths
    uris = {"registry": paths.registry, "work_dir": paths.work_dir,
            "train.storage_path": paths.checkpoints}
    source = job.data.source
    if source != "synth":
        uris[f"data.{source}"] = getattr(job.data, source)
    return [f"{where}.{name}: a multi-node job needs s3:// storage, got {uri!r}"
            for name, uri in uris.items() if not str(uri).startswith("s3://")]


def _fits(job: JobConfig, where: str, capacity: list[tuple[str, float, float, int]]) -> list[str]:
    biggest_cpu = max((c for _, c, _, _ in capacity), default=0.0)
    gpus = max((g for _, _, g, _ in capacity), default=0.0)
    total_cpu = sum(c * n for _, c, _, n in capacity)
    found = []
    for name, cpus in (("train.cpus_per_worker", job.train.cpus_per_worker),
                       ("fit.cpus_per_task", job.fit.cpus_per_task)):
        if cpus > biggest_cpu:
            found.append(f"{where}.{name}: {cpus:g} CPU, more than any worker group offers "
                         f"({biggest_cpu:g})")
    train_cpu = job.train.num_workers * job.train.cpus_per_worker
    if train_cpu > total_cpu:
        found.append(f"{where}.train.num_workers: {train_cpu:g} CPU in all, the worker groups "
                     f"offer {total_cpu:g} at maxReplicas")
    emb = job.generator.embedded
    gpu_need = emb.tensor_parallel_size if (job.generator.backend == "embedded"
                                            and emb.device == "gpu") else 0
    if job.train.use_gpu:
        gpu_need = max(gpu_need, 1)
    if gpu_need > gpus:
        found.append(f"{where}: needs {gpu_need} GPU on one worker (the embedded generator or "
                     f"train.use_gpu), the worker groups offer at most {gpus:g}")
    return found


def _feeds_serving(job: JobConfig, where: str, serve_config: dict[str, Any] | None) -> list[str]:
    """New heads must land where serving reads them, labelled by the black box serving uses."""
    apps = [a for a in (serve_config or {}).get("applications", [])
            if a.get("import_path") == HYDRALM_APP]
    args = app_args(apps[0]) if apps else None
    if args is None:
        return [f"{where}: no valid {HYDRALM_APP} application to compare with"]
    pairs = [
        ("registry", job.paths.registry, args.registry_uri()),
        ("task", job.task, args.task),
        ("generator.model", job.generator.model, args.generator.model),
    ]
    if job.generator.base_url is not None:
        # a job may label with the RayService's own LLM instead of an embedded one
        pairs.append(("generator.base_url", job.generator.base_url,
                      serve_llm_url(serve_config or {})))
    else:
        pairs.append(("generator.embedded.model_dir", job.generator.embedded.model_dir,
                      args.generator.embedded.model_dir))
    if args.base_history is not None:
        pairs.append(("work_dir", job.paths.dataset, args.base_history))
    return [f"{where}.{name}: serving uses {theirs!r}, got {ours!r}"
            for name, ours, theirs in pairs if ours != theirs]


def serve_llm_url(serve_config: dict[str, Any]) -> str | None:
    """The OpenAI base URL of the RayService's LLM app as a pod in the namespace reaches it."""
    port = (serve_config.get("http_options") or {}).get("port", 8000)
    llm = [a for a in serve_config.get("applications", []) if a.get("import_path") == LLM_APP]
    if not llm:
        return None
    prefix = llm[0].get("route_prefix", "/").rstrip("/")
    return f"http://{SERVE_SERVICE}:{port}{prefix}/v1"
