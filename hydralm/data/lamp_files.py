"""Find a task's question/output files in a directory laid out like the official LaMP downloads.

Two layouts are recognised, tried in this order:

1. flat, named after the task: `<prefix>_*<split>_questions*.json` with the outputs file named the
   same with `outputs` for `questions`, e.g. `LaMP_2N_news_train_questions.json`,
   `LaMP_1_dev_questions.sample5.json`, `synth_tag_train_questions.json`. The prefix is the task
   name with `-` made `_` (`LaMP-2N` -> `LaMP_2N`);
2. LaMP v1, one directory per task: `<split>/<split>_questions.json` and `<split>_outputs.json`.

A test split normally has no outputs (LaMP hides them): `outputs` is then None.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import NamedTuple

import pyarrow.fs as pafs

from hydralm.data.fs import filesystem_for, join_uri
from hydralm.data.lamp import check_task
from hydralm.errors import DataValidationError, NotFoundError

__all__ = ["LampFiles", "SPLITS", "find_lamp_files", "lamp_file_names"]

SPLITS = ("train", "dev", "test")


class LampFiles(NamedTuple):
    questions: str
    outputs: str | None


def lamp_file_names(task: str, split: str) -> LampFiles:
    """The canonical flat names, as `hydralm data synth` writes them (e.g. synth_tag_train_...)."""
    prefix = check_task(task).replace("-", "_")
    return LampFiles(f"{prefix}_{split}_questions.json", f"{prefix}_{split}_outputs.json")


def _names_in(directory: str) -> set[str]:
    fs, path = filesystem_for(directory)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise NotFoundError(f"LaMP directory not found: {directory}")
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return {info.base_name for info in infos if info.type == pafs.FileType.File}


def _exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def find_lamp_files(directory: str | Path, task: str, split: str) -> LampFiles:
    """Locate the questions (and, if present, outputs) file of `task`/`split` in `directory`.

    Raises NotFoundError listing the patterns tried, or DataValidationError when several files
    match (pass --questions/--outputs explicitly then).
    """
    if split not in SPLITS:
        raise DataValidationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    base = str(directory)
    prefix = check_task(task).replace("-", "_")
    pattern = f"{prefix}_*{split}_questions*.json"
    names = _names_in(base)
    matches = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
    if len(matches) > 1:
        raise DataValidationError(f"several files in {base} match {pattern}: {matches}; "
                                  f"name the questions file explicitly")
    if matches:
        outputs = matches[0].replace("_questions", "_outputs", 1)
        return LampFiles(join_uri(base, matches[0]),
                         join_uri(base, outputs) if outputs in names else None)
    v1 = join_uri(base, split, f"{split}_questions.json")
    if _exists(v1):
        out = join_uri(base, split, f"{split}_outputs.json")
        return LampFiles(v1, out if _exists(out) else None)
    raise NotFoundError(f"no {task} {split} questions in {base}: tried {pattern} and "
                        f"{split}/{split}_questions.json")
