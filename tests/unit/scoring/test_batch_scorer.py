"""BatchScorer on a real registry (tiny BERT bases, random heads): one base forward per kind for
rows of many users, the same scores as scoring each user alone, and registry changes picked up
without a new scorer."""

from __future__ import annotations

import asyncio

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.errors import ArtifactError
from hydralm.model import BaseEncoder, HeadBank
from hydralm.scoring import (
    BatchScorer,
    LocalPairScorer,
    PairGroup,
    RetryPolicy,
    ScoreRow,
    load_bundle_encoders,
    publish_random_registry,
    random_heads,
)

USERS = ["ann", "bob", "cyd", "dee", "eve"]   # the users the registry_dir fixture has
FAST = RetryPolicy(attempts=3, backoff_s=0.0, max_backoff_s=0.0)


class CountingRegistry(Registry):
    """The real registry, counting head loads; `flaky` users fail their first load with OSError."""

    def __init__(self, root, flaky=()):
        super().__init__(str(root))
        self.head_loads: list[tuple[str, str]] = []
        self.flaky = set(flaky)

    def load_head(self, kind, user_id):
        self.head_loads.append((kind, user_id))
        if user_id in self.flaky:
            self.flaky.discard(user_id)
            raise OSError(f"connection reset reading {user_id}")
        return super().load_head(kind, user_id)


def rows_for(users, kinds=("reranker", "adapter"), per_user=3):
    return [ScoreRow(kind, user, f"query of {user} number {i}",
                     f"item {i} said by {user} " * (i + 1))
            for kind in kinds for user in users for i in range(per_user)]


def expected_scores(registry_dir, rows):
    """Reference: each row scored alone by the bundle's encoder and the head the registry has."""
    registry = Registry(str(registry_dir))
    encoders = load_bundle_encoders(registry, ["reranker", "adapter"], registry.base_version())
    out = []
    for row in rows:
        own = registry.has_head(row.kind, row.user_id)
        head = (registry.load_head(row.kind, row.user_id) if own
                else registry.load_global_head(row.kind))
        bank = HeadBank.from_states([head], dropout=0.0).eval()
        with torch.no_grad():
            x = encoders[row.kind].embed([row.first], [row.second])            # [1, d]
            logits = bank(x, torch.zeros(1, dtype=torch.long))                 # [1, 2]
        out.append(float(torch.softmax(logits, -1)[0, 1]))
    return out


def test_one_base_forward_per_kind_for_rows_of_five_users(registry_dir):
    scorer = BatchScorer(Registry(str(registry_dir)))
    scorer.load()
    calls = {"reranker": 0, "adapter": 0}
    for kind in calls:
        def hook(module, args, kwargs, output, kind=kind):
            calls[kind] += 1
        scorer.encoder(kind).register_forward_hook(hook, with_kwargs=True)
    rows = rows_for(USERS)
    results = asyncio.run(scorer.score_rows(rows))
    assert calls == {"reranker": 1, "adapter": 1}
    assert [(f.kind, f.pairs, f.heads) for f in scorer.forwards] in (
        [("reranker", 15, 5), ("adapter", 15, 5)], [("adapter", 15, 5), ("reranker", 15, 5)])
    assert {r.head for r in results} == {"user"}


def test_batched_scores_equal_scoring_each_user_alone(registry_dir):
    rows = rows_for(USERS + ["stranger"])
    # fp32 (as the reference): equal to 1e-5 (bf16 is compared with fp32 in test_precision.py)
    batched = asyncio.run(BatchScorer(Registry(str(registry_dir)), precision="fp32")
                          .score_rows(rows))

    async def one_by_one():
        scorer = BatchScorer(Registry(str(registry_dir)), precision="fp32")
        out = []
        for user in USERS + ["stranger"]:
            mine = [r for r in rows if r.user_id == user]
            out += list(zip(mine, await scorer.score_rows(mine), strict=True))
        return {(r.kind, r.user_id, r.first): s for r, s in out}

    alone = asyncio.run(one_by_one())
    reference = expected_scores(registry_dir, rows)
    for row, got, want in zip(rows, batched, reference, strict=True):
        single = alone[(row.kind, row.user_id, row.first)]
        assert got.score == pytest.approx(single.score, abs=1e-5)
        assert got.score == pytest.approx(want, abs=1e-5)
        assert got.head == single.head == ("global" if row.user_id == "stranger" else "user")
    assert len({round(r.score, 4) for r in batched}) > len(USERS)   # heads really differ


