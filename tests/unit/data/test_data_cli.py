"""`hydralm data synth | convert | summary` through the real entry point, in a temp directory."""

from __future__ import annotations

import json

import pytest

from hydralm.cli import main
from hydralm.data import Dataset


def test_synth_convert_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "--task", "synth-tag", "--users", "3", "--seed", "4",
                 "--queries-per-user", "2", "--items-per-user", "5", "--out", "syn"]) == 0
    assert "syn/synth_tag_train_questions.json" in capsys.readouterr().out
    assert main(["data", "convert", "--task", "synth-tag", "--lamp-dir", "syn", "--split",
                 "train", "--out", "ds", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "questions: syn/synth_tag_train_questions.json\n" in out
    assert "num users: 3\n" in out and "num queries: 6\n" in out and "num items: 15\n" in out
    assert Dataset(tmp_path / "ds").users() == ["u0000", "u0001", "u0002"]
    assert main(["data", "summary", "ds", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["task"], summary["num_with_gold"]) == ("synth-tag", 6)
    assert main(["data", "summary", "syn/synth_tag_train_questions.json", "--task", "synth-tag",
                 "--outputs", "syn/synth_tag_train_outputs.json"]) == 0
    assert "num with gold: 6\n" in capsys.readouterr().out


def test_synth_all_with_parquet(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "--users", "2", "--out", str(out), "--parquet"]) == 0
    for task in ("synth-tag", "synth-title"):
        ds = Dataset(out / f"{task}-train")
        assert ds.task == task and ds.meta["num_queries"] == 8


def test_convert_real_lamp_with_explicit_files(lamp_dir, tmp_path, capsys):
    assert main(["data", "convert", "--task", "LaMP-1",
                 "--questions", str(lamp_dir / "LaMP_1_train_questions.sample5.json"),
                 "--outputs", str(lamp_dir / "LaMP_1_train_outputs.sample5.json"),
                 "--out", str(tmp_path / "ds"), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_users"], summary["num_items"], summary["num_with_gold"]) == (5, 418, 5)
    assert summary["outputs"].endswith("LaMP_1_train_outputs.sample5.json")


@pytest.mark.parametrize("argv, message", [
    (["data", "convert", "--task", "LaMP-1", "--lamp-dir", "x", "--out", "o"], "needs --split"),
    (["data", "convert", "--task", "LaMP-1", "--questions", "absent.json", "--out", "o"],
     "no such file: absent.json"),
    (["data", "summary", "q.json"], "pass --task"),
    (["data", "summary", "nowhere"], "meta.json is missing"),
])
def test_errors_are_reported_not_raised(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_bad_questions_file_names_the_record(tmp_path, capsys):
    q = tmp_path / "q.json"
    q.write_text(json.dumps([{"id": "1", "input": "x", "profile": []}]))
    assert main(["data", "convert", "--task", "LaMP-7", "--questions", str(q), "--out",
                 str(tmp_path / "ds"), "--no-progress"]) == 1
    assert f"file {q}, record 0, field 'profile'" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("action", ["convert", "synth", "summary"])
def test_help_explains_with_an_example(action, capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", action, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and f"hydralm data {action}" in text


def test_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    assert "convert" in capsys.readouterr().out
