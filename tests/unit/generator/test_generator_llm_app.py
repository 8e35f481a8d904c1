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


@pytest.mark.parametrize("local, skips", [(True, True), (False, False)])
def test_a_local_model_directory_skips_the_node_download_task(tmp_path, local, skips):
    """Ray Serve LLM's per-node download only hands a local path back (in a fresh process
    importing vLLM): LocalModelSource skips it for a local directory, never for a remote one."""
    import asyncio

    from ray.serve.llm import LLMConfig

    from serving.llm import LocalModelSource

    source = str(tmp_path) if local else "s3://bucket/models/smollm2"
    config = LLMConfig(model_loading_config={"model_id": "m", "model_source": source},
                       callback_config={"callback_class": LocalModelSource})
    callback = LocalModelSource(llm_config=config)
    asyncio.run(callback.run_callback("on_before_node_init"))
    assert callback.ctx.run_init_node is not skips
