"""The fit stage's embedding cache: bf16 and fp32 vectors are never reused for one another.

`_embed` names each embedding run by its users, their history versions and the encoder's resolved
precision; a complete run (its `_SUCCESS` file) is reused only under the same name. A bucket task
retried after saving its heads fits nothing."""

from __future__ import annotations

import pyarrow as pa
import pytest
from training_fixtures import tiny_job

import training.fit_job as fit_job
from hydralm.data.fs import join_uri
from training.files import write_json

USERS = {"u1": None, "u2": None}


@pytest.mark.parametrize("a, b, same", [
    (({"u1": None}, "bf16"), ({"u1": None}, "bf16"), True),
    (({"u1": None}, "bf16"), ({"u1": None}, "fp32"), False),
    (({"u1": 3}, "fp32"), ({"u1": 4}, "fp32"), False),
    (({"u1": None, "u2": None}, "fp32"), ({"u2": None, "u1": None}, "fp32"), True),
])
def test_the_key_names_users_history_versions_and_precision(a, b, same):
    assert (fit_job.embeddings_key(*a) == fit_job.embeddings_key(*b)) is same


class _Embedded(Exception):
    """Raised instead of starting Ray Data: the run was not reused."""


@pytest.mark.parametrize("done, asked, reused", [
    ("fp32", "fp32", True), ("bf16", "bf16", True), ("fp32", "bf16", False),
    ("bf16", "fp32", False),
])
def test_a_complete_run_is_reused_only_in_its_own_precision(tmp_path, monkeypatch, done, asked,
                                                           reused):
    def from_blocks(blocks):
        raise _Embedded

    monkeypatch.setattr(fit_job.ray.data, "from_blocks", from_blocks)
    monkeypatch.setattr(fit_job, "resolve_precision", lambda requested: requested)
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder", fit={"precision": asked})
    earlier = join_uri(cfg.paths.work_dir, "fit", "reranker", "v1",
                       fit_job.embeddings_key(USERS, done))
    write_json(join_uri(earlier, "_SUCCESS"), {"users": 2, "rows": 2, "precision": done})
    labels = pa.table({"user_id": ["u1", "u2"], "first": ["q", "q"], "second": ["a", "b"],
                       "label": [1, 0]})
    if reused:
        assert fit_job._embed(cfg, "reranker", "v1", labels, USERS) == (earlier, 0.0)
    else:
        with pytest.raises(_Embedded):
            fit_job._embed(cfg, "reranker", "v1", labels, USERS)


def test_auto_is_resolved_once_on_the_driver(tmp_path, monkeypatch):
    """'auto' names the run by what it resolves to, and the embedding tasks get that value."""
    seen = {}

    def from_blocks(blocks):
        class Dataset:
            def map_batches(self, fn, fn_kwargs, **kwargs):
                seen.update(fn_kwargs)
                raise _Embedded
        return Dataset()

    monkeypatch.setattr(fit_job.ray.data, "from_blocks", from_blocks)
    monkeypatch.setattr(fit_job, "resolve_precision",
                        lambda requested: "fp32" if requested == "auto" else requested)
    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder", fit={"precision": "auto"})
    labels = pa.table({"user_id": ["u1"], "first": ["q"], "second": ["a"], "label": [1]})
    with pytest.raises(_Embedded):
        fit_job._embed(cfg, "reranker", "v1", labels, {"u1": None})
    assert seen["precision"] == "fp32"


def test_a_retried_bucket_task_whose_heads_are_saved_fits_nothing(tmp_path):
    """A bucket task lost after its one save is retried by Ray: every user's head is current, so it
    returns at once (no vectors read; an empty user filter once failed on its type)."""
    import torch

    from hydralm.artifacts import Registry
    from hydralm.model import HeadState

    cfg = tiny_job(tmp_path / "job", tmp_path / "encoder")
    registry = Registry(cfg.paths.registry)
    version = registry.publish_base({"w": torch.zeros(1)}, {"note": "test"})
    d = 4
    state = HeadState(torch.zeros(d, d), torch.zeros(d), torch.zeros(d, 2), torch.zeros(2))
    registry.save_heads("reranker", {"u1": state, "u2": state}, version,
                        history_versions={"u1": 3, "u2": 5})
    missing = join_uri(cfg.paths.work_dir, "fit", "reranker", version, "no-such-run")
    result = fit_job._fit_bucket._function(cfg, "reranker", version, missing, 0,
                                           {"u1": 3, "u2": 5}, False)
    assert result["fitted"] == 0 and result["users"] == [] and result["rows"] == 0
