"""Hand-written back-propagation against torch autograd; finite differences against autograd."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from textcnn.core.backprop import (
    LECTURE_SIZES,
    backprop,
    gradcheck,
    init_sigmoid_net,
    numerical_gradient,
)
from textcnn.core.errors import TextCNNError


def _autograd_reference(net, x: torch.Tensor, y: torch.Tensor, loss: str):
    weights = [w.clone().requires_grad_(True) for w in net.weights]
    biases = [b.clone().requires_grad_(True) for b in net.biases]
    a = x
    for w, b in zip(weights, biases, strict=True):
        a = torch.sigmoid(F.linear(a, w, b))
    if loss == "squared":
        value = 0.5 * F.mse_loss(a, y, reduction="sum")
    else:
        value = F.binary_cross_entropy(a, y, reduction="sum")
    grads = torch.autograd.grad(value, weights + biases)
    return value.detach(), grads[: len(weights)], grads[len(weights) :]


@pytest.mark.parametrize("loss", ["squared", "bce"])
@pytest.mark.parametrize("batch", [1, 6])
def test_hand_gradients_equal_autograd(loss: str, batch: int) -> None:
    gen = torch.Generator().manual_seed(batch)
    net = init_sigmoid_net(generator=gen)
    assert [w.shape for w in net.weights] == [(3, 4), (2, 3), (1, 2)]
    x = torch.randn(batch, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (batch, 1), generator=gen).double()
    got = backprop(net, x, y, loss=loss)
    value, weight_grads, bias_grads = _autograd_reference(net, x, y, loss)
    torch.testing.assert_close(got.loss, value, rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(
        got.weights + got.biases, list(weight_grads) + list(bias_grads), strict=True
    ):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def test_other_sizes_and_soft_targets() -> None:
    gen = torch.Generator().manual_seed(7)
    net = init_sigmoid_net((5, 4, 3), generator=gen)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    y = torch.rand(3, 3, generator=gen, dtype=torch.float64)
    got = backprop(net, x, y, loss="bce")
    _, weight_grads, _ = _autograd_reference(net, x, y, "bce")
    for mine, theirs in zip(got.weights, weight_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def test_hand_gradient_equals_finite_differences() -> None:
    gen = torch.Generator().manual_seed(3)
    net = init_sigmoid_net(LECTURE_SIZES, generator=gen)
    x = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)

    def loss_at(first_weight: torch.Tensor) -> torch.Tensor:
        net_with = type(net)([first_weight, *net.weights[1:]], net.biases)
        return backprop(net_with, x, y).loss

    numeric = numerical_gradient(loss_at, net.weights[0])
    torch.testing.assert_close(backprop(net, x, y).weights[0], numeric, rtol=1e-6, atol=1e-9)


def test_numerical_gradient_agrees_with_autograd() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda t: (torch.sin(t) * t**2).sum() + t.prod()  # noqa: E731
    x_grad = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(fn(x_grad), x_grad)
    torch.testing.assert_close(numerical_gradient(fn, x), expected, rtol=1e-6, atol=1e-8)
    assert gradcheck(fn, x)
    # non-contiguous input is fine and left untouched
    before = x.T.clone()
    assert numerical_gradient(fn, x.T).shape == (4, 3) and torch.equal(x.T, before)


def test_gradcheck_catches_a_wrong_gradient() -> None:
    x = torch.randn(5, dtype=torch.float64)
    # detach hides the cubic term from autograd, so its gradient is wrong
    with pytest.raises(AssertionError, match="gradcheck: at index"):
        gradcheck(lambda t: (t**2).sum() + (t.detach() ** 3).sum(), x)


def test_unknown_loss_and_bad_sizes() -> None:
    net = init_sigmoid_net()
    with pytest.raises(TextCNNError, match="did you mean 'bce'"):
        backprop(
            net,
            torch.zeros(1, 4, dtype=torch.float64),
            torch.zeros(1, 1, dtype=torch.float64),
            loss="bcee",
        )
    with pytest.raises(TextCNNError, match="layer sizes"):
        init_sigmoid_net((4,))
