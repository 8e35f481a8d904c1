"""Synthetic users whose history predicts their answers (docs/data.md, "Synthetic users").

Two tasks in LaMP's formats:
- `synth-tag` (LaMP-2M style): each user ranks 2-3 favourite tags. A movie description mixes the
  cues of 3 plausible tags, one always a favourite; the user's tag is their highest-ranked favourite
  among the plausible ones (with probability NOISE a random plausible tag instead). Content alone
  leaves about 3 candidates; the history says which one this user picks.
- `synth-title` (LaMP-5 style): each user writes in 1-2 research areas and titles every paper in a
  signature style (a template and a favourite adjective); the abstract gives the content slots,
  the history gives the style.
- `synth-rate` (LaMP-3 style): each user scores product reviews 1-5 with their own tendency (fair,
  harsh, generous or polarized); the review gives the product's quality, the history gives how this
  user turns quality into a score.

Everything is drawn from `random.Random` seeded by (task, seed, user number): a user's data does
not depend on how many other users are generated, and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydralm.data.fs import join_uri, open_output_stream
from hydralm.data.lamp import check_task
from hydralm.data.lamp_files import LampFiles, lamp_file_names
from hydralm.data.schema import SYNTHETIC_TASKS, LampRecord
from hydralm.data.synth_ratings import rating_review, rating_user
from hydralm.data.synth_titles import title_paper, title_user
from hydralm.data.synth_vocab import SETTINGS, TAG_CUES, TAGS

__all__ = ["NOISE", "RATE_PROMPT", "TAG_PROMPT", "TITLE_PROMPT", "synthesize", "write_synthetic"]

NOISE = 0.1  # probability that a user's answer ignores their preference
PLAUSIBLE_TAGS = 3  # tags whose cues one description mixes
PREFERENCE_WEIGHTS = (0.55, 0.3, 0.15)  # how often each favourite (by rank) anchors a movie

TAG_PROMPT = ("Which tag does this movie relate to among the following tags? Just answer with the "
              "tag name without further explanation. tags: [" + ", ".join(TAGS) + "] "
              "description: {description}")
TITLE_PROMPT = "Generate a title for the following abstract of a paper: {abstract}"
RATE_PROMPT = ("What is the score of the following review on a scale of 1 to 5? just answer with 1, "
               "2, 3, 4, or 5 without further explanation. review: {text}")

_DESCRIPTIONS = (
    "{S1} {e1}. {S2} {e2}, and {s3} {e3}.",
    "In this {mood} film set {setting}, {s1} {e1} while {s2} {e2}; meanwhile {s3} {e3}.",
    "{A_mood} tale {setting}: {s1} {e1}. When {s2} {e2}, {s3} {e3}.",
    "Set {setting}, this {mood} story follows {s1}, who {e1}. Along the way {s2} {e2} and "
    "{s3} {e3}.",
    "{S1} {e1} after {s2} {e2}. Set {setting}, the film shows how {s3} {e3}.",
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_movie(rng: random.Random, tags: list[str]) -> str:
    """A description mixing one subject+event clause per tag (in `tags` order)."""
    slots: dict[str, str] = {}
    for k, tag in enumerate(tags, start=1):
        cues = TAG_CUES[tag]
        slots[f"s{k}"] = rng.choice(cues["subjects"])
        slots[f"S{k}"] = _cap(slots[f"s{k}"])
        slots[f"e{k}"] = rng.choice(cues["events"])
    mood = rng.choice(TAG_CUES[rng.choice(tags)]["moods"])
    article = "An" if mood[0] in "aeiou" else "A"
    return rng.choice(_DESCRIPTIONS).format(**slots, mood=mood, A_mood=f"{article} {mood}",
                                            setting=rng.choice(SETTINGS))


def _tag_user(rng: random.Random) -> tuple[str, ...]:
    """A user's favourite tags, best first."""
    return tuple(rng.sample(TAGS, rng.choice((2, 3))))


