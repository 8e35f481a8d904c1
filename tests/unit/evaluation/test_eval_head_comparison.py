"""Dense against compact heads in one eval (`compare_head`): the dense job's bases and global heads
republished with another head form (no user heads, the same weights), new users fitted there,
the variant's rows beside each HYDRA method with paired differences, and the config and command
line that ask for it. The Ray stages (fit_stage) run in `hydralm eval --compare-head`
(docs/evaluation.md); here the parts without Ray."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from test_eval_precision import HYDRA, Prefers, _cfg, _run

from hydralm.errors import ConfigError
from hydralm.evaluation import (
    RESULT_SCHEMA,
    QueryScores,
    bootstrap,
    build_result,
    head_comparison,
    head_tag,
    markdown_table,
    merge_variant_run,
)
from hydralm.evaluation.variants import passes_form_rule
from hydralm.model import KIND_HEAD_DEFAULTS, HeadConfig
from hydralm.tasks import get_task

RESIDUAL = HeadConfig(form="residual", rank=4, dtype="bfloat16")
ADAPTER_DEFAULT = HeadConfig(**KIND_HEAD_DEFAULTS["adapter"])   # residual r=16 int8
TASK = get_task("synth-tag")


def test_head_tags_name_form_rank_and_storage():
    assert head_tag(RESIDUAL) == "residual4_bf16"
    assert head_tag(HeadConfig(dtype="float32")) == "dense_fp32"
    assert head_tag(HeadConfig()) == "dense_int8"                # the reranker's default
    assert head_tag(HeadConfig(form="lowrank", rank=8, dtype="int8")) == "lowrank8_int8"


def test_the_variant_job_shares_the_work_dir_and_has_its_own_registry():
    cfg = _cfg(compare_head=RESIDUAL.model_dump())
    job, variant = cfg.job(1), cfg.job(1, cfg.compare_head)
    assert variant.paths.work_dir == job.paths.work_dir
    assert variant.paths.registry == job.paths.work_dir + "/registry-residual4_bf16"
    assert variant.reranker.head == variant.adapter.head == RESIDUAL
    assert job.adapter.head == ADAPTER_DEFAULT


def test_the_calibration_variant_has_its_own_registry_in_the_calibration_work_dir():
    """The training users fitted again in the compared form: beside the calibration job's own
    registry, never in the test users' variant registry."""
    cfg = _cfg(compare_head=RESIDUAL.model_dump())
    calibration = cfg.job(1, calibration=True)
    variant = cfg.job(1, cfg.compare_head, calibration=True)
    assert variant.paths.work_dir == calibration.paths.work_dir
    assert variant.paths.registry == (calibration.paths.work_dir
                                      + "/registry-residual4_bf16")
    assert variant.paths.registry != cfg.job(1, cfg.compare_head).paths.registry
    assert variant.adapter.head == RESIDUAL and calibration.adapter.head == ADAPTER_DEFAULT


@pytest.mark.parametrize("mean, low, high, passes", [
    (0.0, 0.0, 0.0, True),             # the same answers
    (0.009, -0.004, 0.02, True),       # not measurably worse, mean within 0.01
    (0.013, -0.001, 0.029, False),     # mean past 0.01 (synth-tag's residual reranker)
    (0.012, 0.003, 0.021, False),      # measurably worse
    (-0.03, -0.05, -0.01, True),       # measurably better
])
def test_the_form_rule_needs_an_interval_reaching_zero_and_a_mean_within_the_tolerance(
        mean, low, high, passes):
    assert passes_form_rule({"mean": mean, "ci_low": low, "ci_high": high}) is passes


@pytest.mark.parametrize("overrides, message", [
    ({"compare_head": {"form": "dense"}, "adapter": {"head": {"form": "dense"}}},
     "is the head both models already have"),
    ({"compare_head": {"form": "residual"}, "methods": ["zero_shot"]}, "needs a HYDRA"),
    ({"compare_head": {"form": "square"}}, "compare_head"),
])
def test_bad_head_comparisons_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**overrides)


