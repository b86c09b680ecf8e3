"""A text run's data: texts and labels per split."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

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
