"""The task registry: LaMP-1 .. LaMP-7 (2N: news categories, 2M: movie tags) and the synthetic
tasks, each filled in from LaMP's code (templates, corpus fields, query extraction, labels)."""

from __future__ import annotations

import dataclasses
from functools import partial
from types import MappingProxyType

from hydralm.errors import UnknownTaskError
from hydralm.tasks.prompts import after_title, citation_candidates, rag_template, text_after
from hydralm.tasks.task import Task

__all__ = ["MOVIE_TAGS", "NEWS_CATEGORIES", "RATINGS", "TASKS", "get_task"]

# In the order of LaMP's input prompts (the query templates below list them in this order).
NEWS_CATEGORIES: tuple[str, ...] = (
    "women", "religion", "politics", "style & beauty", "entertainment", "culture & arts",
    "sports", "science & technology", "travel", "business", "crime", "education",
    "healthy living", "parents", "food & drink",
)
MOVIE_TAGS: tuple[str, ...] = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
    "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
    "violence", "true story",
)
RATINGS: tuple[str, ...] = ("1", "2", "3", "4", "5")

_ITEMS_THEN_QUERY = rag_template("{items}. {query}")
_PATTERNS_THEN_QUERY = rag_template("{items}. Following the given patterns {query}")
_TWEETS_THEN_QUERY = rag_template(
    "{items} are written by a person. Following the given patterns {query}")

_GENERATION = {"kind": "generation", "labels": None, "primary_metric": "rouge-1",
               "higher_is_better": True}
_CLASSIFICATION = {"kind": "classification", "primary_metric": "accuracy",
                   "higher_is_better": True}

LAMP_1 = Task(
    name="LaMP-1", labels=("[1]", "[2]"), **_CLASSIFICATION,
    text_fields=("title", "abstract"), long_field="title",
    item_template='"{title}"',
    target_field=None, query_template=None,
    extract_query=citation_candidates, assemble=after_title,
)
LAMP_2N = Task(
    name="LaMP-2N", labels=NEWS_CATEGORIES, **_CLASSIFICATION,
    text_fields=("title", "text"), long_field="text",
    item_template='the category for the article: "{text}" is "{category}" ',
    target_field="category",
    query_template=(
        "Which category does this article relate to among the following categories? Just answer "
        "with the category name without further explanation. categories: "
        f"[{', '.join(NEWS_CATEGORIES)}] article: {{text}}"),
    extract_query=partial(text_after, marker="article:"), assemble=_ITEMS_THEN_QUERY,
)
LAMP_2M = Task(
    name="LaMP-2M", labels=MOVIE_TAGS, **_CLASSIFICATION,
    text_fields=("description",), long_field="description",
    item_template='the tag for the movie: "{description}" is "{tag}" ',
    target_field="tag",
    query_template=(
        "Which tag does this movie relate to among the following tags? Just answer with the tag "
        f"name without further explanation. tags: [{', '.join(MOVIE_TAGS)}] "
        "description: {description}"),
    extract_query=partial(text_after, marker="description:"), assemble=_ITEMS_THEN_QUERY,
)
LAMP_3 = Task(
    name="LaMP-3", kind="rating", labels=RATINGS, primary_metric="mae", higher_is_better=False,
    text_fields=("text",), long_field="text",
    item_template='{score} is the score for "{text}" ',
    target_field="score",
    query_template=(
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, "
        "3, 4, or 5 without further explanation. review: {text}"),
    extract_query=partial(text_after, marker="review:"), assemble=_ITEMS_THEN_QUERY,
)
LAMP_4 = Task(
    name="LaMP-4", **_GENERATION,
    text_fields=("title", "text"), long_field="text",
    item_template='"{title}" is the title for "{text}" ',
    target_field="title",
    query_template="Generate a headline for the following article: {text}",
    extract_query=partial(text_after, marker="article:"), assemble=_ITEMS_THEN_QUERY,
)
LAMP_5 = Task(
    name="LaMP-5", **_GENERATION,
    text_fields=("title", "abstract"), long_field="abstract",
    item_template='"{title}" is a title for "{abstract}" ',
    target_field="title",
    query_template="Generate a title for the following abstract of a paper: {abstract}",
    extract_query=partial(text_after, marker="paper:"), assemble=_PATTERNS_THEN_QUERY,
)
LAMP_6 = Task(
    name="LaMP-6", **_GENERATION,
    text_fields=("text",), long_field="text",
    item_template='"{title}" is the title for "{text}" ',
    target_field="title",
    query_template="Generate a subject for the following email: {text}",
    extract_query=partial(text_after, marker=":"), assemble=_ITEMS_THEN_QUERY,
)
LAMP_7 = Task(
    name="LaMP-7", **_GENERATION,
    text_fields=("text",), long_field="text",
    item_template='"{text}" ',
    # A tweet's pseudo-query asks to paraphrase the tweet itself: an identity target, weak signal.
    target_field="text",
    query_template=(
        "Paraphrase the following tweet without any explanation before or after it: {text}"),
    extract_query=partial(text_after, marker=":"), assemble=_TWEETS_THEN_QUERY,
)

_ALL = (
    LAMP_1, LAMP_2N, LAMP_2M, LAMP_3, LAMP_4, LAMP_5, LAMP_6, LAMP_7,
    # Synthetic users (hydralm data synth) reuse LaMP-2M's, LaMP-5's and LaMP-3's formats.
    dataclasses.replace(LAMP_2M, name="synth-tag"),
    dataclasses.replace(LAMP_5, name="synth-title"),
    dataclasses.replace(LAMP_3, name="synth-rate"),
)
TASKS: MappingProxyType[str, Task] = MappingProxyType({task.name: task for task in _ALL})


def get_task(name: str) -> Task:
    """The registered task called `name` (exact spelling, e.g. "LaMP-2M")."""
    try:
        return TASKS[name]
    except (KeyError, TypeError) as exc:
        raise UnknownTaskError(
            f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from exc
