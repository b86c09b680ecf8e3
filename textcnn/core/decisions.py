"""From class probabilities to decisions: a classifier that may abstain below a confidence.

Shared by the text and image classifiers (`TextCNNClassifier.predict`, `textcnn predict
--threshold`): a prediction whose top probability is below the threshold gives the abstain value
(None by default) instead of a label; a probability equal to the threshold keeps its label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from textcnn.core.errors import TextCNNError


def probabilities(logits: np.ndarray, *, multi_label: bool = False) -> np.ndarray:
    """Softmax over classes (sigmoid per class for multi-label) of logits [N, classes], as
    float32; the NumPy form of what the torch models compute (exported graphs, the lean path)."""
    logits = np.asarray(logits, dtype=np.float32)
    if multi_label:
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def check_probability(value: Any, *, name: str) -> float:
    """`value` as a float in [0, 1]; anything else is a one-line `TextCNNError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or math.isnan(value) or not 0 <= value <= 1:
        raise TextCNNError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def check_decision(*, threshold: Any, abstain: Any, multi_label: bool) -> float | None:
    """`threshold` checked by `check_probability` (None stays None); an `abstain` value that
    cannot take effect (without a threshold, or on a multi-label model) is a `TextCNNError`."""
    if threshold is not None:
        threshold = check_probability(threshold, name="threshold")
    if abstain is not None and threshold is None:
        raise TextCNNError(f"abstain: takes effect below a confidence threshold, and none was given "
                           f"(got abstain={abstain!r}, threshold=None)")
    if abstain is not None and multi_label:
        raise TextCNNError(f"abstain: a multi-label model predicts no label where none reaches the "
                           f"threshold; expected no abstain value, got {abstain!r}")
    return threshold


def labels_or_abstain(probs: np.ndarray, classes: Sequence[Any] | np.ndarray, *, threshold: float,
                      abstain: Any = None) -> np.ndarray:
    """For each row of `probs` [N, classes], its most probable class, or `abstain` when that
    probability is below `threshold`; an object array of N."""
    probs = np.asarray(probs)
    top = probs.argmax(axis=1)
    out = np.asarray(classes, dtype=object)[top]
    out[probs[np.arange(len(probs)), top] < threshold] = abstain
    return out


def multi_label_decisions(probs: np.ndarray, thresholds: float | np.ndarray | None, *,
                          top_k: int | None = None) -> np.ndarray:
    """A multi-label model's label sets as a 0/1 matrix [N, classes]: the labels whose probability
    reaches their threshold (`thresholds`: one for all, or one per class); with `top_k`, the k
    most probable labels, and of those only the ones reaching their threshold unless
    `thresholds` is None. Ties in the ranking go to the earlier class."""
    probs = np.asarray(probs)
    chosen = np.ones(probs.shape, dtype=bool) if thresholds is None else probs >= thresholds
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise TextCNNError(f"top_k: expected an integer >= 1, got {top_k!r}")
        order = np.argsort(-probs, axis=1, kind="stable")[:, : min(int(top_k), probs.shape[1])]
        top = np.zeros(probs.shape, dtype=bool)
        np.put_along_axis(top, order, True, axis=1)
        chosen &= top
    return chosen.astype(np.int64)


def best_f1_thresholds(y_true: np.ndarray, scores: np.ndarray, *, default: float) -> np.ndarray:
    """Per class, the threshold that maximises the class's F1 on (`y_true` 0/1 [N, classes],
    `scores` [N, classes]): halfway between the lowest score it keeps and the highest it drops
    (the first of equal F1s, i.e. the highest threshold). A class without a positive example,
    where F1 is 0 whatever the threshold, keeps `default`."""
    y_true, scores = np.asarray(y_true, dtype=bool), np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise TextCNNError(f"best_f1_thresholds: expected labels and scores of one shape [N, classes], "
                           f"got {y_true.shape} and {scores.shape}")
    out = np.full(scores.shape[1], float(default))
    for c in range(scores.shape[1]):
        positives = int(y_true[:, c].sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        ranked, truth = scores[order, c], y_true[order, c]
        # cutting after position i keeps ranked[:i + 1]; only cuts between distinct scores count
        cuts = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
        tp = np.cumsum(truth)[cuts]
        kept = cuts + 1
        f1 = 2 * tp / (kept + positives)
        best = int(np.argmax(f1))
        low = ranked[cuts[best]]
        below = ranked[cuts[best] + 1] if cuts[best] + 1 < len(ranked) else 0.0
        out[c] = (low + below) / 2
    return out


def predicted_labels(probs: np.ndarray, classes: Sequence[Any] | np.ndarray, *, threshold: Any = None,
                     abstain: Any = None, multi_label: bool = False,
                     model_threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """A classifier's `predict` from its probabilities [N, classes]: the most probable class
    (below `threshold`: `abstain`, as `labels_or_abstain`), or for a multi-label model a 0/1
    matrix of the probabilities reaching `threshold` (default `model_threshold`: one for all
    labels, or one per label, e.g. tuned on dev data)."""
    threshold = check_decision(threshold=threshold, abstain=abstain, multi_label=multi_label)
    probs = np.asarray(probs)
    if multi_label:
        return multi_label_decisions(probs, model_threshold if threshold is None else threshold)
    if threshold is None:
        return np.asarray(classes)[probs.argmax(axis=1)]
    return labels_or_abstain(probs, classes, threshold=threshold, abstain=abstain)
