"""The result document, HYDRA's relative improvement (sign-aware) and the Markdown table."""

from __future__ import annotations

import pytest

from hydralm.evaluation import (
    RESULT_SCHEMA,
    Estimate,
    build_result,
    markdown_table,
    relative_improvement,
)
from hydralm.tasks import get_task


def _methods(metric: str, **means: float) -> dict[str, dict[str, Estimate]]:
    return {m: {metric: Estimate(v, v - 0.01, v + 0.01)} for m, v in means.items()}


@pytest.mark.parametrize("metric, higher, means, baseline, percent", [
    # Higher is better: best baseline is rag (0.125); hydra 0.25 is +100%.
    ("accuracy", True, {"zero_shot": 0.088, "rag_bm25": 0.125, "icl_random": 0.1,
                        "hydra": 0.25}, "rag_bm25", 100.0),
    # Worse than the best baseline: negative.
    ("accuracy", True, {"zero_shot": 0.2, "hydra": 0.1}, "zero_shot", -50.0),
    # Lower is better (MAE): best baseline is the lowest (rag 1.74); hydra 0.87 halves it: +50%.
    ("mae", False, {"zero_shot": 1.9, "rag_bm25": 1.74, "hydra": 0.87}, "rag_bm25", 50.0),
    # Lower is better and hydra is higher: negative.
    ("mae", False, {"zero_shot": 1.0, "hydra": 1.5}, "zero_shot", -50.0),
])
def test_relative_improvement_is_positive_when_hydra_is_better(metric, higher, means,
                                                                baseline, percent):
    rel = relative_improvement(_methods(metric, **means), metric, higher_is_better=higher)
    assert rel["baseline"] == baseline
    assert rel["percent"] == pytest.approx(percent)


@pytest.mark.parametrize("means, expected", [
    ({"zero_shot": 0.1}, None),                       # no hydra row
    ({"hydra": 0.3, "history_knn": 0.5}, None),       # no prompt-only row
])
def test_relative_improvement_needs_hydra_and_a_baseline(means, expected):
    assert relative_improvement(_methods("accuracy", **means), "accuracy",
                                higher_is_better=True) is expected


def test_relative_improvement_over_a_zero_baseline_is_undefined():
    rel = relative_improvement(_methods("accuracy", zero_shot=0.0, hydra=0.2), "accuracy",
                               higher_is_better=True)
    assert rel["percent"] is None and rel["hydra_value"] == 0.2


def _result(difference=None):
    task = get_task("synth-tag")
    methods = {m: {"accuracy": Estimate(v, v - 0.05, v + 0.05), "f1": Estimate(v / 2, 0, v)}
               for m, v in [("zero_shot", 0.088), ("rag_bm25", 0.125), ("hydra", 0.3),
                            ("history_knn", 0.3), ("oracle_best_of_8", 0.35)]}
    return build_result(dataset="synth", task=task, generator="smollm2 (embedded)",
                        users={"train": 100, "test": 50}, seeds=[0, 1, 2], methods=methods,
                        difference=difference, run={"queries": 200})


def test_result_document_follows_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    doc = _result()
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["methods"]["hydra"]["accuracy"] == {"mean": 0.3, "ci_low": 0.25, "ci_high": 0.35}
    assert list(doc["methods"]) == ["zero_shot", "rag_bm25", "hydra", "history_knn",
                                    "oracle_best_of_8"]
    assert doc["primary_metric"] == "accuracy" and doc["relative_improvement"]["percent"] == \
        pytest.approx(140.0)


@pytest.mark.parametrize("mutate", [
    lambda d: d["methods"].update({"gpt_magic": d["methods"]["hydra"]}),
    lambda d: d["methods"]["hydra"]["accuracy"].pop("ci_low"),
    lambda d: d.pop("users"),
    lambda d: d.update({"extra": 1}),
    lambda d: d.update({"seeds": []}),
])
def test_schema_rejects_malformed_documents(mutate):
    jsonschema = pytest.importorskip("jsonschema")
    doc = _result()
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, RESULT_SCHEMA)


