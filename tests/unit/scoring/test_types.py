"""PairGroup validation and the stable user -> bucket map."""

from __future__ import annotations

from collections import Counter

import pytest

from hydralm.scoring import PairGroup, user_bucket


@pytest.mark.parametrize("args, message", [
    (("ranker", "u", ["a"], ["b"]), "kind must be one of .*got 'ranker'"),
    (("reranker", "", ["a"], ["b"]), "user_id must be a non-empty string, got ''"),
    (("adapter", None, ["a"], ["b"]), "user_id must be a non-empty string, got None"),
    (("adapter", "u", ["a", "b"], ["c"]), "same length, got 2 and 1"),
])
def test_bad_groups_are_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        PairGroup.of(*args)


@pytest.mark.parametrize("pairs, size, lengths", [
    (5, 2, [2, 2, 1]),
    (4, 4, [4]),
    (1, 8, [1]),
])
def test_split_keeps_order_and_user(pairs, size, lengths):
    group = PairGroup.of("adapter", "u", [f"f{i}" for i in range(pairs)],
                         [f"s{i}" for i in range(pairs)])
    parts = group.split(size)
    assert [len(p) for p in parts] == lengths
    assert [f for p in parts for f in p.firsts] == list(group.firsts)
    assert {(p.kind, p.user_id) for p in parts} == {("adapter", "u")}


@pytest.mark.parametrize("user_id, num_buckets, bucket", [
    ("alice", 8, "b1"),
    ("bob", 8, "b2"),
    ("user-17", 64, "b19"),
    ("ünï", 3, "b0"),
    ("alice", 1, "b0"),
])
def test_buckets_are_a_fixed_function_of_the_user(user_id, num_buckets, bucket):
    # Fixed values, not hash(): every process, replica and release must route a user alike.
    assert user_bucket(user_id, num_buckets) == bucket


def test_buckets_spread_users_evenly():
    counts = Counter(user_bucket(f"user-{i}", 8) for i in range(8000))
    assert set(counts) == {f"b{i}" for i in range(8)}
    assert min(counts.values()) > 800 and max(counts.values()) < 1200


@pytest.mark.parametrize("num_buckets", [0, -3])
def test_bucket_count_must_be_positive(num_buckets):
    with pytest.raises(ValueError, match=f"got {num_buckets}"):
        user_bucket("u", num_buckets)
