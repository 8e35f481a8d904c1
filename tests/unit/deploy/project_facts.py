"""What the deployment files must agree with, read from the sources of truth: pyproject.toml (the
Ray pin, the extras, the torch pin, the project version) and the Dockerfiles' instructions."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport
    import tomli as tomllib

__all__ = ["REPO", "Dockerfile", "PipInstall", "Project", "parse_dockerfile", "pip_installs",
           "project", "read_dockerfile", "shell_commands"]

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Project:
    """The facts of pyproject.toml the deployment files repeat."""

    version: str
    ray: Requirement
    dependencies: tuple[Requirement, ...]
    extras: dict[str, tuple[Requirement, ...]]

    def requirement(self, name: str, extra: str | None = None) -> Requirement | None:
        """The requirement on `name` in the base dependencies, or in `extra` when given."""
        reqs = self.extras[extra] if extra is not None else self.dependencies
        return next((r for r in reqs if r.name == name), None)

    def image_ray_version(self, candidate: str) -> bool:
        """Whether `candidate` (e.g. an image tag's 2.60.0) satisfies the Ray pin."""
        return SpecifierSet(str(self.ray.specifier)).contains(candidate)


@cache
def project(path: Path = REPO / "pyproject.toml") -> Project:
    data = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    deps = tuple(Requirement(r) for r in data["dependencies"])
    ray = next(r for r in deps if r.name == "ray")
    extras = {name: tuple(Requirement(r) for r in reqs)
              for name, reqs in data.get("optional-dependencies", {}).items()}
    return Project(version=data["version"], ray=ray, dependencies=deps, extras=extras)


@dataclass(frozen=True)
class Dockerfile:
    base_image: str
    run_commands: tuple[str, ...]  # each shell command of every RUN, split at `&&` and `;`
    env: dict[str, str]


def read_dockerfile(path: Path) -> Dockerfile:
    return parse_dockerfile(path.read_text(encoding="utf-8"), str(path))


def parse_dockerfile(text: str, source: str = "Dockerfile") -> Dockerfile:
    """The FROM image, RUN commands and ENV settings of a single-stage Dockerfile."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    froms, runs, env = [], [], {}
    for line in joined.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            froms.append(rest.split()[0])
        elif word.upper() == "RUN":
            runs.extend(shell_commands(rest))
        elif word.upper() == "ENV":
            env.update(dict(tok.split("=", 1) for tok in shlex.split(rest)))
    if len(froms) != 1:
        raise ValueError(f"{source}: expected one FROM, got {froms!r}")
    return Dockerfile(base_image=froms[0], run_commands=tuple(runs), env=env)


def shell_commands(text: str) -> list[str]:
    """`a && b; c` -> ['a', 'b', 'c'], whitespace normalised (enough for install lines)."""
    parts = re.split(r"\s*(?:&&|;)\s*", text.strip())
    return [" ".join(p.split()) for p in parts if p.strip()]


@dataclass(frozen=True)
class PipInstall:
    """One `pip install` command: its requirements and the options that matter here."""

    requirements: tuple[str, ...]
    index_url: str | None
    no_deps: bool

    def pins(self) -> dict[str, Requirement]:
        """Requirements naming a distribution (not a path), by name."""
        reqs = [Requirement(r) for r in self.requirements if not r.startswith(("/", "."))]
        return {r.name: r for r in reqs}

    def local_extras(self) -> set[str]:
        """The extras of a local path install, e.g. {'cpu'} for `/home/ray/hydralm[cpu]`."""
        extras: set[str] = set()
        for req in self.requirements:
            match = re.fullmatch(r"[./][^\[]*\[([^\]]*)\]", req)
            if match:
                extras.update(e.strip() for e in match.group(1).split(","))
        return extras


def pip_installs(commands: list[str] | tuple[str, ...]) -> list[PipInstall]:
    """The `pip install` commands among shell `commands`, parsed."""
    found = []
    for command in commands:
        tokens = shlex.split(command)
        if tokens[:2] not in (["pip", "install"], ["pip3", "install"]):
            continue
        reqs, index_url, skip = [], None, False
        for i, tok in enumerate(tokens[2:], start=2):
            if skip:
                skip = False
            elif tok in ("--index-url", "-i"):
                index_url, skip = tokens[i + 1], True
            elif not tok.startswith("-"):
                reqs.append(tok)
        found.append(PipInstall(tuple(reqs), index_url, "--no-deps" in tokens))
    return found
