"""`hydralm eval --quick` end to end: the embedded SmolLM2, HYDRA trained per seed on Ray, every
method on the test users, and a re-run answered entirely by the response cache."""

from __future__ import annotations

import json

import pytest

from hydralm.cli import main
from hydralm.evaluation import RESULT_SCHEMA

pytestmark = pytest.mark.integration

ROWS = ["zero_shot", "icl_random", "rag_bm25", "hydra_reranker", "hydra_adapter", "hydra",
        "history_knn", "oracle_best_of_8"]


def _eval(tmp_path, base_url: str) -> dict:
    code = main(["eval", "--quick", "--no-progress", "--base-url", base_url,
                 "--work-dir", str(tmp_path / "work"), "--results-dir",
                 str(tmp_path / "results")])
    assert code == 0
    return json.loads((tmp_path / "results" / "quality_synth_synth-tag.json").read_text())


def test_quick_eval_writes_the_table_and_a_rerun_costs_no_generator_call(
        tmp_path, ray_local, llm_base_url, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    first = _eval(tmp_path, llm_base_url)
    jsonschema.validate(first, RESULT_SCHEMA)
    assert list(first["methods"]) == ROWS
    assert first["users"] == {"train": 8, "test": 6} and first["seeds"] == [0]
    assert first["run"]["queries"] == 12 and first["run"]["generator_calls"] > 0
    for row, metrics in first["methods"].items():
        for name, e in metrics.items():
            assert e["ci_low"] <= e["mean"] <= e["ci_high"], (row, name, e)
    # The oracle picks among hydra's own candidates: never below hydra.
    assert first["methods"]["oracle_best_of_8"]["accuracy"]["mean"] >= \
        first["methods"]["hydra"]["accuracy"]["mean"]
    table = (tmp_path / "results" / "quality_synth_synth-tag.md").read_text()
    assert "| hydra |" in table and "| oracle_best_of_8 |" in table
    png = (tmp_path / "results" / "quality_synth_synth-tag.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    second = _eval(tmp_path, llm_base_url)
    assert second["run"]["generator_calls"] == 0
    assert second["run"]["eval"]["0"]["cache_hits"] > 0
    assert second["methods"] == first["methods"]
    assert "generator calls: 0" in capsys.readouterr().out
