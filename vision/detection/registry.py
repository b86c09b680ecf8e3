"""Detectors by name, like the classifier registry: `create_detector("ssd", num_classes=3)`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from textcnn.core.errors import TextCNNError
from textcnn.core.registry import resolve
from vision.detection.base import Detector

_DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator registering a keyword-only builder `(*, num_classes, **kwargs) -> Detector`."""

    def wrap(builder: Callable[..., Detector]) -> Callable[..., Detector]:
        _DETECTORS[name] = builder
        return builder

    return wrap


def _load() -> None:
    import vision.detection.models  # noqa: F401  (importing the detector files registers them)


def list_detectors(pattern: str = "*") -> list[str]:
    """Registered detector names matching a shell-style pattern, sorted."""
    _load()
    return sorted(n for n in _DETECTORS if fnmatch.fnmatchcase(n, pattern))


def create_detector(name: str, *, num_classes: int, **kwargs: Any) -> Detector:
    """Build the detector registered as `name` for `num_classes` object classes."""
    _load()
    builder = resolve(name, _DETECTORS, "detector")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise TextCNNError(f"num_classes: expected an integer >= 1 (object classes), got {num_classes!r}")
    try:
        return builder(num_classes=num_classes, **kwargs)
    except TypeError as err:
        raise TextCNNError(f"detector '{name}': {err}") from err


__all__ = ["create_detector", "list_detectors", "register_detector"]
