"""The two baselines of benchmarks/serve_load.py, as Ray Serve deployments.

- PerUserBatching: the bases held once and users' heads in an LRU (hydralm's BatchScorer without
  cross-caller merging), but Serve multiplexes by user id, and @serve.batch splits batches by
  multiplexed id: every forward pass holds one user's requests.
- PerUserModel: one multiplexed model per user, as Serve's model-multiplexing guide does: both
  bases and the user's heads are loaded from the registry per user, an LRU of a few per replica.
"""

from __future__ import annotations

import asyncio

import torch
from ray import serve

from hydralm.artifacts import Registry
from hydralm.scoring import BatchScorer, PairGroup, load_bundle_encoders
from hydralm.scoring.forward import ForwardJob, score_jobs

__all__ = ["PerUserBatching", "PerUserModel"]


def _pairs_in(items) -> int:
    return sum(len(item[-1]) if isinstance(item, tuple) else len(item) for item in items)


@serve.deployment(max_ongoing_requests=512, ray_actor_options={"num_cpus": 0})
class PerUserBatching:
    """Shared bases and head LRU; Serve multiplexes by user id, so batches are per user."""

    def __init__(self, registry_uri: str, threads: int, users: int, forward_pairs: int,
                 precision: str = "auto") -> None:
        torch.set_num_threads(threads)
        self.scorer = BatchScorer(Registry(registry_uri), coalesce=False,
                                  cache_capacity=2 * users, max_forward_pairs=forward_pairs,
                                  precision=precision)
        self.scorer.load()

        async def hold(user_id: str) -> str:      # heads live in the scorer's LRU
            return user_id

        self._hold = serve.multiplexed(max_num_models_per_replica=2 * users)(hold)
        self._batched = serve.batch(max_batch_size=128, batch_wait_timeout_s=0.005,
                                    max_concurrent_batches=4, batch_size_fn=_pairs_in)(
            self._run)

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        await self._hold(serve.get_multiplexed_model_id())
        outcome = await self._batched(PairGroup.of(kind, user_id, firsts, seconds))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _run(self, groups):
        return await self.scorer.score_groups(groups)

@serve.deployment(max_ongoing_requests=512, ray_actor_options={"num_cpus": 0})
class PerUserModel:
    """One multiplexed model per user: both bases and the user's heads, loaded per user."""

    def __init__(self, registry_uri: str, threads: int, models: int, forward_pairs: int,
                 precision: str = "auto") -> None:
        torch.set_num_threads(threads)
        self.registry = Registry(registry_uri)
        self.forward_pairs, self.precision = forward_pairs, precision
        self.building = 0

        async def load(user_id: str) -> dict:   # a plain function: Serve sets attributes on it
            return await asyncio.to_thread(self._build, user_id)

        self._model = serve.multiplexed(max_num_models_per_replica=models)(load)
        self._batched = serve.batch(max_batch_size=128, batch_wait_timeout_s=0.005,
                                    batch_size_fn=_pairs_in)(self._run)

    async def busy(self) -> int:
        """Models being built: a cancelled request does not stop its build thread."""
        return self.building

    def _build(self, user_id: str) -> dict:
        self.building += 1
        try:
            return self._build_model(user_id)
        finally:
            self.building -= 1

    def _build_model(self, user_id: str) -> dict:
        kinds = ("reranker", "adapter")
        encoders = load_bundle_encoders(self.registry, kinds, self.registry.base_version())
        for encoder in encoders.values():
            encoder.set_precision(self.precision)
        heads = {k: self.registry.load_head(k, user_id) if self.registry.has_head(k, user_id)
                 else self.registry.load_global_head(k) for k in kinds}
        return {k: (encoders[k], heads[k]) for k in kinds}

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        model = await self._model(serve.get_multiplexed_model_id())
        return await self._batched((model, kind, list(firsts), list(seconds)))

    async def _run(self, items):
        return await asyncio.to_thread(self._forward, items)

    def _forward(self, items):
        out = []
        for model, kind, firsts, seconds in items:   # one user per batch (Serve splits)
            encoder, head = model[kind]
            out.append(score_jobs(encoder, [ForwardJob(firsts, seconds, head)],
                                  max_pairs=self.forward_pairs)[0])
        return out
