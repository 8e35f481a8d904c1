"""The real LaMP records (../shared/lamp) render, parse and score as LaMP's code does.

Loaded with plain json on purpose: this tests the task code alone, not the data loader.
"""

from __future__ import annotations

import json

import pytest

from hydralm.retrieval import BM25Index
from hydralm.tasks import get_task


def _load(lamp_dir, questions, outputs=None):
    records = json.loads((lamp_dir / questions).read_text(encoding="utf-8"))
    golds = {}
    if outputs is not None:
        data = json.loads((lamp_dir / outputs).read_text(encoding="utf-8"))
        golds = {g["id"]: g["output"] for g in data["golds"]}
    return records, golds


NEWS_FILES = [
    ("LaMP_2N_news_train_questions.sample4.json", "LaMP_2N_news_train_outputs.sample4.json"),
    ("LaMP_2N_news_dev_questions.sample3.json", "LaMP_2N_news_dev_outputs.sample3.json"),
    ("LaMP_2N_news_test_questions.sample4.json", None),
]


@pytest.mark.parametrize("questions, outputs", NEWS_FILES)
def test_news_inputs_are_item_queries_of_their_article(lamp_dir, questions, outputs):
    task = get_task("LaMP-2N")
    records, golds = _load(lamp_dir, questions, outputs)
    for record in records:
        article = task.query_text(record["input"])
        assert article and "categories:" not in article
        # The real input is exactly the pseudo-query template around its article.
        assert task.item_query({"text": article}) == record["input"]
        for item in record["profile"]:
            assert task.item_target(item) in task.labels
            assert task.parse(task.item_target(item)) == item["category"]
        if golds:
            assert task.parse(golds[record["id"]]) == golds[record["id"]]


def test_news_rag_prompt_and_scores(lamp_dir):
    task = get_task("LaMP-2N")
    records, golds = _load(lamp_dir, *NEWS_FILES[0])
    record = records[0]
    items = record["profile"][:4]
    prompt = task.rag_prompt(record["input"], items)
    assert prompt.startswith(f'the category for the article: "{items[0]["text"]}" is ')
    assert prompt.count(", and the category for the article: ") == 3
    assert prompt.endswith(f". {record['input']}")
    gold_list = [golds[r["id"]] for r in records]
    # Golds business, style & beauty x2, entertainment: all right, and 3 of the 15 labels occur,
    # each with F1 1, the other 12 with F1 0: macro-F1 3/15.
    assert task.score(gold_list, gold_list) == pytest.approx({"accuracy": 1.0, "f1": 3 / 15})
    # Raw answers are parsed first; one unparseable answer is wrong.
    answers = [f"Category: {g.title()}." for g in gold_list[:-1]] + ["no idea"]
    scores = task.score([task.parse(a) for a in answers], gold_list)
    assert scores["accuracy"] == pytest.approx(3 / 4)


def test_news_bm25_retrieves_from_the_users_own_profile(lamp_dir):
    task = get_task("LaMP-2N")
    records, _ = _load(lamp_dir, "LaMP_2N_news_test_questions.sample4.json")
    profile = records[0]["profile"]
    index = BM25Index([task.item_text(item) for item in profile])
    top = index.top_k(task.query_text(records[0]["input"]), k=10)
    assert len(top) == min(10, len(profile))
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    # An item's own text, as the query, finds the item first.
    first = profile[5]
    assert index.top_k(task.item_text(first), k=1)[0][0] == 5


def test_citation_records(lamp_dir):
    task = get_task("LaMP-1")
    records, golds = _load(lamp_dir, "LaMP_1_train_questions.sample5.json",
                           "LaMP_1_train_outputs.sample5.json")
    record = records[0]
    # The retrieval query is the two candidate titles (LaMP's classification_citation maker).
    assert task.query_text(record["input"]) == (
        "Reliable broadcasting in product networks with Byzantine faults "
        "Auctions with heterogeneous items and budget limits")
    items = record["profile"][:2]
    prompt = task.rag_prompt(record["input"], items)
    assert prompt.startswith(
        "For an author who has written the paper with the title, and "
        f'"{items[0]["title"]}", and "{items[1]["title"]}" "Algorithms for routing')
    assert all(task.item_text(item).startswith(item["title"]) for item in record["profile"])
    gold_list = [golds[r["id"]] for r in records]   # [1] [1] [2] [2] [2]
    answers = ["[1]", "1", "The answer is [2].", "[1]", "unsure"]
    preds = [task.parse(a) for a in answers]
    assert preds == ["[1]", "[1]", "[2]", "[1]", None]
    # Right: 3 of 5. [1]: TP2 FP1 FN0 -> 4/5; [2]: TP1 FP0 FN2 -> 2/4. Macro (0.8 + 0.5) / 2.
    assert task.score(preds, gold_list) == pytest.approx({"accuracy": 0.6, "f1": 0.65})
