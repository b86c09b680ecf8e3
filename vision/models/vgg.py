"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convs and 2x2 max pools, then a three-layer
MLP, as in torchvision.

    features  configuration D (VGG-16): 64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
    head      adaptive average pool to 7x7, 25088 -> 4096 -> 4096 -> classes (ReLU, dropout 0.5)

VGG-16 has 138,357,544 parameters at 1000 classes. The adaptive pool accepts any input from
32x32 up (five halvings). `vgg_small` (three stages with batch norm, pool to 1x1, one hidden
layer of 256) trains on 8x8 digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from textcnn.core.conv import ConvBlock2d
from textcnn.core.pooling import create_pool
from vision.models.base import ImageClassifier, Layer, flat_pool, init_kaiming, mlp
from vision.registry import register_model

Config = Sequence[int | str]  # a conv width, or "M" for a 2x2 max pool

VGG16: Config = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                 512, 512, 512, "M", 512, 512, 512, "M")
VGG_SMALL: Config = (32, 32, "M", 64, 64, "M", 128, 128, "M")


class VGG(ImageClassifier):
    """3x3 conv blocks ("M": 2x2 max pool), adaptive pooling and an MLP head."""

    def __init__(self, *, config: Config = VGG16, num_classes: int = 1000, in_channels: int = 3,
                 norm_layer: Layer | None = None, act_layer: Layer = "relu", pool_size: int = 7,
                 hidden: Sequence[int] = (4096, 4096), drop_rate: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(create_pool("max", 2))
            else:
                layers.append(ConvBlock2d(channels, int(item), 3, padding=1,
                                          norm_layer=norm_layer, act_layer=act_layer))
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.head_pool = flat_pool(pool_size)
        self.head_hidden, self.num_features = mlp(
            channels * pool_size**2, hidden, drop_rate=drop_rate, act_layer=act_layer,
            dropout_first=False)
        self.fc = self.make_classifier(num_classes)
        init_kaiming(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@register_model(family="vgg", input_size=224, min_input_size=32)
def vgg16(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (configuration D, no batch norm): 138,357,544 parameters at 1000 classes."""
    return VGG(config=VGG16, num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="vgg", input_size=32, min_input_size=8)
def vgg_small(*, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> VGG:
    """A VGG for 8x8 / 32x32 images: 32-32-M-64-64-M-128-128-M with batch norm, 256 hidden."""
    kwargs = {"norm_layer": "batch", "pool_size": 1, "hidden": (256,), **kwargs}
    return VGG(config=VGG_SMALL, num_classes=num_classes, in_channels=in_channels, **kwargs)
