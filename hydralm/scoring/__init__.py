"""Scoring pairs with a shared base and per-user heads, for many users at once (no Ray here):
a head LRU with deduplicated, retried, verified loads; a batch scorer running one base forward per
model kind for rows of many users; and an in-process `PairScorer`."""

from hydralm.scoring.batch_scorer import BatchScorer, ForwardRecord
from hydralm.scoring.bundle import BUNDLE_FORMAT, load_bundle_encoders, publish_bundle
from hydralm.scoring.head_cache import CacheEvent, CacheStats, HeadCache, ResolvedHead, RetryPolicy
from hydralm.scoring.local import LocalPairScorer
from hydralm.scoring.registry_view import KindSnapshot, RegistryView, StaleBaseError
from hydralm.scoring.synthetic import publish_random_registry, random_heads
from hydralm.scoring.types import MODEL_KINDS, PairGroup, RowScore, ScoreRow, user_bucket

__all__ = [
    "BUNDLE_FORMAT",
    "MODEL_KINDS",
    "BatchScorer",
    "CacheEvent",
    "CacheStats",
    "ForwardRecord",
    "HeadCache",
    "KindSnapshot",
    "LocalPairScorer",
    "PairGroup",
    "RegistryView",
    "ResolvedHead",
    "RetryPolicy",
    "RowScore",
    "ScoreRow",
    "StaleBaseError",
    "load_bundle_encoders",
    "publish_bundle",
    "publish_random_registry",
    "random_heads",
    "user_bucket",
]
