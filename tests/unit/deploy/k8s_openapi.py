"""Validate custom resources offline against their CRD's OpenAPI v3 schema, strictly.

A CRD's `openAPIV3Schema` is close to JSON Schema but not the same, and the API server reads it
with rules jsonschema does not know:

- an object that lists `properties` and has no `additionalProperties` prunes (drops) unknown
  fields; we reject them instead, as `kubeconform --strict` does, so a typo'd key is an error
  rather than a setting that silently does nothing. `x-kubernetes-preserve-unknown-fields: true`
  keeps an object open;
- `nullable: true` allows null beside the declared type;
- `x-kubernetes-int-or-string: true` means an integer or a string;
- `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys` means list entries are unique by
  those keys (two env vars with one name), and `set` means unique entries;
- `format: int32` / `int64` bound integers.

`strict_schema` also serves for JSON Schemas made by pydantic (`$defs`), e.g. Ray Serve's config.

CEL rules (`x-kubernetes-validations`) and `metadata` (the API server checks ObjectMeta itself) are
not covered here; `strict_metadata_schema()` is a small hand-written ObjectMeta subset instead.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

__all__ = ["crd_validator", "format_error", "iter_problems", "strict_schema",
           "strict_metadata_schema"]

# Keywords whose value is one schema, a list of schemas, or a name -> schema mapping.
_ONE = ("additionalProperties", "items", "not")
_MANY = ("allOf", "anyOf", "oneOf")
_NAMED = ("properties", "patternProperties", "$defs", "definitions")

# RFC 1123 subdomain: what most object names must be.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def strict_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema equivalent of `openapi` in which unknown fields are errors (a deep copy)."""
    schema = copy.deepcopy(openapi)
    _tighten(schema)
    return schema


def _tighten(node: dict[str, Any]) -> None:
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-int-or-string") is True and "type" not in node \
            and "anyOf" not in node:
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    open_ = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not open_:
        node["additionalProperties"] = False
    for key in _ONE:
        if isinstance(node.get(key), dict):
            _tighten(node[key])
    for key in _MANY:
        for sub in node.get(key, ()):
            _tighten(sub)
    for key in _NAMED:
        for sub in node.get(key, {}).values():
            _tighten(sub)


def strict_metadata_schema() -> dict[str, Any]:
    """The ObjectMeta fields a manifest may set (a hand-written subset of the Kubernetes API)."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 63, "pattern": _DNS_SUBDOMAIN},
            "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS_SUBDOMAIN},
            "labels": string_map,
            "annotations": string_map,
        },
    }


def _list_map_keys(validator, keys, instance, schema) -> Iterator[ValidationError]:
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen: dict[tuple, int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k) for k in keys)
        if key in seen:
            yield ValidationError(f"duplicate entry {dict(zip(keys, key, strict=True))!r}: items {seen[key]} "
                                  f"and {index} share the list-map keys {keys!r}")
        seen.setdefault(key, index)


def _list_type(validator, list_type, instance, schema) -> Iterator[ValidationError]:
    if list_type == "set" and isinstance(instance, list):
        for index, item in enumerate(instance):
            if item in instance[:index]:
                yield ValidationError(f"duplicate entry {item!r} in a list of type set")


_INT_RANGES = {"int32": 2**31, "int64": 2**63}
_formats = FormatChecker()
for _name, _bound in _INT_RANGES.items():
    _formats.checks(_name)(
        lambda value, bound=_bound: not isinstance(value, int) or -bound <= value < bound)

_KubeValidator = jsonschema.validators.extend(Draft202012Validator, {
    "x-kubernetes-list-map-keys": _list_map_keys,
    "x-kubernetes-list-type": _list_type,
})


def crd_validator(crd: dict[str, Any], version: str = "v1") -> Draft202012Validator:
    """A strict validator for the custom resources of `crd` at API `version`.

    Raises KeyError naming the version when the CRD does not serve it.
    """
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in served:
        raise KeyError(f"{crd['metadata']['name']} has no version {version!r}, "
                       f"only {sorted(served)}")
    schema = strict_schema(served[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = strict_metadata_schema()
    schema.setdefault("required", [])
    schema["required"] = sorted({*schema["required"], "apiVersion", "kind", "metadata", "spec"})
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    schema["properties"]["kind"] = {"const": kind}
    return _KubeValidator(schema, format_checker=_formats)


def format_error(error: ValidationError, prefix: str = "") -> str:
    """`path: message`, the path dotted with list indices, e.g. `spec.workerGroupSpecs[0]`."""
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{path or '(root)'}: {error.message}"


def iter_problems(validator: Draft202012Validator, instance: Any, prefix: str = "") \
        -> Iterator[str]:
    """Every schema violation of `instance`, formatted by `format_error`, in document order."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        yield format_error(error, prefix)
