"""Malformed LaMP files beyond tests/unit/data/test_data_lamp.py's table: every one is refused
with a DataValidationError naming the file (and the record where there is one), or loads as
documented."""

from __future__ import annotations

import json

import pytest

from hydralm.data import iter_lamp, load_lamp
from hydralm.errors import DataValidationError


def _item(i: int) -> dict:
    return {"id": str(i), "title": f"title {i}", "abstract": f"abstract {i}"}


def _record(i: int, **changes) -> dict:
    return {"id": str(i), "input": f"question {i}", "profile": [_item(0), _item(1)], **changes}


def _file(*records: dict) -> bytes:
    return json.dumps(list(records)).encode()


REFUSED = [
    ("bytes not UTF-8 inside a record", _file(_record(0)).replace(b"question", b"quest\xffion"),
     None),
    ("truncated multi-byte character", _file(_record(0))[:-3] + b"\xe2\x82", None),
    ("profile item is a string", _file(_record(0, profile=["an item"])), 0),
    ("profile item id is null", _file(_record(0, profile=[{**_item(0), "id": None}])), 0),
    ("input is NaN", _file(_record(0)).replace(b'"question 0"', b"NaN"), 0),
    ("input is a huge number", _file(_record(0)).replace(b'"question 0"', b"1e999"), 0),
    ("profile is null", _file(_record(0, profile=None)), 0),
    ("record is a list", b'[["0", "q", []]]', 0),
    ("only whitespace", b"  \n ", None),
    ("second record broken", _file(_record(0))[:-1] + b', {"id": "1", "input": ]', 1),
    ("nested 10,000 deep", b'[{"id": "0", "input": "q", "profile": [{"id": "0", "title": '
     + b"[" * 10_000 + b"]" * 10_000 + b', "abstract": "a"}]}]', 0),
    ("lone surrogate escape", _file(_record(0)).replace(b"question 0", b"question \\ud800"), 0),
    ("lone surrogate in an item", _file(_record(0, profile=[{**_item(0), "title": "\ud800"}])),
     0),
    ("NUL in the user id", _file(_record(0, id="a\x00b")), 0),
    ("newline in an item id", _file(_record(0, profile=[{**_item(0), "id": "a\nb"}])), 0),
]


@pytest.mark.parametrize("read", [load_lamp, lambda p, **kw: list(iter_lamp(p, **kw))],
                         ids=["load_lamp", "iter_lamp"])
@pytest.mark.parametrize("name, data, record", REFUSED,
                         ids=[c[0] if isinstance(c, tuple) else c.id for c in REFUSED])
def test_malformed_files_are_refused_naming_where(tmp_path, read, name, data, record):
    path = tmp_path / "questions.json"
    path.write_bytes(data)
    with pytest.raises(DataValidationError) as info:
        read(path, task="LaMP-1")
    assert str(path) in str(info.value)
    if record is not None:
        assert info.value.record == record, str(info.value)


def test_a_byte_order_mark_and_a_huge_field_are_accepted(tmp_path):
    path = tmp_path / "questions.json"
    path.write_bytes(b"\xef\xbb\xbf" + _file(_record(0, input="x" * (4 << 20))))
    (record,) = load_lamp(path, task="LaMP-1")
    assert len(record.input) == 4 << 20
