"""Run folders: a run's identity, one writer at a time, and resume-or-refuse.

A training run writes into one folder. Its identity is a fingerprint (SHA-256) of its settings
(the fully resolved recipe, or an estimator's parameters) and of the content of the data it reads
(file bytes, never size or mtime). `run.json` in the folder records the fingerprint and what went
into it. Starting a run in a folder then:

- resumes when the folder holds a run with the same fingerprint (the engine continues from its
  checkpoint, so a finished run is simply reported again);
- starts fresh in a new or empty folder;
- refuses, in one line naming the first difference (`model.dropout: 0.5 -> 0.0`, or which data
  file's content changed), when it holds another run; with `overwrite=True` that run is removed
  first, and nothing outside the folder is touched;
- refuses a non-empty folder that is no run folder at all, even with `overwrite`.

An exclusive lock (`fcntl.flock` on `.lock` in the folder) keeps a second process out for as long
as the first one runs; the kernel releases it when the holder exits, also on `kill -9`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from textcnn.core.digest import content_digest
from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
RUN_FORMAT = 1
# Files that mark a folder as a run folder, also one written before run.json existed.
RUN_MARKERS = (RUN_FILE, "recipe.yaml")

COSMETIC_KEYS = frozenset({"name", "train.progress", "train.threads"})
"""Recipe keys left out of a run's identity: they change how a run looks or how fast it goes,
never what it computes. `name` only labels the run (its folder is given separately); `progress`
draws a progress bar; `threads` sets torch's CPU threads, which the batch runner itself picks
from `--jobs`, so a rerun with other `--jobs` is still the same run."""


# -- content digests ------------------------------------------------------------------------------


def value_digest(value: Any) -> str:
    """SHA-256 of plain data (lists, dicts, strings, numbers; numpy scalars and arrays too)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False,
                      default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- identity -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunIdentity:
    """What makes a run the run it is."""

    settings: dict[str, Any]  # resolved recipe or parameters, without the cosmetic keys
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> {path?, sha256}

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the settings and the data digests (not the paths: those are settings)."""
        return value_digest({"settings": self.settings,
                             "data": {role: entry["sha256"] for role, entry in self.data.items()}})

    def record(self) -> dict[str, Any]:
        """The content of run.json."""
        return {"format": RUN_FORMAT, "fingerprint": self.fingerprint, "settings": self.settings,
                "data": self.data}


def _without(settings: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    out = json.loads(json.dumps(dict(settings), default=lambda v: v.tolist() if hasattr(v, "tolist")
                                else str(v)))  # plain JSON data, as run.json will hold it
    for key in keys:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def run_identity(settings: Mapping[str, Any], *,
                 files: Mapping[str, str | os.PathLike | None] | None = None,
                 values: Mapping[str, Any] | None = None,
                 exclude: Iterable[str] = COSMETIC_KEYS,
                 digests: dict[str, str | None] | None = None) -> RunIdentity:
    """The identity of a run with these settings, reading these data `files` (role -> path; a
    folder is hashed file by file; None or a missing path counts as no content) and in-memory
    data `values` (role -> plain data). `digests` caches file digests by path within one call
    site (a batch plans many runs over the same files); it is never kept between processes."""
    data: dict[str, dict[str, Any]] = {}
    for role, path in (files or {}).items():
        if path is None:
            continue
        key = str(path)
        if digests is None or key not in digests:
            digest = content_digest(path)
            if digests is not None:
                digests[key] = digest
        else:
            digest = digests[key]
        data[role] = {"path": key, "sha256": digest}
    for role, value in (values or {}).items():
        data[role] = {"sha256": value_digest(value)}
    return RunIdentity(_without(settings, exclude), data)


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value, ensure_ascii=False)


_ABSENT = object()


def _first_setting_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            found = _first_setting_difference(old.get(key, _ABSENT), new.get(key, _ABSENT),
                                              f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
        return None
    if old is _ABSENT or new is _ABSENT or old != new or type(old) is not type(new):
        return f"{prefix or 'settings'}: {_show(old)} -> {_show(new)}"
    return None


def first_difference(old: Mapping[str, Any], new: RunIdentity) -> str:
    """The first way `new` differs from a recorded run (run.json content), in a few words:
    `model.dropout: 0.5 -> 0.0`, or `data.train (train.csv): content changed`."""
    found = _first_setting_difference(old.get("settings"), new.settings)
    if found:
        return found
    recorded = old.get("data") or {}
    for role in [*new.data, *(r for r in recorded if r not in new.data)]:
        before, now = recorded.get(role), new.data.get(role)
        if before is None or now is None:
            return f"{role}: {'read now, not before' if before is None else 'read before, not now'}"
        if before.get("sha256") != now.get("sha256"):
            where = f" ({now['path']})" if now.get("path") else ""
            return f"{role}{where}: content changed (sha256 {str(before.get('sha256'))[:12]} -> " \
                   f"{str(now.get('sha256'))[:12]})"
    return f"fingerprint {old.get('fingerprint')} -> {new.fingerprint}"


# -- the folder -----------------------------------------------------------------------------------


def read_run_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """run.json of a run folder, or None when there is none (a malformed one raises)."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TextCNNError(f"{path}: expected the JSON record of a run, got an unreadable file "
                           f"({err})") from None
    if not isinstance(record, dict) or "fingerprint" not in record:
        raise TextCNNError(f"{path}: expected a run record with a fingerprint, got {type(record).__name__}")
    return record


