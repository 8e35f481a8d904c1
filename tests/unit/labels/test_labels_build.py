"""Labelling users end to end with a deterministic fake generator, and the property that a new
user's fit data holds no text of their test queries or golds."""

from __future__ import annotations

import asyncio
import dataclasses

import pyarrow as pa
import pytest

from hydralm.data import TITLE_PROMPT, Dataset, LampRecord, synthesize, write_dataset
from hydralm.labels import (
    LABEL_SCHEMA,
    LabelsConfig,
    UserData,
    label_users,
    labels_from_table,
    labels_to_table,
    users_from_dataset,
)
from hydralm.tasks import get_task


class EchoGenerator:
    """Answers a one-shot prompt with the example's own answer (so a pair is positive exactly when
    the paired item's label is the gold) and samples candidates round-robin from the choices."""

    def __init__(self) -> None:
        self.requests: list[list[dict]] = []

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.requests.append([dict(m) for m in messages])
        if len(messages) == 3:
            return [messages[1]["content"]] * n
        pool = list(choices) if choices else ["a generated title", "another generated title"]
        return [pool[i % len(pool)] for i in range(n)]


CFG = LabelsConfig(k_retrieve=10, pseudo_queries_per_user=3, similar_per_pseudo=5,
                   n_candidates=8, k_prompt=4)


def _users(task: str, n: int) -> list[UserData]:
    records = synthesize(task, n, seed=1, queries_per_user=2, items_per_user=15)
    by_user: dict[str, list[LampRecord]] = {}
    for rec in records:
        by_user.setdefault(rec.user_id, []).append(rec)
    return [UserData(u, recs[0].profile, tuple(recs)) for u, recs in by_user.items()]


def test_train_stage_labels_every_pair_of_every_query():
    task = get_task("synth-tag")
    users = _users("synth-tag", 2)
    gen = EchoGenerator()
    rerank = asyncio.run(label_users(task, gen, users, model="reranker", stage="train", cfg=CFG))
    # Per user: 2 real queries x 10 BM25 items + 3 pseudo-queries x 5 similar items.
    assert len(rerank) == 2 * (2 * 10 + 3 * 5) == len(gen.requests)
    assert {r.source for r in rerank} == {"query", "pseudo"}
    for row in rerank:
        item = next(i for u in users if u.user_id == row.user_id for i in u.profile
                    if i["id"] == row.item_id)
        assert row.label == int(task.item_target(item) == row.gold)
    adapt = asyncio.run(label_users(task, gen, users, model="adapter", stage="train", cfg=CFG))
    assert len(adapt) == 2 * (2 + 3) * 8
    assert {r.retrieval for r in adapt} == {"bm25"}
    assert all(r.label == int(r.second == r.gold) for r in adapt)


class GreedyMarks(EchoGenerator):
    """Marks the greedy answer (temperature 0) so a test can find it among the candidates."""

    async def chat(self, messages, *, n=1, temperature=0.0, max_tokens=None, choices=None):
        self.requests.append([dict(m) for m in messages])
        return ["GREEDY"] * n if temperature == 0.0 else [f"s{i}" for i in range(n)]


def test_adapter_labels_draw_candidates_with_the_configured_policy():
    task = get_task("synth-title")
    cfg = CFG.model_copy(update={"adapter_greedy_candidate": True})
    rows = asyncio.run(label_users(task, GreedyMarks(), _users("synth-title", 1), model="adapter",
                                   stage="train", cfg=cfg))
    by_query: dict[str, list[str]] = {}
    for row in rows:
        by_query.setdefault(row.query_id, []).append(row.second)
    # the 8 drawn candidates, in order (the train stage may add the gold after them)
    assert by_query and all(c[:8] == ["GREEDY"] + [f"s{i}" for i in range(7)]
                            for c in by_query.values())


def test_label_records_round_trip_through_arrow():
    task = get_task("synth-title")
    rows = asyncio.run(label_users(task, EchoGenerator(), _users("synth-title", 1),
                                   model="adapter", stage="train", cfg=CFG))
    table = labels_to_table(rows)
    assert table.schema == LABEL_SCHEMA
    assert labels_from_table(table) == rows
    assert labels_to_table([]).num_rows == 0


def test_a_table_missing_columns_is_refused():
    with pytest.raises(ValueError, match="not a label table"):
        labels_from_table(pa.table({"first": ["a"]}))


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="got 'ranker'"):
        asyncio.run(label_users(get_task("synth-tag"), EchoGenerator(), [], model="ranker",
                                stage="train", cfg=CFG))


def test_fit_stage_refuses_a_user_with_queries():
    (user,) = _users("synth-tag", 1)
    with pytest.raises(ValueError, match="history only"):
        asyncio.run(label_users(get_task("synth-tag"), EchoGenerator(), [user],
                                model="reranker", stage="fit", cfg=CFG))


LEAK_QUERY, LEAK_GOLD = "zyxquerymarker", "qwvgoldmarker"


@pytest.fixture()
def dataset_with_marked_queries(tmp_path) -> Dataset:
    """A synth-title dataset whose users' queries and golds carry marker words found nowhere else."""
    records = synthesize("synth-title", 3, seed=2, queries_per_user=2, items_per_user=12)
    marked = [dataclasses.replace(
        rec, input=TITLE_PROMPT.format(abstract=f"{LEAK_QUERY} {k} results on graphs"),
        gold=f"{LEAK_GOLD} title {k}") for k, rec in enumerate(records)]
    write_dataset(marked, tmp_path / "ds", task="synth-title", progress=False)
    return Dataset(tmp_path / "ds")


def _texts_seen(gen: EchoGenerator, rows) -> str:
    sent = " ".join(m["content"] for req in gen.requests for m in req)
    stored = " ".join(f"{r.first} {r.second} {r.answer} {r.gold} {r.query_id}" for r in rows)
    return f"{sent} {stored}"


@pytest.mark.parametrize("model", ["reranker", "adapter"])
def test_fit_data_of_new_users_holds_no_text_of_their_queries_or_golds(
        dataset_with_marked_queries, model):
    ds = dataset_with_marked_queries
    task = get_task("synth-title")
    gen = EchoGenerator()
    users = users_from_dataset(ds, ds.users(), stage="fit")
    assert all(not u.queries for u in users)
    rows = asyncio.run(label_users(task, gen, users, model=model, stage="fit", cfg=CFG))
    assert rows and {r.source for r in rows} <= {"pseudo", "gold"}
    seen = _texts_seen(gen, rows)
    assert LEAK_QUERY not in seen and LEAK_GOLD not in seen
    # The same users as training users do carry them: the check above can fail.
    train_gen = EchoGenerator()
    train_users = users_from_dataset(ds, ds.users(), stage="train")
    train_rows = asyncio.run(label_users(task, train_gen, train_users, model=model,
                                         stage="train", cfg=CFG))
    train_seen = _texts_seen(train_gen, train_rows)
    assert LEAK_QUERY in train_seen and LEAK_GOLD in train_seen
