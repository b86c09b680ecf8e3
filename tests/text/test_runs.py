"""Run folders from the command line: resume only the same run, refuse another one (or replace it
with --overwrite), one writer at a time, and the faults: kill -9, Ctrl-C, a full disk, an output
path that cannot be written."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from textcnn.cli import main
from textcnn.core.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
# one torch thread: tiny models only lose by a second one, and a run resumed in another process
# repeats the same arithmetic
FAST = ["--set", "model.maps=8", "--set", "model.embedding_dim=16", "--set", "model.widths=[2,3]",
        "--set", "train.epochs=3", "--set", "train.progress=false", "--set", "train.threads=1"]
# long enough (about 0.2 s an epoch) to interrupt a run from outside
SLOW = [*FAST, "--set", "train.epochs=10", "--set", "train.batch_size=4"]


def train(out, *args, **kwargs):
    return CliRunner().invoke(main, ["train", str(QUICKSTART), "--out", str(out), *map(str, args)],
                              **kwargs)


def error_line(result) -> str:
    """The one error line of a failed command (progress output may come before it)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    return last


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def epochs_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted SLOW run: what every interrupted and resumed run must end as."""
    out = tmp_path_factory.mktemp("ref") / "run"
    result = train(out, *SLOW)
    assert result.exit_code == 0, result.output
    return out


def test_a_changed_recipe_is_refused_naming_the_difference_and_overwrite_starts_afresh(tmp_path):
    out = tmp_path / "run"
    assert train(out, *FAST).exit_code == 0
    model = (out / "model" / "model.safetensors").read_bytes()
    line = error_line(train(out, *FAST, "--set", "model.dropout=0.0"))
    assert "model.dropout: 0.5 -> 0.0" in line and "--overwrite" in line
    assert "train.seed: 1 -> 4" in error_line(train(out, *FAST, "--seed", "4"))
    assert (out / "model" / "model.safetensors").read_bytes() == model  # nothing touched
    again = train(out, *FAST, "--set", "train.progress=true")  # the same run: resumed, not retrained
    assert again.exit_code == 0, again.output
    assert epochs_logged(out) == [1, 2, 3] and (out / "model" / "model.safetensors").read_bytes() == model
    replaced = train(out, *FAST, "--set", "model.dropout=0.0", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "dropout: 0.0" in (out / "recipe.yaml").read_text() and epochs_logged(out) == [1, 2, 3]
    fresh = tmp_path / "fresh"
    assert train(fresh, *FAST, "--set", "model.dropout=0.0").exit_code == 0
    assert same_weights(out, fresh)  # trained from the start, not from the old run's checkpoint


def test_data_rewritten_with_the_same_size_and_mtime_is_another_run(tmp_path):
    data = tmp_path / "train.csv"
    data.write_bytes((REPO / "data" / "sample" / "train.csv").read_bytes())
    out = tmp_path / "run"
    sets = [*FAST, "--set", f"data.train={data}"]
    assert train(out, *sets).exit_code == 0
    stat = data.stat()
    text = data.read_text()
    data.write_text(text.replace(",positive", ",POSITIVE"))  # same size, other labels
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    line = error_line(train(out, *sets))
    assert f"data.train ({data}): content changed" in line


def test_out_that_cannot_be_written_is_one_line_exit_2(tmp_path, monkeypatch):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    line = error_line(train(a_file / "run", *FAST))
    assert str(a_file / "run") in line and "Not a directory" in line
    read_only = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # a read-only mount (chmod does not stop root)
        if self == read_only or read_only in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = error_line(train(read_only / "run", *FAST))
    assert f"{read_only / 'run'}: cannot read or write it: Read-only file system" in line
    assert not read_only.exists()


def test_a_full_disk_is_one_line_exit_2_and_the_rerun_resumes(tmp_path, monkeypatch, reference):
    """ENOSPC while epoch 2's checkpoint is written: one line, exit 2, only whole files left
    behind (epoch 1's checkpoint), and the same command later ends as the uninterrupted run."""
    from textcnn.core import checkpoint

    real_save = checkpoint.save_file
    calls = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    out = tmp_path / "run"
    line = error_line(train(out, *SLOW))
    assert "No space left on device" in line and "finished epochs are kept" in line
    assert [p.name for p in (out / "train" / "checkpoint").iterdir()] == ["last.safetensors"]
    assert load_checkpoint(out / "train" / "checkpoint" / "last")["epoch"] == 1
    assert not (out / "model").exists() and not (out / "results.json").exists()
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    again = train(out, *SLOW)
    assert again.exit_code == 0, again.output
    assert epochs_logged(out) == list(range(1, 11)) and same_weights(out, reference)


def _start(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "textcnn.cli", "train", str(QUICKSTART), "--out", str(out), *SLOW]
    # SIGINT at its default in the child even where the test runner ignores it (a background job
    # started by a shell without job control does), so that Ctrl-C reaches the run as from a terminal
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epochs(proc: subprocess.Popen, out: Path, count: int) -> None:
    log = out / "train" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= count):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_exactly_and_a_second_writer_is_refused(tmp_path, reference):
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for_epochs(proc, out, 1)
        line = error_line(train(out, *SLOW))  # a second process while the first trains
        assert f"another process (pid {proc.pid}) is writing into this folder" in line
        _wait_for_epochs(proc, out, 3)  # epoch 3's line is written after epoch 2's checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    finished = load_checkpoint(out / "train" / "checkpoint" / "last")["epoch"]
    assert 2 <= finished < 10
    resumed = train(out, *SLOW)  # the kernel released the dead process's lock
    assert resumed.exit_code == 0, resumed.output
    assert epochs_logged(out) == list(range(1, 11))
    assert same_weights(out, reference)
    assert json.loads((out / "results.json").read_text())["stopped_by"] == "epochs"


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_the_rerun_resumes(tmp_path, reference):
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for_epochs(proc, out, 3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == ("Error: interrupted: the finished epochs are kept; "
                                                "rerun the same command to resume")
    assert 2 <= load_checkpoint(out / "train" / "checkpoint" / "last")["epoch"] < 10
    resumed = train(out, *SLOW)
    assert resumed.exit_code == 0, resumed.output
    assert epochs_logged(out) == list(range(1, 11)) and same_weights(out, reference)


def test_a_time_cap_that_cuts_a_run_short_is_recorded_and_noted(tmp_path):
    out = tmp_path / "lenet"
    args = ["train", str(REPO / "recipes" / "vision" / "lenet5-digits.yaml"), "--out", str(out),
            "--set", "data.max_examples=200", "--set", "train.epochs=5", "--set", "train.threads=1",
            "--set", "train.max_seconds=0.000001"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "note: train.max_seconds stopped the run after 1 epoch(s)" in result.output
    results = json.loads((out / "results.json").read_text())
    assert (results["stopped_by"], results["epochs_run"]) == ("time", 1)
    changed = CliRunner().invoke(main, [*args[:-1], "train.max_seconds=null"])
    assert "train.max_seconds: 1e-06 -> null" in error_line(changed)


def test_a_recipe_name_cannot_lead_the_default_run_folder_outside_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "escape.yaml"
    recipe.write_text(QUICKSTART.read_text().replace("name: quickstart", "name: ../../escape"))
    result = CliRunner().invoke(main, ["train", str(recipe), *FAST])
    assert error_line(result) == (f"Error: {recipe}: name: expected a run name without '/', '\\' or "
                                  "'..' (it names a folder inside the output folder), got '../../escape'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escape.yaml"]