def _entries(folder: Path) -> list[Path]:
    """What a folder holds besides its lock and other run folders nested inside it (a batch
    keeps a run's `seed=N` repeats there): what belongs to the run in it."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name != LOCK_FILE and not (
        p.is_dir() and not p.is_symlink() and ((p / RUN_FILE).exists() or (p / LOCK_FILE).exists()))]


def _assess(folder: Path, identity: RunIdentity) -> tuple[str | None, bool, bool]:
    """(why starting `identity` in `folder` is refused or None, whether it resumes, whether
    `overwrite` may replace what is there)."""
    try:
        record = read_run_record(folder)
    except TextCNNError as err:
        return f"{err}; pass --overwrite (overwrite=True) to replace the run", False, True
    if record is not None:
        if record["fingerprint"] == identity.fingerprint:
            return None, True, False
        return (f"{folder}: holds a different run ({first_difference(record, identity)}); "
                "pass --overwrite (overwrite=True) to replace it, or choose another output "
                "folder"), False, True
    entries = _entries(folder)
    if not entries:
        return None, False, False
    if any((folder / marker).exists() for marker in RUN_MARKERS):
        return (f"{folder}: holds a run without {RUN_FILE} (from an earlier version), so it cannot "
                "be resumed safely; pass --overwrite (overwrite=True) to replace it, or choose "
                "another output folder"), False, True
    return (f"{folder}: expected an empty folder or a run folder, got other files "
            f"({', '.join(sorted(p.name for p in entries)[:3])}); choose another output folder"), \
        False, False


def folder_conflict(folder: str | os.PathLike, identity: RunIdentity) -> str | None:
    """Why starting `identity` in `folder` would be refused without `overwrite` (one line), or
    None when it would start fresh or resume. See `open_run_folder`."""
    return _assess(Path(folder), identity)[0]


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the folder's exclusive lock (creating the folder) for the block; a second holder
    fails at once with one line. The kernel drops the lock when the process ends, however."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                raise TextCNNError(f"{folder}: another process{f' (pid {holder})' if holder else ''} "
                                   f"is writing into this folder (it holds {lock}); wait for it "
                                   "to finish or choose another output folder") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)


@dataclass
class RunFolder:
    """A claimed run folder (see `open_run_folder`)."""

    folder: Path  # the run folder
    identity: RunIdentity  # the run about to train there
    resumed: bool  # the folder holds this very run: training continues from its checkpoint
    replace: bool  # the folder holds another run, to be removed by `begin`
    writes: bool = True  # False on the ranks but 0 of a distributed run: rank 0 keeps the folder

    def begin(self) -> None:
        """Remove a replaced run's files (only inside the folder) and record run.json. Called
        once the run's data has loaded, so a run that fails before that changes nothing."""
        if not self.writes:
            return
        if self.replace:
            for entry in _entries(self.folder):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            self.replace = False
        if not self.resumed:
            atomic_write_json(self.folder / RUN_FILE, self.identity.record())


