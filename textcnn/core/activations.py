"""Activation layers chosen by name or by class (`act_layer="relu"`), plus LeCun-normal init.

Names: linear (identity), sigmoid, softmax, relu, leaky_relu, prelu, selu, tanh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from textcnn.core.registry import resolve

# Klambauer et al. (2017): the fixed point of mean 0 / variance 1 for a self-normalising net.
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


class SELU(nn.Module):
    """Scaled ELU: `scale * (x if x > 0 else alpha * (exp(x) - 1))` with the constants spelled out.

    Written out (not `nn.SELU`) so that the constants the self-normalising argument rests on are
    visible and testable; pair it with `lecun_normal_` init.
    """

    def __init__(self, *, alpha: float = SELU_ALPHA, scale: float = SELU_SCALE) -> None:
        super().__init__()
        self.alpha = alpha
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * nn.functional.elu(x, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, scale={self.scale}"


class Softmax(nn.Softmax):
    """Softmax over `dim`, by default the last one (class scores `[N, classes]`).

    For feature maps `[N, C, H, W]` pass `dim=1` to normalise over channels.
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__(dim=dim)


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "linear": nn.Identity,
    "identity": nn.Identity,
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "softmax": Softmax,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "selu": SELU,
    "tanh": nn.Tanh,
}


def get_act_layer(act: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module]:
    """Return the activation class for a name (case-insensitive) or pass a class through.

    `None` means no activation and gives `nn.Identity`. Unknown names raise `TextCNNError`
    with a did-you-mean hint.
    """
    if act is None:
        return nn.Identity
    return resolve(act, ACTIVATIONS, "activation")


def create_act_layer(act: str | Callable[..., nn.Module] | None, **kwargs: Any) -> nn.Module:
    """Build an activation module, e.g. `create_act_layer("leaky_relu", negative_slope=0.2)`."""
    return get_act_layer(act)(**kwargs)


def lecun_normal_(tensor: Tensor) -> Tensor:
    """Fill `tensor` in place from N(0, 1/fan_in), the init SELU's self-normalisation assumes.

    fan_in is `tensor.shape[1]` times the receptive field (kernel) size, as for torch's inits.
    """
    # Kaiming with a linear gain is exactly std = 1/sqrt(fan_in); reuse torch's fan computation.
    return nn.init.kaiming_normal_(tensor, mode="fan_in", nonlinearity="linear")


__all__ = [
    "ACTIVATIONS",
    "SELU",
    "SELU_ALPHA",
    "SELU_SCALE",
    "Softmax",
    "create_act_layer",
    "get_act_layer",
    "lecun_normal_",
]
