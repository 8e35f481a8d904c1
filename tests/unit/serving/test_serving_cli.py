"""`hydralm serve`: registered as a plugin, reads a Serve config, refuses what it cannot apply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hydralm.cli import build_parser
from hydralm.errors import ConfigError
from serving.cli import _import_attr, _read_config

REPO = Path(__file__).resolve().parents[3]


def test_serve_is_a_hydralm_subcommand():
    args = build_parser().parse_args(["serve", "--config", "x.yaml", "--num-cpus", "2"])
    assert (args.command, args.config, args.num_cpus, args.address) == ("serve", "x.yaml", 2, None)


def test_a_named_command_loads_its_plugin_only():
    # `hydralm serve` starts without the training stack (torch, Ray Train, transformers)
    code = ("import sys; from hydralm.cli import build_parser; p = build_parser('serve'); "
            "print(sorted(p._subparsers._group_actions[0].choices)); "
            "print(any(m.startswith(('torch', 'training')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["['env', 'serve']", "False"]
    every = build_parser(None)._subparsers._group_actions[0].choices
    assert {"train", "serve", "demo", "eval"} <= set(every)
    assert set(build_parser("nosuch")._subparsers._group_actions[0].choices) == set(every)


def test_reads_the_repo_config():
    config = _read_config(str(REPO / "configs" / "serve.yaml"))
    assert [a.name for a in config.applications] == ["hydralm-llm", "hydralm"]
    assert _import_attr(config.applications[1].import_path).__name__ == "build_app"


def test_refuses_runtime_env(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    raw["applications"][1]["runtime_env"] = {"env_vars": {"A": "1"}}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="runtime_env"):
        _read_config(str(path))


@pytest.mark.parametrize("path", ["serving.nope:build_app", "serving.app:nope", "nodots"])
def test_bad_import_paths(path):
    with pytest.raises(ConfigError, match="import_path"):
        _import_attr(path)
