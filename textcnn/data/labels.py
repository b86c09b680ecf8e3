"""Labels <-> class ids."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.splits import materialize

Label = int | str


def label_sets(labels: Iterable[Any], *, separator: str | None = None, source: str = "labels"
               ) -> list[list[Label]]:
    """Each text's labels as a list, for a multi-label model: a list as it is; with `separator`, a
    string split on it (an empty string: no labels; spaces around a label are dropped); any other
    label a list of one. A label inside a list that is itself a list is a `TextCNNError` naming
    `source` and the row."""
    out = []
    for row, value in enumerate(materialize(labels)):
        if isinstance(value, (list, tuple, np.ndarray)):
            items = list(value)
        elif separator is not None and isinstance(value, str):
            items = [part.strip() for part in value.split(separator) if part.strip()]
        else:
            items = [value]
        for item in items:
            if isinstance(item, (list, tuple, np.ndarray)):
                raise TextCNNError(f"{source}: row {row + 1}: expected labels, got a nested list {value!r}")
        out.append(items)
    return out


def single_labels(labels: Sequence[Any], *, source: str = "labels") -> list[Any]:
    """`labels` unchanged, after checking that none is a list: a list of labels needs a
    multi-label model (a `TextCNNError` naming `source`, the row and model.multi_label)."""
    for row, value in enumerate(labels):
        if isinstance(value, (list, tuple, np.ndarray)):
            raise TextCNNError(f"{source}: row {row + 1}: expected one label per text, got a list "
                               f"{list(value)!r}; a list of labels needs model.multi_label: true")
    return list(labels)


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

    def as_array(self) -> np.ndarray:
        """The labels by class id as scikit-learn's `classes_` holds them (strings: object dtype)."""
        return np.asarray(self._classes, dtype=object if any(isinstance(c, str) for c in self._classes) else None)

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

    def find(self, key: Any, *, name: str) -> int:
        """The class id of `key`, a label or its text: YAML, JSON and `--set` may give the integer
        label 1 as the key "1" (or a string label "1" as 1). A key of no class is a `TextCNNError`
        naming `name` (the setting) and the known labels."""
        try:
            plain: Any = _plain_label(key)
        except TextCNNError:
            plain = None  # not a label at all: named below
        found = self._ids.get(plain) if plain is not None else None
        if found is None and isinstance(plain, str) and plain.strip().lstrip("+-").isdigit():
            found = self._ids.get(int(plain))
        if found is None and isinstance(plain, int):
            found = self._ids.get(str(plain))
        if found is None:
            known = ", ".join(repr(c) for c in self._classes[:50])
            raise TextCNNError(f"{name}: expected a label of the training data, got {key!r}; known "
                               f"labels: {known}")
        return found

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
