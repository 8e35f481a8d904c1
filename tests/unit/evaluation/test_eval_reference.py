"""The reference rows on hand-made histories: history kNN's vote and the best-of-N oracle."""

from __future__ import annotations

import pytest

from hydralm.evaluation import history_knn, oracle_best
from hydralm.tasks import get_task

TAG = get_task("synth-tag")
RATING = get_task("LaMP-3")
TITLE = get_task("LaMP-5")


def _tag_query(description: str) -> str:
    return f"Which tag ... tags: [...] description: {description}"


# Items about robots rank first for a robot query (BM25); the rest share no word with it.
TAG_HISTORY = [
    {"id": "0", "description": "robot robot space", "tag": "sci-fi"},
    {"id": "1", "description": "a robot wedding", "tag": "comedy"},
    {"id": "2", "description": "robot on a farm", "tag": "comedy"},
    {"id": "3", "description": "robot heist", "tag": "action"},
    {"id": "4", "description": "a quiet garden drama", "tag": "classic"},
    {"id": "5", "description": "flowers in spring", "tag": "classic"},
]


def test_history_knn_classification_takes_the_majority_of_the_bm25_top_k():
    # Top 4 for "robot": items 0-3 -> comedy x2, sci-fi, action; the classic items do not count.
    assert history_knn(TAG, _tag_query("robot"), TAG_HISTORY, k=4) == "comedy"


def test_history_knn_breaks_ties_by_the_best_ranked_item():
    # Top 2: item 0 (two "robot"s, ranked first) sci-fi vs one comedy: a 1-1 tie -> sci-fi.
    assert history_knn(TAG, _tag_query("robot"), TAG_HISTORY, k=2) == "sci-fi"


def test_history_knn_rating_is_the_unrounded_mean_score():
    history = [{"id": str(i), "text": f"great pasta {i}", "score": str(s)}
               for i, s in enumerate([5, 4, 4, 1])]
    query = "What is the score ... review: great pasta"
    assert history_knn(RATING, query, history, k=4) == "3.5"
    assert RATING.score([history_knn(RATING, query, history, k=4)], ["4"])["mae"] == 0.5


def test_history_knn_generation_copies_the_top_item_target():
    history = [
        {"id": "0", "title": "Fast Graph Kernels", "abstract": "we study graph kernels"},
        {"id": "1", "title": "Deep Audio", "abstract": "we study audio with deep nets"},
    ]
    query = "Generate a title for the following abstract of a paper: audio nets for speech"
    assert history_knn(TITLE, query, history, k=4) == "Deep Audio"


def test_history_knn_without_history_has_no_answer_and_k_must_be_positive():
    assert history_knn(TAG, _tag_query("robot"), [], k=4) is None
    with pytest.raises(ValueError, match="k must be at least 1"):
        history_knn(TAG, _tag_query("robot"), TAG_HISTORY, k=0)


@pytest.mark.parametrize("task, candidates, gold, expected", [
    # Classification: the gold when any candidate parses to it.
    (TAG, ["comedy", "Sci-Fi.", "action"], "sci-fi", "sci-fi"),
    # None right: the first parsed candidate (all equally wrong).
    (TAG, ["comedy", "action"], "sci-fi", "comedy"),
    # Rating: the closest score; "4" beats "1" and an unparseable answer for gold 5.
    (RATING, ["1", "no idea", "4"], "5", "4"),
    # Generation: the highest ROUGE-1 against the gold.
    (TITLE, ["Deep Audio", "Fast Graph Kernels for Audio", "Graph"], "Fast Graph Kernels",
     "Fast Graph Kernels for Audio"),
    (TAG, [], "sci-fi", None),
])
def test_oracle_picks_the_candidate_closest_to_the_gold(task, candidates, gold, expected):
    assert oracle_best(task, candidates, gold) == expected
