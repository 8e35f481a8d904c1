"""HYDRA's training labels from the black box: which pairs, which calls, which rule (no Ray).

`pairs` builds the queries and calls, `rules` turns answers into 0/1 labels, `build` runs a
user's calls through any generator, `schema` is the label record the label files store.
"""

from hydralm.labels.build import UserData, label_users, user_queries, users_from_dataset
from hydralm.labels.config import LabelsConfig
from hydralm.labels.pairs import (
    AdapterCall,
    Query,
    RerankerCall,
    RerankFn,
    adapter_call,
    fit_queries,
    pseudo_queries,
    record_queries,
    reranker_calls,
    train_queries,
)
from hydralm.labels.rules import (
    above_user_mean,
    adapter_labels,
    answer_matches,
    answer_score,
    reranker_labels,
)
from hydralm.labels.schema import (
    LABEL_SCHEMA,
    LabelRecord,
    ModelName,
    Source,
    Stage,
    labels_from_table,
    labels_to_table,
)

__all__ = [
    "AdapterCall",
    "LABEL_SCHEMA",
    "LabelRecord",
    "LabelsConfig",
    "ModelName",
    "Query",
    "RerankFn",
    "RerankerCall",
    "Source",
    "Stage",
    "UserData",
    "above_user_mean",
    "adapter_call",
    "adapter_labels",
    "answer_matches",
    "answer_score",
    "fit_queries",
    "label_users",
    "labels_from_table",
    "labels_to_table",
    "pseudo_queries",
    "record_queries",
    "reranker_calls",
    "reranker_labels",
    "train_queries",
    "user_queries",
    "users_from_dataset",
]
