"""Tables (CSV, TSV, JSON, JSON Lines, Parquet) and hub datasets, read into `datasets.Dataset`s
of `text` and `label` from the columns a recipe names."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.hub import content_cache_dir, open_hub_dataset, root_cause
from textcnn.core.registry import resolve
from textcnn.data.readers import existing_file

# Loading a small local file should not draw progress bars over the CLI's own output.
datasets.disable_progress_bars()

TABLE_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "csv": ("csv", {}),
    "tsv": ("csv", {"delimiter": "\t"}),
    "json": ("json", {}),
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
}
SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}

_INT_DTYPES = {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
_STR_DTYPES = {"string", "large_string"}
_FLOAT_DTYPES = {"float16", "float32", "float64"}


def _text_label_columns(
    ds: datasets.Dataset, text_column: str, label_column: str, source: str,
    weight_column: str | None = None,
) -> datasets.Dataset:
    """Keep `text_column` and `label_column`, renamed `text` and `label` (and `weight_column`,
    renamed `weight`), and check their types."""
    have = ds.column_names
    if text_column == label_column:
        raise TextCNNError(
            f"{source}: expected different text and label columns, got '{text_column}' for both"
        )
    if weight_column in (text_column, label_column):
        raise TextCNNError(
            f"{source}: expected a weight column apart from the text and label columns, got "
            f"'{weight_column}'"
        )
    for wanted in (text_column, label_column, *([weight_column] if weight_column else [])):
        if wanted not in have:
            raise TextCNNError(
                f"{source}: expected a column '{wanted}'{did_you_mean(wanted, have)}, "
                f"got columns {', '.join(have)}"
            )
    names = {text_column: "text", label_column: "label", **({weight_column: "weight"} if weight_column else {})}
    ds = ds.select_columns(list(names))
    if any(old != new for old, new in names.items()):
        ds = ds.rename_columns({old: f"__textcnn_{new}" for old, new in names.items()})
        ds = ds.rename_columns({f"__textcnn_{new}": new for new in names.values()})
    if weight_column and getattr(ds.features["weight"], "dtype", None) not in _INT_DTYPES | _FLOAT_DTYPES:
        raise TextCNNError(
            f"{source}: expected numbers in column '{weight_column}', got {ds.features['weight']}"
        )
    text_type, label_type = ds.features["text"], ds.features["label"]
    if getattr(text_type, "dtype", None) not in _STR_DTYPES:
        raise TextCNNError(f"{source}: expected strings in column '{text_column}', got {text_type}")
    # a list of labels per text (a JSON list, or a hub Sequence) is a multi-label column
    item_type = getattr(label_type, "feature", label_type)
    if not isinstance(label_type, datasets.ClassLabel) and (
        getattr(item_type, "dtype", None) not in _INT_DTYPES | _STR_DTYPES
    ):
        raise TextCNNError(
            f"{source}: expected integers or strings in column '{label_column}' (or a list of them "
            f"per text), got {label_type}"
        )
    for name, column in (("text", text_column), ("label", label_column),
                         *([("weight", weight_column)] if weight_column else [])):
        nulls = ds.data.column(name).null_count
        if nulls:
            raise TextCNNError(
                f"{source}: expected a value in every row of column '{column}', got {nulls} empty"
            )
    return ds


def _check_field_counts(path: Path, delimiter: str) -> None:
    """Raise naming file:line at the first row with more fields than the header.

    pandas would not complain when every row has one field more: it makes the first column the
    index and shifts the others, so the model would train on the wrong columns."""
    # a text field may be long; the csv module's default cap (128 KiB) is not a data error
    csv.field_size_limit(min(sys.maxsize, 1 << 62))
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f, delimiter=delimiter)
        header: list[str] | None = None
        start = 1
        for row in rows:
            if row and header is None:
                header = row
            elif row and len(row) > len(header):
                raise TextCNNError(
                    f"{path}:{start}: expected at most {len(header)} fields like the header "
                    f"({delimiter.join(header)[:80]}), got {len(row)}; quote a field that holds "
                    f"the delimiter {delimiter!r}"
                )
            start = rows.line_num + 1


def read_table(
    path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    weight_column: str | None = None,
) -> datasets.Dataset:
    """Read a CSV, TSV, JSON (records or JSON Lines) or Parquet file through `datasets`.

    `format` (csv, tsv, json, jsonl, parquet) defaults to the file's suffix. `cache_dir` is where
    `datasets` keeps its Arrow cache (default: its own, under the user's home), in a folder per
    file content (`content_cache_dir`). A CSV/TSV row with more fields than the header raises
    `TextCNNError` naming file:line. `weight_column` also keeps that column, as `weight`.
    """
    path = existing_file(path, "a table file (csv, tsv, json, jsonl, parquet)")
    if format is None:
        format = SUFFIX_FORMATS.get(path.suffix.lower())
        if format is None:
            raise TextCNNError(
                f"{path}: expected a suffix {', '.join(SUFFIX_FORMATS)} or format=..., "
                f"got '{path.suffix}'"
            )
    builder, options = resolve(format, TABLE_BUILDERS, "table format")
    if builder == "csv":
        _check_field_counts(path, options.get("delimiter", ","))
    try:
        ds = datasets.load_dataset(
            builder,
            data_files=str(path),
            split="train",
            cache_dir=content_cache_dir([path], cache_dir),
            **options,
        )
    except (DatasetGenerationError, ValueError, OSError) as err:
        raise TextCNNError(
            f"{path}: expected a readable {format} file, got an error: {root_cause(err)}"
        ) from err
    return _text_label_columns(ds, text_column, label_column, str(path), weight_column)


def load_hub(
    name: str | os.PathLike,
    *,
    split: str,
    text_column: str = "text",
    label_column: str = "label",
    config: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    weight_column: str | None = None,
) -> datasets.Dataset:
    """A text dataset by hub name or local folder (see `open_hub_dataset`), as `text`/`label`
    (and `weight`, from `weight_column`)."""
    ds = open_hub_dataset(name, split=split, config=config, cache_dir=cache_dir)
    return _text_label_columns(ds, text_column, label_column, f"dataset '{name}'", weight_column)
