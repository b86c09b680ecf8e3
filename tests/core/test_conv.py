"""Convolution arithmetic against real torch convolutions; conv blocks against hand-built layers."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from textcnn.core.conv import ConvBlock1d, ConvBlock2d, conv_output_size, conv_param_count
from textcnn.core.errors import TextCNNError


def _exact_output(size: int, kernel: int, padding: int, stride: int, dilation: int) -> Fraction:
    return Fraction(size - (dilation * (kernel - 1) + 1) + 2 * padding, stride) + 1


@pytest.mark.parametrize("dilation", [1, 2])
def test_output_size_matches_conv1d_or_raises(dilation: int) -> None:
    checked = raised = 0
    for size, kernel, padding, stride in itertools.product(
        range(1, 13), range(1, 6), range(3), range(1, 4)
    ):
        exact = _exact_output(size, kernel, padding, stride, dilation)
        if exact.denominator == 1 and exact > 0:
            conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
            got = conv_output_size(size, kernel, padding=padding, stride=stride, dilation=dilation)
            assert got == conv(torch.zeros(1, 1, size)).shape[-1], (size, kernel, padding, stride)
            checked += 1
        else:
            with pytest.raises(TextCNNError, match="positive integer"):
                conv_output_size(size, kernel, padding=padding, stride=stride, dilation=dilation)
            raised += 1
    assert checked > 100 and raised > 100


@pytest.mark.parametrize(
    ("height", "width", "kernel", "padding", "stride"),
    [(227, 227, 11, 0, 4), (32, 32, 5, 2, 1), (7, 9, 3, 1, 2), (28, 14, 3, 0, 1), (5, 5, 5, 0, 1)],
)
def test_output_size_matches_conv2d(
    height: int, width: int, kernel: int, padding: int, stride: int
) -> None:
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    out = conv(torch.zeros(1, 1, height, width)).shape[-2:]
    expected = tuple(
        conv_output_size(s, kernel, padding=padding, stride=stride) for s in (height, width)
    )
    assert expected == tuple(out)


def test_output_size_error_message_shows_the_fraction() -> None:
    with pytest.raises(TextCNNError) as err:
        conv_output_size(6, 3, stride=2)
    assert str(err.value) == (
        "expected (W-F+2P)/S+1 to be a positive integer, got (6-3+2*0)/2+1 = 2.5"
    )
    with pytest.raises(TextCNNError, match=r"\(3-5\+2\*0\)/1\+1 = -1"):
        conv_output_size(3, 5)
    with pytest.raises(TextCNNError, match="dilation 2"):
        conv_output_size(8, 3, stride=2, dilation=2)


@pytest.mark.parametrize("bad", [{"stride": 0}, {"padding": -1}, {"dilation": 0}, {"stride": 1.5}])
def test_output_size_rejects_bad_arguments(bad: dict) -> None:
    with pytest.raises(TextCNNError, match="expected an integer"):
        conv_output_size(10, 3, **bad)


@pytest.mark.parametrize(
    ("kernel", "in_channels", "out_channels", "bias", "dims", "groups"),
    [
        (11, 3, 96, True, 2, 1),
        (3, 16, 32, False, 2, 1),
        ((3, 5), 8, 4, True, 2, 1),
        (3, 8, 16, True, 2, 4),
        (5, 300, 100, True, 1, 1),
        (4, 6, 9, False, 1, 3),
    ],
)
def test_param_count_matches_torch(kernel, in_channels, out_channels, bias, dims, groups) -> None:
    conv = (nn.Conv1d, nn.Conv2d)[dims - 1](
        in_channels, out_channels, kernel, bias=bias, groups=groups
    )
    expected = sum(p.numel() for p in conv.parameters())
    got = conv_param_count(kernel, in_channels, out_channels, bias=bias, dims=dims, groups=groups)
    assert got == expected


def test_output_size_accepts_numpy_integers() -> None:
    assert conv_output_size(np.int64(7), np.int32(3)) == 5


def test_param_count_by_hand_and_errors() -> None:
    assert conv_param_count(11, 3, 96) == 11 * 11 * 3 * 96 + 96 == 34944
    with pytest.raises(TextCNNError, match="multiple of groups"):
        conv_param_count(3, 6, 8, groups=4)
    with pytest.raises(TextCNNError, match="expected 2 sizes"):
        conv_param_count((3, 3, 3), 1, 1)


@pytest.mark.parametrize("act", ["relu", nn.ReLU, "ReLU"])
def test_conv_block_2d_is_conv_then_relu(act) -> None:
    torch.manual_seed(0)
    block = ConvBlock2d(3, 5, 3, padding=1, stride=2, act_layer=act)
    x = torch.randn(2, 3, 9, 9)
    conv = block.conv
    expected = torch.clamp(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1), min=0)
    torch.testing.assert_close(block(x), expected)
    assert conv.bias is not None and isinstance(block.norm, nn.Identity)


def test_conv_block_1d_with_batch_norm_drops_bias() -> None:
    torch.manual_seed(0)
    block = ConvBlock1d(4, 6, 3, norm_layer="batch", act_layer="tanh", dilation=2)
    assert block.conv.bias is None
    assert isinstance(block.norm, nn.BatchNorm1d)
    x = torch.randn(8, 4, 20)
    z = F.conv1d(x, block.conv.weight, dilation=2)
    mean = z.mean(dim=(0, 2), keepdim=True)
    var = z.var(dim=(0, 2), unbiased=False, keepdim=True)
    expected = torch.tanh((z - mean) / torch.sqrt(var + block.norm.eps))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    assert list(block.state_dict())[:2] == ["conv.weight", "norm.weight"]


def test_conv_block_bias_can_be_forced_and_act_can_be_none() -> None:
    block = ConvBlock2d(1, 2, 1, norm_layer=nn.BatchNorm2d, act_layer=None, bias=True)
    assert block.conv.bias is not None and isinstance(block.act, nn.Identity)


def test_conv_block_unknown_activation_suggests_a_name() -> None:
    with pytest.raises(TextCNNError, match="did you mean 'relu'"):
        ConvBlock1d(1, 1, 3, act_layer="rleu")
