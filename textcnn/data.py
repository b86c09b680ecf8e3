"""Text data: Kim's benchmark files, SST trees, tables and hub datasets, as `datasets.Dataset`s.

Every loader returns a `datasets.Dataset` with the columns `text` (str) and `label` (int or str).

Decoding of Kim-format and SST files: each line (split on b"\\n" only; byte 0x85 is a line break
for `str.splitlines`) is decoded as UTF-8; a line that is not valid UTF-8 is decoded as cp1252
(0x85 -> '…', 0x92 -> '’', ...), with the five bytes cp1252 leaves undefined (0x81 0x8D 0x8F
0x90 0x9D) taken as Latin-1. Every byte sequence decodes, so no example is ever lost, and the
benchmark files give exactly the counts in their README.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.exceptions import DatasetGenerationError

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.hub import content_cache_dir, is_saved_dataset, open_hub_dataset, root_cause
from textcnn.core.registry import resolve
from textcnn.core.splits import materialize

# Loading a small local file should not draw progress bars over the CLI's own output.
datasets.disable_progress_bars()

Label = int | str

# cp1252 differs from Latin-1 only in 0x80-0x9F; map those (where defined) after a Latin-1 decode.
_CP1252_C1 = {
    b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
# A label alone (Kim's CR and MPQA files have such lines) is an empty sentence.
_KIM_LINE = re.compile(r"([+-]?\d+)(?: (.*))?")


def decode_line(raw: bytes) -> str:
    """Decode one line: UTF-8, else cp1252 with Latin-1 for cp1252's undefined bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1").translate(_CP1252_C1)


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        got = "a directory" if path.is_dir() else "no such file"
        raise TextCNNError(f"{path}: expected {what}, got {got}")
    return path


def _lines(path: Path) -> list[str]:
    """The decoded lines of `path`; the newline that ends the last line starts no new one."""
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    return [decode_line(line).rstrip("\r") for line in raw]


def _dataset(texts: list[str], labels: list[Label]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


# -- Kim's format ---------------------------------------------------------------------------------


def read_kim_file(path: str | os.PathLike) -> datasets.Dataset:
    """Read `<integer label> <sentence>` lines (Kim's MR, Subj, TREC, SST, CR, MPQA files).

    No line is skipped. A line holding only a label (with or without spaces after it) is an
    empty sentence: Kim's CR and MPQA files have such lines, and their counts (3,775 and 10,606)
    include them. A blank line, or one that does not start with an integer label, raises
    `TextCNNError` naming file:line. Spaces around the sentence are stripped.
    """
    path = _existing_file(path, "a Kim-format file ('<label> <sentence>' lines)")
    texts: list[str] = []
    labels: list[Label] = []
    for lineno, line in enumerate(_lines(path), start=1):
        match = _KIM_LINE.fullmatch(line)
        if match is None:
            got = repr(line[:80]) if line.strip() else "an empty line"
            raise TextCNNError(
                f"{path}:{lineno}: expected '<integer label> <sentence>', got {got}"
            )
        texts.append((match.group(2) or "").strip(" \t"))
        labels.append(int(match.group(1)))
    return _dataset(texts, labels)


# -- SST trees ------------------------------------------------------------------------------------

# Split on ASCII whitespace only: a few SST leaves hold a no-break space ("2\xa01\/2").
_TREE_TOKEN = re.compile(r"[()]|[^ \t\r\n()]+")
_PTB_BRACKETS = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
}


def unescape_ptb(token: str) -> str:
    """Undo PTB escapes in one token: -LRB- -> (, ..., \\/ -> /, \\* -> *."""
    if token in _PTB_BRACKETS:
        return _PTB_BRACKETS[token]
    return token.replace("\\/", "/").replace("\\*", "*")


def _parse_tree(line: str, where: str) -> list[tuple[int, str]]:
    """All labelled nodes of one PTB tree as (label, text), root first (pre-order)."""
    leaves: list[str] = []
    spans: list[list[int]] = []  # [label, first leaf, end leaf] per node, in pre-order
    open_nodes: list[int] = []
    want_label = False

    def fail(expected: str, got: str) -> TextCNNError:
        return TextCNNError(f"{where}: expected {expected}, got {got}")

    for token in _TREE_TOKEN.findall(line):
        if want_label:
            if not token.isdigit():
                raise fail("a sentiment label 0-4 after '('", repr(token))
            spans.append([int(token), len(leaves), -1])
            open_nodes.append(len(spans) - 1)
            want_label = False
        elif token == "(":
            if not open_nodes and spans:
                raise fail("one tree per line", "a second tree")
            want_label = True
        elif token == ")":
            if not open_nodes:
                raise fail("balanced parentheses", "an extra ')'")
            node = spans[open_nodes.pop()]
            if node[1] == len(leaves):
                raise fail("words under every node", "an empty node")
            node[2] = len(leaves)
        elif not open_nodes:
            raise fail("a tree '(label ...)'", f"text outside it {token!r}")
        else:
            leaves.append(unescape_ptb(token))
    if want_label or open_nodes:
        raise fail("balanced parentheses", "a tree missing ')'")
    if not spans:
        raise fail("a tree '(label ...)'", "no tree")
    for label, _, _ in spans:
        if label > 4:
            raise fail("sentiment labels 0-4", f"label {label}")
    return [(label, " ".join(leaves[start:end])) for label, start, end in spans]


