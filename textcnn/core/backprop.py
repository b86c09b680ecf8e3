r"""Back-propagation written out by hand, as a reference for autograd and for teaching.

The lecture's network is fully connected with a sigmoid on every layer, sizes 4-3-2-1. With
column activations a_0 = x and, for l = 1..L,

    z_l = W_l a_{l-1} + b_l,        a_l = sigma(z_l),        sigma'(z) = sigma(z) (1 - sigma(z))

the error terms (deltas) run backwards:

    delta_L = dLoss/da_L * sigma'(z_L)
    delta_l = (W_{l+1}^T delta_{l+1}) * sigma'(z_l)            (elementwise *)
    dLoss/dW_l = delta_l a_{l-1}^T,     dLoss/db_l = delta_l

For squared error, Loss = 1/2 (y - a_L)^2, so dLoss/da_L = a_L - y. For binary cross-entropy,
Loss = -(y log a_L + (1 - y) log(1 - a_L)), dLoss/da_L = (a_L - y) / (a_L (1 - a_L)), and the
sigma' cancels: delta_L = a_L - y. Losses are summed over the batch (columns), so the
gradients are sums of the per-example ones.

`numerical_gradient` and `gradcheck` are the project's finite-difference gradient checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from textcnn.core.registry import resolve

LECTURE_SIZES: tuple[int, ...] = (4, 3, 2, 1)

# (a_L, y, z_L) -> (summed loss, delta_L)
OutputLoss = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


@dataclass
class SigmoidNet:
    """Weights `W_l` of shape `[n_l, n_{l-1}]` and biases `b_l` of shape `[n_l]`, l = 1..L."""

    weights: list[Tensor]
    biases: list[Tensor]


@dataclass
class Gradients:
    """The summed loss and dLoss/dW_l, dLoss/db_l for every layer, shaped like the parameters."""

    loss: Tensor
    weights: list[Tensor]
    biases: list[Tensor]


def sigmoid(z: Tensor) -> Tensor:
    """1 / (1 + exp(-z))."""
    return 1.0 / (1.0 + torch.exp(-z))


def sigmoid_prime(z: Tensor) -> Tensor:
    """sigma(z) (1 - sigma(z))."""
    s = sigmoid(z)
    return s * (1.0 - s)


def init_sigmoid_net(
    sizes: Sequence[int] = LECTURE_SIZES,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> SigmoidNet:
    """Random N(0, 1) weights and biases for a sigmoid net of the given layer `sizes`."""
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise TextCNNError(
            f"init_sigmoid_net: expected >= 2 positive layer sizes, got {tuple(sizes)}"
        )
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    return SigmoidNet(
        weights=[
            torch.randn(n_out, n_in, generator=generator, dtype=dtype) for n_in, n_out in pairs
        ],
        biases=[torch.randn(n_out, generator=generator, dtype=dtype) for _, n_out in pairs],
    )


def forward_pass(net: SigmoidNet, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Run `x` of shape `[N, n_0]`; return the pre-activations z_1..z_L and activations a_0..a_L.

    All are columns, `[n_l, N]`, as in the formulas.
    """
    activations = [x.T]
    zs = []
    for weight, bias in zip(net.weights, net.biases, strict=True):
        zs.append(weight @ activations[-1] + bias[:, None])
        activations.append(sigmoid(zs[-1]))
    return zs, activations


def _squared_error(a: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    return 0.5 * ((y - a) ** 2).sum(), (a - y) * sigmoid_prime(z)


def _binary_cross_entropy(a: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    loss = -(y * torch.log(a) + (1.0 - y) * torch.log1p(-a)).sum()
    return loss, a - y


OUTPUT_LOSSES: dict[str, OutputLoss] = {
    "squared": _squared_error,
    "bce": _binary_cross_entropy,
}


def backprop(
    net: SigmoidNet,
    x: Tensor,
    y: Tensor,
    *,
    loss: Literal["squared", "bce"] | OutputLoss = "squared",
) -> Gradients:
    """Loss and gradients of `net` on inputs `x` `[N, n_0]` and targets `y` `[N, n_L]`, by hand.

    No autograd: every step is one of the formulas in this module's docstring.
    """
    output_loss = resolve(loss, OUTPUT_LOSSES, "loss")
    zs, activations = forward_pass(net, x)
    total, delta = output_loss(activations[-1], y.T, zs[-1])
    weight_grads: list[Tensor] = []
    bias_grads: list[Tensor] = []
    for layer in reversed(range(len(net.weights))):
        if layer < len(net.weights) - 1:
            delta = (net.weights[layer + 1].T @ delta) * sigmoid_prime(zs[layer])
        weight_grads.append(delta @ activations[layer].T)
        bias_grads.append(delta.sum(dim=1))
    return Gradients(loss=total, weights=weight_grads[::-1], biases=bias_grads[::-1])


@torch.no_grad()
def numerical_gradient(fn: Callable[[Tensor], Tensor], tensor: Tensor, eps: float = 1e-6) -> Tensor:
    """Central differences (f(x + eps e_i) - f(x - eps e_i)) / 2 eps for a scalar `fn`.

    Use float64: in float32 an `eps` this small is lost in rounding.
    """
    x = tensor.detach().clone(memory_format=torch.contiguous_format)
    flat = x.view(-1)
    grad = torch.empty_like(flat)
    for i in range(flat.numel()):
        original = flat[i].item()
        flat[i] = original + eps
        upper = float(fn(x))
        flat[i] = original - eps
        lower = float(fn(x))
        flat[i] = original
        grad[i] = (upper - lower) / (2 * eps)
    return grad.view(tensor.shape)


def gradcheck(
    fn: Callable[[Tensor], Tensor],
    tensor: Tensor,
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> bool:
    """Check autograd's gradient of scalar `fn` at `tensor` against `numerical_gradient`.

    Returns True, or raises AssertionError naming the worst element.
    """
    x = tensor.detach().clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(fn(x), x)
    numeric = numerical_gradient(fn, tensor, eps)
    excess = (analytic - numeric).abs() - (atol + rtol * numeric.abs())
    if (excess > 0).any():
        worst = int(excess.argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), tensor.shape))
        raise AssertionError(
            f"gradcheck: at index {index} autograd gives {analytic.view(-1)[worst].item():.6g}, "
            f"finite differences {numeric.view(-1)[worst].item():.6g}"
        )
    return True


__all__ = [
    "Gradients",
    "LECTURE_SIZES",
    "OUTPUT_LOSSES",
    "SigmoidNet",
    "backprop",
    "forward_pass",
    "gradcheck",
    "init_sigmoid_net",
    "numerical_gradient",
    "sigmoid",
    "sigmoid_prime",
]
