"""Loading and validating LaMP files: the real samples, type rules, and a table of bad inputs."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from hydralm.data import (
    LampRecord,
    check_task,
    find_lamp_files,
    iter_lamp,
    lamp_file_names,
    load_lamp,
)
from hydralm.errors import DataValidationError, NotFoundError, UnknownTaskError


def _load(questions, outputs, task):
    return load_lamp(questions, outputs, task=task)


def _stream(questions, outputs, task):
    return list(iter_lamp(questions, outputs, task=task, chunk_bytes=257))


LOADERS = pytest.mark.parametrize("read", [_load, _stream], ids=["load_lamp", "iter_lamp"])


@LOADERS
@pytest.mark.parametrize("task, split, ids, golds, sizes", [
    ("LaMP-1", "train", ["000", "001", "002", "007", "008"],
     ["[1]", "[1]", "[2]", "[2]", "[2]"], [117, 50, 128, 65, 58]),
    ("LaMP-2N", "train", ["100", "101", "102", "103"],
     ["business", "style & beauty", "style & beauty", "entertainment"], [4, 18, 18, 18]),
    ("LaMP-2N", "dev", ["112", "113", "114"], ["politics", "sports", "crime"], [10, 7, 7]),
    ("LaMP-2N", "test", ["120", "121", "122", "123"], [None] * 4, [61] * 4),
])
def test_real_samples_load(lamp_dir, read, task, split, ids, golds, sizes):
    files = find_lamp_files(lamp_dir, task, split)
    assert (files.outputs is None) == (split == "test")
    records = read(files.questions, files.outputs, task)
    assert [r.id for r in records] == ids
    assert [r.user_id for r in records] == ids  # one user per record in LaMP
    assert [r.gold for r in records] == golds
    assert [len(r.profile) for r in records] == sizes
    first = records[0].profile[0]
    assert first["id"] == ids[0] + "0"
    assert all(isinstance(first[f], str) for f in ("title",) + (("category",)
                                                                if task == "LaMP-2N" else ()))


def _write(path, value) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


def _item(i: int, **fields) -> dict:
    return {"id": f"{i}", "title": f"title {i}", "abstract": f"abstract {i}", **fields}


def _records(n: int = 3) -> list[dict]:
    return [{"id": str(i), "input": f"question {i}", "profile": [_item(10 * i + j)
                                                                 for j in range(3)]}
            for i in range(n)]


def test_types_are_normalised(tmp_path):
    rows = [{"id": 7, "user_id": 42, "input": "how would u42 rate this?",
             "profile": [{"id": 1, "text": "great", "score": 5, "date": "2020"},
                         {"id": "2", "text": "meh", "score": "3", "extra": [1]}]}]
    q = _write(tmp_path / "q.json", rows)
    o = _write(tmp_path / "o.json", {"task": "LaMP_3", "golds": [{"id": 7, "output": 4}]})
    (rec,) = load_lamp(q, o, task="LaMP-3")
    assert rec == LampRecord(id="7", user_id="42", input="how would u42 rate this?",
                             profile=({"id": "1", "text": "great", "score": "5", "date": "2020"},
                                      {"id": "2", "text": "meh", "score": "3", "extra": [1]}),
                             gold="4")


def _bad_cases():
    good = _records()
    truncated = json.dumps(good, indent=1)
    cut = truncated.index('"question 1"') + 5
    missing_input = _records()
    del missing_input[1]["input"]
    profile_dict = _records()
    profile_dict[0]["profile"] = {"0": _item(0)}
    input_int = _records()
    input_int[2]["input"] = 12
    id_list = _records()
    id_list[1]["id"] = ["1"]
    title_int = _records()
    title_int[1]["profile"][2]["title"] = 3
    empty = _records()
    empty[2]["profile"] = []
    no_abstract = _records()
    del no_abstract[0]["profile"][1]["abstract"]
    duplicate = _records()
    duplicate[2]["id"] = "1"
    not_object = _records()
    not_object[1] = "record"
    golds = [{"id": str(i), "output": "[1]"} for i in range(3)]
    # (name, questions, outputs, file that is wrong, record index, field, words in the message)
    return [
        ("truncated", truncated[:cut], None, "q", 1, None, "truncated"),
        ("top level not a list", {"id": "0"}, None, "q", None, None, "list"),
        ("missing input", missing_input, None, "q", 1, "input", "missing"),
        ("profile not a list", profile_dict, None, "q", 0, "profile", "list"),
        ("input not a string", input_int, None, "q", 2, "input", "string"),
        ("id a list", id_list, None, "q", 1, "id", "string"),
        ("item field wrong type", title_int, None, "q", 1, "profile[2].title", "integer"),
        ("empty profile", empty, None, "q", 2, "profile", "empty"),
        ("item missing task field", no_abstract, None, "q", 0, "profile[1].abstract", "missing"),
        ("duplicate id", duplicate, None, "q", 2, "id", "duplicate"),
        ("record not an object", not_object, None, "q", 1, None, "object"),
        ("question without gold", good, {"golds": golds[:2]}, "q", 2, "id", "no gold"),
        ("gold without question", good, {"golds": [*golds, {"id": "9", "output": "[2]"}]},
         "o", 3, "id", "no question"),
        ("gold output not a string", good, {"golds": [golds[0], {"id": "1", "output": 1}]},
         "o", 1, "output", "string"),
        ("outputs of another task", good, {"task": "LaMP_2", "golds": golds}, "o", None,
         "task", "LaMP-1"),
    ]


@LOADERS
@pytest.mark.parametrize("name, questions, outputs, bad_file, record, field, words",
                         _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_names_file_record_and_field(tmp_path, read, name, questions, outputs,
                                               bad_file, record, field, words):
    q = _write(tmp_path / "questions.json", questions)
    o = _write(tmp_path / "outputs.json", outputs) if outputs is not None else None
    with pytest.raises(DataValidationError) as info:
        read(q, o, "LaMP-1")
    err = info.value
    path = q if bad_file == "q" else o
    assert (err.path, err.record, err.field) == (path, record, field)
    message = str(err)
    assert f"file {path}" in message and words in message
    assert (f"record {record}" in message) == (record is not None)
    assert (f"field {field!r}" in message) == (field is not None)


@LOADERS
def test_profile_item_missing_category_in_lamp2n(lamp_dir, tmp_path, read):
    rows = json.loads((lamp_dir / "LaMP_2N_news_dev_questions.sample3.json").read_text())
    del rows[2]["profile"][4]["category"]
    q = _write(tmp_path / "q.json", rows)
    with pytest.raises(DataValidationError, match=r"record 2, field 'profile\[4\].category'"):
        read(q, None, "LaMP-2N")


@pytest.mark.parametrize("call", [
    lambda p: load_lamp(p, task="LaMP-9"),
    lambda p: list(iter_lamp(p, task="lamp-1")),
    lambda p: find_lamp_files(p, "LaMP2", "train"),
])
def test_unknown_task_lists_valid_names(tmp_path, call):
    with pytest.raises(UnknownTaskError, match="valid tasks: LaMP-1, LaMP-2N, .*synth-title"):
        call(str(tmp_path))


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        load_lamp(tmp_path / "absent.json", task="LaMP-1")


def test_find_lamp_files_layouts_and_errors(tmp_path):
    v1 = tmp_path / "v1"
    (v1 / "dev").mkdir(parents=True)
    _write(v1 / "dev" / "dev_questions.json", _records())
    assert find_lamp_files(v1, "LaMP-1", "dev") == (str(v1 / "dev" / "dev_questions.json"), None)
    flat = tmp_path / "flat"
    flat.mkdir()
    names = lamp_file_names("synth-tag", "train")
    assert names == ("synth_tag_train_questions.json", "synth_tag_train_outputs.json")
    for name in names:
        _write(flat / name, [])
    assert find_lamp_files(flat, "synth-tag", "train") == tuple(str(flat / n) for n in names)
    with pytest.raises(NotFoundError, match=r"tried synth_tag_\*dev_questions"):
        find_lamp_files(flat, "synth-tag", "dev")
    _write(flat / "synth_tag_x_train_questions.json", [])
    with pytest.raises(DataValidationError, match="several files"):
        find_lamp_files(flat, "synth-tag", "train")
    with pytest.raises(DataValidationError, match="split must be one of"):
        find_lamp_files(flat, "synth-tag", "validation")


def test_streaming_matches_load_and_stays_small(tmp_path):
    """A ~5.7 MB file streams record by record: same records, peak memory far below the file."""
    rows = [{"id": f"r{i}", "input": f"q {i} é", "profile": [
        _item(j, abstract="word " * 100 + "ünïcode") for j in range(10)]} for i in range(1000)]
    q = tmp_path / "big.json"
    _write(q, rows)
    size = q.stat().st_size
    assert size > 5_000_000
    tracemalloc.start()
    count = 0
    try:
        for rec in iter_lamp(q, task="LaMP-1", chunk_bytes=64 * 1024):
            count += 1
            assert rec.id == f"r{count - 1}"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1000
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"
    assert list(iter_lamp(q, task="LaMP-1", chunk_bytes=4096)) == load_lamp(q, task="LaMP-1")


def test_check_task_returns_known_names():
    assert check_task("LaMP-2M") == "LaMP-2M"
