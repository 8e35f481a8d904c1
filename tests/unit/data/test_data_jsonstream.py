"""The streaming JSON-array parser: any chunking gives json.loads' answer; any cut is an error."""

from __future__ import annotations

import io
import json

import pytest

from hydralm.data.jsonstream import iter_json_array
from hydralm.errors import DataValidationError

DOC = [
    {"id": "0", "text": "héllo ☃ \"quoted\" \\ back", "n": 12345678901234567890, "f": -1.5e-7},
    {"id": "1", "nested": [1, [2, {"x": None, "t": True, "f": False}]], "empty": {}},
    123,
    "a string",
    [],
]


class _CountingReader(io.BytesIO):
    """Counts the bytes handed out, to check how far the parser read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def _parse(data: bytes, chunk_bytes: int) -> list:
    return list(iter_json_array(io.BytesIO(data), "mem.json", chunk_bytes=chunk_bytes))


@pytest.mark.parametrize("encoded", [
    json.dumps(DOC, ensure_ascii=False).encode("utf-8"),
    json.dumps(DOC, indent=4).encode("utf-8"),
    b"\xef\xbb\xbf" + json.dumps(DOC, ensure_ascii=False).encode("utf-8"),  # UTF-8 BOM
], ids=["compact-utf8", "indented-ascii", "bom"])
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_every_chunking_gives_the_same_items(encoded, chunk_bytes):
    assert _parse(encoded, chunk_bytes) == DOC


def test_empty_array():
    assert _parse(b" [ ] \n", 1) == []


def test_every_cut_is_an_error_never_a_wrong_result():
    data = json.dumps(DOC, ensure_ascii=False).encode("utf-8")
    for cut in range(1, len(data)):
        for chunk_bytes in (3, 4096):
            with pytest.raises(DataValidationError, match="file mem.json.*truncated"):
                _parse(data[:cut], chunk_bytes)


@pytest.mark.parametrize("data, record, words", [
    (b"", None, "empty file"),
    (b'{"id": 1}', None, "got an object"),
    (b'[{"id": 1}, {"id": 2}', 1, "truncated"),
    (b'[{"id": 1} {"id": 2}]', 0, "expected ',' or ']'"),
    (b'[{"id": 1},]', 1, "invalid JSON"),
    (b'[{"id": 1}] [', None, "unexpected data after the list"),
    (b'[{"id": "\xff"}]', None, "not valid UTF-8"),
])
def test_malformed_arrays(data, record, words):
    with pytest.raises(DataValidationError) as info:
        _parse(data, 4)
    assert info.value.record == record
    assert words in str(info.value)


def test_a_syntax_error_is_reported_without_reading_the_rest():
    rows = [{"id": str(i), "text": "x" * 1000} for i in range(2000)]
    data = json.dumps(rows).encode()
    at = data.index(b'{"id": "50"')
    reader = _CountingReader(data[:at] + b"@" + data[at:])
    with pytest.raises(DataValidationError, match="record 50: invalid JSON") as info:
        list(iter_json_array(reader, "big.json", chunk_bytes=4096))
    assert "line 1" in str(info.value)
    assert reader.bytes_read < 100_000 < len(data)