@contextlib.contextmanager
def open_run_folder(folder: str | os.PathLike, identity: RunIdentity, *,
                    overwrite: bool = False) -> Iterator[RunFolder]:
    """Claim `folder` for the run `identity`, locked for the block: it resumes (same
    fingerprint), starts fresh (new or empty folder) or raises `TextCNNError` naming the first
    difference; with `overwrite`, another run there is replaced (see `RunFolder.begin`). A
    non-empty folder that is no run folder is refused even with `overwrite`.

    In a distributed run (torchrun) only rank 0 claims the folder; the other ranks get a
    `RunFolder` that writes nothing (they may run on machines that do not see the folder)."""
    from textcnn.core.distributed import is_main_process

    folder = Path(folder)
    if not is_main_process():
        yield RunFolder(folder, identity, resumed=False, replace=False, writes=False)
        return
    with folder_lock(folder):
        conflict, resumed, replaceable = _assess(folder, identity)
        if conflict is not None and not (overwrite and replaceable):
            raise TextCNNError(conflict)
        yield RunFolder(folder, identity, resumed=resumed, replace=conflict is not None)


# -- names ----------------------------------------------------------------------------------------


def check_run_name(name: str, key: str) -> str:
    """`name` if it is safe as a folder name inside an output folder, else a one-line error
    naming `key`: no '/', '\\', '..', absolute path or empty name."""
    text = str(name)
    if (not text.strip() or "/" in text or "\\" in text or ".." in text or text == "."
            or "\0" in text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive):
        raise TextCNNError(f"{key}: expected a run name without '/', '\\' or '..' (it names a "
                           f"folder inside the output folder), got {text!r}")
    return text


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """`root` joined with `parts`, checked to stay inside `root` once resolved (a second guard
    behind `check_run_name`: links or odd names must not lead a write elsewhere)."""
    root = Path(root)
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise TextCNNError(f"{path}: expected a folder inside {root}, got one outside it")
    return path


def default_run_folder(name: str, *, source: str | os.PathLike = "recipe") -> Path:
    """`runs/<name>`: where a recipe (read from `source`) trains without an output folder given."""
    return inside("runs", check_run_name(name, f"{source}: name"))


__all__ = ["COSMETIC_KEYS", "LOCK_FILE", "RUN_FILE", "RunFolder", "RunIdentity", "check_run_name",
           "default_run_folder", "first_difference", "folder_conflict", "folder_lock",
           "inside", "open_run_folder", "read_run_record", "run_identity", "value_digest"]


# -- a finished run -------------------------------------------------------------------------------


@dataclass
class TrainOutcome:
    """Where a training run wrote its model, and its figures."""

    out_dir: Path  # run directory: run.json, recipe.yaml, train/ (metrics, checkpoint), model/
    model_dir: Path  # the self-contained model
    metrics: dict[str, Any] = field(default_factory=dict)  # dev and test figures, timings

    def summary(self) -> str:
        """One readable line for the CLI."""
        parts = [f"model: {self.model_dir}"]
        for key in ("dev_accuracy", "test_accuracy", "test_micro_f1", "test_macro_f1", "epochs_run", "stopped_by",
                    "train_seconds"):
            if key in self.metrics:
                value = self.metrics[key]
                parts.append(f"{key} {value:.4f}" if isinstance(value, float) and key != "train_seconds"
                             else f"{key} {value}")
        return "  ".join(parts)


def time_note(metrics: dict[str, Any]) -> str | None:
    """A console note when the time budget (`train.max_seconds`) cut a run short, else None."""
    if metrics.get("stopped_by") != "time":
        return None
    return (f"note: train.max_seconds stopped the run after {metrics.get('epochs_run')} epoch(s), "
            "before its planned epochs (its results record stopped_by: time)")