def read_sst_trees(
    path: str | os.PathLike,
    *,
    classes: int = 5,
    phrases: bool = False,
    dedupe: bool = True,
) -> datasets.Dataset:
    """Read Stanford Sentiment Treebank PTB trees, one per line.

    A sentence is the root's label with its leaves joined by spaces (PTB escapes undone, case
    kept). `phrases=True` makes every labelled node an example (Kim's training protocol: all
    phrases plus the sentences); `dedupe` then keeps each (phrase, label) pair once, first
    occurrence first (a phrase has one label throughout SST, so this is dedupe by phrase).
    `dedupe` has no effect on sentences. `classes=2` drops neutral (2) and maps 0-1 -> 0,
    3-4 -> 1 (SST-2). A malformed tree raises `TextCNNError` naming file:line.
    """
    if classes not in (2, 5):
        raise TextCNNError(f"classes: expected 5 (SST-1) or 2 (SST-2), got {classes}")
    path = _existing_file(path, "an SST tree file (one PTB tree a line)")
    texts: list[str] = []
    labels: list[Label] = []
    seen: set[tuple[int, str]] = set()
    for lineno, line in enumerate(_lines(path), start=1):
        nodes = _parse_tree(line, f"{path}:{lineno}")
        for label, text in nodes if phrases else nodes[:1]:
            if classes == 2:
                if label == 2:
                    continue
                label = int(label > 2)
            if phrases and dedupe:
                if (label, text) in seen:
                    continue
                seen.add((label, text))
            texts.append(text)
            labels.append(label)
    return _dataset(texts, labels)


# -- tables and the hub ---------------------------------------------------------------------------

_TABLE_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "csv": ("csv", {}),
    "tsv": ("csv", {"delimiter": "\t"}),
    "json": ("json", {}),
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
}
_SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
}

_INT_DTYPES = {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
_STR_DTYPES = {"string", "large_string"}


def _text_label_columns(
    ds: datasets.Dataset, text_column: str, label_column: str, source: str
) -> datasets.Dataset:
    """Keep `text_column` and `label_column`, renamed `text` and `label`, and check their types."""
    have = ds.column_names
    if text_column == label_column:
        raise TextCNNError(
            f"{source}: expected different text and label columns, got '{text_column}' for both"
        )
    for wanted in (text_column, label_column):
        if wanted not in have:
            raise TextCNNError(
                f"{source}: expected a column '{wanted}'{did_you_mean(wanted, have)}, "
                f"got columns {', '.join(have)}"
            )
    ds = ds.select_columns([text_column, label_column])
    if (text_column, label_column) != ("text", "label"):
        ds = ds.rename_columns({text_column: "__textcnn_text", label_column: "__textcnn_label"})
        ds = ds.rename_columns({"__textcnn_text": "text", "__textcnn_label": "label"})
    text_type, label_type = ds.features["text"], ds.features["label"]
    if getattr(text_type, "dtype", None) not in _STR_DTYPES:
        raise TextCNNError(f"{source}: expected strings in column '{text_column}', got {text_type}")
    if not isinstance(label_type, datasets.ClassLabel) and (
        getattr(label_type, "dtype", None) not in _INT_DTYPES | _STR_DTYPES
    ):
        raise TextCNNError(
            f"{source}: expected integers or strings in column '{label_column}', got {label_type}"
        )
    for name, column in (("text", text_column), ("label", label_column)):
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
) -> datasets.Dataset:
    """Read a CSV, TSV, JSON (records or JSON Lines) or Parquet file through `datasets`.

    `format` (csv, tsv, json, jsonl, parquet) defaults to the file's suffix. `cache_dir` is where
    `datasets` keeps its Arrow cache (default: its own, under the user's home), in a folder per
    file content (`content_cache_dir`). A CSV/TSV row with more fields than the header raises
    `TextCNNError` naming file:line.
    """
    path = _existing_file(path, "a table file (csv, tsv, json, jsonl, parquet)")
    if format is None:
        format = _SUFFIX_FORMATS.get(path.suffix.lower())
        if format is None:
            raise TextCNNError(
                f"{path}: expected a suffix {', '.join(_SUFFIX_FORMATS)} or format=..., "
                f"got '{path.suffix}'"
            )
    builder, options = resolve(format, _TABLE_BUILDERS, "table format")
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
    return _text_label_columns(ds, text_column, label_column, str(path))


