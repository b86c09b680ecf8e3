"""A text run's data: texts and labels per split."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from textcnn.core.errors import TextCNNError
from textcnn.core.splits import kfold_splits

Examples = tuple[list[str], list]  # (texts, labels)


@dataclass
class TextSplits:
    """Texts and labels per split; dev or test may be missing."""

    train: Examples
    dev: Examples | None
    test: Examples | None
    train_weights: list[float] | None = None  # per-text loss weights of train (data.weight_column)


def examples(ds: datasets.Dataset) -> Examples:
    """The (texts, labels) of a dataset with the columns `text` and `label`."""
    return list(ds["text"]), list(ds["label"])


def cv_fold(texts: list[str], labels: list, *, folds: int, fold: int, seed: int) -> tuple[Examples, Examples]:
    """The (train, test) examples of fold `fold` of `folds` stratified, seeded folds."""
    splits = kfold_splits(labels, n_folds=folds, seed=seed)
    if not 0 <= fold < len(splits):
        raise TextCNNError(f"data.fold: expected 0..{len(splits) - 1}, got {fold}")
    train_idx, test_idx = splits[fold]
    pick = lambda idx: ([texts[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return pick(train_idx), pick(test_idx)
