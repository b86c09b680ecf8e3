"""Pooling: windowed max / average / L2-norm, global pooling, max-over-time and k-max pooling."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from textcnn.core.errors import TextCNNError
from textcnn.core.norm import for_dims
from textcnn.core.registry import resolve

PoolKind = Literal["max", "avg", "l2"]
TimePoolKind = Literal["max", "avg", "l2", "kmax"]
TIME_POOLS: tuple[str, ...] = ("max", "avg", "l2", "kmax")  # pool_over_time's kinds


def _root_of_sums(sums: Tensor) -> Tensor:
    """sqrt(sums) for sums of squares, with a gradient of 0 rather than NaN where a sum is 0."""
    positive = sums > 0
    # sqrt'(0) is inf; feed it 1 there and zero the result, so the gradient stays finite.
    return torch.where(positive, sums, torch.ones_like(sums)).sqrt() * positive


class L2Pool(nn.Module):
    """L2-norm pooling: sqrt of the sum of squares over each window (zero padding adds nothing).

    Unlike `nn.LPPool*d` it accepts padding, and its gradient is 0 rather than NaN on an
    all-zero window, which ReLU feature maps produce all the time.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        *,
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        dims: int = 2,
    ) -> None:
        super().__init__()
        self._avg_pool = for_dims({1: F.avg_pool1d, 2: F.avg_pool2d}, dims, "l2 pooling")
        sizes = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
        self.window = math.prod(sizes)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        # Mean of squares including the zero padding, times the window size, is the sum.
        sums = (
            self._avg_pool(
                x * x, self.kernel_size, self.stride, self.padding, count_include_pad=True
            )
            * self.window
        )
        return _root_of_sums(sums)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dims={self.dims}"
        )


_POOLS = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d},
    "l2": None,
}


def create_pool(
    kind: PoolKind,
    kernel_size: int | tuple[int, ...],
    *,
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] = 0,
    dims: int = 2,
) -> nn.Module:
    """Windowed pooling layer; `stride` defaults to `kernel_size` (non-overlapping windows).

    Average pooling counts zero padding in the denominator, as torch does by default.
    """
    variants = resolve(kind, _POOLS, "pooling")
    if variants is None:
        return L2Pool(kernel_size, stride=stride, padding=padding, dims=dims)
    cls = for_dims(variants, dims, f"pooling '{kind}'")
    return cls(kernel_size, stride=stride, padding=padding)


def max_over_time(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Max over the last axis of `[N, C, L]` feature maps, giving `[N, C]` (Collobert; Kim 2014).

    `mask` is a `[N, L]` bool tensor that is True at positions to leave out (padding), like
    torch's `key_padding_mask`. A row with every position masked gives 0 rather than -inf, so
    an empty sentence cannot poison the classifier.
    """
    if x.dim() != 3:
        raise TextCNNError(
            f"max_over_time: expected [N, C, L] features, got shape {tuple(x.shape)}"
        )
    if mask is None:
        return x.max(dim=-1).values
    if mask.dtype != torch.bool or mask.shape != (x.shape[0], x.shape[2]):
        raise TextCNNError(
            f"max_over_time: expected a bool mask of shape {(x.shape[0], x.shape[2])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    pooled = x.masked_fill(mask[:, None, :], float("-inf")).max(dim=-1).values
    empty = mask.all(dim=-1, keepdim=True)
    return pooled.masked_fill(empty, 0.0)


class GlobalPool(nn.Module):
    """Global max or average pooling over every axis after the channels: `[N, C, ...]` -> `[N, C]`.

    The same as an adaptive pool to size 1 followed by a flatten, for 1-d and 2-d inputs alike.
    """

    def __init__(self, kind: Literal["max", "avg"] = "max") -> None:
        super().__init__()
        self.kind = kind
        self._reduce = resolve(kind, {"max": torch.amax, "avg": torch.mean}, "global pooling")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise TextCNNError(
                f"GlobalPool: expected [N, C, ...] features, got shape {tuple(x.shape)}"
            )
        return self._reduce(x.flatten(2), dim=-1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def kmax_pool(x: Tensor, k: int, dim: int = -1) -> Tensor:
    """The `k` largest values along `dim`, kept in their original order (Kalchbrenner et al. 2014).

    Which of several equal values survive is up to `torch.topk`; their order is still kept.
    """
    length = x.shape[dim]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= length:
        raise TextCNNError(
            f"kmax_pool: expected k in 1..{length} (the length of dim {dim}), got {k!r}"
        )
    positions = x.topk(k, dim=dim).indices.sort(dim=dim).values
    return x.gather(dim, positions)


class KMaxPool1d(nn.Module):
    """k-max pooling over the time axis of `[N, C, L]`: gives `[N, C, k]`."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> Tensor:
        return kmax_pool(x, self.k, dim=-1)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def pool_over_time(x: Tensor, mask: Tensor | None = None, *, kind: TimePoolKind = "max",
                   k: int = 1) -> Tensor:
    """Pool `[N, C, L]` feature maps over time, leaving out the positions `mask` ([N, L], True =
    padding) marks: `[N, C]` for max (`max_over_time`), avg (the mean of the kept positions) and
    l2 (the L2 norm of the kept positions, `L2Pool`); `[N, C * k]` for kmax (the k largest kept
    values of each channel in their order, `kmax_pool`, channel by channel). A row with fewer kept
    positions than a pool needs gets zeros there: an empty row gives all zeros, as in
    `max_over_time`."""
    if kind == "max":
        return max_over_time(x, mask)
    if x.dim() != 3:
        raise TextCNNError(f"pool_over_time: expected [N, C, L] features, got shape {tuple(x.shape)}")
    if mask is None:
        mask = torch.zeros(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
    if mask.dtype != torch.bool or mask.shape != (x.shape[0], x.shape[2]):
        raise TextCNNError(f"pool_over_time: expected a bool mask of shape {(x.shape[0], x.shape[2])}, "
                           f"got {mask.dtype} {tuple(mask.shape)}")
    kept = x.masked_fill(mask[:, None, :], 0.0)
    if kind == "avg":
        count = (~mask).sum(dim=1, keepdim=True).clamp(min=1)
        return kept.sum(dim=-1) / count
    if kind == "l2":  # L2Pool over the whole length, in tensor operations only (an ONNX graph holds them)
        return _root_of_sums((kept * kept).sum(dim=-1))
    if kind == "kmax":
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TextCNNError(f"pool_over_time: expected k as an integer >= 1, got {k!r}")
        if x.shape[-1] < k:  # shorter than k: padding positions, masked, fill the rest
            x, mask = F.pad(x, (0, k - x.shape[-1])), F.pad(mask, (0, k - mask.shape[-1]), value=True)
        top = kmax_pool(x.masked_fill(mask[:, None, :], float("-inf")), k, dim=-1)
        return torch.where(torch.isneginf(top), torch.zeros_like(top), top).flatten(1)
    raise TextCNNError(f"pool_over_time: expected kind in {', '.join(TIME_POOLS)}, got {kind!r}")


__all__ = [
    "TIME_POOLS",
    "GlobalPool",
    "KMaxPool1d",
    "L2Pool",
    "create_pool",
    "kmax_pool",
    "max_over_time",
    "pool_over_time",
]
