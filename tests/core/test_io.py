"""Atomic writes: all or nothing, with the usual file mode; JSONL appends."""

import json
import os
import stat

import pytest

from textcnn.core.io import append_jsonl, atomic_write, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_files_with_the_usual_mode(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_append_jsonl(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"b": 2})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"b": 2}]


def test_append_after_a_torn_line_drops_the_tail_with_a_warning(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"run": "a"}) + "\n" + '{"run": "b", "accu')  # a crash mid-write
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        append_jsonl(path, {"run": "c"})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"run": "a"}, {"run": "c"}]
    only_torn = tmp_path / "torn.jsonl"
    only_torn.write_text('{"run": ')
    with pytest.warns(UserWarning):
        append_jsonl(only_torn, {"run": "d"})
    assert only_torn.read_text() == '{"run": "d"}\n'
