"""The synthetic rating task's generator: product reviews scored 1-5 with a user's own tendency.

A review's text carries the product's *quality* q in 1..5 (how many of its points are good and how
many bad). What score a user gives for that quality is theirs: a fair user scores q, a harsh one
q - 1, a generous one q + 1, a polarized one only 1, 3 or 5. Content alone gives q; the history,
(review, score) pairs of the same user, says how this user maps it to a score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RATING_TENDENCIES", "RatingUser", "rate", "rating_review", "rating_user"]

RATING_NOISE = 0.1  # probability that a score moves one step up or down from the user's rule

# A user's tendency: quality 1..5 -> the score they give (before noise).
RATING_TENDENCIES: dict[str, tuple[int, int, int, int, int]] = {
    "fair": (1, 2, 3, 4, 5),
    "harsh": (1, 1, 2, 3, 4),
    "generous": (2, 3, 4, 5, 5),
    "polarized": (1, 1, 3, 5, 5),
}

PRODUCTS = ("pair of headphones", "coffee maker", "backpack", "desk lamp", "blender",
            "phone case", "rain jacket", "board game", "water bottle", "office chair",
            "electric kettle", "pair of running shoes")
_GOOD = ("works exactly as described", "feels solid and well built", "arrived early and well "
         "packed", "is great value for the price", "took two minutes to set up", "looks even "
         "better than in the photos", "has held up after weeks of daily use", "is quiet and "
         "easy to clean")
_BAD = ("stopped working within a week", "feels cheap and flimsy", "arrived late in a crushed "
        "box", "is overpriced for what you get", "came with confusing instructions", "looks "
        "nothing like the photos", "has a chemical smell that never went away", "was missing a "
        "part")
_OCCASIONS = ("last month", "as a gift", "to replace an old one", "on a friend's advice",
              "for a trip", "during a sale")
# (good points, bad points) of each quality level.
_POINTS = {1: (0, 3), 2: (1, 2), 3: (1, 1), 4: (2, 1), 5: (3, 0)}
_CLOSINGS = {1: ("Returning it.", "A waste of money."), 2: ("Disappointing overall.",
                                                            "Not really worth it."),
             3: ("It is okay.", "Mixed feelings."), 4: ("Pretty good overall.",
                                                        "Mostly happy with it."),
             5: ("Love it.", "Could not be happier.")}


@dataclass(frozen=True)
class RatingUser:
    tendency: str          # a key of RATING_TENDENCIES
    products: tuple[str, ...]  # the 3 product kinds this user buys


def rating_user(rng: random.Random) -> RatingUser:
    return RatingUser(tendency=rng.choice(sorted(RATING_TENDENCIES)),
                      products=tuple(rng.sample(PRODUCTS, 3)))


def rate(rng: random.Random, user: RatingUser, quality: int) -> int:
    """The score `user` gives a product of `quality` (1..5), with RATING_NOISE."""
    score = RATING_TENDENCIES[user.tendency][quality - 1]
    if rng.random() < RATING_NOISE:
        score += rng.choice((-1, 1))
    return min(5, max(1, score))


def rating_review(rng: random.Random, user: RatingUser) -> tuple[str, str]:
    """(review text, this user's score as "1".."5") for one product."""
    quality = rng.randint(1, 5)
    n_good, n_bad = _POINTS[quality]
    product = rng.choice(user.products)
    points = [f"it {p}" for p in rng.sample(_GOOD, n_good) + rng.sample(_BAD, n_bad)]
    rng.shuffle(points)
    body = ", ".join(points[:-1]) + (" and " if len(points) > 1 else "") + points[-1]
    text = (f"I bought this {product} {rng.choice(_OCCASIONS)}: {body}. "
            f"{rng.choice(_CLOSINGS[quality])}")
    return text, str(rate(rng, user, quality))
