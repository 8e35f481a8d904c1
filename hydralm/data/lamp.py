"""Read and validate LaMP question/output files into LampRecords.

Formats (official LaMP, also written by `hydralm data synth`):
- questions: a JSON list of `{"id", "input", "profile": [item, ...]}`, optionally `"user_id"`;
- outputs: `{"task": "LaMP_k", "golds": [{"id", "output"}, ...]}`.

Type rules (documented in docs/data.md): ids (record, user, item) are strings; an integer id is
accepted and turned into its decimal string, since it names the same record; anything else is an
error. `input` is a non-empty string, `profile` a non-empty list of objects, each with an `id` and
every field the task needs (PROFILE_FIELDS) as a string. LaMP-3's `score` and gold may be written as
numbers in the files: they are normalised to strings ("4"). Other item keys are kept as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydralm.data.fs import open_input_stream
from hydralm.data.jsonstream import DEFAULT_CHUNK_BYTES, iter_json_array
from hydralm.data.schema import PROFILE_FIELDS, TASK_NAMES, LampRecord
from hydralm.errors import DataValidationError, UnknownTaskError

__all__ = ["check_task", "iter_lamp", "load_lamp", "load_outputs", "validate_record"]

log = logging.getLogger(__name__)

_NUMERIC_FIELDS = {("LaMP-3", "score"), ("synth-rate", "score")}  # fields a file may write as a number


def check_task(task: str) -> str:
    """Return `task` if it is known, else raise UnknownTaskError listing the valid names."""
    if task not in PROFILE_FIELDS:
        raise UnknownTaskError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return task


_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


def _type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, as a user reading the file sees it."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _check_unicode(value: str, *, path: str, record: int, field: str) -> str:
    """`value` unless it holds a lone surrogate (a `\\ud800` escape JSON allows but UTF-8 cannot
    encode, which the tokenizer and Parquet would refuse later)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataValidationError(f"holds a lone surrogate {value[exc.start]!r} at character "
                                  f"{exc.start}, not valid Unicode text", path=path,
                                  record=record, field=field) from None
    return value


def _as_id(value: Any, *, path: str, record: int, field: str) -> str:
    if isinstance(value, str) and value:
        bad = next((c for c in value if ord(c) < 0x20 or ord(c) == 0x7F), None)
        if bad is not None:
            raise DataValidationError(f"must not hold control characters, got {bad!r} in "
                                      f"{value!r:.60}", path=path, record=record, field=field)
        return _check_unicode(value, path=path, record=record, field=field)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataValidationError(f"must be a non-empty string (or an integer), got {value!r}",
                              path=path, record=record, field=field)


def _as_text(value: Any, *, numeric: bool, path: str, record: int, field: str) -> str:
    if isinstance(value, str):
        return _check_unicode(value, path=path, record=record, field=field)
    if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    raise DataValidationError(f"must be a string, got {_type_name(value)} {value!r:.60}",
                              path=path, record=record, field=field)


def _field(obj: dict, name: str, *, path: str, record: int, prefix: str = "") -> Any:
    if name not in obj:
        raise DataValidationError(f"missing (keys present: {sorted(obj)})", path=path,
                                  record=record, field=prefix + name)
    return obj[name]


def _check_item(item: Any, j: int, task: str, *, path: str, record: int) -> dict:
    prefix = f"profile[{j}]."
    if not isinstance(item, dict):
        raise DataValidationError(f"must be an object, got {_type_name(item)}", path=path,
                                  record=record, field=f"profile[{j}]")
    out = dict(item)
    out["id"] = _as_id(_field(item, "id", path=path, record=record, prefix=prefix),
                       path=path, record=record, field=prefix + "id")
    for name in PROFILE_FIELDS[task]:
        value = _field(item, name, path=path, record=record, prefix=prefix)
        out[name] = _as_text(value, numeric=(task, name) in _NUMERIC_FIELDS, path=path,
                             record=record, field=prefix + name)
    if "date" in item and not isinstance(item["date"], str):
        raise DataValidationError(f"must be a string, got {_type_name(item['date'])}",
                                  path=path, record=record, field=prefix + "date")
    return out


def validate_record(obj: Any, index: int, task: str, *, path: str) -> LampRecord:
    """One questions-file record as a LampRecord (gold None), or DataValidationError."""
    if not isinstance(obj, dict):
        raise DataValidationError(f"must be an object, got {_type_name(obj)}", path=path,
                                  record=index)
    rid = _as_id(_field(obj, "id", path=path, record=index), path=path, record=index,
                 field="id")
    text = _field(obj, "input", path=path, record=index)
    if not isinstance(text, str) or not text.strip():
        raise DataValidationError(f"must be a non-empty string, got {text!r:.60}", path=path,
                                  record=index, field="input")
    _check_unicode(text, path=path, record=index, field="input")
    user_id = rid
    if "user_id" in obj:
        user_id = _as_id(obj["user_id"], path=path, record=index, field="user_id")
    profile = _field(obj, "profile", path=path, record=index)
    if not isinstance(profile, list):
        raise DataValidationError(f"must be a list of items, got {_type_name(profile)}",
                                  path=path, record=index, field="profile")
    if not profile:
        raise DataValidationError("is empty: every record needs at least one history item",
                                  path=path, record=index, field="profile")
    items = tuple(_check_item(it, j, task, path=path, record=index) for j, it in enumerate(profile))
    return LampRecord(id=rid, user_id=user_id, input=text, profile=items)


