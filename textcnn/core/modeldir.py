"""Model directories, written as a whole and checked as a whole when read.

A model directory holds `config.json` (what the model is: its `kind`, shape, classes, ...),
`model.safetensors` and whatever its kind adds (a text model's `tokenizer.json` and
`labels.json`, `metrics.json`, `recipe.yaml`). `write_model_dir` writes every file into a
temporary folder beside the target, records the SHA-256 of each file in `config.json` (key
`sha256`), flushes it all to disk and only then renames the folder into place, replacing an older
model there. A full disk or a crash therefore leaves either the old directory or the new one,
never a mix, and never a half-written file that a later load would accept.

`open_model_dir` reads `config.json` and `ModelDir` checks what it reads: a file whose SHA-256
differs from the recorded one (flipped bits, a truncated copy, an edit), unreadable safetensors,
a missing key, or tensors whose names or shapes differ from the model the configuration builds
each raise `TextCNNError` with one line naming the file. Directories saved before checksums
existed (format 1) load with a warning: their files cannot be checked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from textcnn.core.digest import sha256_file
from textcnn.core.errors import TextCNNError

FORMAT = 2  # 2: config.json records each file's SHA-256; 1: no checksums (read with a warning)
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
_SHOWN = 3  # tensor names listed in a mismatch message
_UMASK = os.umask(0)
os.umask(_UMASK)

T = TypeVar("T")
FileContent = str | Callable[[Path], object]  # text, or a function that writes the file at a path


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# -- writing --------------------------------------------------------------------------------------


def write_model_dir(path: str | os.PathLike, *, config: Mapping[str, Any],
                    state: Mapping[str, torch.Tensor] | None,
                    files: Mapping[str, FileContent] | None = None) -> Path:
    """Write a model directory as a whole: `state` as model.safetensors (None: no such file, for
    a model whose weights another of `files` holds, e.g. model.onnx), each of `files` (name ->
    text, or a function writing the file at the path it is given, in the order given) and
    `config` with `format` and the `sha256` of every other file as config.json; then rename it
    into place.

    An existing directory at `path` is replaced only when it is empty or holds nothing but model
    files; anything else there is an error, so a user's folder is never swept away. A failed write
    (a full disk, a read-only folder) leaves what was there and raises `TextCNNError`."""
    target = Path(path).absolute()
    extra = dict(files or {})
    for name in (CONFIG, WEIGHTS):
        if name in extra:
            raise ValueError(f"write_model_dir: {name} is written from `config`/`state`, not `files`")
    tmp: Path | None = None
    try:
        _check_replaceable(target, {CONFIG, WEIGHTS, *extra})
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        if state is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            save_file(tensors, str(tmp / WEIGHTS))
        for name, content in extra.items():
            if isinstance(content, str):
                (tmp / name).write_text(content, encoding="utf-8")
            else:
                content(tmp / name)
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        full = {"format": FORMAT, **{k: v for k, v in config.items() if k != "format"},
                "sha256": digests}
        (tmp / CONFIG).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
        for file in tmp.iterdir():
            os.chmod(file, 0o666 & ~_UMASK)  # some writers make owner-only files; use the usual mode
            _fsync(file)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes the folder owner-only; use the usual mode
        _fsync(tmp)
        _swap_into_place(tmp, target)
        tmp = None
    except OSError as err:
        raise TextCNNError(f"{target}: could not write the model directory ({err.strerror or err}"
                           f"{f': {err.filename}' if err.filename else ''}); nothing there was "
                           "replaced") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return Path(path)


def _check_replaceable(target: Path, names: set[str]) -> None:
    """Refuse to write over a file, or over a folder holding more than a model directory's files."""
    if not os.path.lexists(target):
        return
    if not target.is_dir() or target.is_symlink():
        raise TextCNNError(f"{target}: expected a folder for the model directory, got a file")
    allowed = names | {"metrics.json", "recipe.yaml"}
    try:
        old = json.loads((target / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and isinstance(old.get("sha256"), dict):
        allowed |= set(old["sha256"])
    # hidden *.tmp files are what an interrupted atomic write leaves behind
    others = sorted(p.name for p in target.iterdir() if p.name not in allowed
                    and not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        raise TextCNNError(f"{target}: expected an empty folder or a model directory to replace, "
                           f"got a folder that also holds {shown}; choose another path")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an old `target` is moved aside first and removed after."""
    if not os.path.lexists(target):
        os.rename(new, target)
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rename(target, old / target.name)
        try:
            os.rename(new, target)
        except OSError:
            os.rename(old / target.name, target)  # put the old model back
            old.rmdir()
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync(target.parent)


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDir:
    """A model directory whose config.json has been read and its kind checked."""

    path: Path  # the directory
    config: dict[str, Any]  # its config.json

    @property
    def config_file(self) -> Path:
        """The path of config.json."""
        return self.path / CONFIG

    def get(self, key: str, kind: type | tuple[type, ...] | None = None) -> Any:
        """The value of `key` in config.json; a missing key or one of another type is an error."""
        if key not in self.config:
            raise TextCNNError(f"{self.config_file}: expected a key '{key}', found none")
        value = self.config[key]
        if kind is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise TextCNNError(f"{self.config_file}: expected '{key}' to be a {names}, got "
                               f"{type(value).__name__} {str(value)[:60]}")
        return value

    def file(self, name: str) -> Path:
        """The path of file `name`, after checking that it exists and has its recorded SHA-256."""
        path = self.path / name
        if not path.is_file():
            raise TextCNNError(f"{path}: expected the model's {name}, found none")
        expected = self.config.get("sha256", {}).get(name)
        if expected is not None:
            got = sha256_file(path)
            if got != expected:
                raise TextCNNError(f"{path}: the file is corrupted or was changed after the model "
                                   f"was saved: expected SHA-256 {expected} (from {CONFIG}), "
                                   f"got {got}")
        return path

    def read_json(self, name: str) -> Any:
        """File `name` (checked as `file` does) parsed as JSON."""
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise TextCNNError(f"{path}: expected JSON, got an error: {_one_line(err)}") from None

    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors of model.safetensors, after its checksum is verified."""
        path = self.file(WEIGHTS)
        if path.stat().st_size == 0:
            raise TextCNNError(f"{path}: expected safetensors weights, got an empty file")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise TextCNNError(f"{path}: expected safetensors weights, got an unreadable file "
                               f"({_one_line(err)})") from None

    def build(self, factory: Callable[[], T]) -> T:
        """`factory()`, whose errors (a key with a value the model does not take) become one
        line naming config.json."""
        try:
            return factory()
        except TextCNNError as err:
            raise TextCNNError(f"{self.config_file}: {err}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
            raise TextCNNError(f"{self.config_file}: expected a configuration this version can "
                               f"build, got an error: {_one_line(err)}") from None

    def load_into(self, module: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
        """Load the weights (or `state`, read from them) into `module`; tensor names and shapes
        that differ from the ones `module` has are one error naming both files."""
        state = self.weights() if state is None else state
        own = module.state_dict()
        problems = []
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k} {list(state[k].shape)} where {CONFIG} builds {list(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if items:
                problems.append(f"{what}: {_listed(items)}")
        if problems:
            raise TextCNNError(f"{self.path / WEIGHTS}: expected the tensors of the model that "
                               f"{CONFIG} describes, got {'; '.join(problems)}")
        module.load_state_dict(state)
        return module


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def open_model_dir(path: str | os.PathLike, *, kind: str | Iterable[str],
                   keys: Iterable[str] = (), weights: str = WEIGHTS) -> ModelDir:
    """Read and check the config.json of model directory `path`: valid JSON, an object, a `kind`
    among `kind`, a `format` this version reads, a recorded SHA-256 of the `weights` file, and
    every one of `keys`. Errors are one line naming the file."""
    folder = Path(path)
    config_file = folder / CONFIG
    if not folder.is_dir():
        got = "a file" if folder.exists() else "no such folder"
        raise TextCNNError(f"{folder}: expected a model directory, got {got}")
    if not config_file.is_file():
        raise TextCNNError(f"{folder}: expected a model directory with {CONFIG}, found none")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise TextCNNError(f"{config_file}: expected JSON, got an error: {_one_line(err)}") from None
    kinds = [kind] if isinstance(kind, str) else list(kind)
    if not isinstance(config, dict):
        raise TextCNNError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    if config.get("kind") not in kinds:
        wanted = f"'{kinds[0]}'" if len(kinds) == 1 else ", ".join(kinds[:-1]) + f" or {kinds[-1]}"
        raise TextCNNError(f"{config_file}: expected kind {wanted}, got {config.get('kind')!r}")
    found = config.get("format", 1)
    if isinstance(found, bool) or not isinstance(found, int) or not 1 <= found <= FORMAT:
        raise TextCNNError(f"{config_file}: expected format 1..{FORMAT} (this version's model "
                           f"directories), got {found!r}")
    model_dir = ModelDir(folder, config)
    if found >= 2:
        sha = model_dir.get("sha256", dict)
        if weights not in sha:
            raise TextCNNError(f"{config_file}: expected a SHA-256 of {weights} in 'sha256', found none")
    else:
        warnings.warn(f"{folder}: saved without checksums (format 1), so a corrupted file cannot "
                      "be detected; save the model again to add them", stacklevel=2)
    for key in keys:
        model_dir.get(key)
    return model_dir


__all__ = ["CONFIG", "FORMAT", "WEIGHTS", "ModelDir", "open_model_dir", "write_model_dir"]
