"""hydralm.console: a job's terminal holds hydralm's own lines; everything else goes to its log.

The redirection works on file descriptors, so each case runs in a child process whose terminal
is a pipe the test reads (no Ray: the noise is written the ways Ray, Ray Data and vLLM write it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hydralm import console

REPO = Path(__file__).resolve().parents[2]

NOISY_JOB = textwrap.dedent("""
    import logging, os, subprocess, sys, warnings
    from tqdm import tqdm
    from hydralm.console import echo, err, quiet_console

    with quiet_console("train") as c:
        logging.getLogger("ray.data").warning("Execution plan of Dataset: noise-1")
        logging.getLogger().info("root noise-2")
        print("noise-3 a print of a library")
        sys.stderr.write("noise-4 a worker's forwarded stderr\\n")
        os.write(2, b"noise-5 a C++ core log line\\n")
        subprocess.run([sys.executable, "-c", "print('noise-6 a child process')"], check=True)
        warnings.warn("noise-7 a library warning")
        logging.getLogger("training.x").info("own info-8")
        logging.getLogger("hydralm.x").warning("own warning-9")
        for _ in tqdm(range(3), desc="bar-10", file=err()):
            pass
        echo("result-11")
    print("after-12")
    """)


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRALM_LOG_FILE"}
    full_env.update(HYDRALM_HOME=str(tmp_path / "home"), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def _log_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "home" / "logs").glob("*.log"))


def test_a_quiet_job_shows_only_its_own_lines_and_logs_the_rest(tmp_path):
    proc = _run(NOISY_JOB, tmp_path)
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    assert "noise" not in terminal, terminal
    assert "own info-8" not in terminal
    assert "own warning-9" in proc.stderr and "bar-10" in proc.stderr
    assert proc.stdout.splitlines() == ["result-11", "after-12"]
    [log] = _log_files(tmp_path)
    assert log.name.startswith("train-")
    text = log.read_text()
    for n in range(1, 10):
        assert f"-{n}" in text, (n, text)
    assert "result-11" not in text and "after-12" not in text


def test_hydralm_log_file_names_the_file_a_demo_shares_with_its_stages(tmp_path):
    shared = tmp_path / "demo.log"
    shared.write_text("the demo's first line\n")
    proc = _run(NOISY_JOB, tmp_path, HYDRALM_LOG_FILE=str(shared))
    assert proc.returncode == 0, proc.stderr
    text = shared.read_text()
    assert text.startswith("the demo's first line\n") and "noise-5" in text   # appended
    assert _log_files(tmp_path) == []


def test_outside_a_quiet_console_echo_and_err_are_stdout_and_stderr(capsys):
    assert console.current() is None
    console.echo("hello")
    print("bar", file=console.err())
    assert capsys.readouterr() == ("hello\n", "bar\n")


def test_in_process_the_console_is_what_the_caller_captures(capsys, tmp_path, monkeypatch):
    """Tests call `main` in-process: the terminal streams are pytest's capture buffers, and the
    process's stdout/stderr are restored afterwards."""
    monkeypatch.setenv("HYDRALM_LOG_FILE", str(tmp_path / "job.log"))
    before = (sys.stdout, sys.stderr)
    with console.quiet_console("eval") as c:
        console.echo("shown")
        print("hidden")
        assert c.log_path == tmp_path / "job.log"
    assert (sys.stdout, sys.stderr) == before
    assert capsys.readouterr().out == "shown\n"
    assert "hidden" in (tmp_path / "job.log").read_text()


def test_tail_reads_the_last_lines(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert console.tail(path, 3) == ["line 97", "line 98", "line 99"]
    assert console.tail(tmp_path / "missing.log") == []


def _hydralm(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return _run(f"import sys\nfrom hydralm.cli import main\nsys.exit(main({list(argv)!r}))",
                tmp_path)


def test_a_job_command_names_its_log_and_fails_in_one_clear_line(tmp_path):
    (tmp_path / "job.yaml").write_text("task: synth-tag\ntrain: {epoch: 2}\n")
    proc = _hydralm(tmp_path, "train", "--config", "job.yaml")
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("hydralm train: Ray's, Ray Data's and vLLM's logs go to "
                               "home/logs/train-"), lines
    assert lines[1].startswith("hydralm train: error: ") and "train.epoch" in proc.stderr
    assert lines[-1].startswith("(log: home/logs/train-"), lines


@pytest.mark.parametrize("argv", [["--verbose", "train"], ["train", "--verbose"],
                                  ["train", "-v"]])
def test_verbose_anywhere_keeps_everything_on_the_terminal(tmp_path, argv):
    (tmp_path / "job.yaml").write_text("task: synth-tag\ntrain: {epoch: 2}\n")
    proc = _hydralm(tmp_path, *argv, "--config", "job.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith("hydralm train: error: "), proc.stderr
    assert _log_files(tmp_path) == []
