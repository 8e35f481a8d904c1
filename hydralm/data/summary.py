"""Counts of a dataset or a record stream, as `hydralm data summary` prints them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from hydralm.data.schema import LampRecord

__all__ = ["spread", "summarize_records"]


def spread(values: list[int]) -> dict[str, float]:
    """min / median / max of a non-empty list (a whole median printed as an int)."""
    median = statistics.median(values)
    return {"min": min(values), "median": int(median) if median == int(median) else median,
            "max": max(values)}


def summarize_records(records: Iterable[LampRecord], task: str) -> dict[str, Any]:
    """Users, items (one profile per user), queries and per-user spreads of a record stream."""
    items: dict[str, int] = {}
    queries: dict[str, int] = {}
    with_gold = 0
    for rec in records:
        items.setdefault(rec.user_id, len(rec.profile))
        queries[rec.user_id] = queries.get(rec.user_id, 0) + 1
        with_gold += rec.gold is not None
    summary: dict[str, Any] = {"task": task, "num_users": len(items),
                               "num_items": sum(items.values()),
                               "num_queries": sum(queries.values()), "num_with_gold": with_gold}
    if items:
        summary["items_per_user"] = spread(list(items.values()))
        summary["queries_per_user"] = spread(list(queries.values()))
    return summary
