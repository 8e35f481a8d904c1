"""serving.llm:build_llm_app validates its args before touching Ray (building the app itself
needs Ray: tests/integration/test_generator.py)."""

from __future__ import annotations

import pytest

from hydralm.errors import ConfigError

pytest.importorskip("ray.serve.llm")  # the installed Ray Serve LLM API, whatever its version

from serving.llm import build_llm_app  # noqa: E402


@pytest.mark.parametrize("args, fragment", [
    ({"backend": "vllm"}, "backend"),
    ({"embedded": {"model_dir": "/nonexistent/model"}}, "must be an HF model directory"),
    ({"embedded": {"device": "cpu", "num_gpus": 2}}, "apply only with device: gpu"),
])
def test_build_llm_app_rejects_bad_args(args, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_llm_app(args)
