"""Regularisation: max-norm constraint, L1/L2 penalties, weight norm, noise, word dropout and
early stopping."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.registry import resolve


@torch.no_grad()
def max_norm_(weight: Tensor, max_norm: float, *, dim: int | tuple[int, ...] = 1) -> Tensor:
    """Rescale, in place, each slice whose L2 norm over `dim` exceeds `max_norm` to that norm.

    With a `Linear` weight `[out, in]` and `dim=1` the slices are the rows, one weight vector per
    output unit: Kim (2014) caps them at s=3 on the output layer after every update. Rows at or
    below the cap are left bit-for-bit untouched.
    """
    if not max_norm > 0:
        raise TextCNNError(f"max_norm: expected a positive norm cap, got {max_norm!r}")
    norms = weight.norm(p=2, dim=dim, keepdim=True)
    too_long = norms > max_norm
    scaled = weight * (max_norm / norms.clamp_min(torch.finfo(weight.dtype).tiny))
    return weight.copy_(torch.where(too_long, scaled, weight))


class MaxNorm:
    """Applies `max_norm_` to the weights of named submodules; call it after `optimizer.step()`."""

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        max_norm: float,
        *,
        dim: int | tuple[int, ...] = 1,
    ) -> None:
        modules = dict(model.named_modules())
        missing = [name for name in names if name not in modules]
        if missing:
            hint = did_you_mean(missing[0], [n for n in modules if n])
            raise TextCNNError(f"MaxNorm: no submodule '{missing[0]}' in the model{hint}")
        self.weights = [modules[name].weight for name in names]
        self.max_norm = max_norm
        self.dim = dim

    def __call__(self) -> None:
        for weight in self.weights:
            max_norm_(weight, self.max_norm, dim=self.dim)


def l1_penalty(params: Iterable[Tensor]) -> Tensor:
    """sum |w| over all `params` (the lasso term; its gradient is sign(w)).

    Note: the lecture slides label this and `l2_penalty` the other way round.
    """
    return _penalty(params, torch.abs)


def l2_penalty(params: Iterable[Tensor]) -> Tensor:
    """sum w^2 over all `params` (weight decay's term, no 1/2; its gradient is 2w).

    Note: the lecture slides label this and `l1_penalty` the other way round.
    """
    return _penalty(params, torch.square)


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """`torch.nn.utils.clip_grad_norm_` (global L2 norm), also for sparse gradients (an
    `nn.Embedding(sparse=True)` on the fast text path), which torch's version rejects.

    A sparse gradient is coalesced first (duplicate rows summed), so its norm is that of the dense
    gradient it stands for. Returns the total norm before clipping."""
    params = [p for p in params if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    total = nn.utils.get_total_norm([p.grad._values() if p.grad.is_sparse else p.grad for p in params])
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)  # torch's own epsilon and cap
    for p in params:
        if p.grad.is_sparse:
            p.grad._values().mul_(coef.to(p.grad.dtype))
        else:
            p.grad.mul_(coef.to(p.grad.dtype))
    return total


def _penalty(params: Iterable[Tensor], elementwise: Callable[[Tensor], Tensor]) -> Tensor:
    terms = [elementwise(p).sum() for p in params]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def apply_weight_norm(module: nn.Module, *, name: str = "weight", dim: int | None = 0) -> nn.Module:
    """Reparametrise `module.<name>` as g * v / ||v|| (Salimans & Kingma 2016), in place.

    The magnitude g and direction v become `module.parametrizations.<name>.original0` and
    `.original1`; at init w equals the original weight, so outputs do not change.
    """
    if not isinstance(getattr(module, name, None), Tensor):
        raise TextCNNError(f"apply_weight_norm: {type(module).__name__} has no tensor '{name}'")
    return weight_norm(module, name=name, dim=dim)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if not std >= 0:
            raise TextCNNError(f"GaussianNoise: expected std >= 0, got {std!r}")
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.std == 0:
            return x
        return x + torch.randn_like(x) * self.std

    def extra_repr(self) -> str:
        return f"std={self.std}"


class WordDropout(nn.Module):
    """Replaces each token id by `replacement_id` (e.g. <unk>) with probability `p` in training.

    Padding (`pad_id`) is never replaced, so sequence lengths and masks stay valid.
    """

    def __init__(self, p: float, *, replacement_id: int, pad_id: int | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise TextCNNError(f"WordDropout: expected 0 <= p < 1, got {p!r}")
        self.p = p
        self.replacement_id = replacement_id
        self.pad_id = pad_id

    def forward(self, ids: Tensor) -> Tensor:
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TextCNNError(f"WordDropout: expected integer token ids, got {ids.dtype}")
        if not self.training or self.p == 0:
            return ids
        drop = torch.rand(ids.shape, device=ids.device) < self.p
        if self.pad_id is not None:
            drop &= ids != self.pad_id
        return ids.masked_fill(drop, self.replacement_id)

    def extra_repr(self) -> str:
        return f"p={self.p}, replacement_id={self.replacement_id}, pad_id={self.pad_id}"


class EarlyStopping:
    """Tracks one validation metric and says when it has not improved for `patience` epochs.

    An epoch improves when the metric beats the best so far by more than `min_delta`
    (upwards for `mode="max"`, downwards for `mode="min"`). NaN never improves.
    """

    _STATE_KEYS = (
        "metric",
        "mode",
        "patience",
        "min_delta",
        "best",
        "best_epoch",
        "bad_epochs",
        "epoch",
    )

    def __init__(
        self,
        metric: str,
        *,
        mode: Literal["max", "min"] = "max",
        patience: int,
        min_delta: float = 0.0,
    ) -> None:
        self.mode = resolve(mode, {"max": "max", "min": "min"}, "early-stopping mode")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise TextCNNError(
                f"EarlyStopping: expected patience as an integer >= 0, got {patience!r}"
            )
        if not min_delta >= 0:
            raise TextCNNError(f"EarlyStopping: expected min_delta >= 0, got {min_delta!r}")
        self.metric = metric
        self.patience = patience
        self.min_delta = float(min_delta)
        self._best: float | None = None
        self._best_epoch: int | None = None
        self._bad_epochs = 0
        self._epoch = 0

    def step(self, metrics: Mapping[str, Any], *, epoch: int | None = None) -> bool:
        """Record one epoch's `metrics`; return True when the tracked metric improved.

        `epoch` defaults to a count of `step` calls starting at 1.
        """
        if self.metric not in metrics:
            available = ", ".join(sorted(metrics)) or "none"
            raise TextCNNError(
                f"early stopping: metric '{self.metric}' not in the epoch's metrics"
                f"{did_you_mean(self.metric, metrics)}; available: {available}"
            )
        value = float(metrics[self.metric])
        self._epoch = self._epoch + 1 if epoch is None else epoch
        if self._improves(value):
            self._best, self._best_epoch, self._bad_epochs = value, self._epoch, 0
            return True
        self._bad_epochs += 1
        return False

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self._best is None:
            return True
        if self.mode == "max":
            return value > self._best + self.min_delta
        return value < self._best - self.min_delta

    @property
    def best(self) -> float | None:
        """Best value seen so far (None before the first improvement)."""
        return self._best

    @property
    def best_epoch(self) -> int | None:
        """Epoch of the best value (None before the first improvement)."""
        return self._best_epoch

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs in a row have not improved."""
        # Checked only after a miss, so patience=0 means "stop at the first epoch that misses".
        return self._bad_epochs > 0 and self._bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state, to resume training where it stopped."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "best": self._best,
            "best_epoch": self._best_epoch,
            "bad_epochs": self._bad_epochs,
            "epoch": self._epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()`; the metric and mode must match this tracker's."""
        missing = [key for key in self._STATE_KEYS if key not in state]
        if missing:
            raise TextCNNError(f"early stopping state: missing key '{missing[0]}'")
        for key in ("metric", "mode"):
            expected = getattr(self, key)
            if state[key] != expected:
                raise TextCNNError(
                    f"early stopping state: expected {key} '{expected}', got '{state[key]}'"
                )
        self.patience = int(state["patience"])
        self.min_delta = float(state["min_delta"])
        self._best = None if state["best"] is None else float(state["best"])
        self._best_epoch = state["best_epoch"]
        self._bad_epochs = int(state["bad_epochs"])
        self._epoch = int(state["epoch"])


__all__ = [
    "EarlyStopping",
    "GaussianNoise",
    "MaxNorm",
    "WordDropout",
    "apply_weight_norm",
    "clip_grad_norm_",
    "l1_penalty",
    "l2_penalty",
    "max_norm_",
]