def _tag_movie(rng: random.Random, favourites: tuple[str, ...]) -> tuple[str, str]:
    """(description, this user's tag) for one movie."""
    anchor = rng.choices(favourites, weights=PREFERENCE_WEIGHTS[:len(favourites)])[0]
    plausible = [anchor, *rng.sample([t for t in TAGS if t != anchor], PLAUSIBLE_TAGS - 1)]
    rng.shuffle(plausible)
    preferred = next(t for t in favourites if t in plausible)
    tag = rng.choice(plausible) if rng.random() < NOISE else preferred
    return describe_movie(rng, plausible), tag


@dataclass(frozen=True)
class _Maker:
    """How one synthetic task draws a user, then each of their items and queries (one stream)."""

    new_user: Callable[[random.Random], Any]
    draw: Callable[[random.Random, Any], tuple[str, str]]     # -> (content, the user's answer)
    item: Callable[[str, str], dict]                          # (content, answer) -> item fields
    prompt: Callable[[str], str]                              # content -> query input


def _records(maker: _Maker, rng: random.Random, uid: str, n_items: int,
             n_queries: int) -> list[LampRecord]:
    user = maker.new_user(rng)
    profile = tuple({"id": f"{uid}-i{j:03d}", **maker.item(*maker.draw(rng, user))}
                    for j in range(n_items))
    records = []
    for k in range(n_queries):
        content, answer = maker.draw(rng, user)
        records.append(LampRecord(id=f"{uid}-q{k}", user_id=uid, profile=profile,
                                  input=maker.prompt(content), gold=answer))
    return records


_MAKERS: dict[str, _Maker] = {
    "synth-tag": _Maker(_tag_user, _tag_movie, lambda d, t: {"description": d, "tag": t},
                        lambda d: TAG_PROMPT.format(description=d)),
    "synth-title": _Maker(title_user, title_paper, lambda a, t: {"title": t, "abstract": a},
                          lambda a: TITLE_PROMPT.format(abstract=a)),
    "synth-rate": _Maker(rating_user, rating_review, lambda x, s: {"text": x, "score": s},
                         lambda x: RATE_PROMPT.format(text=x)),
}


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def synthesize(task: str, users: int, seed: int, *, queries_per_user: int = 4,
               items_per_user: int = 20, first_user: int = 0) -> list[LampRecord]:
    """Records of `users` synthetic users (ids u0000, u0001, ... from `first_user`), with golds.

    Each user has `items_per_user` history items and `queries_per_user` queries sharing them.
    """
    if check_task(task) not in _MAKERS:
        raise ValueError(f"synthetic task must be one of {', '.join(SYNTHETIC_TASKS)}, "
                         f"got {task!r}")
    for name, value in (("users", users), ("queries_per_user", queries_per_user),
                        ("items_per_user", items_per_user)):
        _positive(name, value)
    if first_user < 0:
        raise ValueError(f"first_user must be >= 0, got {first_user!r}")
    records: list[LampRecord] = []
    for number in range(first_user, first_user + users):
        rng = random.Random(f"hydralm-synth/{task}/{seed}/{number}")
        records += _records(_MAKERS[task], rng, f"u{number:04d}", items_per_user,
                            queries_per_user)
    return records


def _dump(value: object, uri: str) -> None:
    with open_output_stream(uri) as out:
        out.write(json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8"))


def write_synthetic(out_dir: str | Path, users: int, seed: int, *,
                    tasks: tuple[str, ...] = SYNTHETIC_TASKS, queries_per_user: int = 4,
                    items_per_user: int = 20, first_user: int = 0,
                    split: str = "train") -> dict[str, LampFiles]:
    """Write LaMP-format questions/outputs files per task; return their paths by task.

    Files are named like LaMP's (`synth_tag_train_questions.json`), so `find_lamp_files` finds them.
    """
    written: dict[str, LampFiles] = {}
    for task in tasks:
        records = synthesize(task, users, seed, queries_per_user=queries_per_user,
                             items_per_user=items_per_user, first_user=first_user)
        names = lamp_file_names(task, split)
        files = LampFiles(join_uri(out_dir, names.questions), join_uri(out_dir, names.outputs))
        _dump([{"id": r.id, "user_id": r.user_id, "input": r.input, "profile": list(r.profile)}
               for r in records], files.questions)
        _dump({"task": task, "golds": [{"id": r.id, "output": r.gold} for r in records]},
              files.outputs)
        written[task] = files
    return written
