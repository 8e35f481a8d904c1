"""The embedded generator as a Ray Serve application: vLLM behind Ray Serve LLM's OpenAI routes.

`serve run serving.llm:build_llm_app model=smollm2` or a RayService `import_path:
serving.llm:build_llm_app` with `args:` holding a GeneratorConfig mapping. The engine settings
come from `hydralm.generator.llm_config_kwargs`; this module only wires them into Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Ray Serve LLM's callback base class; LLMConfig.callback_config (public) takes a subclass of it.
from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.serve import Application
from ray.serve.llm import LLMConfig, build_openai_app

from hydralm.generator import GeneratorConfig, llm_config_kwargs

__all__ = ["LocalModelSource", "build_llm_app"]


class LocalModelSource(CallbackBase):
    """Skip Ray Serve LLM's per-node model download when the model source is a local directory.

    For a source that is neither a remote path nor mirrored, that step only hands the path back,
    but it runs as a task in a fresh worker process that imports vLLM: about 10 s of a 2-core
    machine's start-up. A remote source (s3://, gs://, a hub id absent here) still downloads.
    """

    async def on_before_node_init(self) -> None:
        source = self.llm_config.model_loading_config.model_source
        if isinstance(source, str) and "://" not in source and Path(source).is_dir():
            self.ctx.run_init_node = False


def build_llm_app(args: dict[str, Any]) -> Application:
    """Validate `args` as a GeneratorConfig and build the OpenAI-compatible LLM app.

    The ingress takes no CPU: on a 2-core machine a 1-CPU ingress never schedules beside the
    engine's placement group.
    """
    cfg = GeneratorConfig.from_dict(args, source="build_llm_app args")
    return build_openai_app({
        "llm_configs": [LLMConfig(**llm_config_kwargs(cfg),
                                  callback_config={"callback_class": LocalModelSource})],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
    })
