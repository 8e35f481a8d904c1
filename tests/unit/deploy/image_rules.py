"""Whether an image's build (a Dockerfile, or the launcher's setup commands) agrees with
pyproject.toml: the official Ray base image of the pinned Ray, the project installed with the
extra of its flavour, and the same pins as pyproject for anything pinned."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from project_facts import PipInstall, Project

__all__ = ["BASE_IMAGE", "PYTORCH_CPU_INDEX", "base_image_problems", "install_problems"]

# rayproject/ray:<ray version>-py<python>-<cpu|gpu|cu12x>
BASE_IMAGE = re.compile(r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d)(?P<minor>\d+)"
                        r"-(?P<flavour>cpu|gpu|cu\d+)")
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def base_image_problems(image: str, flavour: str, project: Project, where: str) -> list[str]:
    """The image must be the official Ray image of the pinned Ray, for `flavour` (cpu or gpu)."""
    match = BASE_IMAGE.fullmatch(image)
    if match is None:
        return [f"{where}: must be rayproject/ray:<ray>-py3XX-{flavour}, got {image!r}"]
    found = []
    if not project.image_ray_version(match["ray"]):
        found.append(f"{where}: Ray {match['ray']} is not the pinned {project.ray}")
    image_flavour = "cpu" if match["flavour"] == "cpu" else "gpu"
    if image_flavour != flavour:
        found.append(f"{where}: the {flavour} image must start from a {flavour} Ray image, "
                     f"got {image!r}")
    return found


def install_problems(installs: list[PipInstall], flavour: str, project: Project,
                     where: str) -> list[str]:
    """The project is installed once with exactly its `flavour` extra (which pyproject defines);
    torch comes from PyTorch's CPU index on cpu; every pin agrees with pyproject."""
    extras = [i.local_extras() for i in installs if i.local_extras()]
    found = []
    if extras != [{flavour}]:
        found.append(f"{where}: install the project once with the [{flavour}] extra, got "
                     f"{extras!r}")
    unknown = set().union(*extras) - set(project.extras) if extras else set()
    if unknown:
        found.append(f"{where}: extras {sorted(unknown)} are not in pyproject.toml "
                     f"({sorted(project.extras)})")
    for install in installs:
        for req in install.pins().values():
            found += _pin_problems(req, install, flavour, project, where)
    return found


def _pin_problems(req: Requirement, install: PipInstall, flavour: str, project: Project,
                  where: str) -> list[str]:
    ours = project.requirement(req.name, flavour) or project.requirement(req.name)
    if ours is not None and str(ours.specifier) != str(req.specifier):
        return [f"{where}: {req} disagrees with pyproject.toml's {ours}"]
    if req.name == "torch" and install.index_url != PYTORCH_CPU_INDEX:
        return [f"{where}: torch must come from {PYTORCH_CPU_INDEX} (PyPI's is a CUDA build), "
                f"got index {install.index_url!r}"]
    if req.name == "ray":
        return [f"{where}: never reinstall ray over the base image's, got {req}"]
    return []
