"""Synthetic users: deterministic, valid LaMP files, and a preference the history really shows."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from hydralm.data import (
    TAG_PROMPT,
    TITLE_PROMPT,
    find_lamp_files,
    load_lamp,
    synthesize,
    write_synthetic,
)
from hydralm.data.synth_titles import title_case
from hydralm.data.synth_vocab import SIGNATURE_ADJECTIVES, TAG_CUES, TAGS, TITLE_STYLES


def _bytes(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_synthetic(tmp_path / name, users=6, seed=seed, queries_per_user=2,
                        items_per_user=5)
    a, b, c = (_bytes(tmp_path / n) for n in "abc")
    assert sorted(a) == ["synth_rate_train_outputs.json", "synth_rate_train_questions.json",
                         "synth_tag_train_outputs.json", "synth_tag_train_questions.json",
                         "synth_title_train_outputs.json", "synth_title_train_questions.json"]
    assert a == b
    assert all(a[name] != c[name] for name in a)


def test_a_user_does_not_depend_on_how_many_are_generated():
    few = synthesize("synth-tag", 3, seed=9, queries_per_user=2)
    many = synthesize("synth-tag", 5, seed=9, queries_per_user=2)
    assert many[:6] == few
    offset = synthesize("synth-tag", 2, seed=9, queries_per_user=2, first_user=3)
    assert offset == many[6:]


@pytest.mark.parametrize("task, prompt, fields", [
    ("synth-tag", TAG_PROMPT, ("description", "tag")),
    ("synth-title", TITLE_PROMPT, ("title", "abstract")),
])
def test_written_files_are_valid_lamp(tmp_path, task, prompt, fields):
    written = write_synthetic(tmp_path, users=4, seed=0, tasks=(task,), queries_per_user=3,
                              items_per_user=6, split="dev")
    assert find_lamp_files(tmp_path, task, "dev") == written[task]
    records = load_lamp(*written[task], task=task)
    assert records == synthesize(task, 4, seed=0, queries_per_user=3, items_per_user=6)
    assert [r.id for r in records[:4]] == ["u0000-q0", "u0000-q1", "u0000-q2", "u0001-q0"]
    assert {r.user_id for r in records} == {"u0000", "u0001", "u0002", "u0003"}
    head = prompt.split("{")[0]
    for rec in records:
        assert rec.input.startswith(head) and rec.gold
        assert [item["id"] for item in rec.profile] == [f"{rec.user_id}-i{j:03d}"
                                                        for j in range(6)]
        assert all(set(fields) <= set(item) for item in rec.profile)


def test_tag_prompt_lists_lamp2m_tags():
    assert TAG_PROMPT.startswith("Which tag does this movie relate to among the following tags? "
                                 "Just answer with the tag name without further explanation. "
                                 "tags: [sci-fi, based on a book, comedy, action, twist ending, ")
    assert TAG_PROMPT.endswith("violence, true story] description: {description}")
    assert len(TAGS) == 15


def _cue_tags(description: str) -> set[str]:
    return {t for t in TAGS
            if any(p in description for p in TAG_CUES[t]["subjects"] + TAG_CUES[t]["events"])}


def _by_user(records) -> dict[str, list]:
    users: dict[str, list] = {}
    for rec in records:
        users.setdefault(rec.user_id, []).append(rec)
    return users


def test_tagging_needs_the_history():
    """Content names 3 plausible tags; the user's history decides which one is gold."""
    records = synthesize("synth-tag", 60, seed=1, queries_per_user=4, items_per_user=20)
    overall = Counter(item["tag"] for r in records for item in r.profile)
    personal = content_only = majority = 0
    users = _by_user(records)
    for recs in users.values():
        history = Counter(item["tag"] for item in recs[0].profile)
        golds = Counter(r.gold for r in recs)
        majority += history.most_common(1)[0][0] == golds.most_common(1)[0][0]
        for rec in recs:
            plausible = _cue_tags(rec.input.split("description: ", 1)[1])
            assert len(plausible) == 3 and rec.gold in plausible
            personal += max(plausible, key=lambda t: history[t]) == rec.gold
            content_only += max(plausible, key=lambda t: overall[t]) == rec.gold
    assert personal / len(records) > 0.85
    assert content_only / len(records) < 0.5
    assert majority / len(users) > 0.5  # chance: about 1/15


def _style_patterns() -> list[re.Pattern]:
    return [re.compile("^" + re.sub(r"\\\{\w+\\\}", ".+", re.escape(s)) + "$")
            for s in TITLE_STYLES]


def _styles(title: str, patterns) -> set[int]:
    return {i for i, p in enumerate(patterns) if p.match(title)}


def test_titles_follow_the_users_signature_style():
    records = synthesize("synth-title", 40, seed=2, queries_per_user=4, items_per_user=12)
    patterns = _style_patterns()
    same_style = same_adjective = total = 0
    for recs in _by_user(records).values():
        history = [item["title"] for item in recs[0].profile]
        style = Counter(s for t in history for s in _styles(t, patterns)).most_common(1)[0][0]
        adjective = Counter(w for t in history for w in t.split()
                            if w in SIGNATURE_ADJECTIVES).most_common(1)[0][0]
        for rec in recs:
            total += 1
            same_style += style in _styles(rec.gold, patterns)
            same_adjective += adjective in rec.gold.split()
    assert same_style / total > 0.8  # chance: about 1/8
    assert same_adjective / total > 0.8  # chance: about 1/10


@pytest.mark.parametrize("text, expected", [
    ("named entity recognition", "Named Entity Recognition"),
    ("sequence-to-sequence model", "Sequence-to-Sequence Model"),
    ("sim-to-real transfer", "Sim-to-Real Transfer"),
    ("GPU clusters", "GPU Clusters"),
    ("learning of the day", "Learning of the Day"),
])
def test_title_case(text, expected):
    assert title_case(text) == expected


@pytest.mark.parametrize("kwargs, error", [
    ({"task": "LaMP-2M"}, "synthetic task"),
    ({"users": 0}, "users must be a positive integer, got 0"),
    ({"queries_per_user": -1}, "queries_per_user"),
    ({"first_user": -2}, "first_user"),
])
def test_bad_arguments(kwargs, error):
    args = {"task": "synth-tag", "users": 2, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=error):
        synthesize(**args)


def _review_quality(text: str) -> int:
    """The quality level a synth-rate review's closing sentence gives away."""
    from hydralm.data.synth_ratings import _CLOSINGS

    return next(q for q, closings in _CLOSINGS.items() if text.endswith(closings))


def test_rating_needs_the_history():
    """The review gives the quality; the user's history says which score they give for it."""
    records = synthesize("synth-rate", 60, seed=1, queries_per_user=4, items_per_user=20)
    personal = content_only = 0
    for recs in _by_user(records).values():
        history = [(_review_quality(i["text"]), i["score"]) for i in recs[0].profile]
        assert all(s in {"1", "2", "3", "4", "5"} for _, s in history)
        for rec in recs:
            quality = _review_quality(rec.input)
            same = Counter(s for q, s in history if q == quality)
            guess = same.most_common(1)[0][0] if same else str(quality)
            personal += guess == rec.gold
            content_only += str(quality) == rec.gold
    assert personal / len(records) > 0.85
    assert content_only / len(records) < 0.6
