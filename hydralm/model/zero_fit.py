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

k is chosen per model kind on the training users themselves (`train.zero_fit_users: auto`,
`leave_one_out`): each training user is routed as if new (their own head left out) and the
mixture's scores of their own label pairs are compared with the labels' scores (pairwise ordering
accuracy within each query); the k of `K_GRID` (and every other training user) with the best mean
over users wins, ties to the smaller k, but only by more than `SE_MARGIN` standard errors of its
paired per-user gain over `DEFAULT_K` (`pick_k`; `hydralm.stats.clear_gain`, the test the
selection guard's threshold passes too): the proxy is noisy (on synth-title's 16 training users
the reranker's accuracy moves within 0.49-0.51 for k of 1 to 8), and the best of several noisy
means would otherwise pick an arbitrary k. No test user and no held-out query is
involved.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

from hydralm.retrieval.bm25 import tokenize
from hydralm.stats import SE_MARGIN, clear_gain

__all__ = ["DEFAULT_DIM", "DEFAULT_K", "K_GRID", "Profile", "Router",
           "history_profile", "leave_one_out", "pairwise_accuracy", "pick_k"]

DEFAULT_DIM = 4096
DEFAULT_K = 4
# the k tried by leave_one_out: those below the other training users' number, and all of them
K_GRID: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)

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
    # per model kind: its own k (chosen by leave_one_out), and how it was chosen
    k_by_kind: Mapping[str, int] = field(default_factory=dict)
    choice: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(self.users) != self.vectors.shape[0] or self.vectors.ndim != 2:
            raise ValueError(f"{len(self.users)} users against vectors of shape "
                             f"{tuple(self.vectors.shape)}")
        if self.idf.shape != (self.vectors.shape[1],):
            raise ValueError(f"idf of shape {tuple(self.idf.shape)} against dim "
                             f"{self.vectors.shape[1]}")
        if self.k < 1 or any(k < 1 for k in self.k_by_kind.values()):
            raise ValueError(f"k must be at least 1, got {self.k!r} and {dict(self.k_by_kind)!r}")

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

    def k_for(self, kind: str | None) -> int:
        """How many heads the mixture of model `kind` takes."""
        return self.k_by_kind.get(kind, self.k) if kind is not None else self.k

    def mixture(self, profile: Profile, exclude: str | None = None, *,
                kind: str | None = None, k: int | None = None) -> list[tuple[str, float]]:
        """(training user, weight) of the zero-fit head for `profile`, heaviest first, weights
        summing to 1; [] when no training user shares a term with it. `exclude`: a user never
        mixed in (a training user routed as if new); `kind`: the model kind whose k applies
        (`k` overrides it)."""
        if not profile or not self.users:
            return []
        query = _normalise((_dense(profile, self.dim) * self.idf)[None])[0]
        cosine = self.vectors @ query                                        # [U]
        if exclude is not None and exclude in self.users:
            cosine[self.users.index(exclude)] = 0.0
        top = torch.topk(cosine, min(k or self.k_for(kind), len(self.users)))
        picked = [(self.users[i], float(c)) for c, i in zip(top.values.tolist(),
                                                            top.indices.tolist(), strict=True)
                  if c > 0.0]
        total = sum(c for _, c in picked)
        return [(u, c / total) for u, c in picked]

    def state(self) -> dict[str, Tensor]:
        """Tensors for the base bundle (under the prefix `zero_fit.`)."""
        return {"vectors": self.vectors.to(torch.float16), "idf": self.idf}

    def config(self) -> dict:
        out: dict[str, Any] = {"users": list(self.users), "k": self.k, "dim": self.dim}
        if self.k_by_kind:
            out["k_by_kind"] = dict(self.k_by_kind)
        if self.choice is not None:
            out["choice"] = dict(self.choice)
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], config: Mapping) -> Router:
        return cls(tuple(config["users"]), state["vectors"].float(), state["idf"].float(),
                   int(config["k"]), {str(kind): int(k) for kind, k in
                                      config.get("k_by_kind", {}).items()},
                   config.get("choice"))


def pairwise_accuracy(scores: Sequence[float], targets: Sequence[float]) -> tuple[int, int]:
    """(pairs ordered like `targets`, pairs with different targets) among one query's rows."""
    right = total = 0
    for a, b in combinations(range(len(targets)), 2):
        if targets[a] == targets[b]:
            continue
        total += 1
        right += (scores[a] - scores[b]) * (targets[a] - targets[b]) > 0
    return right, total


def leave_one_out(router: Router, profiles: Mapping[str, Profile], head_scores: Tensor,
                  users: Sequence[str], groups: Mapping[str, Sequence[Sequence[int]]],
                  targets: Sequence[float], *,
                  grid: Sequence[int] = K_GRID) -> dict[int, dict[str, float]]:
    """Per k, each of `users`' pairwise accuracy (`pairwise_accuracy`, pooled over the user's
    queries) of the k-mixture's scores of the user's own rows, the user left out of the mixture
    (users without a mixture or a pair are absent). `head_scores[i, r]` is `users[i]`'s head's
    score of row r; `groups[u]` the row indices of each of u's queries; `targets[r]` the label's
    score of row r. The k of `grid` beyond the users less one are left out and that many (every
    other user) is tried too."""
    index = {u: i for i, u in enumerate(users)}
    others = max(1, len(users) - 1)
    ks = sorted({k for k in grid if k < others} | {others})
    out: dict[int, dict[str, float]] = {}
    for k in ks:
        per_user = {}
        for user in users:
            mix = [(index[t], w) for t, w in router.mixture(profiles[user], exclude=user, k=k)
                   if t in index]
            if not mix:
                continue
            scores = sum(w * head_scores[i] for i, w in mix).tolist()
            right = total = 0
            for rows in groups.get(user, ()):
                r, t = pairwise_accuracy([scores[j] for j in rows], [targets[j] for j in rows])
                right, total = right + r, total + t
            if total:
                per_user[user] = right / total
        if per_user:
            out[k] = per_user
    return out


def pick_k(by_user: Mapping[int, Mapping[str, float]], *, default: int = DEFAULT_K,
           margin: float = SE_MARGIN) -> int:
    """The k of `leave_one_out`'s result with the best mean accuracy (ties to the smaller), kept
    only when its paired gain over `default` (same users) exceeds `margin` standard errors of
    the mean; else `default` (the nearest k tried, when `default` itself was not)."""
    means = {k: sum(v.values()) / len(v) for k, v in by_user.items()}
    best = max(sorted(means), key=lambda k: (round(means[k], 12), -k))
    fallback = min(sorted(means), key=lambda k: abs(k - default))
    shared = sorted(set(by_user[best]) & set(by_user[fallback]))
    gains = [by_user[best][u] - by_user[fallback][u] for u in shared]
    return best if best != fallback and clear_gain(gains, margin) else fallback


def _normalise(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

