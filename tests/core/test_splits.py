"""Seeded, stratified holdout and k-fold splits (`textcnn.core.splits`)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from textcnn.core.errors import TextCNNError
from textcnn.core.splits import holdout_split, kfold_splits


def test_holdout_split_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], size=1003, p=[0.6, 0.3, 0.1])
    train, dev = holdout_split(labels, fraction=0.1, seed=7)
    assert len(dev) == math.ceil(0.1 * len(labels))
    assert np.array_equal(np.sort(np.concatenate([train, dev])), np.arange(len(labels)))
    for cls, total in Counter(labels.tolist()).items():
        in_dev = int((labels[dev] == cls).sum())
        assert abs(in_dev - total * len(dev) / len(labels)) <= 1  # stratified to the example
    again = holdout_split(labels, fraction=0.1, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(again, (train, dev), strict=True))
    assert not np.array_equal(holdout_split(labels, fraction=0.1, seed=8)[1], dev)


def test_holdout_split_falls_back_when_a_class_is_single():
    labels = [0] * 30 + [1] * 30 + [2]
    with pytest.warns(UserWarning, match="not stratified: a class has a single example"):
        train, dev = holdout_split(labels, fraction=0.2, seed=0)
    assert len(dev) == 13 and len(set(train) | set(dev)) == 61
    with pytest.raises(TextCNNError, match="fraction"):
        holdout_split(labels, fraction=1.5, seed=0)


def test_kfold_splits_partition_and_stratify():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=537)
    folds = kfold_splits(labels, n_folds=10, seed=3)
    assert len(folds) == 10
    seen = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(seen), np.arange(len(labels)))
    for train, test in folds:
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    for cls in range(4):
        per_fold = [int((labels[test] == cls).sum()) for _, test in folds]
        assert max(per_fold) - min(per_fold) <= 1
    again = kfold_splits(labels, n_folds=10, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = kfold_splits(labels, n_folds=10, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))
    with pytest.raises(TextCNNError, match="n_folds"):
        kfold_splits(labels[:5], n_folds=10, seed=0)
