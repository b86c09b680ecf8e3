"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), torchvision's single-GPU variant: no local
response normalisation, 64-192-384-256-256 filters.

    conv 11x11/4 (64), ReLU, max pool 3x3/2        overlapping pooling
    conv 5x5 (192), ReLU, max pool 3x3/2
    conv 3x3 (384), ReLU; conv 3x3 (256), ReLU; conv 3x3 (256), ReLU; max pool 3x3/2
    head: adaptive average pool to 6x6, Dropout, 9216 -> 4096, ReLU, Dropout, 4096 -> 4096, ReLU,
          4096 -> classes

61,100,840 parameters at 1000 classes. Inputs from 63x63 up. `alexnet_small` keeps the layout
with 3x3 kernels at stride 1, padded pools and narrower layers, for 8x8 / 32x32 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from textcnn.core.conv import ConvBlock2d
from textcnn.core.pooling import create_pool
from vision.models.base import ImageClassifier, Layer, flat_pool, mlp
from vision.registry import register_model


class AlexNet(ImageClassifier):
    """Five conv layers with three overlapping max pools, then a dropout MLP."""

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3,
                 widths: Sequence[int] = (64, 192, 384, 256, 256),
                 stem_kernel: int = 11, stem_stride: int = 4, stem_padding: int = 2,
                 second_kernel: int = 5, pool_padding: int = 0, pool_size: int = 6,
                 hidden: Sequence[int] = (4096, 4096), drop_rate: float = 0.5,
                 norm_layer: Layer | None = None, act_layer: Layer = "relu") -> None:
        super().__init__()
        self.num_classes = num_classes
        w1, w2, w3, w4, w5 = widths
        conv = dict(norm_layer=norm_layer, act_layer=act_layer)

        def pool() -> nn.Module:
            return create_pool("max", 3, stride=2, padding=pool_padding)

        self.features = nn.Sequential(
            ConvBlock2d(in_channels, w1, stem_kernel, stride=stem_stride, padding=stem_padding,
                        **conv),
            pool(),
            ConvBlock2d(w1, w2, second_kernel, padding=second_kernel // 2, **conv),
            pool(),
            ConvBlock2d(w2, w3, 3, padding=1, **conv),
            ConvBlock2d(w3, w4, 3, padding=1, **conv),
            ConvBlock2d(w4, w5, 3, padding=1, **conv),
            pool(),
        )
        self.head_pool = flat_pool(pool_size)
        self.head_hidden, self.num_features = mlp(
            w5 * pool_size**2, hidden, drop_rate=drop_rate, act_layer=act_layer,
            dropout_first=True)
        self.fc = self.make_classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@register_model(family="alexnet", input_size=224, min_input_size=63)
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet as in torchvision: 61,100,840 parameters at 1000 classes."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="alexnet", input_size=32, min_input_size=1)
def alexnet_small(*, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet for 8x8 / 32x32 images: 3x3/1 stem, padded pools, widths 32-64-96-64-64."""
    kwargs = {"widths": (32, 64, 96, 64, 64), "stem_kernel": 3, "stem_stride": 1,
              "stem_padding": 1, "second_kernel": 3, "pool_padding": 1, "pool_size": 2,
              "hidden": (256, 256), **kwargs}
    return AlexNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
