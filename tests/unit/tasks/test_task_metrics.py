"""LaMP's metrics, pinned on cases computed by hand (the computation is in each comment)."""

from __future__ import annotations

import math
import random

import pytest

from hydralm.tasks import accuracy, bleu, macro_f1, mae, rating_value, rmse, rouge


def test_accuracy_counts_exact_matches_and_none_as_wrong():
    # 2 of 4 equal their gold (None never does): 2/4.
    assert accuracy(["a", "b", None, "c"], ["a", "a", "b", "c"]) == 0.5


@pytest.mark.parametrize("preds, golds, labels, expected", [
    # a: TP1 FP0 FN1 -> 2/(2+0+1) = 2/3; b: TP1 FP1 FN0 -> 2/3; c: TP0 FP0 FN1 -> 0.
    # macro = (2/3 + 2/3 + 0) / 3 = 4/9.
    (["a", "b", "b", None], ["a", "a", "b", "c"], ("a", "b", "c"), 4 / 9),
    # The same plus a label nobody uses: its F1 is 0 (0/0 -> 0) and it still counts: (4/3) / 4.
    (["a", "b", "b", None], ["a", "a", "b", "c"], ("a", "b", "c", "d"), 1 / 3),
    # All right, but only 1 of the 2 labels occurs: (1 + 0) / 2.
    (["a", "a"], ["a", "a"], ("a", "b"), 0.5),
    # A prediction outside the label set is a miss, not a false positive of any label:
    # a: TP0 FP0 FN1 -> 0; b: TP1 FP0 FN0 -> 1. macro = 1/2.
    (["zzz", "b"], ["a", "b"], ("a", "b"), 0.5),
])
def test_macro_f1_by_hand(preds, golds, labels, expected):
    assert macro_f1(preds, golds, labels) == pytest.approx(expected)


def test_macro_f1_agrees_with_sklearn_on_random_answers():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(7)
    labels = ("x", "y", "z", "w")
    golds = [rng.choice(labels[:3]) for _ in range(60)]
    preds = [rng.choice([*labels, "other"]) for _ in range(60)]
    ids = {label: i for i, label in enumerate(labels)}
    expected = sklearn_metrics.f1_score(
        [ids[g] for g in golds], [ids.get(p, -1) for p in preds],
        labels=list(range(len(labels))), average="macro", zero_division=0)
    assert macro_f1(preds, golds, labels) == pytest.approx(expected)


def test_mae_and_rmse_by_hand():
    # |1-2| + |3-3| + |5-3| = 1 + 0 + 2 -> MAE 3/3 = 1; RMSE sqrt((1 + 0 + 4) / 3) = sqrt(5/3).
    assert mae([1, 3, 5], [2, 3, 3]) == 1.0
    assert rmse([1, 3, 5], [2, 3, 3]) == pytest.approx(math.sqrt(5 / 3))


@pytest.mark.parametrize("pred, gold, expected", [
    ("4", 2.0, 4.0),
    (" 2 ", 5.0, 2.0),
    (None, 4.0, 1.0),       # 1 is 3 away from 4, 5 is 1 away: the farther is 1
    ("great", 2.0, 5.0),    # 5 is farther from 2
    ("nan", 1.0, 5.0),      # not finite: unparseable
    ("", 3.0, 5.0),         # a tie (both 2 away) goes to 5, as in LaMP
])
def test_rating_value_follows_lamp(pred, gold, expected):
    assert rating_value(pred, gold) == expected


def test_rouge_by_hand_without_stemming():
    # "the cat sat" vs gold "the cat ran away": 2 shared unigrams, P = 2/3, R = 2/4,
    # F = 2PR/(P+R) = (2/3) / (7/6) = 4/7; the LCS "the cat" is also 2 long, so ROUGE-L = 4/7.
    assert rouge(["the cat sat"], ["the cat ran away"]) == pytest.approx(
        {"rouge-1": 4 / 7, "rouge-l": 4 / 7})
    # Word order: unigrams all match (1.0), the LCS is 1 of 2 words (P = R = F = 1/2).
    assert rouge(["cat the"], ["the cat"]) == pytest.approx({"rouge-1": 1.0, "rouge-l": 0.5})
    # No stemming (LaMP's evaluation does not stem): "cats" does not match "cat".
    assert rouge(["cats"], ["cat"])["rouge-1"] == 0.0
    # The mean over examples: (1 + 0) / 2, and None scores as an empty answer.
    assert rouge(["a b", None], ["a b", "c"]) == pytest.approx({"rouge-1": 0.5, "rouge-l": 0.5})


def test_bleu_by_hand():
    # "the cat sat on the mat" vs "the cat sat on a mat" (6 words each, brevity penalty 1):
    # clipped n-gram precisions 1: 5/6, 2: 3/5, 3: 2/4, 4: 1/3;
    # BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.53728, i.e. 53.73 on
    # sacrebleu's 0-100 scale.
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        100 * (1 / 12) ** 0.25, abs=1e-3)
    assert bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(100.0)


@pytest.mark.parametrize("call", [
    lambda: accuracy(["a"], ["a", "b"]),
    lambda: macro_f1([], [], ("a",)),
    lambda: macro_f1(["a"], ["a"], ()),
    lambda: mae([1.0, 2.0], [1.0]),
    lambda: rmse([], []),
    lambda: rouge(["a"], []),
    lambda: bleu([], []),
])
def test_metrics_reject_mismatched_or_empty_inputs(call):
    with pytest.raises(ValueError, match="prediction|empty|label set"):
        call()
