"""The layering rules, checked by reading imports: hydralm never imports ray, training and
serving never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("hydralm", {"ray", "training", "serving"}),
    ("training", {"serving"}),
    ("serving", {"training"}),
])
def test_dependencies_point_one_way(package, forbidden):
    offenders = {}
    for path in sorted((REPO / package).rglob("*.py")):
        bad = _imported_top_levels(path) & forbidden
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    head = text[: text.find("\n## ")] if "\n## " in text else text
    assert "make demo" in head and "make test" in head


def test_ci_runs_make_test():
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
