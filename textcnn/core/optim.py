"""Optimizers by name with the lecture's defaults, built on `torch.optim`.

Update rules, for gradient g, learning rate lr (torch's formulation, which for a constant lr
tracks the same weights as the lecture's `v = mu*v - lr*g; w += v`):

- sgd:       w -= lr * g
- momentum:  v = mu * v + g;        w -= lr * v
- nesterov:  v = mu * v + g;        w -= lr * (g + mu * v)
- adagrad:   G += g^2;              w -= lr * g / (sqrt(G) + eps)
- adadelta:  Zeiler (2012), lr 1.0, rho 0.95, eps 1e-6 as in Kim (2014)
- lazy_adadelta: the same optimizer, also taking sparse embedding gradients (`LazyAdadelta`)
- rmsprop:   E = alpha * E + (1 - alpha) * g^2;  w -= lr * g / (sqrt(E) + eps)
- adam:      Kingma & Ba (2015)
- adamw:     Adam with decoupled weight decay (Loshchilov & Hutter 2019)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from textcnn.core.lazy_adadelta import LazyAdadelta
from textcnn.core.registry import resolve


class OptimizerSpec(NamedTuple):
    """A `torch.optim` class and the keyword defaults a name gives it."""

    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any]


def _spec(cls: type[torch.optim.Optimizer], **defaults: Any) -> OptimizerSpec:
    return OptimizerSpec(cls, MappingProxyType(defaults))


OPTIMIZER_DEFAULTS: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        "sgd": _spec(torch.optim.SGD, lr=0.01),
        "momentum": _spec(torch.optim.SGD, lr=0.01, momentum=0.9),
        "nesterov": _spec(torch.optim.SGD, lr=0.01, momentum=0.9, nesterov=True),
        "adagrad": _spec(torch.optim.Adagrad, lr=0.01),
        "adadelta": _spec(torch.optim.Adadelta, lr=1.0, rho=0.95, eps=1e-6),
        "lazy_adadelta": _spec(LazyAdadelta, lr=1.0, rho=0.95, eps=1e-6),
        "rmsprop": _spec(torch.optim.RMSprop, lr=1e-3, alpha=0.9),
        "adam": _spec(torch.optim.Adam, lr=1e-3),
        "adamw": _spec(torch.optim.AdamW, lr=1e-3),
    }
)


def list_optimizers() -> list[str]:
    """The optimizer names `create_optimizer` accepts, sorted."""
    return sorted(OPTIMIZER_DEFAULTS)


def create_optimizer(
    name_or_cls: str | type[torch.optim.Optimizer],
    params: Iterable[Tensor] | Iterable[dict[str, Any]],
    *,
    lr: float | None = None,
    weight_decay: float = 0.0,
    capturable: bool = False,
    **overrides: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer by name (see `list_optimizers`) or from a `torch.optim` class.

    A name starts from its row in `OPTIMIZER_DEFAULTS`; `lr` (when given), `weight_decay` and
    `overrides` replace those defaults. A class gets only what is passed. Unknown names and
    keywords the class does not take raise `TextCNNError`. `capturable=True` builds it to run inside
    a CUDA graph: torch's option of that name where the class has one (classes without it either
    record as they are, like SGD and LazyAdadelta's dense step, or fail the capture).
    """
    found = resolve(name_or_cls, OPTIMIZER_DEFAULTS, "optimizer")
    spec = found if isinstance(found, OptimizerSpec) else OptimizerSpec(found, {})
    kwargs = {**spec.defaults, "weight_decay": weight_decay, **overrides}
    if lr is not None:
        kwargs["lr"] = lr
    label = name_or_cls if isinstance(name_or_cls, str) else spec.cls.__name__
    accepted = set(inspect.signature(spec.cls).parameters) - {"self", "params"}
    if capturable and "capturable" in accepted:
        kwargs["capturable"] = True
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TextCNNError(
            f"optimizer '{label}': unknown option '{unknown[0]}'; "
            f"{spec.cls.__name__} takes: {', '.join(sorted(accepted))}"
        )
    try:
        return spec.cls(params, **kwargs)
    except ValueError as err:
        # torch checks ranges (negative lr, momentum with nesterov...) with a bare ValueError.
        raise TextCNNError(f"optimizer '{label}': {err}") from err


__all__ = ["OPTIMIZER_DEFAULTS", "OptimizerSpec", "create_optimizer", "list_optimizers"]
