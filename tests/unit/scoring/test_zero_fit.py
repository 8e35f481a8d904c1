"""Zero-fit heads: the router picks the training users whose histories are most like a user's,
the scorer mixes those users' heads' scores with the router's weights for a user who has history
and no head (or asks for it), and says so; the router travels in the base bundle (published by
training, carried over by a partial publish, added to an older bundle)."""

from __future__ import annotations

import asyncio

import pytest
import torch

from hydralm.artifacts import Registry
from hydralm.model import BaseEncoder, HeadBank
from hydralm.model.zero_fit import (
    Router,
    history_profile,
    leave_one_out,
    pairwise_accuracy,
    pick_k,
)
from hydralm.scoring import LocalPairScorer, load_bundle_encoders, publish_random_registry
from hydralm.scoring.bundle import bundle_router, load_bundle
from hydralm.scoring.forward import ForwardJob, MixtureHead, score_jobs

HISTORIES = {
    "ann": ["space robots on mars", "a robot learns to love", "alien war in space"],
    "bob": ["a wedding in paris", "two friends fall in love", "romantic comedy of errors"],
    "cyd": ["space station drama", "robots rebel against humans"],
    "dee": ["cooking show", "a baker in rome"],
}
TRAINING = ["ann", "bob", "cyd", "dee"]


def _router(k: int = 2) -> Router:
    return Router.from_profiles({u: history_profile(HISTORIES[u]) for u in TRAINING}, k=k)


def test_profiles_count_hashed_terms_without_stopwords():
    profile = history_profile(["The robot and the robot", "Robot!"])
    assert len(profile) == 1 and profile[0][1] == 3         # "the"/"and" are stopwords
    assert profile == history_profile(["robot robot robot"])
    assert history_profile([]) == ()


def test_the_router_mixes_the_most_similar_training_users():
    router = _router(k=2)
    mixture = router.mixture(history_profile(["robots in space", "space war"]))
    assert [u for u, _ in mixture][:1] == ["ann"] and {u for u, _ in mixture} <= {"ann", "cyd"}
    assert sum(w for _, w in mixture) == pytest.approx(1.0)
    assert [w for _, w in mixture] == sorted((w for _, w in mixture), reverse=True)
    # a training user routed as if new never mixes in their own head
    assert "ann" not in {u for u, _ in router.mixture(history_profile(HISTORIES["ann"]),
                                                      exclude="ann")}
    # no shared term, no mixture (the global head serves)
    assert router.mixture(history_profile(["quantum chromodynamics"])) == []
    assert router.mixture(()) == []
    with pytest.raises(ValueError, match="not a term slot"):
        router.mixture(((router.dim + 3, 1),))


def test_the_router_round_trips_through_its_bundle_tensors():
    router = _router(k=3)
    back = Router.from_state(router.state(), router.config())
    assert back.users == router.users and back.k == 3
    profile = history_profile(["a robot in love"])
    assert [u for u, _ in back.mixture(profile)] == [u for u, _ in router.mixture(profile)]