def test_the_command_line_asks_for_the_comparison():
    from training.eval_cmd import build_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    cfg = build_config(parser.parse_args(["eval", "--quick", "--compare-head",
                                          "residual:8:int8"]))
    assert cfg.compare_head == HeadConfig(form="residual", rank=8, dtype="int8")
    assert build_config(parser.parse_args(["eval", "--quick", "--compare-head", "lowrank"])
                        ).compare_head == HeadConfig(form="lowrank")
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--compare-head", "residual:eight"])


def test_summary_rows_sit_beside_their_method_with_sizes_and_paired_differences():
    from training.eval_run import SeedRun, summarize

    cfg = _cfg(compare_head=RESIDUAL.model_dump(), methods=["rag_bm25", *HYDRA],
               bootstrap={"resamples": 50})
    ours, theirs = _run(Prefers("sci-fi", 0.9), ["rag_bm25", *HYDRA]), _run(
        Prefers("comedy", 0.6), HYDRA)
    shared = merge_variant_run(ours, theirs, "residual4_bf16")
    ours = [dataclasses.replace(o, gold=g) for o, g in zip(ours, ["sci-fi", "comedy", "sci-fi"],
                                                            strict=True)]
    sizes = {"configured": {"reranker": 590_000, "adapter": 590_000},
             "other": {"reranker": 8_000, "adapter": 8_000}}
    run = SeedRun(0, {"train": 12, "test": 6}, ours,
                  {"precision": "bf16",
                   "compare_head": {"tag": "residual4_bf16", **shared, "bytes_per_user": sizes}})
    doc = summarize(cfg, [run], generator="g")
    assert list(doc["methods"]) == [
        "rag_bm25", "hydra_reranker", "hydra_reranker_residual4_bf16", "hydra_adapter",
        "hydra_adapter_residual4_bf16", "hydra", "hydra_residual4_bf16", "history_knn",
        "oracle_best_of_8"]
    cmp = doc["head_comparison"]
    assert cmp["tag"] == "residual4_bf16" and cmp["bytes_per_user"] == sizes
    assert cmp["heads"]["reranker"]["form"] == "dense" and cmp["other"]["rank"] == 4
    assert cmp["heads"]["adapter"] == {"form": "residual", "rank": 16, "dtype": "int8",
                                         "train_heads": "form"}
    # hydra (sci-fi) right on 2 of 3, the residual run (comedy) on 1 of 3
    assert cmp["differences"]["hydra"]["mean"] == pytest.approx(1 / 3)
    assert cmp["same_candidates"] == 3
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, RESULT_SCHEMA)
    # 3 queries: the interval reaches 0, but a mean 0.333 worse is past the rule's 0.01
    assert cmp["differences"]["hydra"]["ci_low"] <= 0 and not cmp["passes"]["hydra"]
    assert "train_heldout" not in cmp        # no training users' comparison in this run
    table = markdown_table(doc)
    assert "| hydra_residual4_bf16 |" in table
    assert ("Head form: reranker dense int8 / adapter residual r=16 int8 against residual r=4 "
            "bfloat16" in table) and "(positive: configured better)" in table
    assert "hydra +0.333 [" in table and "adapter 8,000 B" in table


