"""The task registry: every task's fields agree with the data schema, prompts follow LaMP's code."""

from __future__ import annotations

import dataclasses
import re
import string

import pytest

from hydralm.data.schema import PROFILE_FIELDS, TASK_NAMES
from hydralm.errors import DataValidationError, UnknownTaskError, UnsupportedTaskError
from hydralm.tasks import MOVIE_TAGS, NEWS_CATEGORIES, TASKS, get_task

# One profile item per task, with every field the schema requires.
ITEMS = {
    "LaMP-1": {"id": "1", "title": "Paper T", "abstract": "We study X."},
    "LaMP-2N": {"id": "2", "title": "Head", "text": "Body text.", "category": "sports"},
    "LaMP-2M": {"id": "3", "description": "A princess in Rome.", "tag": "romance"},
    "LaMP-3": {"id": "4", "text": "Broke at once.", "score": "1"},
    "LaMP-4": {"id": "5", "title": "Big News", "text": "Something happened."},
    "LaMP-5": {"id": "6", "title": "On X", "abstract": "We study X."},
    "LaMP-6": {"id": "7", "title": "Meeting", "text": "See you at 5."},
    "LaMP-7": {"id": "8", "text": "lovely day"},
    "synth-tag": {"id": "9", "description": "Robots rebel.", "tag": "sci-fi"},
    "synth-title": {"id": "10", "title": "On Y", "abstract": "We study Y."},
    "synth-rate": {"id": "11", "text": "Works well.", "score": "4"},
}


def test_registry_covers_exactly_the_schema_tasks():
    assert tuple(TASKS) == TASK_NAMES
    assert all(get_task(name).name == name for name in TASK_NAMES)


@pytest.mark.parametrize("bad", ["LaMP-2", "lamp-3", "LaMP_3", "", "LaMP-8"])
def test_unknown_task_names_the_bad_name_and_the_valid_ones(bad):
    with pytest.raises(UnknownTaskError, match=rf"unknown task {bad!r}; valid tasks: LaMP-1, "):
        get_task(bad)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_templates_use_only_the_schema_fields(name):
    task = get_task(name)
    allowed = set(PROFILE_FIELDS[name])
    templates = [task.item_template] + ([task.query_template] if task.query_template else [])
    for template in templates:
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert used <= allowed, (name, template)
    assert set(task.text_fields) <= allowed
    assert task.long_field in allowed
    assert task.target_field is None or task.target_field in allowed


@pytest.mark.parametrize("name, kind, labels, primary", [
    ("LaMP-1", "classification", ("[1]", "[2]"), "accuracy"),
    ("LaMP-2N", "classification", NEWS_CATEGORIES, "accuracy"),
    ("LaMP-2M", "classification", MOVIE_TAGS, "accuracy"),
    ("synth-tag", "classification", MOVIE_TAGS, "accuracy"),
    ("LaMP-3", "rating", ("1", "2", "3", "4", "5"), "mae"),
    ("synth-rate", "rating", ("1", "2", "3", "4", "5"), "mae"),
    ("LaMP-4", "generation", None, "rouge-1"),
    ("LaMP-7", "generation", None, "rouge-1"),
    ("synth-title", "generation", None, "rouge-1"),
])
def test_kinds_labels_and_metrics(name, kind, labels, primary):
    task = get_task(name)
    assert (task.kind, task.labels, task.primary_metric) == (kind, labels, primary)
    assert task.choices() == (list(labels) if labels else None)
    assert task.higher_is_better == (kind != "rating")


def test_label_sets_are_lamps():
    assert len(NEWS_CATEGORIES) == len(set(NEWS_CATEGORIES)) == 15
    assert len(MOVIE_TAGS) == len(set(MOVIE_TAGS)) == 15
    assert {"style & beauty", "food & drink", "healthy living"} <= set(NEWS_CATEGORIES)
    assert {"sci-fi", "based on a book", "thought-provoking", "true story"} <= set(MOVIE_TAGS)


@pytest.mark.parametrize("name, expected", [
    ("LaMP-1", '"Paper T"'),
    ("LaMP-2N", 'the category for the article: "Body text." is "sports" '),
    ("LaMP-2M", 'the tag for the movie: "A princess in Rome." is "romance" '),
    ("LaMP-3", '1 is the score for "Broke at once." '),
    ("LaMP-4", '"Big News" is the title for "Something happened." '),
    ("LaMP-5", '"On X" is a title for "We study X." '),
    ("LaMP-6", '"Meeting" is the title for "See you at 5." '),
    ("LaMP-7", '"lovely day" '),
])
def test_render_item_follows_lamp(name, expected):
    assert get_task(name).render_item(ITEMS[name]) == expected


@pytest.mark.parametrize("name, expected", [
    ("LaMP-2N", "{a}, and {b}. Q"),
    ("LaMP-5", "{a}, and {b}. Following the given patterns Q"),
    ("LaMP-7", "{a}, and {b} are written by a person. Following the given patterns Q"),
])
def test_rag_prompt_joins_items_then_the_query(name, expected):
    task = get_task(name)
    item = ITEMS[name]
    rendered = task.render_item(item)
    assert task.rag_prompt("Q", [item, item]) == expected.format(a=rendered, b=rendered)
    assert task.rag_prompt("Q", []) == "Q"


