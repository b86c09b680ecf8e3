"""Predictions over an input stream, shared by the text and image classifiers: lines decoded as
they are read, inputs cut into bounded chunks, and each chunk's ranked labels and decision.

A chunk at a time, so an input of any length takes bounded memory and the first results come at
once; a line that does not decode stops the stream only after every input before it was yielded.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from textcnn.core.config import check_encoding
from textcnn.core.decisions import check_decision, labels_or_abstain, multi_label_decisions
from textcnn.core.errors import TextCNNError


@dataclass(frozen=True)
class Prediction:
    """One input's prediction from a classifier's prediction stream."""

    input: str  # the text, or the image file
    ranked: list[tuple[Any, float]]  # the top_k (label, probability) pairs, most probable first
    label: Any  # the decision: the top label, or `abstain` below the threshold (multi-label: a list)


def chunked(items: Iterable[str], *, max_items: int, max_chars: int | None = None
            ) -> Iterator[list[str]]:
    """`items` in lists of at most `max_items`, cut once they hold `max_chars` characters (when
    given). A `TextCNNError` while reading yields the items read before it, then propagates."""
    chunk: list[str] = []
    chars = 0
    try:
        for item in items:
            chunk.append(item)
            chars += len(item)
            if len(chunk) >= max_items or (max_chars is not None and chars >= max_chars):
                yield chunk
                chunk, chars = [], 0
    except TextCNNError:
        if chunk:
            yield chunk  # nothing read before a bad line is lost
        raise
    if chunk:
        yield chunk


def ranked_predictions(chunks: Iterable[list[str]], probabilities: Callable[[list[str]], np.ndarray],
                       classes: Sequence[Any], *, top_k: int = 1, threshold: float | None = None,
                       abstain: Any = None, multi_label: bool = False,
                       model_threshold: float | np.ndarray | None = None,
                       label_top_k: bool = False) -> Iterator[Prediction]:
    """For each input of each chunk, its `top_k` (label, probability) pairs from
    `probabilities(chunk)` [len(chunk), classes] and its decision: the top label, or `abstain`
    where the top probability is below `threshold`; for a `multi_label` model, the labels whose
    probability reaches their threshold: `model_threshold`, one for all or one per class (a
    single `threshold` given replaces a single `model_threshold`); with `label_top_k`, of the
    `top_k` most probable labels (all of them when there is no threshold at all)."""
    if top_k < 1:
        raise TextCNNError(f"top_k: expected an integer >= 1, got {top_k!r}")
    threshold = check_decision(threshold=threshold, abstain=abstain, multi_label=multi_label)
    k = min(top_k, len(classes))
    for chunk in chunks:
        probs = probabilities(chunk)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        if multi_label:
            limits = model_threshold
            if threshold is not None and not isinstance(model_threshold, np.ndarray):
                limits = threshold
            chosen = multi_label_decisions(probs, limits, top_k=top_k if label_top_k else None)
            labels = [[classes[j] for j in np.flatnonzero(row)] for row in chosen]
        elif threshold is None:
            labels = [classes[j] for j in order[:, 0]]
        else:
            labels = list(labels_or_abstain(probs, classes, threshold=threshold, abstain=abstain))
        for item, row, idx, label in zip(chunk, probs, order, labels):
            yield Prediction(item, [(classes[j], float(row[j])) for j in idx], label)


def read_lines(stream: BinaryIO, *, encoding: str = "utf-8", name: str = "<input>") -> Iterator[str]:
    """The lines of a binary stream, decoded with `encoding` and read as they are consumed,
    without their line ends ("\\n" or "\\r\\n"). Bytes that do not decode are a `TextCNNError`
    naming `name` and the line; an unknown `encoding` is one at once."""
    check_encoding("--encoding", encoding)
    return _decoded_lines(stream, encoding, name)


def _decoded_lines(stream: BinaryIO, encoding: str, name: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    line_no = 1  # of the line being read
    pending = ""
    try:
        for raw in stream:
            state = decoder.getstate()
            pending += decoder.decode(raw)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line.removesuffix("\r")
                line_no += 1
        state, raw = decoder.getstate(), b""
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        # The error's offset counts from the bytes the decoder held back plus this read; those
        # before it may still end lines (a read of several lines, as in UTF-16 text).
        try:
            before = (state[0] + raw)[: err.start]
            fresh = codecs.getincrementaldecoder(encoding)(errors="strict")
            fresh.setstate((b"", state[1]))
            line_no += fresh.decode(before).count("\n")
        except (UnicodeDecodeError, TypeError, ValueError):
            pass
        raise TextCNNError(f"{name}:{line_no}: expected {encoding} text, got bytes that do not decode "
                           f"({err.reason}); give the file's encoding with --encoding, e.g. "
                           f"--encoding latin-1") from None
    if pending:
        yield pending.removesuffix("\r")
