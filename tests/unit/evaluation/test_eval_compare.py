"""`hydralm eval-compare`: two eval runs on the same test queries, compared query by query with the
eval's paired bootstrap, and clear refusals for runs that are not comparable."""

from __future__ import annotations

import json

import pytest

from hydralm.errors import NotFoundError
from hydralm.evaluation.compare import compare_runs, format_comparison

GOLDS = ("sci-fi", "comedy", "action", "romance", "sci-fi", "fantasy")


def _predictions(path, answers: dict[str, list[str]], users, golds) -> None:
    rows = [{"user_id": users[i % len(users)], "query_id": f"q{i}", "gold": gold,
             "answers": {m: a[i] for m, a in answers.items()}}
            for i, gold in enumerate(golds)]
    path.parent.mkdir(parents=True)
    # written in another order than sorted: pairing is by user and query
    path.write_text("\n".join(json.dumps(r) for r in reversed(rows)) + "\n")


def _run(tmp_path, name: str, answers: dict[str, list[str]], *, task: str = "synth-tag",
         seeds=(0, 1), users=("u1", "u2", "u3"), golds=GOLDS, heads=None,
         training: dict[str, list[str]] | None = None) -> str:
    """A result file and its work directory's predictions: per seed one row per (user, query),
    each method answering `answers[method][i]` to query i; with `training`, the training users'
    held-out queries answered likewise (users t1, t2)."""
    work = tmp_path / name / "work"
    for seed in seeds:
        _predictions(work / f"seed-{seed}" / "eval" / "predictions.jsonl", answers, users, golds)
        if training is not None:
            _predictions(work / f"seed-{seed}" / "guard-calibration" / "eval" / "predictions.jsonl",
                         training, ("t1", "t2"), golds)
    result = tmp_path / name / "quality.json"
    result.write_text(json.dumps({"task": task, "seeds": list(seeds),
                                  "methods": {m: {} for m in answers},
                                  "run": {"work_dir": str(work),
                                          **({"heads": heads} if heads else {})}}))
    return str(result)


def test_b_minus_a_is_paired_per_query_and_points_to_the_better_run(tmp_path):
    a = _run(tmp_path, "a", {"rag_bm25": list(GOLDS), "hydra": ["x", "x", "action", "x", "x", "x"]})
    b = _run(tmp_path, "b", {"rag_bm25": list(GOLDS), "hydra": list(GOLDS[:4]) + ["x", "x"]})
    doc = compare_runs(a, b)
    assert doc["queries"] == 12 and doc["primary_metric"] == "accuracy"
    same = doc["methods"]["rag_bm25"]
    assert same["same_answers"] == 1.0
    assert same["differences"]["accuracy"] == {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    hydra = doc["methods"]["hydra"]
    assert hydra["same_answers"] == pytest.approx(6 / 12)     # "action" and the last two misses
    diff = hydra["differences"]["accuracy"]
    assert diff["mean"] == pytest.approx(3 / 6)                # 4 of 6 right against 1 of 6
    assert 0.0 < diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    # the other direction is the negative, and a method subset is honoured
    back = compare_runs(b, a, methods=["hydra"])
    assert list(back["methods"]) == ["hydra"]
    assert back["methods"]["hydra"]["differences"]["accuracy"]["mean"] == pytest.approx(-0.5)
    table = format_comparison(doc)
    assert "| hydra | +0.500 [" in table and "| 50.0% |" in table


def test_a_lower_is_better_metric_still_reads_positive_when_b_is_better(tmp_path):
    golds = ("1", "2", "3", "4", "5", "3")
    a = _run(tmp_path, "a", {"hydra": ["5"] * 6}, task="synth-rate", golds=golds)
    b = _run(tmp_path, "b", {"hydra": list(golds)}, task="synth-rate", golds=golds)
    mae = compare_runs(a, b)["methods"]["hydra"]["differences"]["mae"]
    assert mae["mean"] == pytest.approx((4 + 3 + 2 + 1 + 0 + 2) / 6)   # A's MAE - B's MAE (0)


def test_runs_that_are_not_comparable_are_refused_naming_why(tmp_path):
    a = _run(tmp_path, "a", {"hydra": list(GOLDS)})
    with pytest.raises(ValueError, match="not runs of the same task and seeds"):
        compare_runs(a, _run(tmp_path, "title", {"hydra": list(GOLDS)}, task="synth-title"))
    with pytest.raises(ValueError, match="not runs of the same task and seeds"):
        compare_runs(a, _run(tmp_path, "one-seed", {"hydra": list(GOLDS)}, seeds=(0,)))
    other_users = _run(tmp_path, "users", {"hydra": list(GOLDS)}, users=("u1", "u9", "u3"))
    with pytest.raises(ValueError, match=r"seed 0: .* answered different test queries .*'u2'"):
        compare_runs(a, other_users)
    with pytest.raises(ValueError, match=r"no method 'hydra_zero_fit' in both runs"):
        compare_runs(a, a, methods=["hydra_zero_fit"])
    missing = tmp_path / "gone.json"
    missing.write_text(json.dumps({"task": "synth-tag", "seeds": [0],
                                   "run": {"work_dir": str(tmp_path / "nowhere")}}))
    with pytest.raises(NotFoundError, match=r"nowhere/seed-0/eval/predictions.jsonl"):
        compare_runs(missing, a)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"task": "synth-tag", "seeds": [0]}))
    with pytest.raises(ValueError, match=r"bare.json: not a hydralm eval result .*run.work_dir"):
        compare_runs(bare, a)


