"""Answer parsing: good answers in many spellings map to one label; ambiguous or empty ones to
None."""

from __future__ import annotations

import pytest

from hydralm.tasks import get_task, parse_generation, parse_rating

NEWS = get_task("LaMP-2N")
MOVIES = get_task("LaMP-2M")
CITATION = get_task("LaMP-1")


@pytest.mark.parametrize("task, answer, expected", [
    (NEWS, "business", "business"),
    (NEWS, "  Business.\n", "business"),
    (NEWS, '"Food & Drink"', "food & drink"),
    (NEWS, "food and drink", "food & drink"),
    (NEWS, "Category: science & technology", "science & technology"),
    (NEWS, "The article is about Style & Beauty.", "style & beauty"),
    (NEWS, "**politics**", "politics"),
    (MOVIES, "dark comedy", "dark comedy"),          # not also "comedy": the longer phrase wins
    (MOVIES, "Tag: Sci-Fi", "sci-fi"),
    (MOVIES, "sci fi", "sci-fi"),
    (MOVIES, "thought provoking", "thought-provoking"),
    (MOVIES, "It is based on a book.", "based on a book"),
    (CITATION, "[1]", "[1]"),
    (CITATION, "[2].", "[2]"),
    (CITATION, "2", "[2]"),
    (CITATION, "The answer is [1]", "[1]"),
    (CITATION, "[1]: \"A title with 2 in it\"", "[1]"),  # a bracketed label beats a bare digit
])
def test_parse_label_good_answers(task, answer, expected):
    assert task.parse(answer) == expected


@pytest.mark.parametrize("task, answer", [
    (NEWS, None),
    (NEWS, ""),
    (NEWS, "sports or politics"),              # two labels: ambiguous
    (NEWS, "I cannot tell."),
    (NEWS, "womens"),                          # not a whole word
    (MOVIES, "comedy, action"),
    (MOVIES, "sci-fiction"),
    (CITATION, "1 or 2"),
    (CITATION, "[3]"),
])
def test_parse_label_bad_answers(task, answer):
    assert task.parse(answer) is None


@pytest.mark.parametrize("answer, expected", [
    ("4", "4"),
    (" 5\n", "5"),
    ("Score: 3/5", "3"),
    ("I'd give it a 2.", "2"),
    ("4.0", "4"),
    ("10 out of 10, so 5", "5"),   # the first number in 1..5
    ("4.5", None),                 # not a whole number
    ("0", None),
    ("great", None),
    ("", None),
    (None, None),
])
def test_parse_rating(answer, expected):
    assert parse_rating(answer) == expected
    assert get_task("LaMP-3").parse(answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ("  A Title\n", "A Title"),
    ("", None),
    ("   ", None),
    (None, None),
])
def test_parse_generation(answer, expected):
    assert parse_generation(answer) == expected
    assert get_task("LaMP-4").parse(answer) == expected
