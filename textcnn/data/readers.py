"""Kim's benchmark files and SST trees, read into `datasets.Dataset`s of `text` and `label`.

Decoding of Kim-format and SST files: each line (split on b"\\n" only; byte 0x85 is a line break
for `str.splitlines`) is decoded as UTF-8; a line that is not valid UTF-8 is decoded as cp1252
(0x85 -> '…', 0x92 -> '’', ...), with the five bytes cp1252 leaves undefined (0x81 0x8D 0x8F
0x90 0x9D) taken as Latin-1. Every byte sequence decodes, so no example is ever lost, and the
benchmark files give exactly the counts in their README.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import datasets

from textcnn.core.errors import TextCNNError
from textcnn.data.labels import Label

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


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a `Path`, or a `TextCNNError` saying it should be `what`."""
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


def as_dataset(texts: list[str], labels: list[Label]) -> datasets.Dataset:
    """A `datasets.Dataset` of the columns `text` and `label`."""
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


# -- Kim's format ---------------------------------------------------------------------------------


def read_kim_file(path: str | os.PathLike) -> datasets.Dataset:
    """Read `<integer label> <sentence>` lines (Kim's MR, Subj, TREC, SST, CR, MPQA files).

    No line is skipped. A line holding only a label (with or without spaces after it) is an
    empty sentence: Kim's CR and MPQA files have such lines, and their counts (3,775 and 10,606)
    include them. A blank line, or one that does not start with an integer label, raises
    `TextCNNError` naming file:line. Spaces around the sentence are stripped.
    """
    path = existing_file(path, "a Kim-format file ('<label> <sentence>' lines)")
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
    return as_dataset(texts, labels)


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
    path = existing_file(path, "an SST tree file (one PTB tree a line)")
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
    return as_dataset(texts, labels)
