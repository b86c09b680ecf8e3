"""Run folders: identity by fingerprint, resume-or-refuse, overwrite, the lock, run names."""

import hashlib
import json
import os

import pytest

from textcnn.core.config import expand_runs
from textcnn.core.errors import TextCNNError
from textcnn.core.rundir import (
    check_run_name,
    first_difference,
    open_run_folder,
    read_run_record,
    run_identity,
)

RECIPE = {"name": "a", "model": {"dropout": 0.5, "widths": [3, 4, 5]},
          "train": {"epochs": 3, "progress": True, "threads": None, "seed": 0}}


def with_keys(**sets):
    recipe = json.loads(json.dumps(RECIPE))
    for dotted, value in sets.items():
        section, key = dotted.split("__")
        recipe[section][key] = value
    return recipe


def test_fingerprint_follows_settings_and_data_content_not_cosmetic_keys(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,1\nbad,0\n")
    base = run_identity(RECIPE, files={"data.train": data})
    # the fingerprint is a SHA-256 of the settings and the file's own SHA-256
    assert base.data["data.train"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert len(base.fingerprint) == 64
    same = run_identity({**with_keys(train__progress=False, train__threads=4), "name": "b"},
                        files={"data.train": data})
    assert same.fingerprint == base.fingerprint
    assert run_identity(with_keys(model__dropout=0.0), files={"data.train": data}).fingerprint != \
        base.fingerprint
    # a file rewritten with the same size and mtime is another run: content, not metadata, counts
    stat = data.stat()
    data.write_text("text,label\ngood,0\nbad,1\n")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.stat().st_size == stat.st_size and data.stat().st_mtime_ns == stat.st_mtime_ns
    assert run_identity(RECIPE, files={"data.train": data}).fingerprint != base.fingerprint


def test_first_difference_names_the_key_or_the_data_file(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("a\n")
    old = run_identity(RECIPE, files={"data.train": data}).record()
    assert first_difference(old, run_identity(with_keys(model__dropout=0.0), files={"data.train": data})) \
        == "model.dropout: 0.5 -> 0.0"
    assert first_difference(old, run_identity(with_keys(model__widths=[2]), files={"data.train": data})) \
        == "model.widths: [3, 4, 5] -> [2]"
    data.write_text("b\n")
    message = first_difference(old, run_identity(RECIPE, files={"data.train": data}))
    assert message.startswith(f"data.train ({data}): content changed (sha256 ")


def test_same_run_resumes_another_is_refused_or_replaced_inside_its_folder(tmp_path):
    run_dir = tmp_path / "run"
    first = run_identity(RECIPE)
    with open_run_folder(run_dir, first) as run:
        assert not run.resumed
        run.begin()
        (run_dir / "model").mkdir()
        (run_dir / "model" / "weights").write_text("epoch 3")
    assert read_run_record(run_dir)["fingerprint"] == first.fingerprint
    with open_run_folder(run_dir, run_identity({**RECIPE, "name": "renamed"})) as run:
        assert run.resumed
    other = run_identity(with_keys(train__seed=4))
    with pytest.raises(TextCNNError) as refused:
        with open_run_folder(run_dir, other):
            pass
    message = str(refused.value)
    assert "\n" not in message and "train.seed: 0 -> 4" in message and "--overwrite" in message
    assert (run_dir / "model" / "weights").read_text() == "epoch 3"  # refused: nothing touched
    (tmp_path / "beside.txt").write_text("keep")
    nested = run_dir / "seed=2"  # a batch keeps a run's seed repeats inside its folder
    with open_run_folder(nested, run_identity(RECIPE)) as run:
        run.begin()
    with open_run_folder(run_dir, other, overwrite=True) as run:
        assert not run.resumed
        assert (run_dir / "model").exists()  # nothing is removed until the new run begins
        run.begin()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.json", "seed=2"]
    assert read_run_record(run_dir)["fingerprint"] == other.fingerprint
    assert (tmp_path / "beside.txt").read_text() == "keep"
    assert read_run_record(nested) is not None


def test_a_folder_that_is_no_run_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(TextCNNError, match="expected an empty folder or a run folder, got other "
                                               "files \\(notes.txt\\)"):
            with open_run_folder(tmp_path, run_identity(RECIPE), overwrite=overwrite):
                pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_second_writer_fails_at_once_with_one_line(tmp_path):
    with open_run_folder(tmp_path / "run", run_identity(RECIPE)) as run:
        run.begin()
        with pytest.raises(TextCNNError) as second:
            with open_run_folder(tmp_path / "run", run_identity(RECIPE)):
                pass
    message = str(second.value)
    assert "\n" not in message and f"another process (pid {os.getpid()})" in message
    with open_run_folder(tmp_path / "run", run_identity(RECIPE)) as run:  # released on exit
        assert run.resumed


@pytest.mark.parametrize("name", ["../up", "a/b", "a\\b", "/abs", "..", ".", "", "C:evil"])
def test_run_names_that_would_leave_the_output_folder_are_refused(name):
    with pytest.raises(TextCNNError, match="^name: expected a run name without"):
        check_run_name(name, "name")


def test_expand_labels_are_run_names():
    assert [n for n, _ in expand_runs({"expand": {"train.seed": [1, 2]}}, name="r")] == \
        ["r/seed=1", "r/seed=2"]
    with pytest.raises(TextCNNError, match=r"^expand.data.train: expected a run name .* got "
                                           r"'\.\./x\.csv'; label the values"):
        expand_runs({"expand": {"data.train": ["../x.csv"]}}, name="r")
    with pytest.raises(TextCNNError, match=r"^expand.variant: expected a run name .* got '/tmp/x'$"):
        expand_runs({"expand": {"variant": {"/tmp/x": {"model.variant": "rand"}}}}, name="r")


def test_an_unreadable_run_json_is_refused_and_overwrite_replaces_the_run(tmp_path):
    (tmp_path / "run.json").write_text("{torn")
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(TextCNNError, match=r"run.json: expected the JSON record of a run, got an "
                                           r"unreadable file .*; pass --overwrite"):
        with open_run_folder(tmp_path, run_identity(RECIPE)):
            pass
    with open_run_folder(tmp_path, run_identity(RECIPE), overwrite=True) as run:
        run.begin()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "run.json"]
    assert read_run_record(tmp_path)["fingerprint"] == run_identity(RECIPE).fingerprint