def test_markdown_table_has_one_row_per_method_with_intervals():
    table = markdown_table(_result())
    lines = table.splitlines()
    assert lines[2] == "| method | accuracy (primary) | f1 |"
    assert "| hydra | 0.300 [0.250, 0.350] | 0.150 [0.000, 0.300] |" in lines
    assert sum(line.startswith("| ") for line in lines) == 1 + 5  # header + methods
    assert "(rag_bm25) on accuracy: +140.0%" in table


def test_bar_chart_is_written_as_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from hydralm.evaluation import plot_result

    path = plot_result(_result(), tmp_path / "charts" / "q.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_paired_difference_goes_into_the_document_and_the_table():
    jsonschema = pytest.importorskip("jsonschema")
    doc = _result(difference=Estimate(0.175, 0.1, 0.25))
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["relative_improvement"]["difference"] == {"mean": 0.175, "ci_low": 0.1,
                                                         "ci_high": 0.25}
    assert "Paired difference (positive: hydra better): +0.175 [+0.100, +0.250]." in \
        markdown_table(doc)


def test_selection_rate_against_random_goes_into_the_document_and_the_table():
    jsonschema = pytest.importorskip("jsonschema")
    task = get_task("synth-tag")
    methods = {"hydra": {"accuracy": Estimate(0.4, 0.3, 0.5)}}
    selection = {"queries": 40, "gold_among_candidates": 0.8, "adapter_picks_best": 0.75,
                 "random_picks_best": 0.55, "majority_vote_accuracy": 0.3}
    doc = build_result(dataset="synth", task=task, generator="g", users={"train": 1, "test": 1},
                       seeds=[0], methods=methods, selection=selection)
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["selection"]["margin_over_random"] == pytest.approx(0.2)
    assert ("Selection over 40 queries: the adapter picks a best candidate 75.0% of the time, a "
            "random pick 55.0% (margin +0.200).") in markdown_table(doc)
    no_candidates = build_result(dataset="synth", task=task, generator="g",
                                 users={"train": 1, "test": 1}, seeds=[0], methods=methods,
                                 selection={"queries": 0})
    assert no_candidates["selection"] is None and "Selection" not in markdown_table(no_candidates)


def test_the_candidate_policy_and_its_training_users_figure_go_into_the_table():
    task = get_task("synth-title")
    methods = {"hydra": {"rouge-1": Estimate(0.2, 0.1, 0.3)}}
    selection = {"queries": 10, "adapter_picks_best": 0.3, "random_picks_best": 0.1,
                 "candidate_policy": {"n": 8, "temperature": 1.0, "greedy_first": True,
                                      "bare_greedy": True, "bare_samples": 3},
                 "train_heldout_hydra": {"by_seed": {"0": 0.25}, "queries": 48, "mean": 0.25}}
    doc = build_result(dataset="synth", task=task, generator="g", users={"train": 1, "test": 1},
                       seeds=[0], methods=methods, selection=selection)
    assert ("Candidate policy: 8 candidates: the bare query's greedy answer, the personalized "
            "prompt's greedy answer, 3 personalized-prompt samples, 3 bare-query samples "
            "(temperature 1). HYDRA on the training users' 48 held-out queries (what compares "
            "policies): 0.250.") in markdown_table(doc)


def test_the_margins_interval_and_the_training_users_selection_go_into_the_table():
    task = get_task("synth-tag")
    methods = {"hydra": {"accuracy": Estimate(0.4, 0.3, 0.5)}}
    selection = {"queries": 40, "adapter_picks_best": 0.75, "random_picks_best": 0.55,
                 "margin_interval": {"mean": 0.2, "ci_low": 0.05, "ci_high": 0.35},
                 "train_heldout_selection": {
                     "queries": 96, "adapter_picks_best": 0.5, "random_picks_best": 0.25,
                     "margin_over_random": 0.25,
                     "margin_interval": {"mean": 0.25, "ci_low": 0.125, "ci_high": 0.375}}}
    doc = build_result(dataset="synth", task=task, generator="g", users={"train": 1, "test": 1},
                       seeds=[0], methods=methods, selection=selection)
    assert ("a random pick 55.0% (margin +0.200 [+0.050, +0.350]). On the training users' 96 "
            "held-out queries: 50.0% against 25.0% (margin +0.250 [+0.125, +0.375]).") in \
        markdown_table(doc)
