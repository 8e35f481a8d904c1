"""The job config: the shipped YAMLs validate, and bad fields, values and combinations fail with
messages that name the field and say what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hydralm.errors import ConfigError
from hydralm.jobconfig import JobConfig, load_job_config

REPO = Path(__file__).resolve().parents[2]
JOB_CONFIGS = ["ci-small.yaml", "demo.yaml", "lamp2n.yaml"]

BASE = {"task": "synth-tag", "data": {"synth": {"users": 8}}, "work_dir": "/tmp/hydralm-job"}


def _with(**changes) -> dict:
    """BASE with nested changes given as dotted keys: _with(**{"train.epochs": 0})."""
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize("name", JOB_CONFIGS)
def test_shipped_configs_validate(name):
    cfg = load_job_config(REPO / "configs" / name)
    assert cfg.paths.work_dir.endswith(name.removesuffix(".yaml"))
    assert cfg.generator.cache == f"{cfg.paths.work_dir}/generator-cache"


def test_defaults_are_the_papers():
    cfg = JobConfig.from_dict(BASE)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay) == (
        2, 64, 2e-5, 0.01)
    assert (cfg.labels.k_retrieve, cfg.labels.pseudo_queries_per_user,
            cfg.labels.similar_per_pseudo, cfg.labels.n_candidates, cfg.labels.k_prompt) == (
        10, 10, 10, 8, 4)


def test_paths_derive_from_work_dir_and_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = JobConfig.from_dict(_with(work_dir="rel/run", **{"train.storage_path": "s3://b/ckpt"}))
    assert cfg.paths.work_dir == str(tmp_path / "rel" / "run")
    assert cfg.paths.registry == str(tmp_path / "rel" / "run" / "registry")
    assert cfg.paths.checkpoints == "s3://b/ckpt"
    assert cfg.paths.labels_dir("adapter", "fit").endswith("rel/run/labels/adapter/fit")


@pytest.mark.parametrize("changes, message", [
    # Unknown field names, top level and nested.
    ({"trian": {}}, r"trian: Extra inputs are not permitted"),
    ({"train.epoch": 3}, r"train.epoch: Extra inputs are not permitted"),
    ({"labels.n_candidate": 8}, r"labels.n_candidate: Extra inputs"),
    # Bad values, each named with what was given.
    ({"task": "LaMP-9"}, r"unknown task 'LaMP-9'"),
    ({"train.epochs": 0}, r"train.epochs: .*greater than or equal to 1.*\(got 0\)"),
    ({"train.lr": -1.0}, r"train.lr: .*greater than 0.*\(got -1.0\)"),
    ({"train.batch_size": "big"}, r"train.batch_size: .*integer.*\(got 'big'\)"),
    ({"train.storage_path": "gs://bucket/x"}, r"local path or s3://.*got 'gs://bucket/x'"),
    ({"fit.init": "zeros"}, r"fit.init: .*'global' or 'random'.*\(got 'zeros'\)"),
    ({"labels.adapter_retrieval": "dense"}, r"labels.adapter_retrieval"),
    ({"users.test_fraction": 1.0}, r"users.test_fraction: .*less than 1"),
    ({"generator.max_concurrency": 0}, r"generator.max_concurrency"),
    ({"reranker.max_length": 4}, r"reranker.max_length"),
    # Cross-field rules, with what to change.
    ({"data.parquet": "/x"}, r"exactly one of lamp_dir, questions, parquet, synth; got "
                             r"\['parquet', 'synth'\]"),
    ({"data.synth": _DELETE}, r"exactly one of .* got none"),
    ({"data.synth": _DELETE, "data.questions": None, "data.outputs": "o.json"},
     r"exactly one of"),
    ({"data.synth": _DELETE, "data.lamp_dir": "/l", "data.test_split": "train"},
     r"test_split must differ from data.train_split .*test_split: null"),
    ({"task": "LaMP-2N"}, r"data.synth makes synth-tag, synth-title, synth-rate users, but task is "
                          r"'LaMP-2N'"),
    ({"task": "LaMP-1", "data.synth": _DELETE, "data.lamp_dir": "/l"},
     r"LaMP-1 .* set labels.pseudo_queries_per_user: 0"),
    ({"train.num_workers": 4, "train.batch_size": 2},
     r"train.batch_size \(2\) is split over the workers: it must be at least "
     r"train.num_workers \(4\)"),
    ({"train.global_head": False}, r"set fit.init: random or train.global_head: true"),
    ({"labels.k_prompt": 12}, r"labels.k_prompt \(12\) must not exceed labels.k_retrieve \(10\)"),
    ({"generator.backend": "openai"}, r"backend 'openai' needs base_url"),
])
def test_bad_configs_name_the_problem(changes, message, monkeypatch):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=message):
        JobConfig.from_dict(_with(**changes))


def test_outputs_without_questions_is_explained():
    doc = _with(**{"data.synth": _DELETE, "data.parquet": "/p", "data.outputs": "/o.json"})
    with pytest.raises(ConfigError, match="data.outputs is the golds of data.questions"):
        JobConfig.from_dict(doc)


@pytest.mark.parametrize("text, message", [
    ("task: [unclosed", r"not valid YAML"),
    ("- a\n- b\n", r"top level must be a mapping"),
    ("data: {synth: {}}\n", r"task: Field required"),
])
def test_bad_yaml_files(tmp_path, text, message):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_job_config(path)
    assert str(path) in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_job_config("/nonexistent/job.yaml")
