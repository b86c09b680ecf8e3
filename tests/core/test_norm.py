"""Norm layers by name against the batch-norm formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from textcnn.core.errors import TextCNNError
from textcnn.core.norm import create_norm_layer, get_norm_layer


@pytest.mark.parametrize(
    ("dims", "cls", "shape"), [(1, nn.BatchNorm1d, (16, 4, 7)), (2, nn.BatchNorm2d, (16, 4, 3, 5))]
)
def test_batch_norm_by_dims_matches_formula(dims: int, cls: type, shape: tuple) -> None:
    layer = create_norm_layer("batch", 4, dims=dims)
    assert type(layer) is cls and layer.num_features == 4
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3 + 2
    axes = (0, *range(2, x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, unbiased=False, keepdim=True)
    torch.testing.assert_close(layer(x), (x - mean) / torch.sqrt(var + 1e-5), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", [None, "none", "None"])
def test_none_gives_identity(norm) -> None:
    assert get_norm_layer(norm, dims=2) is None
    assert isinstance(create_norm_layer(norm, 8, dims=1), nn.Identity)


def test_class_and_kwargs_pass_through() -> None:
    layer = create_norm_layer(nn.InstanceNorm1d, 3, dims=1, affine=True)
    assert isinstance(layer, nn.InstanceNorm1d) and layer.affine
    assert create_norm_layer("batch", 3, dims=2, momentum=0.5).momentum == 0.5


def test_bad_names_and_dims() -> None:
    with pytest.raises(TextCNNError, match="did you mean 'batch'"):
        create_norm_layer("bach", 3, dims=2)
    with pytest.raises(TextCNNError, match=r"expected dims in \{1, 2\}, got 3"):
        create_norm_layer("batch", 3, dims=3)
