"""`hydralm eval` end to end on the `--quick` preset: the embedded SmolLM2, HYDRA trained per
seed on Ray, every method on the test users, and a re-run answered entirely by the response cache.

The preset's bases are swapped for a tiny random encoder (tests/training_fixtures.py), it has 4
test users instead of 6, and its label sets are smaller (fewer BM25 items and pseudo-queries per
training user): what is checked here is the eval's plumbing, not HYDRA's quality, and the
preset's MiniLM training and label sets would double the run (test_demo.py trains the real
encoder, on configs/ci-small.yaml)."""

from __future__ import annotations

import json

import pytest
import yaml
from training_fixtures import build_tiny_encoder

from hydralm.artifacts import Registry
from hydralm.cli import main
from hydralm.evaluation import RESULT_SCHEMA, QueryScores
from hydralm.evaluation.presets import preset
from hydralm.scoring.bundle import bundle_head_configs
from hydralm.tasks import get_task
from training.bases import bundle_config

pytestmark = pytest.mark.integration

RESIDUAL = "residual4_bf16"
ROWS = ["zero_shot", "icl_random", "rag_bm25", "hydra_reranker", f"hydra_reranker_{RESIDUAL}",
        "hydra_adapter", f"hydra_adapter_{RESIDUAL}", "hydra", f"hydra_{RESIDUAL}",
        "hydra_zero_fit", "history_knn", "oracle_best_of_8"]


def _quick_config(tmp_path) -> str:
    """The `--quick` preset of synth-tag with both bases on the tiny encoder and smaller label
    sets (N=8 candidates kept: the oracle row is best-of-8), and the test users' heads also
    fitted as residual heads (`compare_head`: the head form's fit and scoring under Ray)."""
    doc = preset("synth-tag", quick=True)
    doc["users"] = {"train": 8, "test": 4}    # the preset's 6 test users: 4 (8 queries)
    doc["data"]["synth"]["users"] = 8 + 4
    encoder = str(build_tiny_encoder(tmp_path / "tiny-encoder"))
    for kind in ("reranker", "adapter"):
        doc[kind] = {"encoder_path": encoder, "max_length": 64}
    doc["labels"] = {**doc["labels"], "k_retrieve": 4, "k_prompt": 2,
                     "pseudo_queries_per_user": 1, "similar_per_pseudo": 2}
    doc["compare_head"] = {"form": "residual", "rank": 4, "dtype": "bfloat16"}
    # candidates from two prompts: the bare query's greedy answer first, 2 of its samples
    doc["labels"].update(adapter_bare_greedy_candidate=True, adapter_bare_samples=2)
    # one of each training user's 2 queries held out: the guard's rule and threshold are
    # chosen on them, and they give the policy's training-users figure
    doc["labels"]["max_queries_per_user"] = 1
    doc["guard"] = {"rule": "auto"}
    path = tmp_path / "eval-quick-tiny.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)


def _eval(tmp_path, base_url: str, config: str) -> dict:
    code = main(["eval", "--config", config, "--no-progress", "--base-url", base_url,
                 "--work-dir", str(tmp_path / "work"), "--results-dir",
                 str(tmp_path / "results")])
    assert code == 0
    return json.loads((tmp_path / "results" / "quality_synth_synth-tag.json").read_text())


