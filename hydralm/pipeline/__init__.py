"""HYDRA inference: the interfaces it is built from and the per-query pipeline."""

from hydralm.pipeline.candidates import CandidateSampling
from hydralm.pipeline.interfaces import Generator, HistoryStore, ModelKind, PairScorer, PairScores
from hydralm.pipeline.pairs import ADAPTER_PAIRS, adapter_context, adapter_pairs, reranker_pairs
from hydralm.pipeline.personalize import METHODS, MethodSpec, Personalizer, PersonalizeResult
from hydralm.pipeline.selection import SelectionGuard

__all__ = [
    "ADAPTER_PAIRS",
    "METHODS",
    "CandidateSampling",
    "Generator",
    "HistoryStore",
    "MethodSpec",
    "ModelKind",
    "PairScorer",
    "PairScores",
    "PersonalizeResult",
    "Personalizer",
    "SelectionGuard",
    "adapter_context",
    "adapter_pairs",
    "reranker_pairs",
]