def _task_matches(declared: str, task: str) -> bool:
    """Official outputs say "LaMP_2" for both LaMP-2N and LaMP-2M; synthetic ones the task name."""
    name = declared.replace("_", "-")
    return name == task or (task.startswith("LaMP-") and name == task.rstrip("NM"))


def load_outputs(uri: str | Path, *, task: str) -> tuple[list[str], dict[str, str]]:
    """Read an outputs file: (gold ids in file order, {id: output}), validated."""
    path = str(uri)
    with open_input_stream(uri) as stream:
        raw = stream.read()
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataValidationError(f"not valid JSON: {exc}", path=path) from exc
    if not isinstance(doc, dict):
        raise DataValidationError(f"top level must be an object with 'golds', got "
                                  f"{_type_name(doc)}", path=path)
    declared = doc.get("task")
    if declared is not None and not (isinstance(declared, str) and _task_matches(declared, task)):
        raise DataValidationError(f"is for {declared!r}, not {task!r}", path=path, field="task")
    golds = doc.get("golds")
    if not isinstance(golds, list):
        raise DataValidationError(f"must be a list, got {_type_name(golds)}", path=path,
                                  field="golds")
    order: list[str] = []
    outputs: dict[str, str] = {}
    for i, gold in enumerate(golds):
        if not isinstance(gold, dict):
            raise DataValidationError(f"must be an object, got {_type_name(gold)}", path=path,
                                      record=i)
        gid = _as_id(_field(gold, "id", path=path, record=i), path=path, record=i, field="id")
        value = _as_text(_field(gold, "output", path=path, record=i), numeric=task in ("LaMP-3", "synth-rate"),
                         path=path, record=i, field="output")
        if gid in outputs:
            raise DataValidationError(f"duplicate id {gid!r}", path=path, record=i, field="id")
        order.append(gid)
        outputs[gid] = value
    return order, outputs


class _GoldMatcher:
    """Attaches golds to records and checks that both files name exactly the same ids."""

    def __init__(self, questions: str, outputs: str | None, task: str) -> None:
        self.questions, self.outputs = questions, outputs
        self.order, self.golds = load_outputs(outputs, task=task) if outputs else ([], {})
        self.seen: set[str] = set()

    def attach(self, rec: LampRecord, index: int) -> LampRecord:
        if rec.id in self.seen:
            raise DataValidationError(f"duplicate id {rec.id!r}", path=self.questions,
                                      record=index, field="id")
        self.seen.add(rec.id)
        if self.outputs is None:
            return rec
        if rec.id not in self.golds:
            raise DataValidationError(f"id {rec.id!r} has no gold in {self.outputs}",
                                      path=self.questions, record=index, field="id")
        return LampRecord(id=rec.id, user_id=rec.user_id, input=rec.input, profile=rec.profile,
                          gold=self.golds[rec.id])

    def finish(self) -> None:
        extra = [i for i, gid in enumerate(self.order) if gid not in self.seen]
        if extra:
            first = self.order[extra[0]]
            raise DataValidationError(
                f"{len(extra)} gold id(s) have no question in {self.questions}, first {first!r}",
                path=self.outputs, record=extra[0], field="id")


def iter_lamp(questions: str | Path, outputs: str | Path | None = None, *, task: str,
              chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[LampRecord]:
    """Stream validated records from a questions file (local or s3://), one at a time.

    Memory holds one record, one read chunk and the (small) outputs file. Golds that match no
    question are reported once the questions file has been read to the end.
    """
    check_task(task)
    qpath = str(questions)
    matcher = _GoldMatcher(qpath, str(outputs) if outputs is not None else None, task)
    with open_input_stream(questions) as stream:
        items = iter_json_array(stream, qpath, chunk_bytes=chunk_bytes)
        for index, obj in enumerate(items):
            yield matcher.attach(validate_record(obj, index, task, path=qpath), index)
    matcher.finish()


def load_lamp(questions: str | Path, outputs: str | Path | None = None, *,
              task: str) -> list[LampRecord]:
    """Read and validate a whole questions file (and its outputs) into memory.

    Parses with `json.loads` (the fast path); on a syntax error it re-reads the file with the
    streaming parser, whose error names the record where the JSON breaks.
    """
    check_task(task)
    qpath = str(questions)
    matcher = _GoldMatcher(qpath, str(outputs) if outputs is not None else None, task)
    with open_input_stream(questions) as stream:
        raw = stream.read()
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        for _ in iter_lamp(questions, outputs, task=task):
            pass  # raises DataValidationError naming the record where the JSON breaks
        raise DataValidationError(f"not valid JSON: {exc}", path=qpath) from exc
    if not isinstance(doc, list):
        raise DataValidationError(f"top level must be a JSON list of records, got "
                                  f"{_type_name(doc)}", path=qpath)
    records = [matcher.attach(validate_record(obj, i, task, path=qpath), i)
               for i, obj in enumerate(doc)]
    matcher.finish()
    log.info("loaded %d %s records from %s", len(records), task, qpath)
    return records
