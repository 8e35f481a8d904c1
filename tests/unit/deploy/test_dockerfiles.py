"""The images agree with pyproject.toml: the official Ray image of the pinned Ray, the project's
extra for the flavour, the torch pin; and with the manifests that run them. (No Docker engine
here: the images are checked, not built.)"""

from __future__ import annotations

import re

import pytest
from deploy_setup import by_kind
from image_rules import base_image_problems, install_problems
from kuberay_rules import cluster_spec
from project_facts import REPO, parse_dockerfile, pip_installs, project, read_dockerfile

DOCKER = REPO / "deploy" / "docker"
FLAVOURS = ["cpu", "gpu"]


def _problems(text: str, flavour: str) -> list[str]:
    image = parse_dockerfile(text, f"Dockerfile.{flavour}")
    where = f"Dockerfile.{flavour}"
    return (base_image_problems(image.base_image, flavour, project(), f"{where} FROM")
            + install_problems(pip_installs(image.run_commands), flavour, project(), where))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dockerfile_agrees_with_pyproject(flavour):
    text = (DOCKER / f"Dockerfile.{flavour}").read_text(encoding="utf-8")
    assert _problems(text, flavour) == []


def test_cpu_image_pins_the_cpu_extras_torch():
    installs = pip_installs(read_dockerfile(DOCKER / "Dockerfile.cpu").run_commands)
    pins = {name: req for i in installs for name, req in i.pins().items()}
    assert str(pins["torch"].specifier) == str(project().requirement("torch", "cpu").specifier)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_images_carry_the_ray_version_of_the_manifests(flavour, manifests):
    image = read_dockerfile(DOCKER / f"Dockerfile.{flavour}").base_image
    _, cluster = cluster_spec(by_kind(manifests, "RayService"))
    assert image.startswith(f"rayproject/ray:{cluster['rayVersion']}-")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_images_never_download_models(flavour):
    assert read_dockerfile(DOCKER / f"Dockerfile.{flavour}").env["HF_HUB_OFFLINE"] == "1"


def test_cpu_image_installs_what_make_install_does():
    """The packages `make install` adds without dependencies, and the ones it removes."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    commands = read_dockerfile(DOCKER / "Dockerfile.cpu").run_commands
    for install in pip_installs(commands):
        if install.no_deps:
            assert all(f'--no-deps "{r}"' in makefile for r in install.requirements)
    found = re.search(r"\(UV\) uninstall -q --python \S+ ([\w ]+?) *$", makefile, re.M)
    assert found, "make install's uninstall line not found"
    removed = found.group(1).split()
    assert f"pip uninstall -y {' '.join(removed)}" in commands


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_build_context_leaves_out_local_state(flavour):
    ignored = (DOCKER / f"Dockerfile.{flavour}.dockerignore").read_text(encoding="utf-8")
    entries = {ln.strip() for ln in ignored.splitlines() if ln.strip() and ln[0] != "#"}
    assert {".git", ".venv", ".hydralm"} <= entries


BAD = {
    "another Ray": ("cpu", "rayproject/ray:2.60.0-py311-cpu", "rayproject/ray:2.59.0-py311-cpu",
                    r"FROM: Ray 2.59.0 is not the pinned ray\[serve,train\]==2.60.\*"),
    "not the official image": ("cpu", "rayproject/ray:2.60.0-py311-cpu", "python:3.11-slim",
                               r"FROM: must be rayproject/ray:<ray>-py3XX-cpu"),
    "CUDA base for the CPU image": ("cpu", "py311-cpu", "py311-gpu",
                                    r"the cpu image must start from a cpu Ray image"),
    "an extra pyproject lacks": ("gpu", "hydralm[gpu]", "hydralm[cuda]",
                                 r"install the project once with the \[gpu\] extra, got "
                                 r"\[\{'cuda'\}\]"),
    "torch pin drift": ("cpu", '"torch==2.13.0"', '"torch==2.14.0"',
                        r"torch==2.14.0 disagrees with pyproject.toml's torch==2.13.0"),
    "torch from PyPI": ("cpu", "--index-url https://download.pytorch.org/whl/cpu ", "",
                        r"torch must come from https://download.pytorch.org/whl/cpu"),
    "ray reinstalled": ("gpu", 'pip install --no-cache-dir "/home',
                        'pip install --no-cache-dir "ray==2.59.0" "/home',
                        r"ray==2.59.0 disagrees with pyproject.toml's ray\[serve,train\]==2.60"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_drifted_dockerfile_is_caught(name):
    flavour, old, new, expect = BAD[name]
    text = (DOCKER / f"Dockerfile.{flavour}").read_text(encoding="utf-8")
    assert old in text
    problems = _problems(text.replace(old, new), flavour)
    assert any(re.search(expect, p) for p in problems), problems
