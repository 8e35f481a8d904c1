"""ServeArgs and the Serve config file: defaults, cross-field rules, and configs/serve.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from hydralm.config import load_yaml
from hydralm.errors import ConfigError
from hydralm.generator import GeneratorConfig
from serving.config import ServeArgs

REPO = Path(__file__).resolve().parents[3]


def test_defaults_validate(monkeypatch, tmp_path):
    monkeypatch.setenv("HYDRALM_HOME", str(tmp_path))
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    args = ServeArgs()
    assert (args.n_candidates, args.k_retrieve, args.k_prompt) == (8, 10, 4)
    assert args.generator_base_url() == "http://127.0.0.1:8000/llm/v1"
    assert args.registry_uri() == str(tmp_path / "registry")
    assert args.history_file() == str(tmp_path / "serving" / "history.db")
    assert args.scorer_args().registry_uri == str(tmp_path / "registry")


@pytest.mark.parametrize("data, field", [
    ({"task": "LaMP-9"}, "task"),
    ({"method": "magic"}, "method"),
    ({"k_prompt": 11}, "k_prompt"),
    ({"n_candidates": 20}, "n_candidates"),  # over limits.max_n (16)
    ({"n_candidates": 0}, "n_candidates"),
    ({"registry": "/a", "scorer": {"registry_uri": "/b"}}, "registry"),
    ({"limits": {"max_body_bytes": 10}}, "limits.max_body_bytes"),
    ({"ingress": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}}},
     "min_replicas"),
    ({"model_name": "has space"}, "model_name"),
    ({"generator": {"backend": "openai"}}, "base_url"),
    ({"unknown": 1}, "unknown"),
    ({"selection_min_spread": 1.5}, "selection_min_spread"),
    ({"selection_fallback": "vote"}, "selection_fallback"),
])
def test_bad_args_name_the_field(monkeypatch, data, field):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=field):
        ServeArgs.from_dict(data)


def test_selection_guard_comes_from_the_args():
    from hydralm.pipeline import SelectionGuard

    assert ServeArgs().selection_guard() == SelectionGuard(0.0, "consensus")   # off by default
    args = ServeArgs.from_dict({"selection_min_spread": 0.005, "selection_fallback": "first"})
    assert args.selection_guard() == SelectionGuard(0.005, "first")
    zero_fit = ServeArgs.from_dict({"selection_min_spread": 0.005, "selection_fallback": "first",
                                    "zero_fit_selection_min_spread": 1.0}).selection_guard()
    assert zero_fit.for_head("zero_fit") == SelectionGuard(1.0, "first")
    assert zero_fit.for_head("user") == zero_fit.for_head("global") == SelectionGuard(
        0.005, "first", zero_fit.zero_fit)


def test_external_generator_url(monkeypatch):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    args = ServeArgs.from_dict({"generator": {"backend": "openai",
                                              "base_url": "http://10.0.0.5:8000/v1/"}})
    assert args.generator_base_url() == "http://10.0.0.5:8000/v1"
    monkeypatch.setenv("HYDRALM_GENERATOR_BASE_URL", "http://127.0.0.1:9/v1")
    assert args.generator_base_url() == "http://127.0.0.1:9/v1"


def test_ingress_options():
    fixed = ServeArgs.from_dict({"ingress": {"num_replicas": 2, "num_cpus": 0.25}})
    assert fixed.ingress.deployment_options()["num_replicas"] == 2
    assert fixed.ingress.deployment_options()["ray_actor_options"] == {"num_cpus": 0.25}
    scaled = ServeArgs.from_dict({"ingress": {"autoscaling_config": {"max_replicas": 3}}})
    options = scaled.ingress.deployment_options()
    assert "num_replicas" not in options and options["autoscaling_config"]["max_replicas"] == 3


def test_serve_yaml_is_a_valid_serve_config_with_valid_app_args(monkeypatch):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    raw = load_yaml(REPO / "configs" / "serve.yaml")
    config = ServeDeploySchema.model_validate(raw)
    apps = {a.name: a for a in config.applications}
    assert config.http_options.host == "127.0.0.1"
    assert apps["hydralm-llm"].import_path == "serving.llm:build_llm_app"
    assert apps["hydralm"].import_path == "serving.app:build_app"
    assert (apps["hydralm-llm"].route_prefix, apps["hydralm"].route_prefix) == ("/llm", "/")
    llm = GeneratorConfig.from_dict(apps["hydralm-llm"].args)
    args = ServeArgs.from_dict(apps["hydralm"].args)
    # The API reaches the embedded LLM app where the config deploys it.
    assert args.generator_base_url() == (f"http://127.0.0.1:{config.http_options.port}"
                                         f"{llm.embedded.route_prefix}/v1")