def load_hub(
    name: str | os.PathLike,
    *,
    split: str,
    text_column: str = "text",
    label_column: str = "label",
    config: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """A text dataset by hub name or local folder (see `open_hub_dataset`), as `text`/`label`."""
    ds = open_hub_dataset(name, split=split, config=config, cache_dir=cache_dir)
    return _text_label_columns(ds, text_column, label_column, f"dataset '{name}'")


# -- one entry point ------------------------------------------------------------------------------

_FORMATS = ("kim", "sst", *_TABLE_BUILDERS, "hub")
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
        # `datasets` would read whichever files it finds there; a split folder must be meant
        raise TextCNNError(
            f"{path}: expected a data file or a folder written by save_to_disk, got a folder of "
            "other files; for a folder of split files (train.csv, test.csv, ...) give format "
            "hub (recipe: data.format: hub)"
        )
    if not path.is_file():
        raise TextCNNError(
            f"{path}: expected a data file or folder, got no such file "
            "(for a Hugging Face hub dataset pass format='hub')"
        )
    if path.suffix.lower() in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    if _KIM_NAMES.fullmatch(path.name):
        return "kim"
    sniffed = _sniff(path)
    if sniffed is None:
        raise TextCNNError(
            f"{path}: expected Kim lines '<label> <sentence>', SST trees '(3 (2 ...', or a "
            f"{'/'.join(_SUFFIX_FORMATS)} file, got neither; pass format= ({', '.join(_FORMATS)})"
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
) -> datasets.Dataset:
    """Load `spec` with the reader its `format` names, or the one `detect_format` picks.

    Formats: kim, sst, csv, tsv, json, jsonl, parquet, hub. `text_column`/`label_column` apply to
    tables and hub datasets, `split`/`config` to hub datasets, `classes`/`phrases`/`dedupe` to
    SST trees. A hub name is only used with `format='hub'`: a missing path is an error, not a
    download.
    """
    if format is None:
        format = detect_format(spec)
    else:
        format = resolve(format, {name: name for name in _FORMATS}, "data format")
    if format == "hub":
        return load_hub(
            spec, split=split, text_column=text_column, label_column=label_column,
            config=config, cache_dir=cache_dir,
        )
    if format == "kim":
        return read_kim_file(spec)
    if format == "sst":
        return read_sst_trees(spec, classes=classes, phrases=phrases, dedupe=dedupe)
    return read_table(
        spec, text_column=text_column, label_column=label_column, format=format,
        cache_dir=cache_dir,
    )


# -- labels and splits ----------------------------------------------------------------------------


def _plain_label(label: Any) -> Label:
    if isinstance(label, (bool, np.bool_)):
        raise TextCNNError(f"label: expected an int or a string, got the boolean {label}")
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, str):
        return str(label)
    raise TextCNNError(f"label: expected an int or a string, got {type(label).__name__} {label!r}")


class LabelMap:
    """Labels <-> class ids 0..K-1, in sorted label order (so the same labels give the same ids)."""

    def __init__(self, classes: Sequence[Label]) -> None:
        plain = [_plain_label(c) for c in classes]
        if len({type(c) for c in plain}) > 1:
            raise TextCNNError(
                f"labels: expected all integers or all strings, got a mix: {plain[:10]}"
            )
        if len(set(plain)) != len(plain):
            repeated = [c for c, n in Counter(plain).items() if n > 1]
            raise TextCNNError(f"labels: expected distinct classes, got repeats {repeated[:10]}")
        self._classes = plain
        self._ids = {c: i for i, c in enumerate(plain)}

    @classmethod
    def fit(cls, labels: Iterable[Any]) -> LabelMap:
        """The map of the distinct training labels, sorted."""
        distinct = {_plain_label(label) for label in materialize(labels)}
        if len({type(c) for c in distinct}) > 1:
            raise TextCNNError(
                f"labels: expected all integers or all strings, got a mix: {sorted(map(str, distinct))[:10]}"
            )
        return cls(sorted(distinct))

    @property
    def classes(self) -> list[Label]:
        """The labels, by class id."""
        return list(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._classes == other._classes

    def __repr__(self) -> str:
        return f"LabelMap({self._classes!r})"

    def encode(self, labels: Iterable[Any]) -> np.ndarray:
        """Class ids (int64) of `labels`; a label not seen in training raises `TextCNNError`."""
        ids = []
        for label in materialize(labels):
            plain = _plain_label(label)
            found = self._ids.get(plain)
            if found is None:
                hint = did_you_mean(plain, map(str, self._classes)) if isinstance(plain, str) else ""
                known = ", ".join(repr(c) for c in self._classes[:50])
                raise TextCNNError(
                    f"label {plain!r} was never seen in training{hint}; known labels: {known}"
                )
            ids.append(found)
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[Label]:
        """Labels of class ids."""
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self._classes):
                raise TextCNNError(f"class id: expected 0..{len(self._classes) - 1}, got {i}")
            out.append(self._classes[int(i)])
        return out

    def to_json(self) -> dict[str, list[Label]]:
        """A JSON-ready dict; JSON keeps ints and strings apart, so the round trip is exact."""
        return {"classes": list(self._classes)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | str) -> LabelMap:
        """Rebuild from `to_json()`'s dict, or from its JSON text."""
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise TextCNNError(f"label map: expected JSON, got {obj[:60]!r} ({err})") from err
        classes = obj.get("classes") if isinstance(obj, Mapping) else None
        if not isinstance(classes, list):
            raise TextCNNError(f"label map: expected {{'classes': [...]}}, got {str(obj)[:80]}")
        return cls(classes)


