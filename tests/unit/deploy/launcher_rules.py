"""Checks of the Ray cluster-launcher config (ray_cluster.yaml): the schema shipped inside the
installed ray package, then the offline part of what `ray up` itself does before it calls the
cloud (fill in defaults, merge setup commands, check the node types)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import ray.autoscaler
from k8s_openapi import iter_problems

__all__ = ["LAUNCHER_SCHEMA", "launcher_capacity", "launcher_problems"]

LAUNCHER_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(LAUNCHER_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def launcher_problems(config: Any) -> list[str]:
    """Schema violations, else what Ray's own offline preparation and validation reject."""
    found = list(iter_problems(_validator(), config))
    if found:
        return found
    # The private functions `ray up` runs before it touches the cloud provider (Ray 2.60).
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except (ValueError, RuntimeError, jsonschema.ValidationError) as exc:
        return [f"(ray up): {getattr(exc, 'message', None) or exc}"]
    found += _worker_bounds(config)
    return found


def _worker_bounds(config: dict[str, Any]) -> list[str]:
    found = []
    for name, node in config.get("available_node_types", {}).items():
        low, high = node.get("min_workers", 0), node.get("max_workers", config["max_workers"])
        if low > high:
            found.append(f"available_node_types.{name}.min_workers: must not exceed max_workers "
                         f"({high}), got {low}")
    return found


def launcher_capacity(config: dict[str, Any]) -> list[tuple[str, float, float, int]]:
    """(path, CPUs, GPUs, max_workers) per worker node type, as serve_rules.serve_fit_problems
    takes it."""
    return [(f"available_node_types.{name}", float(node["resources"].get("CPU", 0)),
             float(node["resources"].get("GPU", 0)), int(node.get("max_workers", 0)))
            for name, node in config["available_node_types"].items()
            if name != config["head_node_type"]]
