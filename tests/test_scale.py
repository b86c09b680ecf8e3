"""Scaling out from the command line: `textcnn train --nproc N` (torch's launcher), resumed after
kill -9 as if never killed, and `python -m textcnn`, and `textcnn batch --executor ray` (a local Ray instance, 2 CPUs), whose
results equal `--jobs 1`'s, with a worker killed mid-run retried and its row written once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from textcnn.batch_runner import read_results, run_batch
from textcnn.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = """name: tiny
data: {{train: {train}, test: {test}}}
model: {{maps: 4, embedding_dim: 8, widths: [2, 3]}}
train: {{epochs: {epochs}, progress: false}}
"""


def _recipe(folder: Path, epochs: int = 2, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(TINY.format(train=REPO / "data/sample/train.csv", test=REPO / "data/sample/test.csv",
                                epochs=epochs))
    return path


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _kill_after_first_epoch(process: subprocess.Popen, folder: Path, epochs: int) -> bool:
    """kill -9 the launcher and its workers once the run has a checkpoint and epochs to go."""
    log = folder / "train" / "metrics.jsonl"
    while process.poll() is None:
        if (folder / "train" / "checkpoint" / "last.safetensors").is_file() and log.is_file():
            if len(log.read_text().splitlines()) < epochs:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_nproc_resumes_after_kill_9_as_if_never_killed(tmp_path):
    """Two ranks (dropout on): killed with kill -9 after the first epoch, the same command
    resumes and ends with the weights of an uninterrupted two-rank run; then it is reported
    again. Rank 0 alone prints the summary."""
    epochs = 10  # the kill comes after the first epoch's checkpoint: nine epochs to go
    recipe = _recipe(tmp_path, epochs=epochs)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "textcnn", "train", str(recipe), "--out", str(out), "--nproc", "2"]

    straight = subprocess.run(command(tmp_path / "straight"), env=_env(), capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert [line for line in straight.stdout.splitlines() if line.strip()][0].startswith("model: ")
    assert len([line for line in straight.stdout.splitlines() if line.strip()]) == 1  # rank 0 reports once
    out = tmp_path / "killed"
    process = subprocess.Popen(command(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    assert _kill_after_first_epoch(process, out, epochs), "the run finished before it could be killed"
    resumed = subprocess.run(command(out), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = (out / "train" / "metrics.jsonl").read_text()
    assert [json.loads(line)["epoch"] for line in log.splitlines()] == list(range(1, epochs + 1))
    weights = load_file(str(out / "model" / "model.safetensors"))
    expected = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    for key in expected:
        torch.testing.assert_close(weights[key], expected[key], rtol=1e-5, atol=1e-6)
    again = subprocess.run(command(out), env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "train" / "metrics.jsonl").read_text() == log  # the finished run is reported again


def test_nproc_refuses_a_bad_recipe_in_one_line_before_starting_processes(tmp_path):
    result = CliRunner().invoke(main, ["train", str(_recipe(tmp_path)), "--nproc", "2",
                                       "--set", "model.dropot=0.3"])
    assert result.exit_code == 2 and "did you mean 'dropout'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path.parent / "runs").exists()


def test_nproc_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(main, ["train", str(_recipe(tmp_path)), "--nproc", "2"])
    assert result.exit_code == 2
    assert "--nproc: expected no --nproc under torchrun" in result.output


def test_python_m_textcnn_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "textcnn", "train", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--nproc" in done.stdout and "torchrun" in done.stdout


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(main, ["batch", str(_recipe(tmp_path)), "--out", str(tmp_path / "b"),
                                       "--executor", "ray"])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: --executor ray: expected the Ray package, got none installed; "
                                     "install it with: pip install 'textcnn[cluster]'")
    assert not (tmp_path / "b").exists()


def _killed_mid_run(folder: Path, epochs: int, stop: threading.Event, killed: list[int]) -> None:
    """Wait for the run in `folder` to finish its first epoch, then kill -9 the process that
    holds its lock (the Ray worker training it), while it still holds it."""
    checkpoint = folder / "train" / "checkpoint" / "last.safetensors"
    lock = folder / ".lock"
    while not stop.is_set():
        if checkpoint.is_file() and lock.is_file():
            done = len((folder / "train" / "metrics.jsonl").read_text().splitlines())
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: the run is training
                pid = int(os.pread(fd, 32, 0).decode().strip())
                if done < epochs:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        time.sleep(0.01)


@pytest.mark.slow
def test_a_ray_batch_equals_jobs_1_and_retries_a_killed_worker(tmp_path):
    pytest.importorskip("ray", reason="the cluster extra (pip install 'textcnn[cluster]') is not installed")
    epochs = 12
    recipe = _recipe(tmp_path, epochs=epochs)
    seeds = [0, 1, 2, 3]
    local = run_batch([recipe], tmp_path / "local", seeds=seeds, progress=False, echo=lambda line: None)
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_killed_mid_run, args=(tmp_path / "ray" / "runs" / "tiny" / "seed=2",
                                                             epochs, stop, killed))
    watcher.start()
    lines: list[str] = []
    try:
        remote = run_batch([recipe], tmp_path / "ray", seeds=seeds, jobs=2, progress=False, echo=lines.append,
                           executor="ray")
    finally:
        stop.set()
        watcher.join()
    assert killed, "the run finished before its worker could be killed"
    rows = read_results(tmp_path / "ray" / "results.jsonl")
    assert sorted(row["run"] for row in rows) == sorted(row["run"] for row in local)  # each once
    assert len(rows) == len(remote) == 4
    figures = ("fingerprint", "accuracy", "macro_f1", "dev_accuracy", "epochs_run", "best_epoch", "seed")
    by_run = {row["run"]: row for row in local}
    for row in rows:
        assert {k: row[k] for k in figures} == {k: by_run[row["run"]][k] for k in figures}
    log = (tmp_path / "ray" / "runs" / "tiny" / "seed=2" / "train" / "metrics.jsonl").read_text()
    assert [json.loads(line)["epoch"] for line in log.splitlines()] == list(range(1, epochs + 1))
    assert (tmp_path / "ray" / "table.md").read_text() == (tmp_path / "local" / "table.md").read_text()
    assert any("a local Ray instance with 2 CPU(s)" in line for line in lines)