def test_quick_eval_writes_the_table_and_a_rerun_costs_no_generator_call(
        tmp_path, ray_local, llm_base_url, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    config = _quick_config(tmp_path)
    first = _eval(tmp_path, llm_base_url, config)
    jsonschema.validate(first, RESULT_SCHEMA)
    assert list(first["methods"]) == ROWS
    assert first["users"] == {"train": 8, "test": 4} and first["seeds"] == [0]
    assert first["run"]["queries"] == 8 and first["run"]["generator_calls"] > 0
    assert first["run"]["adapter_pairs"] == "query+prompt/1"
    # each kind's default head: the reranker's dense, the adapter's residual (docs/model.md)
    assert first["run"]["heads"] == {"reranker": "dense int8", "adapter": "residual r=16 int8"}
    for row, metrics in first["methods"].items():
        for name, e in metrics.items():
            assert e["ci_low"] <= e["mean"] <= e["ci_high"], (row, name, e)
    # The oracle picks among hydra's own candidates: never below hydra, and never below
    # zero-shot either, since the bare query's greedy answer is candidate 0 of every pool.
    oracle = first["methods"]["oracle_best_of_8"]["accuracy"]["mean"]
    assert oracle >= first["methods"]["hydra"]["accuracy"]["mean"]
    assert oracle >= first["methods"]["zero_shot"]["accuracy"]["mean"]
    selection = first["selection"]
    assert selection["candidate_policy"] == {"n": 8, "temperature": 1.0, "greedy_first": False,
                                             "bare_greedy": True, "bare_samples": 2}
    assert selection["guard_rule"]["0"] in ("consensus", "first", "history")
    # auto weighed all three rules, "history" reading each query's prompt items' own tags
    assert set(first["run"]["eval"]["0"]["guard"]["metric_by_rule"]) == {
        "consensus", "first", "history"}
    # ... with the 8 training users' heads fitted again from their own history (the test
    # users' procedure), in the seed's calibration job
    calibration = first["run"]["training"]["0"]["guard_calibration"]
    assert calibration["users"] == 8 and calibration["generator_calls"] > 0
    calibrated = Registry(str(tmp_path / "work" / "seed-0" / "guard-calibration" / "registry"))
    assert len(calibrated.list_users("adapter")) == 8 == len(calibrated.list_users("reranker"))
    assert first["run"]["eval"]["0"]["guard"]["heads"] == "fitted"
    # Zero-fit picks get their own guard, chosen on the same held-out queries answered with each
    # training user's zero-fit head (the other training users' heads mixed)
    zero_fit_guard = first["run"]["eval"]["0"]["guard"]["zero_fit"]
    assert zero_fit_guard["queries"] == 8 and zero_fit_guard["rule"] in (
        "consensus", "first", "history")
    assert set(zero_fit_guard["evidence"]) == {"default", "best", "gain", "se", "margin"}
    assert selection["guard_by_seed"]["0"]["hydra_zero_fit"] == {
        "rule": zero_fit_guard["rule"], "min_spread": zero_fit_guard["min_spread"]}
    held_out = selection["train_heldout_hydra"]
    assert held_out["queries"] == 8 and 0.0 <= held_out["mean"] <= 1.0
    # the adapter's selection margin with its interval, on the test users and on those queries
    interval = selection["margin_interval"]
    assert interval["mean"] == pytest.approx(selection["margin_over_random"])
    assert interval["ci_low"] <= interval["mean"] <= interval["ci_high"]
    trained_selection = selection["train_heldout_selection"]
    assert trained_selection["queries"] == 8 and trained_selection["margin_over_random"] == (
        pytest.approx(trained_selection["adapter_picks_best"]
                      - trained_selection["random_picks_best"]))
    # The HYDRA methods answered those queries again with the calibration heads and the chosen
    # guard, saved for `hydralm eval-compare --training`: hydra's answers score what the guard's
    # calibration measured for its choice
    lines = (tmp_path / "work" / "seed-0" / "guard-calibration" / "eval" / "predictions.jsonl"
             ).read_text().splitlines()
    trained = [json.loads(line) for line in lines]
    assert len(trained) == 8 and {r["user_id"] for r in trained} <= set(
        calibrated.list_users("adapter"))
    assert all({"hydra_reranker", "hydra_adapter", "hydra"} <= set(r["answers"])
               for r in trained)
    hydra_on_training = QueryScores(get_task("synth-tag"), [r["answers"]["hydra"] for r in trained],
                                    [r["gold"] for r in trained]).metrics()["accuracy"]
    assert hydra_on_training == pytest.approx(held_out["mean"])
    table = (tmp_path / "results" / "quality_synth_synth-tag.md").read_text()
    assert "| hydra |" in table and "| oracle_best_of_8 |" in table
    # Zero-fit heads: the bases carry the router over the 8 training users, and every test
    # user (synthetic taggers share words with some training user) was served by a mixture
    seed = first["run"]["eval"]["0"]
    assert seed["zero_fit_heads"] == {"adapter": 1.0, "reranker": 1.0}
    # ... mixing per kind the k chosen on the 8 training users (leave one out), published
    registry = Registry(str(tmp_path / "work" / "seed-0" / "registry"))
    choice = bundle_config(registry)["zero_fit"]["choice"]
    assert set(choice["k_by_kind"]) == {"reranker", "adapter"}
    assert all(set(by_k) == {"1", "2", "4", "7"} for by_k in choice["accuracy_by_k"].values())
    assert seed["user_heads"] == {"adapter": 1.0, "reranker": 1.0}
    # The residual variant: the test users' heads refitted as residual heads on the same bases
    # (their own registry), smaller files, every HYDRA method run with them on the same queries.
    cmp = first["head_comparison"]
    assert cmp["tag"] == RESIDUAL and cmp["queries"] == 8
    assert set(cmp["differences"]) == {"hydra_reranker", "hydra_adapter", "hydra"}
    sizes = cmp["bytes_per_user"]
    for kind in ("reranker", "adapter"):
        assert 0 < sizes["other"][kind] < sizes["configured"][kind]
    variant = Registry(str(tmp_path / "work" / "seed-0" / f"registry-{RESIDUAL}"))
    assert len(variant.list_users("adapter")) == 4 and variant.list_users("reranker")
    assert bundle_head_configs(variant, variant.base_version())["adapter"].form == "residual"
    assert ("Head form: reranker dense int8 / adapter residual r=16 int8 against residual r=4 "
            "bfloat16") in table
    # ... and the 8 training users' calibration heads fitted in that form too (their own
    # registry in the calibration work dir), compared on their 8 held-out queries: what
    # chooses a form without looking at test users
    on_training = cmp["train_heldout"]
    assert on_training["queries"] == 8
    assert set(on_training["differences"]) == set(on_training["passes"]) == set(
        cmp["differences"])
    calibrated_variant = Registry(str(tmp_path / "work" / "seed-0" / "guard-calibration"
                                      / f"registry-{RESIDUAL}"))
    assert len(calibrated_variant.list_users("adapter")) == 8
    assert bundle_head_configs(calibrated_variant, calibrated_variant.base_version()
                               )["reranker"].form == "residual"
    assert "On the training users' 8 held-out queries" in table
    png = (tmp_path / "results" / "quality_synth_synth-tag.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    second = _eval(tmp_path, llm_base_url, config)
    assert second["run"]["generator_calls"] == 0
    assert second["run"]["eval"]["0"]["cache_hits"] > 0
    assert second["methods"] == first["methods"]
    assert "generator calls: 0" in capsys.readouterr().out
    result = str(tmp_path / "results" / "quality_synth_synth-tag.json")
    assert main(["eval-compare", result, result, "--training", "--resamples", "100"]) == 0
    assert "8 training users' held-out queries (seeds 0)" in capsys.readouterr().out
