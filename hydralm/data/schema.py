"""The record type every part of hydralm shares, and the profile fields of each task.

LaMP's user-based split gives one record per user: `user_id` is the record id unless the record
carries a `user_id` field (synthetic sets do, with several queries per user).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["LAMP_TASKS", "PROFILE_FIELDS", "SYNTHETIC_TASKS", "TASK_NAMES", "LampRecord",
           "TaskName"]

# Required profile-item fields per task (besides "id"; any item may also carry "date").
# From the LaMP code and ../shared/lamp/README.md.
PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "LaMP-1": ("title", "abstract"),
    "LaMP-2N": ("text", "title", "category"),
    "LaMP-2M": ("description", "tag"),
    "LaMP-3": ("text", "score"),
    "LaMP-4": ("text", "title"),
    "LaMP-5": ("title", "abstract"),
    "LaMP-6": ("text", "title"),
    "LaMP-7": ("text",),
    # Synthetic tasks (hydralm data synth): LaMP-2M-style tagging, LaMP-5-style titles and
    # LaMP-3-style ratings.
    "synth-tag": ("description", "tag"),
    "synth-title": ("title", "abstract"),
    "synth-rate": ("text", "score"),
}
LAMP_TASKS: tuple[str, ...] = tuple(t for t in PROFILE_FIELDS if t.startswith("LaMP-"))
SYNTHETIC_TASKS: tuple[str, ...] = tuple(t for t in PROFILE_FIELDS if t.startswith("synth-"))
TASK_NAMES: tuple[str, ...] = tuple(PROFILE_FIELDS)


def _known_task(value: str) -> str:
    if value not in TASK_NAMES:
        raise ValueError(f"unknown task {value!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return value


# A config field holding a task name: refused with the valid names when unknown.
TaskName = Annotated[str, AfterValidator(_known_task)]


@dataclass(frozen=True)
class LampRecord:
    """One query of one user, with that user's history (profile) and, where known, the gold."""

    id: str
    user_id: str
    input: str
    profile: tuple[dict, ...] = field(default=())
    gold: str | None = None