def test_the_training_users_comparison_is_reported_beside_the_test_users():
    """With the training users' held-out outcomes (both forms), head_comparison has a
    `train_heldout` part, pooled over the seeds, with its own verdict per method."""
    from training.eval_run import SeedRun, summarize

    cfg = _cfg(compare_head=RESIDUAL.model_dump(), methods=HYDRA, bootstrap={"resamples": 50})
    golds = ["sci-fi", "comedy", "sci-fi"]
    runs = []
    for seed in (0, 1):
        tests = _run(Prefers("sci-fi", 0.9), HYDRA)
        shared = merge_variant_run(tests, _run(Prefers("sci-fi", 0.9), HYDRA), "residual4_bf16")
        tests = [dataclasses.replace(o, gold=g) for o, g in zip(tests, golds, strict=True)]
        # on the training users the compact heads pick comedy: right on 1 of 3, against 2 of 3
        train = _run(Prefers("sci-fi", 0.9), HYDRA)
        on_training = merge_variant_run(train, _run(Prefers("comedy", 0.6), HYDRA),
                                        "residual4_bf16")
        train = [dataclasses.replace(o, gold=g) for o, g in zip(train, golds, strict=True)]
        runs.append(SeedRun(seed, {"train": 12, "test": 6}, tests, {
            "precision": "bf16", "compare_head": {
                "tag": "residual4_bf16", **shared, "train_heldout": on_training,
                "bytes_per_user": {"configured": {"adapter": 590_000},
                                   "other": {"adapter": 8_000}}}}, train_outcomes=train))
    doc = summarize(cfg, runs, generator="g")
    cmp = doc["head_comparison"]
    assert cmp["differences"]["hydra"]["mean"] == 0.0 and cmp["passes"]["hydra"]
    on_training = cmp["train_heldout"]
    assert on_training["queries"] == 6 and on_training["same_candidates"] == 6
    assert on_training["differences"]["hydra"]["mean"] == pytest.approx(1 / 3)
    assert on_training["differences"]["hydra_adapter"]["mean"] == pytest.approx(1 / 3)
    # the reranker's picks do not change the answer here (both prompts' greedy answer alike)
    assert on_training["differences"]["hydra_reranker"]["mean"] == 0.0
    assert on_training["passes"] == {"hydra_reranker": True, "hydra_adapter": False,
                                     "hydra": False}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, RESULT_SCHEMA)
    table = markdown_table(doc)
    assert "On the training users' 6 held-out queries" in table
    assert "passes the rule (interval reaching 0, mean at most 0.01 worse) for: " \
           "hydra_reranker." in table


def test_a_worse_variant_gives_a_positive_difference_on_a_lower_is_better_metric():
    task = get_task("synth-rate")
    golds = ["1", "2", "3"]
    scores = {"hydra": [QueryScores(task, ["1", "2", "3"], golds)],
              "hydra_residual4_bf16": [QueryScores(task, ["3", "3", "3"], golds)]}
    cmp = head_comparison(scores, ["hydra"], heads={"adapter": HeadConfig().model_dump()},
                          other=RESIDUAL, bytes_per_user={}, metric="mae",
                          higher_is_better=False, resamples=50)
    assert cmp["differences"]["hydra"]["mean"] > 0
    doc = build_result(dataset="synth", task=task, generator="g", users={"train": 1, "test": 1},
                       seeds=[0], methods={m: bootstrap(s, resamples=50)
                                           for m, s in scores.items()}, head_comparison=cmp)
    assert doc["head_comparison"]["tag"] == "residual4_bf16"


def test_zero_fit_rows_are_compared_with_the_best_prompt_method_and_the_fitted_heads():
    from training.eval_run import SeedRun, summarize

    cfg = _cfg(methods=["zero_shot", "rag_bm25", "hydra", "hydra_zero_fit"],
               bootstrap={"resamples": 50})
    outcomes = _run(Prefers("sci-fi", 0.9), ["zero_shot", "rag_bm25", "hydra", "hydra_zero_fit"])
    golds = ["sci-fi", "comedy", "sci-fi"]
    outcomes = [dataclasses.replace(o, gold=g) for o, g in zip(outcomes, golds, strict=True)]
    for outcome, zero_fit in zip(outcomes, ["sci-fi", "comedy", "sci-fi"], strict=True):
        outcome.answers["hydra_zero_fit"] = zero_fit        # right on 3 of 3
    doc = summarize(cfg, [SeedRun(0, {"train": 12, "test": 6}, outcomes, {})], generator="g")
    zero_fit = doc["zero_fit"]
    assert zero_fit["metric"] == "accuracy"
    best = max(("zero_shot", "rag_bm25"), key=lambda m: doc["methods"][m]["accuracy"]["mean"])
    assert zero_fit["baseline"] == best
    gain = 1.0 - doc["methods"][best]["accuracy"]["mean"]
    assert zero_fit["vs_baseline"]["mean"] == pytest.approx(gain)
    # hydra (the scripted scorer's sci-fi) is right on 2 of 3
    assert zero_fit["vs_hydra"]["mean"] == pytest.approx(1 / 3)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert "Zero-fit heads (hydra_zero_fit) on accuracy" in markdown_table(doc)
