"""The `gpu` extra installs exactly the vLLM that the installed Ray's Serve LLM is built and tested
against (what `ray[llm]` declares), not an open range that can drift away from it."""

from __future__ import annotations

from importlib.metadata import requires

from packaging.requirements import Requirement
from project_facts import project


def _rays_llm_vllm() -> Requirement | None:
    for line in requires("ray") or []:
        req = Requirement(line)
        if req.name == "vllm" and req.marker is not None and req.marker.evaluate({"extra": "llm"}):
            return req
    return None


def test_gpu_extra_pins_the_vllm_of_rays_llm_extra():
    rays = _rays_llm_vllm()
    assert rays is not None, "the installed ray declares no vllm for its llm extra"
    ours = project().requirement("vllm", "gpu")
    assert ours is not None, "pyproject's gpu extra has no vllm"
    assert str(ours.specifier).startswith("=="), f"gpu extra: an open vllm range, got {ours}"
    assert (str(ours.specifier), ours.extras) == (str(rays.specifier), rays.extras), (
        f"gpu extra has {ours}, ray[llm] declares {rays}")
