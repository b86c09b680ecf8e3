"""Normalisation layers chosen by name or by class: "batch" or "none"."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from textcnn.core.errors import TextCNNError
from textcnn.core.registry import resolve

T = TypeVar("T")

NORM_LAYERS: dict[str, Mapping[int, Callable[..., nn.Module]] | None] = {
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d},
    "none": None,
}


def for_dims(variants: Mapping[int, T], dims: int, what: str) -> T:
    """Pick the 1-d or 2-d variant of a layer; `TextCNNError` for any other `dims`."""
    if dims not in variants:
        known = ", ".join(str(d) for d in sorted(variants))
        raise TextCNNError(f"{what}: expected dims in {{{known}}}, got {dims!r}")
    return variants[dims]


def get_norm_layer(
    norm: str | Callable[..., nn.Module] | None, *, dims: int
) -> Callable[..., nn.Module] | None:
    """Return the norm class for `norm` at `dims` (1 or 2), or None for no normalisation.

    A class is passed through as is (it is the caller's job to pick its dimensionality).
    """
    if norm is None:
        return None
    found = resolve(norm, NORM_LAYERS, "norm layer")
    if found is None or not isinstance(found, Mapping):
        return found
    return for_dims(found, dims, f"norm layer '{norm}'")


def create_norm_layer(
    norm: str | Callable[..., nn.Module] | None, num_features: int, *, dims: int, **kwargs: Any
) -> nn.Module:
    """Build the norm layer for `num_features` channels; "none"/None gives `nn.Identity`."""
    cls = get_norm_layer(norm, dims=dims)
    if cls is None:
        return nn.Identity()
    return cls(num_features, **kwargs)


__all__ = ["NORM_LAYERS", "create_norm_layer", "for_dims", "get_norm_layer"]
