"""Convolution arithmetic and conv + norm + activation blocks for 1-d (text) and 2-d (images).

Output size of a convolution along one axis (CS231n's formula)::

    W2 = (W1 - F + 2P) / S + 1,    F_eff = D * (F - 1) + 1 with dilation D

Parameters of a layer with K filters of size F x F over D1 input channels::

    (F * F * D1) * K weights + K biases
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import ClassVar

from torch import nn

from textcnn.core.activations import create_act_layer
from textcnn.core.errors import TextCNNError
from textcnn.core.norm import create_norm_layer, for_dims

CONV_LAYERS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}


def _positive(name: str, value: int, *, minimum: int = 1) -> int:
    try:
        # operator.index accepts numpy integers but not floats; bools are ints we do not want.
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise TextCNNError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return number


def conv_output_size(
    size: int, kernel_size: int, *, padding: int = 0, stride: int = 1, dilation: int = 1
) -> int:
    """Output length along one axis: (W - F + 2P) / S + 1 with F = dilation * (kernel - 1) + 1.

    Raises `TextCNNError` when that is not a positive integer: such a layout would silently drop
    the last input positions (torch floors), which is almost always a mistake in the design.
    """
    size = _positive("size", size)
    kernel_size = _positive("kernel_size", kernel_size)
    padding = _positive("padding", padding, minimum=0)
    stride = _positive("stride", stride)
    dilation = _positive("dilation", dilation)
    effective = dilation * (kernel_size - 1) + 1
    span = size - effective + 2 * padding
    if span < 0 or span % stride:
        dilated = (
            f" (F={effective}: kernel {kernel_size} at dilation {dilation})" if dilation > 1 else ""
        )
        raise TextCNNError(
            "expected (W-F+2P)/S+1 to be a positive integer, got "
            f"({size}-{effective}+2*{padding})/{stride}+1 = {span / stride + 1:g}{dilated}"
        )
    return span // stride + 1


def conv_param_count(
    kernel_size: int | Sequence[int],
    in_channels: int,
    out_channels: int,
    *,
    bias: bool = True,
    dims: int = 2,
    groups: int = 1,
) -> int:
    """Learnable parameters of a conv layer: (F^dims * D1/groups) * K weights, plus K biases.

    `kernel_size` is an int (square/cubic kernel) or one size per spatial dim.
    """
    sizes = (kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(sizes) != dims:
        raise TextCNNError(f"kernel_size: expected {dims} sizes for dims={dims}, got {sizes}")
    sizes = tuple(_positive("kernel_size", size) for size in sizes)
    groups = _positive("groups", groups)
    for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
        if _positive(name, channels) % groups:
            raise TextCNNError(f"{name}: expected a multiple of groups={groups}, got {channels}")
    weights = math.prod(sizes) * (in_channels // groups) * out_channels
    return weights + (out_channels if bias else 0)


class _ConvBlockNd(nn.Sequential):
    """conv -> norm -> act; the subclasses only fix `dims`.

    Submodules are named `conv`, `norm` and `act` so state dicts read the same in 1-d and 2-d.
    """

    dims: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        *,
        stride: int | tuple[int, ...] = 1,
        padding: int | str | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm_layer: str | Callable[..., nn.Module] | None = None,
        act_layer: str | Callable[..., nn.Module] | None = "relu",
    ) -> None:
        conv_cls = for_dims(CONV_LAYERS, self.dims, type(self).__name__)
        norm = create_norm_layer(norm_layer, out_channels, dims=self.dims)
        if bias is None:
            # A norm layer's shift makes the conv bias redundant (it is subtracted with the mean).
            bias = isinstance(norm, nn.Identity)
        conv = conv_cls(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        super().__init__(OrderedDict(conv=conv, norm=norm, act=create_act_layer(act_layer)))


class ConvBlock1d(_ConvBlockNd):
    """Conv1d + optional norm + activation over `[N, C, L]` (Kim's filters over word positions)."""

    dims = 1


class ConvBlock2d(_ConvBlockNd):
    """Conv2d + optional norm + activation over `[N, C, H, W]`."""

    dims = 2


__all__ = [
    "CONV_LAYERS",
    "ConvBlock1d",
    "ConvBlock2d",
    "conv_output_size",
    "conv_param_count",
]
