"""bf16 against fp32 in one eval: the other precision's answers become rows beside each HYDRA
method, their paired differences point the right way, the result and table carry them, and the
config and command line ask for it. The two precisions are stood in for by two scripted scorers
(the real ones run in `hydralm eval --quick --compare-precision fp32`, docs/evaluation.md)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from hydralm.errors import ConfigError
from hydralm.evaluation import (
    RESULT_SCHEMA,
    EvalConfig,
    EvalQuery,
    MemoryHistory,
    QueryScores,
    bootstrap,
    build_result,
    markdown_table,
    merge_variant_run,
    precision_comparison,
    run_queries,
)
from hydralm.generator import Samples
from hydralm.pipeline import PairScorer, PairScores, Personalizer
from hydralm.tasks import get_task

TASK = get_task("synth-tag")
HISTORY = [{"id": "0", "description": "robot in space", "tag": "sci-fi"},
           {"id": "1", "description": "robot wedding", "tag": "comedy"}]
SAMPLES = ["comedy", "sci-fi", "action", "comedy", "classic", "sci-fi", "romance", "fantasy"]
HYDRA = ["hydra_reranker", "hydra_adapter", "hydra"]


class Generator:
    async def chat_samples(self, messages, *, n=1, options=None, seed=None, **kwargs):
        texts = ["dystopia"] if n == 1 else SAMPLES[:n]
        return Samples(texts, ["stop"] * len(texts))


class Prefers(PairScorer):
    def __init__(self, tag: str, high: float) -> None:
        self.tag, self.high = tag, high

    async def score(self, kind, user_id, firsts, seconds, *, profile=None,
                    prefer="user"):
        return PairScores([self.high if self.tag in s else 0.1 for s in seconds], head="user")


def _run(scorer: PairScorer, methods: list[str]):
    p = Personalizer(TASK, scorer, Generator(), MemoryHistory({"u1": HISTORY}), k_retrieve=2,
                     k_prompt=2)
    queries = [EvalQuery("u1", f"q{i}", f"a robot story {i}", "sci-fi") for i in range(3)]
    return asyncio.run(run_queries(p, queries, methods, progress=False))


def test_the_other_precisions_answers_become_rows_beside_each_hydra_method():
    ours = _run(Prefers("sci-fi", 0.9), ["zero_shot", *HYDRA])
    theirs = _run(Prefers("comedy", 0.6), HYDRA)
    shared = merge_variant_run(ours, theirs, "fp32")
    first = ours[0]
    assert {"hydra_fp32", "hydra_adapter_fp32", "hydra_reranker_fp32"} <= set(first.answers)
    assert "zero_shot_fp32" not in first.answers
    assert first.answers["hydra"] == "sci-fi" and first.answers["hydra_fp32"] == "comedy"
    assert first.heads["hydra_fp32"] == {"reranker": "user", "adapter": "user"}
    # the scripted generator samples the same candidates for both: scores 0.9/0.1 vs 0.1/0.6
    assert shared == {"queries": 3, "same_candidates": 3,
                      "adapter_score_max_abs_diff": pytest.approx(0.8)}


def test_runs_out_of_step_are_refused():
    ours, theirs = _run(Prefers("sci-fi", 0.9), HYDRA), _run(Prefers("comedy", 0.6), HYDRA)
    with pytest.raises(ValueError, match="out of step"):
        merge_variant_run(ours, theirs[::-1], "fp32")


@pytest.mark.parametrize("task, ours, theirs, sign", [
    # accuracy: ours right on 3 of 3 against 2 of 3
    ("synth-tag", ["comedy", "comedy", "sci-fi"], ["comedy", "sci-fi", "sci-fi"], 1),
    ("synth-tag", ["sci-fi", "sci-fi", "sci-fi"], ["comedy", "comedy", "sci-fi"], -1),
    ("synth-rate", ["1", "2", "3"], ["3", "3", "3"], 1),  # MAE: lower is better
    ("synth-rate", ["5", "5", "5"], ["1", "2", "3"], -1),
])
def test_the_paired_difference_is_positive_when_our_precision_is_better(task, ours, theirs,
                                                                          sign):
    task = get_task(task)
    golds = ["comedy", "comedy", "sci-fi"] if task.kind == "classification" else ["1", "2", "3"]
    scores = {"hydra": [QueryScores(task, ours, golds)],
              "hydra_fp32": [QueryScores(task, theirs, golds)]}
    cmp = precision_comparison(scores, ["rag_bm25", "hydra"], precision="bf16", other="fp32",
                               metric=task.primary_metric,
                               higher_is_better=task.higher_is_better, resamples=50)
    assert list(cmp["differences"]) == ["hydra"]
    assert sign * cmp["differences"]["hydra"]["mean"] > 0


def _result():
    golds = ["sci-fi", "comedy", "sci-fi"]
    runs = {"rag_bm25": ["comedy"] * 3, "hydra": ["sci-fi"] * 3, "hydra_fp32": golds}
    scores = {m: [QueryScores(TASK, p, golds)] for m, p in runs.items()}
    cmp = precision_comparison(scores, ["rag_bm25", "hydra"], precision="bf16", other="fp32",
                               metric="accuracy", higher_is_better=True, resamples=50,
                               shared=[{"queries": 3, "same_candidates": 2,
                                        "adapter_score_max_abs_diff": 0.004}])
    return build_result(dataset="synth", task=TASK, generator="g", users={"train": 2, "test": 1},
                        seeds=[0], methods={m: bootstrap(s, resamples=50)
                                            for m, s in scores.items()},
                        precision_comparison=cmp)


def test_the_result_and_its_table_carry_the_comparison():
    jsonschema = pytest.importorskip("jsonschema")
    doc = _result()
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["precision_comparison"]["differences"]["hydra"]["mean"] == pytest.approx(-1 / 3)
    table = markdown_table(doc)
    assert "| hydra_fp32 |" in table
    assert "Precision: bf16 against fp32" in table and "hydra -0.333 [" in table
    assert "Same HYDRA candidates in 2 of 3 queries" in table and "0.0040" in table


def _cfg(**overrides) -> EvalConfig:
    data = {"task": "synth-tag", "work_dir": "/tmp/hydralm-eval-test",
            "data": {"synth": {"users": 20, "queries_per_user": 2, "items_per_user": 10}},
            "users": {"train": 12, "test": 6}, **overrides}
    return EvalConfig.from_dict(data)


@pytest.mark.parametrize("overrides, message", [
    ({"precision": "fp32", "compare_precision": "fp32"}, "equals precision"),
    ({"compare_precision": "fp32", "methods": ["zero_shot", "rag_bm25"]}, "needs a HYDRA"),
    ({"compare_precision": "fp16"}, "compare_precision"),
])
def test_bad_comparisons_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**overrides)


def test_the_command_line_asks_for_the_comparison():
    import argparse

    from training.eval_cmd import build_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", "--quick", "--precision", "bf16",
                              "--compare-precision", "fp32"])
    cfg = build_config(args)
    assert (cfg.precision, cfg.compare_precision) == ("bf16", "fp32")


def test_summary_rows_sit_beside_their_method_and_the_comparison_is_paired():
    from training.eval_run import SeedRun, summarize

    cfg = _cfg(precision="bf16", compare_precision="fp32", methods=["rag_bm25", "hydra"],
               bootstrap={"resamples": 50})
    ours, theirs = _run(Prefers("sci-fi", 0.9), ["rag_bm25", "hydra"]), _run(
        Prefers("comedy", 0.6), ["hydra"])
    shared = merge_variant_run(ours, theirs, "fp32")
    ours = [dataclasses.replace(o, gold=g) for o, g in zip(ours, ["sci-fi", "comedy", "sci-fi"],
                                                            strict=True)]
    run = SeedRun(0, {"train": 12, "test": 6}, ours,
                  {"precision": "bf16", "compare_precision": {"precision": "fp32", **shared}})
    doc = summarize(cfg, [run], generator="g")
    assert list(doc["methods"]) == ["rag_bm25", "hydra", "hydra_fp32", "history_knn",
                                    "oracle_best_of_8"]
    cmp = doc["precision_comparison"]
    assert (cmp["precision"], cmp["other"], cmp["same_candidates"]) == ("bf16", "fp32", 3)
    # hydra (sci-fi) right on 2 of 3, hydra_fp32 (comedy) on 1 of 3
    assert cmp["differences"]["hydra"]["mean"] == pytest.approx(1 / 3)
