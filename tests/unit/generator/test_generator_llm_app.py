"""serving.llm:build_llm_app validates its args before touching Ray (building the app itself
needs Ray: tests/integration/test_generator.py).

serving.llm imports Ray Serve LLM, which imports vLLM (seconds): imported by the tests that use
it, not when the module is collected (every xdist worker collects every module)."""

from __future__ import annotations

import asyncio

import pytest

from hydralm.errors import ConfigError


@pytest.fixture(scope="module")
def llm_module():
    pytest.importorskip("ray.serve.llm")  # the installed Ray Serve LLM API, whatever its version
    import serving.llm

    return serving.llm


@pytest.mark.parametrize("args, fragment", [
    ({"backend": "vllm"}, "backend"),
    ({"embedded": {"model_dir": "/nonexistent/model"}}, "must be an HF model directory"),
    ({"embedded": {"device": "cpu", "num_gpus": 2}}, "apply only with device: gpu"),
])
def test_build_llm_app_rejects_bad_args(llm_module, args, fragment):
    with pytest.raises(ConfigError, match=fragment):
        llm_module.build_llm_app(args)


@pytest.mark.parametrize("local, skips", [(True, True), (False, False)])
def test_a_local_model_directory_skips_the_node_download_task(llm_module, tmp_path, local,
                                                               skips):
    """Ray Serve LLM's per-node download only hands a local path back (in a fresh process
    importing vLLM): LocalModelSource skips it for a local directory, never for a remote one."""
    from ray.serve.llm import LLMConfig

    source = str(tmp_path) if local else "s3://bucket/models/smollm2"
    config = LLMConfig(model_loading_config={"model_id": "m", "model_source": source},
                       callback_config={"callback_class": llm_module.LocalModelSource})
    callback = llm_module.LocalModelSource(llm_config=config)
    asyncio.run(callback.run_callback("on_before_node_init"))
    assert callback.ctx.run_init_node is not skips