def test_concurrent_callers_share_forward_passes_and_one_load_per_head(registry_dir):
    registry = CountingRegistry(registry_dir)
    scorer = LocalPairScorer(registry)
    scorer.load()

    async def run():
        calls = [scorer.score("reranker", user, ["q"] * 4, [f"item {i}" for i in range(4)])
                 for user in ["ann"] * 10 + ["bob"] * 10]
        return await asyncio.gather(*calls)

    results = asyncio.run(run())
    assert sorted(registry.head_loads) == [("reranker", "ann"), ("reranker", "bob")]
    assert {r.head for r in results} == {"user"} and all(len(r.scores) == 4 for r in results)
    assert sum(f.pairs for f in scorer.forwards) == 80 and len(scorer.forwards) <= 2


def test_transient_load_error_is_retried(registry_dir):
    registry = CountingRegistry(registry_dir, flaky={"cyd"})
    scorer = LocalPairScorer(registry, retry=FAST)
    result = asyncio.run(scorer.score("adapter", "cyd", ["p"], ["c"]))
    assert result.head == "user"
    assert registry.head_loads == [("adapter", "cyd"), ("adapter", "cyd")]
    assert scorer.cache_stats()["adapter"].retries == 1


def test_a_corrupt_head_fails_only_its_users_groups(registry_dir):
    registry = Registry(str(registry_dir))
    key = registry.head_index("reranker")["bob"].key
    (registry_dir / key).write_bytes(b"not a head")
    scorer = BatchScorer(registry, retry=FAST)
    groups = [PairGroup.of("reranker", u, ["q"], ["i"]) for u in ("ann", "bob", "cyd")]
    outcomes = asyncio.run(scorer.score_groups(groups))
    assert isinstance(outcomes[1], ArtifactError) and "checksum mismatch" in str(outcomes[1])
    assert [o.head for o in (outcomes[0], outcomes[2])] == ["user", "user"]


def test_new_heads_are_picked_up_without_a_new_scorer(registry_dir):
    registry = Registry(str(registry_dir))
    scorer = LocalPairScorer(registry, poll_interval_s=0.0)
    version = registry.base_version()

    async def run():
        before = await scorer.score("adapter", "ann", ["p"], ["cand"])
        newcomer = await scorer.score("adapter", "zed", ["p"], ["cand"])
        new_ann, zed_head = random_heads(2, scorer.encoder("adapter").dim, seed=99)
        registry.save_heads("adapter", {"ann": new_ann, "zed": zed_head}, version)
        after = await scorer.score("adapter", "ann", ["p"], ["cand"])
        fitted = await scorer.score("adapter", "zed", ["p"], ["cand"])
        return before, newcomer, after, fitted

    before, newcomer, after, fitted = asyncio.run(run())
    assert newcomer.head == "global" and fitted.head == "user"
    assert before.head == after.head == "user"
    assert after.scores[0] != pytest.approx(before.scores[0], abs=1e-4)
    assert scorer.cache_stats()["adapter"].loads == 3   # ann twice (changed), zed once


def test_a_new_base_replaces_the_encoders_and_drops_every_cached_head(registry_dir, tiny_config):
    registry = Registry(str(registry_dir))
    scorer = LocalPairScorer(registry, poll_interval_s=0.0)

    async def run():
        old = await scorer.score("reranker", "ann", ["q"], ["item"])
        old_version = scorer.base_version
        retrained = BaseEncoder.from_config(tiny_config)
        with torch.no_grad():
            next(retrained.parameters()).mul_(1.5)     # a different base: new content, new version
        publish_random_registry(registry, ["ann"], config=tiny_config, seed=7,
                                encoders={"reranker": retrained, "adapter": retrained})
        new = await scorer.score("reranker", "ann", ["q"], ["item"])
        return old, old_version, new

    old, old_version, new = asyncio.run(run())
    assert scorer.base_version == registry.base_version() != old_version
    assert new.head == "user" and new.scores[0] != pytest.approx(old.scores[0], abs=1e-4)


def test_an_unreadable_manifest_does_not_stop_scoring(registry_dir):
    registry = Registry(str(registry_dir))
    scorer = LocalPairScorer(registry, poll_interval_s=0.0)

    async def run():
        first = await scorer.score("reranker", "ann", ["q"], ["item"])
        (registry_dir / "manifest.json").write_text("{torn")
        assert await scorer.refresh(force=True) is False
        return first, await scorer.score("reranker", "ann", ["q"], ["item"])

    first, second = asyncio.run(run())
    assert first == second and first.head == "user"


@pytest.mark.parametrize("kwargs, message", [
    ({"max_forward_pairs": 0}, "max_forward_pairs must be at least 1, got 0"),
    ({"kinds": ("reranker", "ranker")}, "kinds must be a non-empty subset"),
    ({"kinds": ()}, "kinds must be a non-empty subset"),
])
def test_bad_settings_are_rejected(registry_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchScorer(Registry(str(registry_dir)), **kwargs)
