"""EvalConfig validation, the per-seed training job it builds, the presets and the CLI's flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hydralm.errors import ConfigError
from hydralm.evaluation import LLM_METHODS, EvalConfig, load_eval_config
from hydralm.evaluation.presets import QUICK, preset

REPO = Path(__file__).resolve().parents[3]
SYNTH = {"synth": {"users": 20, "queries_per_user": 2, "items_per_user": 10}}


def _cfg(**overrides) -> EvalConfig:
    data = {"task": "synth-tag", "data": SYNTH, "users": {"train": 12, "test": 6},
            "work_dir": "/tmp/hydralm-eval-test", **overrides}
    return EvalConfig.from_dict(data)


@pytest.mark.parametrize("overrides, message", [
    ({"task": "LaMP-9"}, "unknown task 'LaMP-9'"),
    ({"methods": ["zero_shot", "gpt4"]}, "unknown method 'gpt4'"),
    ({"methods": ["hydra", "hydra"]}, "must not repeat"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
    ({"seeds": []}, "seeds"),
    ({"users": {"train": 100, "test": 50}}, "data.synth.users \\(20\\) must be at least"),
    ({"task": "LaMP-2N"}, "data.synth makes"),
    ({"bootstrap": {"confidence": 1.5}}, "confidence"),
    ({"dataset": "has space"}, "dataset"),
    ({"labels": {"k_prompt": 8, "k_retrieve": 4}}, "k_prompt"),
    ({"surprise": 1}, "surprise"),
    ({"guard": {"rule": "auto", "min_spread": 0.1}}, "leave guard.min_spread unset"),
    ({"guard": {"heads": "joint"}}, "guard.heads"),
    ({"labels": {"n_candidates": 4, "adapter_bare_samples": 4,
                 "adapter_greedy_candidate": True}}, "exceed labels.n_candidates \\(4\\)"),
])
def test_bad_configs_are_rejected_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**overrides)


def test_methods_are_kept_in_table_order():
    assert _cfg(methods=["hydra", "zero_shot"]).methods == ["zero_shot", "hydra"]
    assert _cfg().methods == list(LLM_METHODS)


def test_each_seed_is_its_own_job_sharing_one_generator_cache():
    cfg = _cfg(seeds=[3, 7])
    first, second = cfg.job(3), cfg.job(7)
    assert (first.users.seed, first.train.seed, first.fit.seed) == (3, 3, 3)
    assert second.users.num_train_users == 12 and second.users.num_test_users == 6
    assert first.work_dir.endswith("seed-3") and second.work_dir.endswith("seed-7")
    assert first.generator.cache == second.generator.cache == \
        "/tmp/hydralm-eval-test/generator-cache"
    assert cfg.result_stem == "quality_synth_synth-tag"


def test_the_guard_calibration_job_is_the_seed_job_in_its_own_work_dir():
    cfg = _cfg(seeds=[3])
    job, calibration = cfg.job(3), cfg.job(3, calibration=True)
    assert cfg.guard.heads == "fitted" and cfg.guard.calibrated
    assert calibration.work_dir == f"{job.work_dir}/guard-calibration"
    assert calibration.paths.registry == f"{job.work_dir}/guard-calibration/registry"
    assert calibration.generator.cache == job.generator.cache
    assert (calibration.labels, calibration.fit, calibration.adapter) == (
        job.labels, job.fit, job.adapter)
    assert not _cfg(guard={"min_spread": 0.05}).guard.calibrated


def test_dataset_name_comes_from_the_source():
    lamp = EvalConfig.from_dict({"task": "LaMP-2N", "data": {"lamp_dir": "/data/lamp/"}})
    assert lamp.dataset_name == "lamp" and lamp.result_stem == "quality_lamp_LaMP-2N"
    assert _cfg(dataset="mine").dataset_name == "mine"


@pytest.mark.parametrize("task, lamp_dir, quick, users, seeds", [
    ("synth-tag", None, False, {"train": 100, "test": 50}, [0, 1, 2]),
    ("synth-title", None, True, QUICK["users"], [0]),
    ("LaMP-2N", "/data/lamp", False, {"train": 100, "test": 50}, [0, 1, 2]),
    ("LaMP-2N", "/data/lamp", True, {"train": None, "test": None}, [0]),
])
def test_presets_validate_and_follow_the_protocol(task, lamp_dir, quick, users, seeds):
    cfg = EvalConfig.from_dict(preset(task, lamp_dir=lamp_dir, quick=quick))
    assert cfg.users.model_dump() == users and cfg.seeds == seeds
    assert cfg.labels.n_candidates == 8 and cfg.labels.k_prompt == 4


@pytest.mark.parametrize("task, lamp_dir, message", [
    ("LaMP-2N", None, "needs LaMP files"),
    ("synth-tag", "/data/lamp", "users are generated"),
])
def test_presets_refuse_mismatched_sources(task, lamp_dir, message):
    with pytest.raises(ValueError, match=message):
        preset(task, lamp_dir=lamp_dir)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("eval-*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_eval_configs_validate(path):
    cfg = load_eval_config(path)
    assert cfg.task and cfg.seeds


def _args(*argv: str) -> argparse.Namespace:
    from training.eval_cmd import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["eval", *argv])


def test_cli_flags_override_the_preset():
    from training.eval_cmd import build_config

    cfg = build_config(_args("--quick", "--dataset", "synth-title", "--seeds", "4,5",
                             "--test-users", "3", "--methods", "hydra,rag_bm25",
                             "--base-url", "http://127.0.0.1:9/v1", "--work-dir", "/tmp/w"))
    assert cfg.task == "synth-title" and cfg.seeds == [4, 5] and cfg.users.test == 3
    assert cfg.users.train == QUICK["users"]["train"]
    assert cfg.methods == ["rag_bm25", "hydra"]
    assert cfg.generator.base_url == "http://127.0.0.1:9/v1"
    assert cfg.generator.cache == "/tmp/w/generator-cache"


def test_cli_all_users_of_lamp_files():
    from training.eval_cmd import build_config

    cfg = build_config(_args("--lamp-dir", "/data/lamp", "--task", "LaMP-2N",
                             "--train-users", "all", "--test-users", "all"))
    assert cfg.users.train is None and cfg.users.test is None
    assert cfg.data.lamp_dir == "/data/lamp" and cfg.task == "LaMP-2N"


@pytest.mark.parametrize("argv", [
    ["--train-users", "0"],
    ["--seeds", "a,b"],
    ["--dataset", "synth-tag", "--lamp-dir", "/x"],
])
def test_cli_rejects_bad_flags(argv, capsys):
    with pytest.raises(SystemExit):
        _args(*argv)
