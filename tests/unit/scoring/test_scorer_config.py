"""ScorerArgs validation and what it hands to Serve; RemotePairScorer's routing key."""

from __future__ import annotations

import asyncio
import re

import pytest

from hydralm.errors import ConfigError
from hydralm.pipeline import PairScores
from hydralm.scoring import user_bucket
from serving.scorer import RemotePairScorer
from serving.scorer_config import ScorerArgs


@pytest.mark.parametrize("data, message", [
    ({"num_buckets": 0}, "num_buckets: Input should be greater than or equal to 1 (got 0)"),
    ({"max_buckets_per_replica": 9}, "max_buckets_per_replica (9) must not exceed num_buckets"),
    ({"max_batch_size": 256, "max_concurrent_batches": 4}, "must not exceed max_ongoing_requests"),
    ({"device": "cuda"}, "device 'cuda' needs num_gpus > 0"),
    ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ({"head_cache_capacity": 0}, "head_cache_capacity: Input should be greater than or equal to 1"),
    ({"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}},
     "min_replicas (3) must not exceed max_replicas (2)"),
    ({"num_replica": 2}, "num_replica: Extra inputs are not permitted"),
])
def test_bad_args_name_the_field(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ScorerArgs.from_dict(data)


@pytest.mark.parametrize("data, buckets_per_replica", [
    ({}, 8),                                               # 1 replica holds every bucket
    ({"num_replicas": 2, "num_buckets": 8}, 5),            # ceil(8 / 2) + 1
    ({"num_replicas": 4, "num_buckets": 8}, 3),
    ({"autoscaling_config": {"min_replicas": 2}, "num_buckets": 16}, 9),
    ({"num_replicas": 4, "max_buckets_per_replica": 2}, 2),
])
def test_buckets_per_replica(data, buckets_per_replica):
    assert ScorerArgs.from_dict(data).buckets_per_replica() == buckets_per_replica


def test_deployment_options_follow_the_args():
    fixed = ScorerArgs(num_replicas=3, num_cpus=0.5, num_gpus=1.0).deployment_options()
    assert fixed == {"name": "Scorer", "max_ongoing_requests": 512, "num_replicas": 3,
                     "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 1.0}}
    scaled = ScorerArgs.from_dict({"autoscaling_config": {"max_replicas": 6}}).deployment_options()
    assert "num_replicas" not in scaled and scaled["autoscaling_config"]["max_replicas"] == 6


class RecordingHandle:
    """Stands in for a DeploymentHandle (the real one needs a running Serve): records the
    multiplexed model id each call is routed with."""

    def __init__(self):
        self.routed: list[tuple[str, str]] = []
        self.asked: list[tuple] = []

    def options(self, *, multiplexed_model_id: str):
        handle = self

        class Method:
            async def remote(self, kind, user_id, firsts, seconds, *, profile=None,
                             prefer="user"):
                handle.routed.append((multiplexed_model_id, user_id))
                handle.asked.append((profile, prefer))
                return PairScores([0.5] * len(firsts), "user")

        class Routed:
            score = Method()

        return Routed()


def test_remote_scorer_routes_each_user_by_its_bucket():
    handle = RecordingHandle()
    client = RemotePairScorer(handle, num_buckets=4)

    async def run():
        for user in ["ann", "bob", "ann"]:
            await client.score("reranker", user, ["q"], ["i"])
        await client.score("adapter", "cat", ["q"], ["i"], profile=((3, 1),), prefer="zero_fit")

    asyncio.run(run())
    assert handle.routed == [(user_bucket(u, 4), u) for u in ["ann", "bob", "ann", "cat"]]
    # the history profile and the head asked for travel to the replica with the pairs
    assert handle.asked == [(None, "user")] * 3 + [(((3, 1),), "zero_fit")]


@pytest.mark.parametrize("data, device, pairs", [
    ({}, "cpu", 8),                    # small encoder calls are fastest per pair on CPU
    ({}, "cuda", 512),
    ({}, "cuda:1", 512),
    ({"max_forward_pairs": 64}, "cpu", 64),
    ({"max_forward_pairs": 64}, "cuda", 64),
])
def test_encoder_call_size_defaults_by_device(data, device, pairs):
    assert ScorerArgs.from_dict(data).forward_pairs(device) == pairs


def test_the_default_batches_fit_the_requests_a_replica_holds():
    args = ScorerArgs()
    assert args.max_batch_size * args.max_concurrent_batches <= args.max_ongoing_requests
