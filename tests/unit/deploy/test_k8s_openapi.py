"""The OpenAPI v3 -> strict JSON Schema translation on small hand-made CRDs: unknown fields are
errors unless the schema keeps them, and the Kubernetes extensions mean what the API server means
by them."""

from __future__ import annotations

import pytest
from k8s_openapi import crd_validator, iter_problems, strict_schema


def _crd(spec_schema: dict) -> dict:
    return {
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget"}, "versions": [{
            "name": "v1", "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "metadata": {"type": "object"}, "spec": spec_schema}}}}]},
    }


SPEC = {
    "type": "object",
    "properties": {
        "size": {"x-kubernetes-int-or-string": True},
        "limit": {"type": "integer", "format": "int32"},
        "note": {"type": "string", "nullable": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"known": {"type": "string"}}},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                             "port": {"type": "integer"}}}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "nested": {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]},
    },
}


def _problems(spec: dict) -> list[str]:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": spec}
    return list(iter_problems(crd_validator(_crd(SPEC)), doc))


@pytest.mark.parametrize("spec", [
    {"size": 3}, {"size": "50%"}, {"limit": 2**31 - 1}, {"note": None}, {"note": "x"},
    {"free": {"known": "a", "anything": {"goes": 1}}}, {"map": {"any-key": "v"}},
    {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 1}]}, {"tags": ["a", "b"]},
    {"nested": {"a": "x"}},
])
def test_valid_documents_pass(spec):
    assert _problems(spec) == []


@pytest.mark.parametrize("spec, expected", [
    ({"sise": 3}, "spec: Additional properties are not allowed ('sise' was unexpected)"),
    ({"size": 1.5}, "spec.size: 1.5 is not valid under any of the given schemas"),
    ({"limit": 2**31}, "spec.limit: 2147483648 is not a 'int32'"),
    ({"note": 3}, "spec.note: 3 is not of type 'string', 'null'"),
    ({"map": {"k": 1}}, "spec.map.k: 1 is not of type 'string'"),
    ({"ports": [{"name": "a"}, {"name": "a"}]},
     "spec.ports: duplicate entry {'name': 'a'}: items 0 and 1 share the list-map keys ['name']"),
    ({"ports": [{"name": "a", "prot": 1}]},
     "spec.ports[0]: Additional properties are not allowed ('prot' was unexpected)"),
    ({"tags": ["a", "a"]}, "spec.tags: duplicate entry 'a' in a list of type set"),
    ({"nested": {"b": "x"}}, "spec.nested: {'b': 'x'} is not valid under any of the given "
                             "schemas"),
])
def test_invalid_documents_name_the_path(spec, expected):
    assert _problems(spec) == [expected]


def test_envelope_is_checked_too():
    doc = {"apiVersion": "example.com/v2", "kind": "Gadget", "metadata": {"name": "W",
                                                                          "labelz": {}}}
    problems = list(iter_problems(crd_validator(_crd(SPEC)), doc))
    assert "apiVersion: 'example.com/v1' was expected" in problems
    assert "kind: 'Widget' was expected" in problems
    assert "(root): 'spec' is a required property" in problems
    assert any(p.startswith("metadata: Additional properties") for p in problems)
    assert any(p.startswith("metadata.name: 'W' does not match") for p in problems)


def test_strict_schema_leaves_its_input_alone():
    original = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert strict_schema(original)["additionalProperties"] is False
    assert "additionalProperties" not in original


def test_unknown_version_is_named():
    with pytest.raises(KeyError, match=r"widgets.example.com has no version 'v2', only \['v1'\]"):
        crd_validator(_crd(SPEC), "v2")
