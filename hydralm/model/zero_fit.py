"""Zero-fit heads: personalization for a user who has history but no fitted head yet, without a
gradient step.

A user's head is a mixture of the heads of the training users whose histories are most like
theirs. The training users' heads were trained jointly with the base (the paper's factorization),
so they are the shared heads; a new user is routed over them by history:

```
profile(user)   = hashed term counts of the user's history items (task.item_text, BM25's tokens)
v(user)         = L2-normalised (1 + log tf) * idf over `dim` hashed terms; idf from the
                  training users' histories (one document per user)
top_k           = the k training users with the highest cosine v(user) . v(t), cosine > 0
score(pair)     = sum_t w_t * softmax(head_t(base(pair)))[1],  w_t = cosine_t / sum(cosines)
```

The mixture combines the heads' outputs (probabilities), never their weights: independently
initialised heads do not share a parameterization. A user whose history shares no term with any
training user gets no mixture (the global head serves them). `Router` is built from the training
users' histories when the bases are published and stored in the base bundle
(`training/bases.py`); the scorer loads it with the bases (hydralm/scoring). Routing is by text
alone, so it costs one sparse dot product per request and no base forward.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from hydralm.retrieval.bm25 import tokenize

__all__ = ["DEFAULT_DIM", "DEFAULT_K", "Profile", "Router", "history_profile"]

DEFAULT_DIM = 4096
DEFAULT_K = 4

# (hashed term, count) pairs, sorted by term: small, hashable and JSON-able (it crosses from the
# ingress to the scorer replica with each request)
Profile = tuple[tuple[int, int], ...]


def _term_slot(term: str, dim: int) -> int:
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % dim


def history_profile(texts: Iterable[str], dim: int = DEFAULT_DIM) -> Profile:
    """The hashed term counts of a user's history texts (`task.item_text` of each item)."""
    counts = Counter(_term_slot(t, dim) for text in texts for t in tokenize(text))
    return tuple(sorted(counts.items()))


def _dense(profile: Profile, dim: int) -> Tensor:
    v = torch.zeros(dim)
    for slot, count in profile:
        if not 0 <= slot < dim or count < 1:
            raise ValueError(f"profile entry ({slot}, {count}) is not a term slot in [0, {dim}) "
                             "with a positive count")
        v[slot] = 1.0 + math.log(count)
    return v


@dataclass(frozen=True)
class Router:
    """Training users' history vectors, and how many of them a zero-fit head mixes."""

    users: tuple[str, ...]
    vectors: Tensor         # [U, dim] float32, rows L2-normalised tf-idf
    idf: Tensor             # [dim] float32
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        if len(self.users) != self.vectors.shape[0] or self.vectors.ndim != 2:
            raise ValueError(f"{len(self.users)} users against vectors of shape "
                             f"{tuple(self.vectors.shape)}")
        if self.idf.shape != (self.vectors.shape[1],):
            raise ValueError(f"idf of shape {tuple(self.idf.shape)} against dim "
                             f"{self.vectors.shape[1]}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k!r}")

    @property
    def dim(self) -> int:
        return int(self.idf.shape[0])

    @classmethod
    def from_profiles(cls, profiles: Mapping[str, Profile], *, dim: int = DEFAULT_DIM,
                      k: int = DEFAULT_K) -> Router:
        """A router over these training users (user -> `history_profile`)."""
        users = tuple(sorted(profiles))
        tf = torch.stack([_dense(profiles[u], dim) for u in users]) if users else torch.zeros(
            0, dim)
        df = (tf > 0).sum(dim=0).float()
        idf = torch.log((1.0 + len(users)) / (1.0 + df)) + 1.0          # smoothed, never 0
        return cls(users, _normalise(tf * idf), idf, k)

    def mixture(self, profile: Profile, exclude: str | None = None) -> list[tuple[str, float]]:
        """(training user, weight) of the zero-fit head for `profile`, heaviest first, weights
        summing to 1; [] when no training user shares a term with it. `exclude`: a user never
        mixed in (a training user routed as if new)."""
        if not profile or not self.users:
            return []
        query = _normalise((_dense(profile, self.dim) * self.idf)[None])[0]
        cosine = self.vectors @ query                                        # [U]
        if exclude is not None and exclude in self.users:
            cosine[self.users.index(exclude)] = 0.0
        top = torch.topk(cosine, min(self.k, len(self.users)))
        picked = [(self.users[i], float(c)) for c, i in zip(top.values.tolist(),
                                                            top.indices.tolist(), strict=True)
                  if c > 0.0]
        total = sum(c for _, c in picked)
        return [(u, c / total) for u, c in picked]

    def state(self) -> dict[str, Tensor]:
        """Tensors for the base bundle (under the prefix `zero_fit.`)."""
        return {"vectors": self.vectors.to(torch.float16), "idf": self.idf}

    def config(self) -> dict:
        return {"users": list(self.users), "k": self.k, "dim": self.dim}

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], config: Mapping) -> Router:
        return cls(tuple(config["users"]), state["vectors"].float(), state["idf"].float(),
                   int(config["k"]))


def _normalise(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

