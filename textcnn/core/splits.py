"""Seeded, stratified splits of labelled examples, shared by text and image data: a holdout
(train, dev) split and Kim's k-fold cross-validation, as index arrays."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from textcnn.core.errors import TextCNNError

T = TypeVar("T")


def materialize(items: Iterable[T]) -> list[T]:
    """`items` as a list; a `datasets` Column is sliced (one Arrow read), not iterated row by row."""
    if hasattr(items, "__getitem__") and not isinstance(items, str):
        try:
            return list(items[:])
        except (TypeError, KeyError):
            pass
    return list(items)


def holdout_split(
    labels: Sequence[Any], *, fraction: float = 0.1, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, dev), stratified by label and seeded; both sorted.

    Stratification needs every class twice and at least one example of each class on both
    sides; when that fails (a class with one example, or fewer dev slots than classes), the
    split falls back to a plain seeded shuffle and warns with the reason.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise TextCNNError(f"fraction: expected a number between 0 and 1, got {fraction}")
    y = np.asarray(materialize(labels))
    n = len(y)
    n_dev = int(np.ceil(fraction * n))
    if n < 2 or n_dev >= n:
        raise TextCNNError(f"holdout: expected enough examples for a {fraction} split, got {n}")
    counts = Counter(y.tolist())
    stratify: np.ndarray | None = y
    if min(counts.values()) < 2:
        reason = f"a class has a single example ({min(counts, key=counts.get)!r})"
        stratify = None
    elif len(counts) > min(n_dev, n - n_dev):
        reason = f"{len(counts)} classes do not fit a dev set of {n_dev}"
        stratify = None
    if stratify is None:
        warnings.warn(f"holdout split not stratified: {reason}", stacklevel=2)
    train, dev = train_test_split(
        np.arange(n), test_size=n_dev, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(train).astype(np.int64), np.sort(dev).astype(np.int64)


def kfold_splits(
    labels: Sequence[Any], *, n_folds: int = 10, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded k-fold (train, test) index pairs (Kim's 10-fold CV)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(materialize(labels))
    if not 2 <= n_folds <= len(y):
        raise TextCNNError(f"n_folds: expected 2..{len(y)} (the number of examples), got {n_folds}")
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        return [
            (train.astype(np.int64), test.astype(np.int64))
            for train, test in folds.split(np.zeros(len(y)), y)
        ]
    except ValueError as err:
        raise TextCNNError(f"{n_folds}-fold split: {err}") from err
