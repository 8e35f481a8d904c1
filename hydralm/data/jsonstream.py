"""Stream the items of a top-level JSON array without reading the whole file.

LaMP's largest question files are hundreds of MB, one JSON list of records. This parser keeps only
the current record (and a read-ahead chunk) in memory: it decodes UTF-8 incrementally and hands each
array item to `json.JSONDecoder.raw_decode`, reading more when an item is cut by a chunk boundary.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from hydralm.errors import DataValidationError

__all__ = ["DEFAULT_CHUNK_BYTES", "iter_json_array"]

DEFAULT_CHUNK_BYTES = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
# A decode error this many characters before the end of the buffer cannot be caused by the buffer
# ending there (a cut literal or number fails within a few characters of the end), so it is a real
# syntax error and is reported at once instead of after reading the rest of the file.
_CUT_MARGIN = 64
# What may remain after the error position when the file was cut inside a token.
_PARTIAL = re.compile(r"[-+0-9.eE]*$|(t|tr|tru|f|fa|fal|fals|n|nu|nul)$|\\?u[0-9a-fA-F]{0,4}$|\\$")
_KINDS = {"{": "an object", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}


class _Buffer:
    """Decoded text read so far from `pos` on, plus where it sits in the file (for messages)."""

    def __init__(self, stream: BinaryIO, chunk_bytes: int, path: str) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.chunk_bytes = chunk_bytes
        self.path = path
        self.text = ""
        self.pos = 0
        self.eof = False
        self._dropped_chars = 0
        self._dropped_lines = 0

    def fill(self, nbytes: int) -> bool:
        """Append up to `nbytes` more; False once the file is exhausted."""
        if self.eof:
            return False
        data = self._stream.read(nbytes)
        try:
            added = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            what = ("file ends inside a UTF-8 character (truncated JSON)"
                    if not data and exc.reason == "unexpected end of data" else "not valid UTF-8")
            raise DataValidationError(f"{what}: {exc}", path=self.path) from exc
        if self.pos:  # drop what was consumed, remembering where we are for error messages
            self._dropped_lines += self.text.count("\n", 0, self.pos)
            self._dropped_chars += self.pos
            self.text = self.text[self.pos:]
            self.pos = 0
        self.text += added
        self.eof = not data
        return bool(data)

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), skipping whitespace."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill(self.chunk_bytes):
                return ""

    def where(self, pos: int) -> str:
        line = self._dropped_lines + self.text.count("\n", 0, pos) + 1
        return f"line {line} (character {self._dropped_chars + pos + 1})"

    def decode(self, decoder: json.JSONDecoder, index: int) -> Any:
        """Decode one value at `pos`, reading (ever larger) chunks until it is complete."""
        nbytes = self.chunk_bytes
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except RecursionError as exc:
                raise DataValidationError(
                    f"nested too deeply to read (beyond Python's recursion limit) at "
                    f"{self.where(self.pos)}", path=self.path, record=index) from exc
            except json.JSONDecodeError as exc:
                maybe_cut = exc.msg.startswith("Unterminated string") or (
                    exc.pos >= len(self.text) - _CUT_MARGIN)
                if maybe_cut and not self.eof:
                    self.fill(nbytes)
                    nbytes *= 2  # a huge record: re-parse from its start O(log size) times
                    continue
                cut = exc.msg.startswith("Unterminated string") or bool(
                    _PARTIAL.match(self.text, exc.pos))
                reason = "file ends inside it (truncated JSON)" if cut else "invalid JSON"
                raise DataValidationError(
                    f"{reason}: {exc.msg} at {self.where(exc.pos)}", path=self.path,
                    record=index) from exc
            if end >= len(self.text) and not self.eof:
                self.fill(nbytes)  # a bare number may go on in the next chunk: decode again
                continue
            self.pos = end
            return value


def iter_json_array(stream: BinaryIO, path: str, *,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Any]:
    """Yield each item of the JSON array that makes up `stream`, one at a time.

    Raises DataValidationError naming `path` (and the item index where there is one) when the top
    level is not an array, an item is cut off or malformed, or data follows the array.
    """
    buf = _Buffer(stream, chunk_bytes, path)
    first = buf.peek()
    if first != "[":
        got = "an empty file" if not first else _KINDS.get(first, f"{buf.text[buf.pos:][:20]!r}")
        raise DataValidationError(f"top level must be a JSON list of records, got {got}",
                                  path=path)
    buf.pos += 1
    decoder = json.JSONDecoder()
    index = 0
    if buf.peek() == "]":
        buf.pos += 1
    else:
        while True:
            if buf.peek() == "":
                raise DataValidationError("file ends inside the list (truncated JSON)",
                                          path=path, record=index)
            yield buf.decode(decoder, index)
            sep = buf.peek()
            buf.pos += 1
            if sep == "]":
                break
            if sep != ",":
                got = "the end of the file (truncated JSON)" if not sep else repr(sep)
                raise DataValidationError(f"expected ',' or ']' after the record, got {got}",
                                          path=path, record=index)
            index += 1
    if buf.peek() != "":
        raise DataValidationError(f"unexpected data after the list at {buf.where(buf.pos)}",
                                  path=path)
