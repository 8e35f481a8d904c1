"""Encoder precision: 'auto' follows the CPU's flags, a bf16 encoder scores the same pairs as the
fp32 one within a small bound (the largest difference is the figure docs/serving-scorer.md quotes),
and the configs that load a frozen base share the one field."""

from __future__ import annotations

import random

import pytest
import torch

import hydralm.model.precision as precision
from hydralm.errors import ConfigError
from hydralm.evaluation.config import EvalConfig
from hydralm.jobconfig import FitConfig
from hydralm.model import BaseEncoder, HeadBank
from hydralm.scoring.forward import ForwardJob, score_jobs
from serving.scorer_config import ScorerArgs

WORDS = ("film plot actor scene story train river night city music love war ship storm song "
         "dream road house light winter summer friend enemy secret garden letter mountain sea").split()


@pytest.mark.parametrize("flags, requested, expected", [
    ({"avx512f", "amx_bf16", "amx_tile"}, "auto", "bf16"),    # Intel with AMX
    ({"avx512f", "avx512_bf16"}, "auto", "bf16"),             # AMD Zen 4
    ({"avx512f", "avx2", "fma"}, "auto", "fp32"),             # AVX-512 without bf16
    (set(), "auto", "fp32"),                                  # flags unreadable
    (set(), "bf16", "bf16"),                                  # forced: emulated, but as asked
    ({"amx_bf16"}, "fp32", "fp32"),
])
def test_auto_follows_the_cpu_flags(monkeypatch, flags, requested, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision(requested, "cpu") == expected


def test_flags_and_model_come_from_proc_cpuinfo(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx512_bf16 sse\n"
                    "\nprocessor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    monkeypatch.setattr(precision, "_CPUINFO", info)
    precision.cpu_flags.cache_clear()
    precision.cpu_model.cache_clear()
    try:
        assert precision.cpu_flags() == {"fpu", "avx512_bf16", "sse"}
        assert precision.cpu_model() == "Test CPU 9000"
        assert precision.native_bf16("cpu")
    finally:
        precision.cpu_flags.cache_clear()
        precision.cpu_model.cache_clear()


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="got 'fp16'"):
        precision.resolve_precision("fp16", "cpu")  # type: ignore[arg-type]


def _pairs(count: int, first_words: int, second_words: tuple[int, int], seed: int):
    rng = random.Random(seed)
    text = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    first = text(first_words)
    return [first] * count, [text(rng.randint(*second_words)) for _ in range(count)]


@pytest.fixture(scope="module")
def encoders() -> dict[str, BaseEncoder]:
    fp32, bf16 = BaseEncoder().eval(), BaseEncoder().eval()
    assert bf16.set_precision("bf16") == "bf16" and fp32.precision == "fp32"
    return {"fp32": fp32, "bf16": bf16}


def test_bf16_scores_stay_within_0_02_of_fp32_on_the_same_pairs(encoders):
    """serve_load's request shape: 10 (query, history item) pairs and 8 (prompt, candidate)
    pairs, 4 users' heads whose scores spread over (0, 1) (w2 scaled up: random heads alone
    score everything near 0.5, where no difference would show)."""
    bank = HeadBank(4, encoders["fp32"].dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bank.w2.mul_(30.0)
    jobs = []
    for user in range(4):
        head = bank.extract(user)
        jobs.append(ForwardJob(*_pairs(10, 20, (25, 50), seed=user), head))
        jobs.append(ForwardJob(*_pairs(8, 140, (3, 12), seed=100 + user), head))
    scores = {name: torch.tensor([s for job in score_jobs(enc, jobs, max_pairs=8) for s in job])
              for name, enc in encoders.items()}
    assert scores["fp32"].max() - scores["fp32"].min() > 0.3        # the scores do spread
    largest = (scores["bf16"] - scores["fp32"]).abs().max().item()
    assert largest < 0.02, f"largest |bf16 - fp32| score difference {largest:.4f}"


def test_bf16_pooled_vectors_are_fp32_and_close(encoders):
    firsts, seconds = _pairs(6, 30, (10, 40), seed=7)
    ref, got = (encoders[p].embed(firsts, seconds) for p in ("fp32", "bf16"))
    assert got.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(got, ref).min() > 0.999


def test_fp32_after_bf16_is_refused(encoders):
    with pytest.raises(ValueError, match="already runs in bf16"):
        encoders["bf16"].set_precision("fp32")


def test_every_inference_config_has_the_field():
    assert ScorerArgs().precision == FitConfig().precision == "auto"
    assert ScorerArgs(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        ScorerArgs.from_dict({"precision": "fp16"}, source="scorer args")


def test_eval_precision_reaches_its_fit_stage_and_a_conflict_is_refused():
    base = {"task": "synth-tag", "data": {"synth": {"users": 4}},
            "users": {"train": 2, "test": 2}}
    cfg = EvalConfig.from_dict({**base, "precision": "fp32"}, source="eval.yaml")
    assert cfg.job(0).fit.precision == "fp32"
    with pytest.raises(ConfigError, match="fit.precision"):
        EvalConfig.from_dict({**base, "precision": "fp32", "fit": {"precision": "bf16"}},
                             source="eval.yaml")