def test_a_mixture_scores_the_weighted_sum_of_its_heads(tiny_config):
    encoder = BaseEncoder.from_config(tiny_config).eval()
    bank = HeadBank(2, encoder.dim, generator=torch.Generator().manual_seed(3))
    a, b = (bank.extract(i) for i in range(2))
    firsts, seconds = ["q one", "q two", "q three"], ["i one", "i two two", "i three"]
    alone = score_jobs(encoder, [ForwardJob(firsts, seconds, a), ForwardJob(firsts, seconds, b)],
                       max_pairs=8)
    mixed, plain = score_jobs(encoder, [ForwardJob(firsts, seconds, MixtureHead((a, b),
                                                                                 (0.7, 0.3))),
                                        ForwardJob(firsts[:1], seconds[:1], b)], max_pairs=8)
    assert mixed == pytest.approx([0.7 * x + 0.3 * y for x, y in zip(*alone, strict=True)],
                                  abs=1e-6)
    assert plain == pytest.approx(alone[1][:1], abs=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureHead((a, b), (0.7, 0.7))


@pytest.fixture
def zero_fit_registry(tmp_path, tiny_config) -> Registry:
    """Training users ann..dee with random heads, a global head and the router over them."""
    registry = Registry(str(tmp_path / "registry"))
    publish_random_registry(registry, TRAINING, config=tiny_config, seed=2, router=_router(k=2))
    return registry


def test_a_user_with_history_and_no_head_is_scored_by_the_mixture(zero_fit_registry):
    registry = zero_fit_registry
    firsts, seconds = ["robots in space?"] * 2, ["a space war", "a love story"]
    profile = history_profile(["robots in space", "space war"])
    scorer = LocalPairScorer(registry, precision="fp32")
    weights = _router(k=2).mixture(profile)

    async def run():
        return (await scorer.score("reranker", "newcomer", firsts, seconds, profile=profile),
                await scorer.score("reranker", "newcomer", firsts, seconds),
                await scorer.score("reranker", "ann", firsts, seconds, profile=profile),
                await scorer.score("reranker", "ann", firsts, seconds, profile=profile,
                                   prefer="zero_fit"),
                await scorer.score("reranker", "newcomer", firsts, seconds,
                                   profile=history_profile(["quantum chromodynamics"])))

    mixed, unseen, own, ann_zero_fit, no_match = asyncio.run(run())
    scorer.close()
    encoder = load_bundle_encoders(registry, ["reranker"], registry.base_version())["reranker"]
    want = score_jobs(encoder, [ForwardJob(firsts, seconds, MixtureHead(
        tuple(registry.load_head("reranker", u) for u, _ in weights),
        tuple(w for _, w in weights)))], max_pairs=8)[0]
    assert mixed.head == "zero_fit" and mixed.scores == pytest.approx(want, abs=1e-5)
    assert unseen.head == "global" and no_match.head == "global"    # no profile / no match
    assert own.head == "user"                                        # a fitted head wins
    assert ann_zero_fit.head == "zero_fit" and ann_zero_fit.scores != own.scores


def test_without_a_router_the_global_head_serves(tmp_path, tiny_config):
    registry = Registry(str(tmp_path / "registry"))
    publish_random_registry(registry, TRAINING, config=tiny_config, seed=2)
    scorer = LocalPairScorer(registry, precision="fp32")
    scored = asyncio.run(scorer.score("adapter", "newcomer", ["p"], ["c"],
                                      profile=history_profile(["space robots"])))
    scorer.close()
    assert scored.head == "global"


def test_the_router_is_kept_by_a_partial_publish_and_added_to_an_older_bundle(tmp_path,
                                                                             tiny_config):
    from training.bases import TrainedModel, add_router, publish_models

    registry = Registry(str(tmp_path / "registry"))

    def trained(kind: str, seed: int) -> TrainedModel:
        encoder = BaseEncoder.from_config(tiny_config)
        bank = HeadBank(3, encoder.dim, generator=torch.Generator().manual_seed(seed))
        return TrainedModel(kind, encoder.state_dict(), tiny_config,
                            {"ann": bank.extract(0), "bob": bank.extract(1)}, bank.extract(2),
                            {"run": kind})

    publish_models(registry, [trained("reranker", 1), trained("adapter", 2)])
    assert bundle_router(*registry.load_base()) is None              # an older bundle: none
    version = add_router(registry, _router())
    state, config = registry.load_base()
    assert bundle_router(state, config).users == tuple(TRAINING)
    assert registry.list_users("adapter") == ["ann", "bob"]          # heads carried over
    assert registry.head_entry("adapter", "ann").base_version == version
    publish_models(registry, [trained("adapter", 3)])               # the reranker carried over
    _, router = load_bundle(registry, ["reranker"], registry.base_version())
    assert router is not None and router.users == tuple(TRAINING)


def test_leave_one_out_scores_each_k_by_the_mixture_of_the_other_users_heads():
    profiles = {u: history_profile(t) for u, t in {
        "ann": ["space space robots common"], "cyd": ["space robots common"],
        "bob": ["love common"], "dee": ["bread common"]}.items()}
    router = Router.from_profiles(profiles, k=2)
    users = ["ann", "bob", "cyd", "dee"]
    # ann's one query: rows 0 (target 1) and 1 (target 0); only cyd's head orders them right
    head_scores = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.9, 0.1], [0.0, 1.0]])
    by_k = leave_one_out(router, profiles, head_scores, users, {"ann": [[0, 1]]}, [1.0, 0.0],
                         grid=(1, 3, 8))
    assert set(by_k) == {1, 3}                    # 8 > the 3 users left once ann is out
    assert router.mixture(profiles["ann"], exclude="ann", k=1)[0][0] == "cyd"
    assert by_k[1] == {"ann": 1.0}                # cyd alone
    weights = dict(router.mixture(profiles["ann"], exclude="ann", k=3))
    row0, row1 = (sum(weights[u] * head_scores[users.index(u), r] for u in weights)
                  for r in (0, 1))
    assert by_k[3] == {"ann": float(row0 > row1)} and set(weights) == {"bob", "cyd", "dee"}
    assert pairwise_accuracy([0.2, 0.9, 0.5], [0.0, 1.0, 1.0]) == (2, 2)   # the tie is skipped


def test_per_kind_k_travels_with_the_router():
    router = Router(_router(k=1).users, _router().vectors, _router().idf, 1,
                    {"adapter": 3}, {"chosen_on": "test"})
    back = Router.from_state(router.state(), router.config())
    assert back.k_for("adapter") == 3 and back.k_for("reranker") == 1 and back.k_for(None) == 1
    assert back.choice == {"chosen_on": "test"}
    profile = history_profile(["robots in space", "a wedding", "baking"])
    assert len(back.mixture(profile, kind="adapter")) == 3
    assert len(back.mixture(profile, kind="reranker")) == 1
    with pytest.raises(ValueError, match="at least 1"):
        Router(router.users, router.vectors, router.idf, 1, {"adapter": 0})


def test_a_k_replaces_the_default_only_by_a_clear_paired_gain():
    users = [f"u{i}" for i in range(8)]
    noise = dict(zip(users, [0.02, -0.03, 0.01, 0.04, -0.02, 0.03, -0.01, 0.02], strict=True))
    noisy = {4: dict.fromkeys(users, 0.5), 8: {u: 0.5 + e for u, e in noise.items()},
             2: {u: 0.5 - e for u, e in noise.items()}}           # mean gains +-0.0075: chance
    assert pick_k(noisy) == 4
    clear = {**noisy, 16: {u: 0.6 + e / 4 for u, e in noise.items()}}   # +0.1 for everyone
    assert pick_k(clear) == 16
    assert pick_k(clear, margin=1000.0) == 4
    # the default not tried (fewer training users): the nearest k stands in
    assert pick_k({1: dict.fromkeys(users, 0.5), 3: noisy[8]}, default=4) == 3
    assert pick_k({2: {"u0": 0.9}, 4: {"u0": 0.1}}) == 4            # one user: no SE, default
