"""The synthetic title task's generator: research abstracts and titles in a user's own style."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hydralm.data.synth_vocab import AREAS, SIGNATURE_ADJECTIVES, TITLE_STYLES

__all__ = ["TitleUser", "title_case", "title_paper", "title_user"]

STYLE_NOISE = 0.1  # probability that one title uses another style / adjective than the user's

_SYLLABLES = ("Gra", "Tra", "Mo", "Sym", "Lex", "Neu", "Vi", "Qua", "Flo", "Kin", "Ro", "Ze", "Ca",
              "Dy", "Pho", "Sta")
_SUFFIXES = ("Net", "Former", "Gen", "Fuse", "Map", "Flow", "Bench", "Opt")
_CHALLENGES = ("existing methods scale poorly", "labeled data is scarce",
               "inputs are noisy and heterogeneous", "current approaches ignore long-range "
               "structure", "evaluation protocols are inconsistent", "models overfit to "
               "spurious cues")
_CONTRIBUTIONS = ("jointly learns representations and decisions", "exploits structure shared "
                  "across tasks", "requires no additional labels", "adapts to distribution shift "
                  "at test time", "reduces computation without losing accuracy", "comes with "
                  "guarantees on its error")
_RESULTS = ("improves accuracy by {n}% over strong baselines", "matches the state of the art at a "
            "fraction of the cost", "reduces error by {n}%", "generalizes to unseen settings",
            "runs {n}x faster than prior work")
_ABSTRACTS = (
    "{Problem} in {domain} remains difficult because {challenge}. We propose {acronym}, a "
    "{method} that {contribution}. Experiments on {dataset} show that {acronym} {result}.",
    "We study {problem} for {domain}. Since {challenge}, we introduce {acronym}, a new {method} "
    "which {contribution}. On {dataset}, it {result}.",
    "This paper presents {acronym}, a {method} for {problem} in {domain}. Unlike prior work, it "
    "{contribution}. Evaluated on {dataset}, {acronym} {result}.",
)
_SMALL_WORDS = {"a", "an", "and", "for", "in", "of", "on", "the", "to", "via", "with"}


@dataclass(frozen=True)
class TitleUser:
    """A writer's latent signature: their areas, title template and favourite adjective."""

    areas: tuple[str, ...]
    style: int
    adjective: str


def title_user(rng: random.Random) -> TitleUser:
    areas = tuple(rng.sample(sorted(AREAS), rng.choice((1, 2))))
    return TitleUser(areas, rng.randrange(len(TITLE_STYLES)), rng.choice(SIGNATURE_ADJECTIVES))


def title_case(text: str) -> str:
    """Capitalize each word (and hyphen part) except small words; keep words with capitals."""
    def word(w: str, first: bool) -> str:
        if w != w.lower() or (w in _SMALL_WORDS and not first):
            return w
        return "-".join(p if p in _SMALL_WORDS and k else p[:1].upper() + p[1:]
                        for k, p in enumerate(w.split("-")))
    return " ".join(word(w, i == 0) for i, w in enumerate(text.split(" ")))


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def _other(rng: random.Random, options: tuple, own: object) -> object:
    """`own`, or with probability STYLE_NOISE a different option."""
    if rng.random() >= STYLE_NOISE:
        return own
    return rng.choice([o for o in options if o != own])


def title_paper(rng: random.Random, user: TitleUser) -> tuple[str, str]:
    """(abstract, title) of one paper by `user`."""
    pool = AREAS[rng.choice(user.areas)]
    slots = {name: rng.choice(pool[key]) for name, key in
             (("problem", "problems"), ("domain", "domains"), ("method", "methods"),
              ("dataset", "datasets"))}
    acronym = rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES).lower() + rng.choice(_SUFFIXES)
    abstract = rng.choice(_ABSTRACTS).format(
        **slots, Problem=slots["problem"][:1].upper() + slots["problem"][1:], acronym=acronym,
        challenge=rng.choice(_CHALLENGES), contribution=rng.choice(_CONTRIBUTIONS),
        result=rng.choice(_RESULTS).format(n=rng.randint(2, 30)))
    style = TITLE_STYLES[_other(rng, tuple(range(len(TITLE_STYLES))), user.style)]
    adjective = _other(rng, SIGNATURE_ADJECTIVES, user.adjective)
    method = slots["method"]
    if "{method}s" in style:
        style, method = style.replace("{method}s", "{method}"), _plural(method)
    title = style.format(acronym=acronym, adj=adjective, method=title_case(method),
                         problem=title_case(slots["problem"]), domain=title_case(slots["domain"]))
    return abstract, title
