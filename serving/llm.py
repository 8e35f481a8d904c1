"""The embedded generator as a Ray Serve application: vLLM behind Ray Serve LLM's OpenAI routes.

`serve run serving.llm:build_llm_app model=smollm2` or a RayService `import_path:
serving.llm:build_llm_app` with `args:` holding a GeneratorConfig mapping. The engine settings
come from `hydralm.generator.llm_config_kwargs`; this module only wires them into Ray.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.llm import LLMConfig, build_openai_app

from hydralm.generator import GeneratorConfig, llm_config_kwargs

__all__ = ["build_llm_app"]


def build_llm_app(args: dict[str, Any]) -> Application:
    """Validate `args` as a GeneratorConfig and build the OpenAI-compatible LLM app.

    The ingress takes no CPU: on a 2-core machine a 1-CPU ingress never schedules beside the
    engine's placement group.
    """
    cfg = GeneratorConfig.from_dict(args, source="build_llm_app args")
    return build_openai_app({
        "llm_configs": [LLMConfig(**llm_config_kwargs(cfg))],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
    })
