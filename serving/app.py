"""`build_app(args) -> Application`: the ONE entry point of the hydralm serving app.

Used alike by `serve run configs/serve.yaml` (import path `serving.app:build_app`), `hydralm
serve`, the tests and the KubeRay RayService. It validates `args` as `ServeArgs` and loads the
API-key table first (so a bad config fails before anything is deployed), then wires the ingress
to the Scorer deployment by handle. The generator is reached over HTTP at its OpenAI base URL:
the embedded LLM app on the same Serve instance (serving.llm:build_llm_app) or an external one.

    HydraIngress (FastAPI, this module) --handle--> Scorer (serving/scorer.py: bases + user heads)
          |                                   \\--> history store (SQLite, or PostgreSQL shared
          |                                        by every replica: serving.config.open_history)
          \\--HTTP--> generator (/llm/v1 on this Serve instance, or an external endpoint)
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from hydralm.generator import GeneratorClient
from hydralm.tasks import get_task
from serving.auth import Authenticator, KeyGrant, load_key_table
from serving.config import ServeArgs
from serving.ingress import create_api
from serving.metrics import ServingMetrics
from serving.scorer import RemotePairScorer, build_scorer
from serving.seeding import seed_history
from serving.service import HydraService, PipelineSettings, ReadinessCheck

__all__ = ["HydraIngress", "build_app"]

log = logging.getLogger(__name__)


def _generator_probe(base_url: str, headers: dict[str, str]) -> ReadinessCheck:
    """Ready when the generator answers GET /models with 200."""

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=3.0) as client:
            resp = await client.get(f"{base_url}/models", headers=headers)
        if resp.status_code != 200:
            raise ConnectionError(f"GET {base_url}/models answered {resp.status_code}")

    return probe


def _scorer_probe(handle: DeploymentHandle) -> ReadinessCheck:
    """Ready when a Scorer replica answers its health check (its bases are loaded)."""

    async def probe() -> None:
        await handle.check_health.remote()

    return probe


@serve.deployment
@serve.ingress()
class HydraIngress:
    """The HTTP ingress: FastAPI routes over a HydraService (one per replica)."""

    def __init__(self, args: ServeArgs, keys: dict[str, KeyGrant],
                 scorer: DeploymentHandle) -> None:
        self.args = args
        history = args.open_history()
        if args.base_history:
            seed_history(history, args.base_history, args.task)
        base_url = args.generator_base_url()
        generator = GeneratorClient(args.generator, base_url=base_url)
        key = args.generator.effective_api_key()
        checks = {"generator": _generator_probe(
                      base_url, {"Authorization": f"Bearer {key}"} if key else {}),
                  "scorer": _scorer_probe(scorer)}
        self.service = HydraService(
            task=get_task(args.task), scorer=RemotePairScorer(scorer, args.scorer.num_buckets),
            generator=generator, history=history, checks=checks,
            settings=PipelineSettings(model_name=args.model_name, method=args.method,
                                      sampling=args.sampling(),
                                      guard=args.selection_guard(),
                                      k_retrieve=args.k_retrieve, k_prompt=args.k_prompt))
        self.auth = Authenticator(keys, args.auth.rate_limit)
        self.metrics = ServingMetrics()
        log.info("hydralm ingress: task %s, generator %s, %d API keys, history %s",
                 args.task, base_url, len(keys), args.history_where())

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this after __init__ in each replica: the routes over this replica's
        service (serve.ingress late binding, so no app object exists at import time)."""
        return create_api(self.service, self.auth, self.args.limits, self.metrics)


def build_app(args: dict[str, Any]) -> Application:
    """Validate `args` (a ServeArgs mapping) and bind the ingress to a Scorer deployment."""
    cfg = ServeArgs.from_dict(args, source="hydralm serve args")
    get_task(cfg.task)
    # Hashes only travel to the replicas; the key source need not be mounted there.
    keys = load_key_table(cfg.auth)
    scorer = build_scorer(cfg.scorer_args())
    return HydraIngress.options(**cfg.ingress.deployment_options()).bind(cfg, keys, scorer)
