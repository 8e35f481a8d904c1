"""The label record: one scored (first, second) pair, as the label files store it.

Both models' labels share one schema so one reader serves the train and fit stages. A row is one
pair the base reads (`first`, `second`, built by `hydralm.pipeline` only) with its 0/1 `label`,
plus what it came from, so a label can be audited: which user and query, which history item or
candidate, the black box's raw answer, the gold and the score the rule compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Literal

import pyarrow as pa

__all__ = [
    "LABEL_SCHEMA",
    "LabelRecord",
    "ModelName",
    "Source",
    "Stage",
    "labels_from_table",
    "labels_to_table",
]

ModelName = Literal["reranker", "adapter"]
# train: the training users (their queries and pseudo-queries); fit: new users (pseudo only).
Stage = Literal["train", "fit"]
# query: a real query with its gold; pseudo: a history item standing for a query; gold: the
# adapter's extra positive pair (generation tasks) made from the gold output itself.
Source = Literal["query", "pseudo", "gold"]

LABEL_SCHEMA = pa.schema([
    ("model", pa.string()),
    ("stage", pa.string()),
    ("user_id", pa.string()),
    ("query_id", pa.string()),
    ("source", pa.string()),
    ("item_id", pa.string()),
    ("first", pa.string()),
    ("second", pa.string()),
    ("answer", pa.string()),
    ("gold", pa.string()),
    ("score", pa.float64()),
    ("label", pa.int8()),
    ("retrieval", pa.string()),
])


@dataclass(frozen=True)
class LabelRecord:
    """One labelled pair.

    `item_id`: the paired history item (reranker) or the candidate's index (adapter, "gold" for
    the gold pair). `answer`: the black box's answer to the one-shot prompt (reranker) or the
    candidate (adapter). `score`: what the rule thresholded (1.0/0.0 for a match, the ROUGE mean
    for generation). `retrieval`: how an adapter prompt's items were chosen ("bm25" or
    "rerank"); empty for the reranker.
    """

    model: ModelName
    stage: Stage
    user_id: str
    query_id: str
    source: Source
    item_id: str
    first: str
    second: str
    answer: str
    gold: str
    score: float
    label: int
    retrieval: str = ""

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {self.label!r}")


_NAMES = tuple(f.name for f in fields(LabelRecord))
assert _NAMES == tuple(LABEL_SCHEMA.names), "LabelRecord and LABEL_SCHEMA must list one order"


def labels_to_table(records: Iterable[LabelRecord]) -> pa.Table:
    """Label records as an Arrow table with LABEL_SCHEMA (an empty table when there are none)."""
    rows = [asdict(r) for r in records]
    return pa.Table.from_pylist(rows, schema=LABEL_SCHEMA)


def labels_from_table(table: pa.Table) -> list[LabelRecord]:
    """The records of a table written with LABEL_SCHEMA (columns in any order)."""
    missing = [name for name in _NAMES if name not in table.column_names]
    if missing:
        raise ValueError(f"not a label table: columns {missing} are missing "
                         f"(got {table.column_names})")
    data = table.select(list(_NAMES)).to_pydict()
    return [LabelRecord(**dict(zip(_NAMES, values, strict=True)))
            for values in zip(*data.values(), strict=True)]
