"""Choosing a component by name or by class, as timm's `act_layer="relu"` does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from textcnn.core.errors import TextCNNError, did_you_mean


def resolve(choice: str | Callable[..., Any], table: Mapping[str, Any], kind: str) -> Any:
    """Look `choice` up in `table` when it is a name; pass a class or callable through.

    Raises `TextCNNError` naming the `kind`, the unknown name and the known ones.
    """
    if not isinstance(choice, str):
        if callable(choice):
            return choice
        raise TextCNNError(f"{kind}: expected a name or a class, got {type(choice).__name__}")
    key = choice.lower().replace("-", "_")
    if key in table:
        return table[key]
    known = ", ".join(sorted(table))
    raise TextCNNError(
        f"unknown {kind} '{choice}'{did_you_mean(key, table)}; known: {known}"
    )
