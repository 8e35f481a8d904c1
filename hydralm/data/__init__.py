"""LaMP files -> validated records -> Parquet; synthetic users. See docs/data.md."""

from __future__ import annotations

from hydralm.data.fs import filesystem_for, open_input_stream, open_output_stream
from hydralm.data.lamp import check_task, iter_lamp, load_lamp, load_outputs
from hydralm.data.lamp_files import SPLITS, LampFiles, find_lamp_files, lamp_file_names
from hydralm.data.parquet import Dataset, write_dataset
from hydralm.data.parquet_layout import user_bucket
from hydralm.data.schema import (
    LAMP_TASKS,
    PROFILE_FIELDS,
    SYNTHETIC_TASKS,
    TASK_NAMES,
    LampRecord,
)
from hydralm.data.summary import summarize_records
from hydralm.data.synth import TAG_PROMPT, TITLE_PROMPT, synthesize, write_synthetic

__all__ = [
    "Dataset",
    "LAMP_TASKS",
    "LampFiles",
    "LampRecord",
    "PROFILE_FIELDS",
    "SPLITS",
    "SYNTHETIC_TASKS",
    "TAG_PROMPT",
    "TASK_NAMES",
    "TITLE_PROMPT",
    "check_task",
    "filesystem_for",
    "find_lamp_files",
    "iter_lamp",
    "lamp_file_names",
    "load_lamp",
    "load_outputs",
    "open_input_stream",
    "open_output_stream",
    "summarize_records",
    "synthesize",
    "user_bucket",
    "write_dataset",
    "write_synthetic",
]
