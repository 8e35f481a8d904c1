"""GeneratorConfig validation, environment overrides, and the Ray Serve LLM kwargs it produces."""

from __future__ import annotations

import pytest

from hydralm.config import dump_yaml
from hydralm.errors import ConfigError
from hydralm.generator import GeneratorConfig, llm_config_kwargs, prepare_smollm2, resolve_model_dir
from hydralm.generator.embedded import SMOLLM2_DIRNAME


@pytest.fixture(autouse=True)
def _no_generator_env(monkeypatch):
    for name in ("HYDRALM_GENERATOR_BASE_URL", "HYDRALM_GENERATOR_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("data, fragment", [
    ({"backend": "llamacpp"}, "backend"),
    ({"backend": "openai"}, "needs base_url"),
    ({"backend": "openai", "base_url": "api.openai.com/v1"}, "http:// or https://"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"max_retries": 99}, "max_retries"),
    ({"backoff_base_s": 5, "backoff_cap_s": 1}, "backoff_cap_s (1.0) must be >= backoff_base_s"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"model": ""}, "model"),
    ({"structured_outputs_style": "openai_json_schema"}, "backend 'embedded' is vLLM"),
    ({"temperature": 1.0}, "temperature"),  # unknown key
    ({"embedded": {"device": "tpu"}}, "device"),
    ({"embedded": {"tensor_parallel_size": 2}}, "apply only with device: gpu"),
    ({"embedded": {"accelerator_type": "H100"}}, "apply only with device: gpu"),
    ({"embedded": {"device": "gpu", "tensor_parallel_size": 2, "num_gpus": 3}},
     "multiple of tensor_parallel_size"),
    ({"embedded": {"route_prefix": "llm"}}, "route_prefix"),
    ({"embedded": {"http_port": 70000}}, "http_port"),
    ({"embedded": {"engine_kwargs": {"dtype": "float16"}}}, "use the embedded.* fields"),
    ({"embedded": {"engine_kwargs": {"seed": 1}}}, "use the embedded.* fields"),
    ({"embedded": {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "4"}}}, "cpu_kvcache_gib"),
    ({"embedded": {"env_vars": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}}}, "cpu_reserved_cores"),
    ({"embedded": {"device": "gpu", "cpu_reserved_cores": 0}}, "only with device: cpu"),
    ({"embedded": {"cpu_reserved_cores": -1}}, "cpu_reserved_cores"),
])
def test_bad_config_is_rejected_with_a_useful_message(data, fragment):
    with pytest.raises(ConfigError) as info:
        GeneratorConfig.from_dict(data, source="test.yaml")
    assert fragment in str(info.value)
    assert "test.yaml" in str(info.value)


def test_defaults_are_the_embedded_smollm2():
    cfg = GeneratorConfig()
    assert (cfg.backend, cfg.model, cfg.cache, cfg.embedded.device) == (
        "embedded", "smollm2", None, "cpu")
    assert cfg.effective_base_url() is None and cfg.effective_api_key() is None


def test_environment_overrides_base_url_and_supplies_the_key(monkeypatch):
    monkeypatch.setenv("HYDRALM_GENERATOR_BASE_URL", "http://10.0.0.5:8000/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback")
    cfg = GeneratorConfig.from_dict({"backend": "openai"})  # valid: the URL comes from the env
    assert cfg.effective_base_url() == "http://10.0.0.5:8000/v1"
    assert cfg.effective_api_key() == "sk-fallback"
    monkeypatch.setenv("HYDRALM_GENERATOR_API_KEY", "hk")
    assert cfg.effective_api_key() == "hk"
    assert GeneratorConfig(api_key="mine").effective_api_key() == "mine"


def test_api_key_is_never_dumped():
    cfg = GeneratorConfig(backend="openai", base_url="https://api.openai.com/v1/",
                          api_key="sk-secret")
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in dump_yaml(cfg)
    assert "api_key:" not in dump_yaml(cfg)  # a dumped config never carries a key, even masked
    assert cfg.base_url == "https://api.openai.com/v1"


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def test_cpu_llm_config_kwargs_follow_the_verified_recipe(model_dir):
    cfg = GeneratorConfig.from_dict({"model": "tiny", "embedded": {
        "model_dir": str(model_dir), "cpu_kvcache_gib": 2, "max_model_len": 512,
        "env_vars": {"TMPDIR": "/tmp/x"}, "engine_kwargs": {"max_num_seqs": 64}}})
    kw = llm_config_kwargs(cfg)
    assert kw == {
        "model_loading_config": {"model_id": "tiny", "model_source": str(model_dir.resolve())},
        "engine_kwargs": {"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True,
                          "max_num_seqs": 64},
        "deployment_config": {"ray_actor_options": {"num_cpus": 0}},
        "placement_group_config": {"bundles": [{"CPU": 1}]},
        "accelerator_config": {"kind": "cpu"},
        "runtime_env": {"env_vars": {"TMPDIR": "/tmp/x", "HF_HUB_OFFLINE": "1",
                                     "VLLM_CPU_KVCACHE_SPACE": "2"}},
    }


def test_cpu_reserved_cores_reach_the_engine_environment(model_dir):
    cfg = GeneratorConfig.from_dict({"embedded": {"model_dir": str(model_dir),
                                                  "cpu_reserved_cores": 0}})
    assert llm_config_kwargs(cfg)["runtime_env"]["env_vars"]["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_gpu_llm_config_kwargs_spread_replicas_over_the_gpus():
    cfg = GeneratorConfig.from_dict({"embedded": {
        "model_dir": "s3://models/llama", "device": "gpu", "dtype": "float16",
        "tensor_parallel_size": 2, "num_gpus": 8, "accelerator_type": "H100",
        "max_model_len": 4096}})
    kw = llm_config_kwargs(cfg)
    assert kw["model_loading_config"]["model_source"] == "s3://models/llama"
    assert kw["engine_kwargs"] == {"dtype": "float16", "max_model_len": 4096,
                                   "tensor_parallel_size": 2}
    assert kw["deployment_config"] == {"num_replicas": 4}
    assert kw["placement_group_config"] == {"bundles": [{"GPU": 1}, {"GPU": 1}]}
    assert (kw["accelerator_config"], kw["accelerator_type"]) == ({"kind": "gpu"}, "H100")
    assert "VLLM_CPU_KVCACHE_SPACE" not in kw["runtime_env"]["env_vars"]


@pytest.mark.parametrize("embedded, kind", [
    ({}, "cpu"),
    ({"device": "gpu", "tensor_parallel_size": 2, "num_gpus": 4, "accelerator_type": "H100"},
     "gpu"),
])
def test_llm_config_kwargs_are_accepted_by_ray_serve_llm(model_dir, embedded, kind):
    llm = pytest.importorskip("ray.serve.llm")  # the installed API, whatever its version
    cfg = GeneratorConfig.from_dict({"embedded": {"model_dir": str(model_dir), **embedded}})
    config = llm.LLMConfig(**llm_config_kwargs(cfg))
    assert config.model_id == "smollm2"
    assert config.accelerator_config.kind == kind


def test_missing_model_dir_fails_at_start(tmp_path):
    cfg = GeneratorConfig.from_dict({"embedded": {"model_dir": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="must be an HF model directory.*nope"):
        resolve_model_dir(cfg)


def test_prepare_smollm2_reuses_a_complete_directory(tmp_path):
    target = tmp_path / SMOLLM2_DIRNAME
    target.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (target / name).write_text("{}")
    assert prepare_smollm2(tmp_path) == target.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == [SMOLLM2_DIRNAME]  # nothing rebuilt
