"""Hugging Face `datasets` sources shared by text and image data: hub names, `save_to_disk`
folders and folders of data files, read as one split; errors are one line naming the source.

This module imports `datasets` (and with it pyarrow and pandas): import it where a dataset is
opened, not at the top of a module that merely may open one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

from textcnn.core.digest import sha256_files
from textcnn.core.errors import TextCNNError, did_you_mean


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError (ConnectionError, huggingface_hub's errors) and the HTTP client's own base error."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx", "httpx2"):  # huggingface_hub's client; not an OSError subclass
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


_NETWORK_ERRORS = _network_errors()


def root_cause(err: BaseException) -> BaseException:
    """The first exception of a chain raised `from` one another (what went wrong at the bottom)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def content_cache_dir(files: Sequence[str | os.PathLike],
                      cache_dir: str | os.PathLike | None = None) -> str:
    """A `datasets` cache folder keyed by the content of `files`.

    `datasets` keys its cache of a local file on the path and modification time, so a file
    rewritten within the same second (or copied with its times kept) would be served from the
    old cache; a folder per content hash cannot be stale."""
    base = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
    return str(base / "by-content" / sha256_files(files)[:16])


def is_saved_dataset(directory: str | os.PathLike) -> bool:
    """True for a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    directory = Path(directory)
    return (directory / "dataset_dict.json").is_file() or (directory / "state.json").is_file()


def _load_saved(folder: Path, split: str) -> datasets.Dataset:
    ds = datasets.load_from_disk(str(folder))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise TextCNNError(
                f"{folder}: expected a split '{split}'{did_you_mean(split, ds)}, "
                f"got splits {', '.join(ds)}"
            )
        ds = ds[split]
    return ds


def open_hub_dataset(
    name: str | os.PathLike,
    *,
    split: str,
    config: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """One split of a dataset by Hugging Face hub name, or from a local folder (any columns).

    A local folder is either one written by `save_to_disk` (read with `load_from_disk`, then
    `split` is picked from a `DatasetDict`) or a script-less folder of csv/json/parquet files
    (read by `load_dataset`, which infers the splits from the file names). A hub name that
    cannot be reached (offline, no network) raises `TextCNNError`; nothing is retried.
    """
    local = Path(name)
    source = f"dataset '{name}'"
    try:
        if local.is_dir() and is_saved_dataset(local):
            ds = _load_saved(local, split)
        else:
            if local.is_dir():  # its files, not their times, key the cache
                files = sorted(p for p in local.rglob("*") if p.is_file())
                cache_dir = content_cache_dir(files, cache_dir)
            ds = datasets.load_dataset(
                str(name), config, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
            )
    except TextCNNError:
        raise
    except DatasetNotFoundError as err:
        raise TextCNNError(
            f"{source}: expected a dataset on the Hugging Face hub or a local folder, "
            f"got none by that name: {err}"
        ) from err
    except _NETWORK_ERRORS as err:
        if local.is_dir():
            raise TextCNNError(f"{local}: expected a readable dataset folder, got: {err}") from err
        raise TextCNNError(
            f"cannot reach the Hugging Face hub for {source} (offline?): {root_cause(err)}; "
            "download it or pass a local file"
        ) from err
    except (DatasetGenerationError, ValueError) as err:
        raise TextCNNError(f"{source}: could not load split '{split}': {root_cause(err)}") from err
    if not isinstance(ds, datasets.Dataset):
        raise TextCNNError(f"{source}: expected one split, got {type(ds).__name__}")
    return ds
