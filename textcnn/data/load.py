"""One entry point: `load_data` reads a file, folder or hub dataset with the reader its format
names, or the one `detect_format` picks from the file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import datasets

from textcnn.core.errors import TextCNNError
from textcnn.core.hub import is_saved_dataset
from textcnn.core.registry import resolve
from textcnn.data.folders import DEFAULT_ENCODING, read_folders
from textcnn.data.readers import read_kim_file, read_sst_trees
from textcnn.data.tables import SUFFIX_FORMATS, TABLE_BUILDERS, load_hub, read_table

_FORMATS = ("kim", "sst", *TABLE_BUILDERS, "hub", "folders")
_KIM_NAMES = re.compile(r".*\.all|stsa\..*|TREC\..*")
_KIM_SNIFF = re.compile(rb"[+-]?\d+ \S")
_SST_SNIFF = re.compile(rb"\(\s*\d+\s*[(\S]")


def _sniff(path: Path) -> str | None:
    """Tell Kim lines from SST trees by the first non-blank line of the file."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    first = next((line for line in head.split(b"\n") if line.strip()), b"")
    if _SST_SNIFF.match(first):
        return "sst"
    if _KIM_SNIFF.match(first):
        return "kim"
    return None


def detect_format(spec: str | os.PathLike) -> str:
    """The format `load_data` would read `spec` as, when no `format=` is given."""
    path = Path(spec)
    if path.is_dir():
        if is_saved_dataset(path):
            return "hub"
        if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
            return "folders"  # a sub-folder per class, a file per document
        # `datasets` would read whichever files it finds there; a split folder must be meant
        raise TextCNNError(
            f"{path}: expected a data file, a folder written by save_to_disk or a folder with a "
            "sub-folder per class, got a folder of other files; for a folder of split files "
            "(train.csv, test.csv, ...) give format hub (recipe: data.format: hub)"
        )
    if not path.is_file():
        raise TextCNNError(
            f"{path}: expected a data file or folder, got no such file "
            "(for a Hugging Face hub dataset pass format='hub')"
        )
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    if _KIM_NAMES.fullmatch(path.name):
        return "kim"
    sniffed = _sniff(path)
    if sniffed is None:
        raise TextCNNError(
            f"{path}: expected Kim lines '<label> <sentence>', SST trees '(3 (2 ...', or a "
            f"{'/'.join(SUFFIX_FORMATS)} file, got neither; pass format= ({', '.join(_FORMATS)})"
        )
    return sniffed


def load_data(
    spec: str | os.PathLike,
    *,
    format: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split: str = "train",
    config: str | None = None,
    classes: int = 5,
    phrases: bool = False,
    dedupe: bool = True,
    cache_dir: str | os.PathLike | None = None,
    encoding: str = DEFAULT_ENCODING,
    weight_column: str | None = None,
) -> datasets.Dataset:
    """Load `spec` with the reader its `format` names, or the one `detect_format` picks.

    Formats: kim, sst, csv, tsv, json, jsonl, parquet, hub, folders (a sub-folder per class, a
    file per document). `text_column`/`label_column` apply to tables and hub datasets,
    `split`/`config` to hub datasets, `classes`/`phrases`/`dedupe` to SST trees, `encoding` to
    folders. A hub name is only used with `format='hub'`: a missing path is an error, not a
    download. `weight_column` (tables and hub datasets) keeps a column of per-text weights too,
    as `weight`.
    """
    if format is None:
        format = detect_format(spec)
    else:
        format = resolve(format, {name: name for name in _FORMATS}, "data format")
    if weight_column is not None and format in ("kim", "sst"):
        raise TextCNNError(f"{spec}: expected a table or hub dataset for a weight column "
                           f"('{weight_column}'), got a {format} file, which has no columns")
    if format == "hub":
        return load_hub(
            spec, split=split, text_column=text_column, label_column=label_column,
            config=config, cache_dir=cache_dir, weight_column=weight_column,
        )
    if format == "kim":
        return read_kim_file(spec)
    if format == "folders":
        return read_folders(spec, encoding=encoding)
    if format == "sst":
        return read_sst_trees(spec, classes=classes, phrases=phrases, dedupe=dedupe)
    return read_table(
        spec, text_column=text_column, label_column=label_column, format=format,
        cache_dir=cache_dir, weight_column=weight_column,
    )
