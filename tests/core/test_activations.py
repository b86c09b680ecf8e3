"""Activations by name against their formulas; SELU's self-normalisation with LeCun init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from textcnn.core.activations import (
    SELU,
    create_act_layer,
    get_act_layer,
    lecun_normal_,
)
from textcnn.core.errors import TextCNNError

X = torch.linspace(-4, 4, 81, dtype=torch.float64)

# Klambauer et al. (2017), eq. 14 solved for the fixed point (0, 1); written out independently.
ALPHA_01 = 1.6732632423543772848170429916717
LAMBDA_01 = 1.0507009873554804934193349852946

FORMULAS = {
    "linear": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x > 0, x, 0.25 * x),  # torch's initial slope
    "selu": lambda x: LAMBDA_01 * torch.where(x > 0, x, ALPHA_01 * (torch.exp(x) - 1)),
    "softmax": lambda x: torch.exp(x) / torch.exp(x).sum(),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_by_name_matches_formula(name: str) -> None:
    layer = create_act_layer(name).double()
    torch.testing.assert_close(layer(X), FORMULAS[name](X), rtol=1e-12, atol=1e-12)


def test_leaky_relu_custom_slope_and_softmax_over_channels() -> None:
    torch.testing.assert_close(
        create_act_layer("leaky_relu", negative_slope=0.2)(X), torch.where(X > 0, X, 0.2 * X)
    )
    maps = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    by_channel = create_act_layer("softmax", dim=1)(maps)
    torch.testing.assert_close(
        by_channel, torch.exp(maps) / torch.exp(maps).sum(dim=1, keepdim=True)
    )
    last = create_act_layer("softmax")(maps)
    torch.testing.assert_close(last.sum(dim=-1), torch.ones(2, 3, 4, dtype=torch.float64))


def test_selu_module_agrees_with_torch() -> None:
    torch.testing.assert_close(SELU()(X), nn.SELU()(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", [None, "linear", "Linear", "none"])
def test_no_activation_is_identity(act) -> None:
    assert get_act_layer(act) is nn.Identity
    assert isinstance(create_act_layer(act), nn.Identity)


def test_class_passes_through_and_unknown_name_suggests() -> None:
    assert get_act_layer(nn.GELU) is nn.GELU
    assert isinstance(create_act_layer("LEAKY-RELU"), nn.LeakyReLU)
    with pytest.raises(
        TextCNNError, match="unknown activation 'sigmiod' \\(did you mean 'sigmoid'\\?\\)"
    ):
        get_act_layer("sigmiod")


@pytest.mark.parametrize("shape", [(500, 400), (64, 16, 3, 3), (100, 300, 5)])
def test_lecun_normal_std_is_one_over_sqrt_fan_in(shape: tuple) -> None:
    torch.manual_seed(0)
    weight = lecun_normal_(torch.empty(shape))
    fan_in = math.prod(shape[1:])
    assert weight.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.03)
    assert abs(weight.mean().item()) < 0.03 / math.sqrt(fan_in) * 3


def test_selu_keeps_activations_normalised_through_depth() -> None:
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        linear = nn.Linear(256, 256)
        lecun_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, create_act_layer("selu")]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        out = net(torch.randn(4096, 256))
    assert abs(out.mean().item()) < 0.1
    assert 0.8 < out.var().item() < 1.2
