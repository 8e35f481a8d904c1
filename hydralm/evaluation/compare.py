"""Two `hydralm eval` runs compared on the same queries: `hydralm eval-compare A B`.

A result file names its task, seeds and work directory (`run.work_dir`), whose
`seed-<n>/eval/predictions.jsonl` holds every method's answer to every test query, and (where the
guard was calibrated on fitted heads) `seed-<n>/guard-calibration/eval/predictions.jsonl` the
HYDRA methods' answers to the training users' held-out queries with their calibration heads. Two
runs on the same users and queries (the same config and data seeds; for example new code run on a
copy of the old run's response cache, so that only the change differs) are compared query by query
on either part (`part`: "test" or "training"; a change is chosen on "training", never on test
users): per method and metric, B minus A with the paired bootstrap interval `hydralm eval` uses
for its own differences (every seed's queries resampled alike for both runs; positive: B better,
whichever way the metric points), and the share of queries where the two runs answered alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydralm.data.fs import join_uri, open_input_stream
from hydralm.errors import NotFoundError
from hydralm.evaluation.bootstrap import bootstrap_difference
from hydralm.evaluation.scores import QueryScores
from hydralm.tasks import get_task

__all__ = ["PARTS", "compare_runs", "format_comparison", "read_run"]

# part -> (the predictions file's path under a seed's work dir, how the queries are named)
PARTS: dict[str, tuple[tuple[str, ...], str]] = {
    "test": (("eval", "predictions.jsonl"), "test queries"),
    "training": (("guard-calibration", "eval", "predictions.jsonl"),
                 "training users' held-out queries"),
}


def _read_text(uri: str) -> str:
    try:
        with open_input_stream(uri) as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"{uri} does not exist") from exc


def read_run(result: str | Path, part: str = "test"
             ) -> tuple[dict[str, Any], dict[int, list[dict[str, Any]]]]:
    """(the result document, seed -> its prediction rows of `part` sorted by user and query)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {sorted(PARTS)}, got {part!r}")
    where = str(result)
    try:
        doc = json.loads(_read_text(where))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not a hydralm eval result (invalid JSON: {exc})") from exc
    missing = [k for k in ("task", "seeds") if k not in doc]
    work_dir = (doc.get("run") or {}).get("work_dir")
    if missing or not work_dir:
        raise ValueError(f"{where}: not a hydralm eval result with its run's work directory "
                         f"(missing {', '.join(missing) or 'run.work_dir'})")
    rows = {}
    for seed in doc["seeds"]:
        uri = join_uri(work_dir, f"seed-{seed}", *PARTS[part][0])
        try:
            text = _read_text(uri)
        except NotFoundError as exc:
            if part != "training":
                raise
            raise NotFoundError(
                f"{uri} does not exist: the training users' answers are saved by `hydralm eval` "
                f"when the guard is calibrated on fitted heads (guard.heads: fitted, "
                f"labels.max_queries_per_user set), by this version on") from exc
        lines = [line for line in text.splitlines() if line.strip()]
        rows[int(seed)] = sorted((json.loads(line) for line in lines),
                                 key=lambda r: (r["user_id"], str(r["query_id"])))
    return doc, rows


def _keys(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["user_id"], str(r["query_id"])) for r in rows]


def _answered(doc: dict[str, Any], rows: dict[int, list[dict[str, Any]]], part: str) -> list[str]:
    """The rows a run has in `part`: the result's methods (test), or those its training users'
    predictions answer (training: the HYDRA methods only)."""
    if part == "test":
        return list(doc.get("methods", {}))
    first = next((r for seed_rows in rows.values() for r in seed_rows), {"answers": {}})
    return list(first["answers"])