def test_lamp1_rag_prompt_inserts_items_after_title():
    task = get_task("LaMP-1")
    query = 'the paper with the title "T", which reference is related? [1]: "A" [2]: "B"'
    assert task.rag_prompt(query, [ITEMS["LaMP-1"], {"title": "U", "abstract": ""}]) == (
        'the paper with the title, and "Paper T", and "U" "T", which reference is related? '
        '[1]: "A" [2]: "B"')


def test_render_item_truncates_the_long_field_only():
    task = dataclasses.replace(get_task("LaMP-2N"), max_item_words=3)
    item = {"title": "t", "text": "one two   three four five", "category": "crime"}
    assert task.render_item(item) == 'the category for the article: "one two three" is "crime" '
    # Retrieval reads the whole item; a pseudo-query keeps it whole unless asked.
    assert task.item_text(item) == "t one two   three four five"
    assert task.item_query(item).endswith("article: one two   three four five")
    assert task.item_query(item, truncate=True).endswith("article: one two three")


@pytest.mark.parametrize("name, query, expected", [
    ("LaMP-2N", "Which category ... food & drink] article:  Beets are great. ", "Beets are great."),
    ("LaMP-2M", "Which tag ... true story] description: A princess.", "A princess."),
    ("LaMP-3", "What is the score ... review: Broke at once.", "Broke at once."),
    ("LaMP-4", "Generate a headline for the following article: Fire downtown.", "Fire downtown."),
    ("LaMP-5", "Generate a title for the following abstract of a paper: We study X.",
     "We study X."),
    ("LaMP-6", "Generate a subject for the following email: Lunch: at noon?", "Lunch: at noon?"),
    ("LaMP-7", "Paraphrase the following tweet without any explanation before or after it: hi",
     "hi"),
    ("LaMP-1", 'with the title "Mine", which reference is related? [1]: "A b" [2]: "C"', "A b C"),
    ("LaMP-2N", "no marker here ", "no marker here"),     # no "article:": the whole input
])
def test_query_text_strips_the_instruction(name, query, expected):
    assert get_task(name).query_text(query) == expected


@pytest.mark.parametrize("name", [n for n in TASK_NAMES if n != "LaMP-1"])
def test_item_query_is_what_query_text_reads_back(name):
    task = get_task(name)
    item = ITEMS[name]
    pseudo = task.item_query(item)
    assert task.query_text(pseudo) == item[task.long_field]
    assert task.one_shot_messages("Q", item) == [
        {"role": "user", "content": pseudo},
        {"role": "assistant", "content": task.item_target(item)},
        {"role": "user", "content": "Q"},
    ]
    assert task.one_shot_prompt("Q", item) == (
        f"{pseudo}\nAnswer: {task.item_target(item)}\n\nQ\nAnswer:")


@pytest.mark.parametrize("name, target", [
    ("LaMP-2N", "sports"), ("LaMP-2M", "romance"), ("LaMP-3", "1"), ("LaMP-4", "Big News"),
    ("LaMP-5", "On X"), ("LaMP-6", "Meeting"), ("LaMP-7", "lovely day"), ("synth-tag", "sci-fi"),
])
def test_item_target(name, target):
    assert get_task(name).item_target(ITEMS[name]) == target


@pytest.mark.parametrize("call", ["item_target", "item_query", "one_shot_prompt"])
def test_lamp1_items_make_no_pseudo_queries(call):
    task = get_task("LaMP-1")
    assert not task.supports_pseudo_queries
    args = (ITEMS["LaMP-1"],) if call != "one_shot_prompt" else ("Q", ITEMS["LaMP-1"])
    with pytest.raises(UnsupportedTaskError, match="LaMP-1"):
        getattr(task, call)(*args)


@pytest.mark.parametrize("item, message", [
    ({"title": "x"}, "LaMP-2N profile item has no 'text'; got keys ['title']"),
    ({"text": "x", "category": None}, "LaMP-2N profile item has 'category' = None"),
])
def test_a_missing_field_names_the_field(item, message):
    with pytest.raises(DataValidationError, match=re.escape(message)):
        get_task("LaMP-2N").render_item(item)


def test_score_by_kind():
    news = get_task("LaMP-2N")
    # 2 of 3 right. Macro-F1 over all 15 labels: sports TP1 FP0 FN1 -> 2/3; crime TP1 FP1 FN0
    # -> 2/3; the other 13 labels 0. (4/3) / 15.
    assert news.score(["sports", "crime", "crime"], ["sports", "sports", "crime"]) == (
        pytest.approx({"accuracy": 2 / 3, "f1": (4 / 3) / 15}))
    # LaMP-3: "x" with gold 2 counts as 5 (farther): errors 0, 3 -> MAE 1.5, RMSE sqrt(9/2).
    assert get_task("LaMP-3").score(["4", "x"], ["4", "2"]) == pytest.approx(
        {"mae": 1.5, "rmse": (9 / 2) ** 0.5})
    scores = get_task("LaMP-4").score(["big news", None], ["Big News", "Other"])
    assert scores["rouge-1"] == pytest.approx(0.5) and set(scores) == {"rouge-1", "rouge-l", "bleu"}


@pytest.mark.parametrize("name, preds, golds, match", [
    ("LaMP-2N", ["sports"], ["football"], "not one of the task's labels"),
    ("LaMP-3", ["3"], ["3.5"], "not one of the task's labels"),
    ("LaMP-3", ["3", "4"], ["3"], "one prediction per gold"),
    ("LaMP-4", [], [], "empty"),
])
def test_score_rejects_bad_golds(name, preds, golds, match):
    with pytest.raises(ValueError, match=match):
        get_task(name).score(preds, golds)
