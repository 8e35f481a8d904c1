"""Task registry: per-task prompts, item rendering, answer parsing and LaMP's metrics.

`get_task(name)` returns a `Task` for LaMP-1, LaMP-2N, LaMP-2M, LaMP-3 .. LaMP-7, synth-tag,
synth-title and synth-rate; see docs/tasks.md for the table of kinds, labels, item fields,
renderings and metrics.
"""

from hydralm.tasks.metrics import accuracy, bleu, macro_f1, mae, rating_value, rmse, rouge
from hydralm.tasks.parsing import parse_generation, parse_label, parse_rating
from hydralm.tasks.registry import MOVIE_TAGS, NEWS_CATEGORIES, RATINGS, TASKS, get_task
from hydralm.tasks.task import MAX_ITEM_WORDS, Kind, Task

__all__ = [
    "Kind",
    "MAX_ITEM_WORDS",
    "MOVIE_TAGS",
    "NEWS_CATEGORIES",
    "RATINGS",
    "TASKS",
    "Task",
    "accuracy",
    "bleu",
    "get_task",
    "macro_f1",
    "mae",
    "parse_generation",
    "parse_label",
    "parse_rating",
    "rating_value",
    "rmse",
    "rouge",
]