def test_hydralm_eval_compare_prints_the_table_and_json(tmp_path, capsys):
    from hydralm.cli import main

    a = _run(tmp_path, "a", {"hydra": ["x"] * 6})     # written before results named their heads
    b = _run(tmp_path, "b", {"hydra": list(GOLDS)},
             heads={"reranker": "dense int8", "adapter": "residual r=8 bfloat16"})
    assert main(["eval-compare", a, b, "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "B - A on synth-tag, 12 test queries (seeds 0, 1)" in out
    assert f"A: {a}\n" in out
    assert f"B: {b} (heads: reranker dense int8, adapter residual r=8 bfloat16)\n" in out
    assert "| hydra | +1.000 [+1.000, +1.000]" in out
    assert main(["eval-compare", a, b, "--json", "--methods", "hydra"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["methods"]["hydra"]["same_answers"] == 0.0


def test_training_part_compares_the_training_users_answers_never_the_test_users(tmp_path):
    # the test users' answers say B is worse; the training users' say it is better: --training
    # reads only the latter, over the rows the training predictions hold (the HYDRA methods)
    a = _run(tmp_path, "a", {"rag_bm25": list(GOLDS), "hydra": list(GOLDS)},
             training={"hydra_reranker": list(GOLDS), "hydra": ["x"] * 6})
    b = _run(tmp_path, "b", {"rag_bm25": list(GOLDS), "hydra": ["x"] * 6},
             training={"hydra_reranker": list(GOLDS), "hydra": list(GOLDS[:3]) + ["x"] * 3})
    doc = compare_runs(a, b, part="training")
    assert doc["part"] == "training" and doc["queries"] == 12
    assert list(doc["methods"]) == ["hydra_reranker", "hydra"]
    assert doc["methods"]["hydra"]["differences"]["accuracy"]["mean"] == pytest.approx(0.5)
    assert doc["methods"]["hydra_reranker"]["same_answers"] == 1.0
    assert compare_runs(a, b)["methods"]["hydra"]["differences"]["accuracy"]["mean"] == -1.0
    assert "12 training users' held-out queries" in format_comparison(doc)
    with pytest.raises(ValueError, match="part must be one of"):
        compare_runs(a, b, part="users")


def test_a_run_without_training_answers_is_refused_saying_what_saves_them(tmp_path):
    a = _run(tmp_path, "a", {"hydra": list(GOLDS)}, training={"hydra": list(GOLDS)})
    old = _run(tmp_path, "old", {"hydra": list(GOLDS)})
    with pytest.raises(NotFoundError, match=r"guard-calibration/eval/predictions.jsonl does not "
                                            r"exist: .*guard.heads: fitted"):
        compare_runs(a, old, part="training")
    other = _run(tmp_path, "other", {"hydra": list(GOLDS)}, training={"hydra": list(GOLDS)},
                 golds=GOLDS[:5])
    with pytest.raises(ValueError, match="answered different training users' held-out queries"):
        compare_runs(a, other, part="training")


def test_hydralm_eval_compare_training_flag(tmp_path, capsys):
    from hydralm.cli import main

    a = _run(tmp_path, "a", {"hydra": list(GOLDS)}, training={"hydra": ["x"] * 6})
    b = _run(tmp_path, "b", {"hydra": list(GOLDS)}, training={"hydra": list(GOLDS)})
    assert main(["eval-compare", a, b, "--training", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "B - A on synth-tag, 12 training users' held-out queries (seeds 0, 1)" in out
    assert "| hydra | +1.000 [+1.000, +1.000]" in out
