"""Settings of label generation (the paper's defaults), validated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hydralm.config import StrictModel
from hydralm.pipeline.candidates import CandidateSampling

__all__ = ["LabelsConfig"]


class LabelsConfig(StrictModel):
    """How many pairs per query, how many pseudo-queries per user, how candidates are sampled."""

    k_retrieve: int = Field(
        10, ge=1, le=200, description="BM25 top-k history items per real query: the reranker's "
                                      "pairs, and the pool the adapter prompt's items come from.")
    pseudo_queries_per_user: int = Field(
        10, ge=0, le=10_000, description="History items per user used as pseudo-queries (their "
                                         "own label is the gold). A new user's fit data is made "
                                         "of these only, so fit needs at least 1.")
    similar_per_pseudo: int = Field(
        10, ge=1, le=200, description="Most similar other items paired with each pseudo-query.")
    max_queries_per_user: int | None = Field(
        None, ge=1, le=100_000, description="Cap on a training user's real queries (first ones "
                                            "in input order); None uses all of them.")
    n_candidates: int = Field(8, ge=1, le=128,
                              description="Candidates sampled per adapter prompt (the paper's N).")
    k_prompt: int = Field(4, ge=1, le=50, description="History items in an adapter RAG prompt.")
    adapter_temperature: float = Field(
        1.0, gt=0.0, le=2.0,
        description="Sampling temperature of every sampled adapter candidate (the personalized "
                    "prompt's and the bare query's); serving's candidate_temperature must match.")
    adapter_greedy_candidate: bool = Field(
        False, description="One candidate of each adapter prompt is its greedy answer (candidate "
                           "0, or 1 after the bare query's) and the others are sampled (the paper "
                           "samples all N). Serving and eval draw candidates the same way "
                           "(sampling()).")
    adapter_bare_greedy_candidate: bool = Field(
        False, description="Candidate 0 is the bare query's greedy answer (the zero-shot "
                           "answer, no history items in the prompt): the pool then always holds "
                           "what zero-shot answers. See hydralm/pipeline/candidates.py.")
    adapter_bare_samples: int = Field(
        0, ge=0, le=128, description="Of the n_candidates, this many are sampled from the bare "
                                     "query (at adapter_temperature) instead of the "
                                     "personalized prompt.")
    adapter_best_candidate_positive: bool = Field(
        False, description="Generation tasks: the best-scoring candidates (ROUGE against the gold, "
                           "above 0) are positives besides the gold (the paper labels only the "
                           "gold positive), so the adapter learns to rank the generator's answers.")
    adapter_retrieval: Literal["auto", "bm25", "rerank"] = Field(
        "auto", description="How the adapter prompt's k_prompt items are chosen from the BM25 "
                            "top k_retrieve: rerank uses the trained reranker in the registry "
                            "(a user's head, else the global head), bm25 keeps BM25 order, auto "
                            "reranks when the registry has a reranker and uses BM25 otherwise.")
    max_tokens: int | None = Field(
        None, ge=1, le=4096, description="Completion tokens per answer; None: 16 for "
                                         "classification/rating, 64 for generation (as serving).")
    seed: int = Field(0, ge=0, description="Seed of the pseudo-query draw (per user).")
    users_per_shard: int = Field(
        8, ge=1, le=100_000, description="Users per label shard: the unit of work, of progress "
                                         "and of resumption (a finished shard is never redone).")
    concurrent_shards: int = Field(
        2, ge=1, le=4096, description="Shards labelled at once (Ray Data actors); each bounds its "
                                      "generator calls by generator.max_concurrency.")

    @model_validator(mode="after")
    def _prompt_fits_pool(self) -> LabelsConfig:
        if self.k_prompt > self.k_retrieve:
            raise ValueError(f"labels.k_prompt ({self.k_prompt}) must not exceed "
                             f"labels.k_retrieve ({self.k_retrieve}): the prompt's items are "
                             "picked from the retrieved ones")
        fixed = (self.adapter_greedy_candidate + self.adapter_bare_greedy_candidate
                 + self.adapter_bare_samples)
        if fixed > self.n_candidates:
            raise ValueError(f"labels.adapter_bare_samples ({self.adapter_bare_samples}) plus the "
                             f"greedy candidates ({fixed - self.adapter_bare_samples}) exceed "
                             f"labels.n_candidates ({self.n_candidates})")
        return self

    def sampling(self) -> CandidateSampling:
        """How adapter candidates are drawn: for the labels and for the pipeline alike."""
        return CandidateSampling(n=self.n_candidates, temperature=self.adapter_temperature,
                                 greedy_first=self.adapter_greedy_candidate,
                                 bare_greedy=self.adapter_bare_greedy_candidate,
                                 bare_samples=self.adapter_bare_samples)

    def answer_tokens(self, kind: str) -> int:
        """Completion tokens per answer for a task kind (the serving pipeline's default)."""
        if self.max_tokens is not None:
            return self.max_tokens
        return 64 if kind == "generation" else 16
