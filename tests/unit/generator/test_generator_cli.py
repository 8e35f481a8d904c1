"""`hydralm generate` against a running OpenAI-compatible server (no Ray is started)."""

from __future__ import annotations

import socket

import pytest

from hydralm.cli import main
from hydralm.errors import ConfigError
from hydralm.generator import GeneratorConfig
from training.llm import check_port_free, embedded_generator


def test_generate_prints_constrained_samples(server, monkeypatch, capsys):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    code = main(["generate", "--prompt", "Pick one", "--base-url", server.base_url, "--n", "3",
                 "--choices", "yes, no"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["[0] yes", "[1] yes", "[2] yes"]
    body = server.bodies[0]
    assert body["messages"] == [{"role": "user", "content": "Pick one"}]
    assert (body["n"], body["temperature"], body["structured_outputs"]) == (
        3, 1.0, {"choice": ["yes", "no"]})


def test_generate_reads_the_generator_section_of_a_config(server, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"generator:\n  backend: openai\n  base_url: {server.base_url}\n"
                      "  model: served-name\n  max_tokens: 5\n")
    assert main(["generate", "--prompt", "The sky", "--config", str(config), "--completion"]) == 0
    assert capsys.readouterr().out.splitlines() == ["[0] sample 1-0"]
    assert server.bodies[0] == {"model": "served-name", "prompt": "The sky", "n": 1,
                                "temperature": 0.0, "max_tokens": 5}


@pytest.mark.parametrize("yaml_text, fragment", [
    ("generator:\n  backend: nope\n", "backend"),
    ("generator:\n  backend: openai\n", "needs base_url"),
])
def test_generate_reports_bad_config(tmp_path, capsys, monkeypatch, yaml_text, fragment):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    assert main(["generate", "--prompt", "x", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "hydralm generate: error" in err and fragment in err and "bad.yaml" in err


def test_port_in_use_is_reported_before_starting_serve():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*in use.*http_port"):
            check_port_free(port)
    check_port_free(port)  # free again once released


def test_external_generator_needs_no_ray(monkeypatch):
    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    cfg = GeneratorConfig(backend="openai", base_url="http://127.0.0.1:9/v1")
    with embedded_generator(cfg) as url:
        assert url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("HYDRALM_GENERATOR_BASE_URL", "http://127.0.0.1:10/v1")
    with embedded_generator(GeneratorConfig()) as url:  # embedded, but told where it runs
        assert url == "http://127.0.0.1:10/v1"


def test_embedded_generator_without_ray_says_what_to_do(monkeypatch):
    import ray

    monkeypatch.delenv("HYDRALM_GENERATOR_BASE_URL", raising=False)
    # `make test` runs the integration tests first in the same process, whose session Ray is
    # still up here: this case is about a process without one.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ConfigError, match="needs a running Ray"):
        with embedded_generator(GeneratorConfig()):
            pass