def compare_runs(a: str | Path, b: str | Path, *, methods: Sequence[str] | None = None,
                 part: str = "test", resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, Any]:
    """Per method (every row both runs answered, or `methods`): B minus A on each metric with
    its paired interval over `part`'s queries ("test", or "training": the training users'
    held-out queries), and the share of queries answered alike. ValueError when the runs are
    not on the same task, seeds and queries."""
    doc_a, rows_a = read_run(a, part)
    doc_b, rows_b = read_run(b, part)
    if doc_a["task"] != doc_b["task"] or doc_a["seeds"] != doc_b["seeds"]:
        raise ValueError(f"{a} ({doc_a['task']}, seeds {doc_a['seeds']}) and {b} "
                         f"({doc_b['task']}, seeds {doc_b['seeds']}) are not runs of the same "
                         f"task and seeds")
    for s in rows_a:
        if _keys(rows_a[s]) != _keys(rows_b[s]):
            only = sorted(set(_keys(rows_a[s])) ^ set(_keys(rows_b[s])))
            raise ValueError(f"seed {s}: {a} and {b} answered different {PARTS[part][1]} "
                             f"({len(rows_a[s])} and {len(rows_b[s])}; e.g. user, query "
                             f"{only[0] if only else 'in another order'}): compare runs of the "
                             f"same users and queries")
    task = get_task(doc_a["task"])
    theirs = _answered(doc_b, rows_b, part)
    shared = [m for m in _answered(doc_a, rows_a, part) if m in theirs]
    chosen = list(methods) if methods else shared
    unknown = [m for m in chosen if m not in shared]
    if unknown:
        raise ValueError(f"no method {unknown[0]!r} in both runs; they share {shared}")
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}
    out: dict[str, Any] = {"a": str(a), "b": str(b), "task": task.name, "part": part,
                           "seeds": doc_a["seeds"], "queries": sum(len(r) for r in rows_a.values()),
                           "higher_is_better": task.higher_is_better, "confidence": confidence,
                           "primary_metric": task.primary_metric, "methods": {},
                           "heads": {k: d["run"].get("heads")
                                     for k, d in (("a", doc_a), ("b", doc_b))}}
    for method in chosen:
        scores = {}
        for name, rows in (("a", rows_a), ("b", rows_b)):
            scores[name] = [QueryScores(task, [r["answers"][method] for r in rows[s]],
                                        [r["gold"] for r in rows[s]]) for s in doc_a["seeds"]]
        metrics = scores["a"][0].metrics()
        better, worse = ("b", "a") if task.higher_is_better else ("a", "b")
        alike = sum(ra["answers"][method] == rb["answers"][method]
                    for s in doc_a["seeds"] for ra, rb in zip(rows_a[s], rows_b[s], strict=True))
        out["methods"][method] = {
            "same_answers": alike / out["queries"],
            "differences": {metric: bootstrap_difference(scores[better], scores[worse], metric,
                                                         **options).to_dict()
                            for metric in metrics}}
    return out


def format_comparison(doc: dict[str, Any]) -> str:
    """`compare_runs`'s result as a markdown table (primary metric first)."""
    metrics = list(next(iter(doc["methods"].values()))["differences"]) if doc["methods"] else []
    metrics.sort(key=lambda m: m != doc["primary_metric"])
    lines = [f"B - A on {doc['task']}, {doc['queries']} {PARTS[doc.get('part', 'test')][1]} (seeds "
             f"{', '.join(map(str, doc['seeds']))}); positive: B better; "
             f"{doc['confidence']:.0%} paired intervals",
             f"A: {doc['a']}{_heads(doc['heads']['a'])}",
             f"B: {doc['b']}{_heads(doc['heads']['b'])}", "",
             "| method | " + " | ".join(metrics) + " | same answers |",
             "|---|" + "---|" * (len(metrics) + 1)]
    for method, m in doc["methods"].items():
        cells = [f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                 for d in (m["differences"][k] for k in metrics)]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {m['same_answers']:.1%} |")
    return "\n".join(lines)


def _heads(heads: dict[str, str] | None) -> str:
    """The heads a result names, as " (heads: reranker dense int8, adapter dense int8)"; "" for
    a result written before results named them."""
    return f" (heads: {', '.join(f'{k} {v}' for k, v in heads.items())})" if heads else ""
