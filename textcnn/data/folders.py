"""Documents stored one file each in a folder per class (the layout of scikit-learn's
`load_files`), and the same layout inside a `.tar.gz` archive (20 Newsgroups' by-date split).

A document is the whole file, decoded with the encoding asked for; its line breaks are kept (the
tokenizer treats them as spaces). The label is the name of its class folder; documents come in
the order of `load_files`: classes sorted by name, then files sorted by name. A file that does
not decode is a `TextCNNError` naming it, so no document is silently changed or lost.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import datasets

from textcnn.core.config import check_encoding
from textcnn.core.errors import TextCNNError
from textcnn.data.readers import as_dataset

DEFAULT_ENCODING = "utf-8"


def decode_document(raw: bytes, *, encoding: str, name: str) -> str:
    """The text of one document file; bytes that do not decode are an error naming `name`."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise TextCNNError(f"{name}: expected {encoding} text, got bytes that do not decode at byte "
                           f"{err.start} ({err.reason}); set data.encoding to the files' encoding, "
                           "e.g. latin-1") from None


def read_folders(path: str | os.PathLike, *, encoding: str = DEFAULT_ENCODING) -> datasets.Dataset:
    """Read a folder holding a sub-folder per class and one file per document in each.

    Built on scikit-learn's `load_files` (which reads the bytes); each file is decoded here with
    `encoding` so that a file that does not decode is named. Hidden files (a name starting with
    '.') are skipped; files beside the class folders are not documents. Labels are the class
    folders' names."""
    from sklearn.datasets import load_files

    check_encoding("data.encoding", encoding)
    root = Path(path)
    if not root.is_dir():
        got = "a file" if root.is_file() else "no such folder"
        raise TextCNNError(f"{root}: expected a folder with a sub-folder per class, got {got}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TextCNNError(f"{root}: expected a sub-folder per class holding one file per document, "
                           "got no sub-folders")
    bunch = load_files(str(root), categories=classes, load_content=True, shuffle=False, encoding=None)
    texts, labels = [], []
    for raw, file, target in zip(bunch.data, bunch.filenames, bunch.target):
        if Path(file).name.startswith("."):
            continue
        texts.append(decode_document(raw, encoding=encoding, name=str(file)))
        labels.append(bunch.target_names[target])
    if not texts:
        raise TextCNNError(f"{root}: expected document files in its class folders "
                           f"({', '.join(classes[:5])}), got none")
    return as_dataset(texts, labels)


def archive_split_names(archive: str | os.PathLike) -> list[str]:
    """The top-level folders of a `.tar.gz` archive that hold class folders of documents."""
    found = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isfile() and len(parts) == 3:
                found.add(parts[0])
    return sorted(found)


def read_archive_folders(archive: str | os.PathLike, splits: Iterable[str], *,
                         encoding: str = DEFAULT_ENCODING) -> dict[str, datasets.Dataset]:
    """Read `<split>/<class>/<document>` members of a `.tar.gz` archive without extracting it:
    a dataset per split, the same as `read_folders` on the extracted `<split>` folder.

    Only regular files three levels deep are documents; other members (links, devices, files at
    other depths, hidden files) are never read, so no member can point outside the archive."""
    check_encoding("data.encoding", encoding)
    archive = Path(archive)
    wanted = list(splits)
    found: dict[str, list[tuple[str, str, str]]] = {split: [] for split in wanted}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) != 3 or parts[0] not in found or \
                        any(p.startswith(".") or p == ".." for p in parts):
                    continue
                stream = tar.extractfile(member)
                raw = stream.read() if stream is not None else b""
                text = decode_document(raw, encoding=encoding, name=f"{archive}:{member.name}")
                found[parts[0]].append((parts[1], parts[2], text))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise TextCNNError(f"{archive}: expected a readable .tar.gz archive, got an error: {err}") from None
    out = {}
    for split, docs in found.items():
        if not docs:
            raise TextCNNError(f"{archive}: expected documents under {split}/<class>/, got none")
        docs.sort(key=lambda d: (d[0], d[1]))  # load_files' order: classes, then files, by name
        out[split] = as_dataset([text for _, _, text in docs], [label for label, _, _ in docs])
    return out
