"""ResNet (He, Zhang, Ren & Sun 2016), the torchvision layout ("v1.5": a bottleneck strides in
its 3x3 conv), plus a small-input variant for 8x8 / 32x32 images.

    stem     7x7/2 conv + BN + ReLU, 3x3/2 max pool       (small: 3x3/1 conv, no pool)
    layer1   blocks at width w,   stride 1
    layer2   blocks at width 2w,  stride 2                 each block: F(x) + shortcut(x), ReLU
    layer3   blocks at width 4w,  stride 2                 shortcut: identity, or 1x1 conv + BN
    layer4   blocks at width 8w,  stride 2                 where the shape changes
    head     global average pool, linear

Parameters with 1000 classes: ResNet-18 11,689,512, ResNet-34 21,797,672, ResNet-50 25,557,032.
Global pooling makes any input size work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor, nn

from textcnn.core.activations import create_act_layer
from textcnn.core.conv import ConvBlock2d
from textcnn.core.pooling import GlobalPool, create_pool
from vision.models.base import ImageClassifier, Layer, init_kaiming
from vision.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); output width `width`."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, *, stride: int, norm_layer: Layer,
                 act_layer: Layer) -> None:
        super().__init__()
        self.conv1 = ConvBlock2d(in_channels, width, 3, stride=stride, padding=1,
                                 norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvBlock2d(width, width, 3, padding=1, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(in_channels, width, stride, norm_layer)
        self.act = create_act_layer(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4x `width` (ResNet-50 and up)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, *, stride: int, norm_layer: Layer,
                 act_layer: Layer) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = ConvBlock2d(in_channels, width, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvBlock2d(width, width, 3, stride=stride, padding=1,
                                 norm_layer=norm_layer, act_layer=act_layer)
        self.conv3 = ConvBlock2d(width, out, 1, norm_layer=norm_layer, act_layer=None)
        self.shortcut = _shortcut(in_channels, out, stride, norm_layer)
        self.act = create_act_layer(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int, norm_layer: Layer) -> nn.Module:
    """Identity when the shape is kept, else a strided 1x1 projection (option B of the paper)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvBlock2d(in_channels, out_channels, 1, stride=stride, norm_layer=norm_layer,
                       act_layer=None)


class ResNet(ImageClassifier):
    """A stem, four stages of residual blocks, global average pooling and a linear classifier."""

    def __init__(self, *, block: type[BasicBlock | Bottleneck], layers: Sequence[int],
                 num_classes: int = 1000, in_channels: int = 3,
                 widths: Sequence[int] = (64, 128, 256, 512),
                 stem: Literal["imagenet", "small"] = "imagenet", norm_layer: Layer = "batch",
                 act_layer: Layer = "relu", drop_rate: float = 0.0,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        if stem == "imagenet":
            self.stem = nn.Sequential(
                ConvBlock2d(in_channels, widths[0], 7, stride=2, padding=3,
                            norm_layer=norm_layer, act_layer=act_layer),
                create_pool("max", 3, stride=2, padding=1))
        else:
            self.stem = ConvBlock2d(in_channels, widths[0], 3, padding=1, norm_layer=norm_layer,
                                    act_layer=act_layer)
        channels = widths[0]
        stages = []
        for i, (width, depth) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(channels, width, stride=stride, norm_layer=norm_layer,
                                    act_layer=act_layer))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = channels
        self.head_pool = GlobalPool("avg")
        self.head_hidden = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.fc = self.make_classifier(num_classes)
        init_kaiming(self)
        if zero_init_residual:
            # Each block then starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last = m.conv2 if isinstance(m, BasicBlock) else m.conv3
                    nn.init.zeros_(last.norm.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@register_model(family="resnet", input_size=224, min_input_size=1)
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters at 1000 classes."""
    return ResNet(block=BasicBlock, layers=(2, 2, 2, 2), num_classes=num_classes,
                  in_channels=in_channels, **kwargs)


@register_model(family="resnet", input_size=224, min_input_size=1)
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters at 1000 classes."""
    return ResNet(block=BasicBlock, layers=(3, 4, 6, 3), num_classes=num_classes,
                  in_channels=in_channels, **kwargs)


@register_model(family="resnet", input_size=224, min_input_size=1)
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 parameters at 1000 classes."""
    return ResNet(block=Bottleneck, layers=(3, 4, 6, 3), num_classes=num_classes,
                  in_channels=in_channels, **kwargs)


@register_model(family="resnet", input_size=32, min_input_size=1)
def resnet18_small(*, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18 for 8x8 / 32x32 images: 3x3 stem, no max pool, widths 16-32-64-128."""
    kwargs = {"widths": (16, 32, 64, 128), "stem": "small", **kwargs}
    return ResNet(block=BasicBlock, layers=(2, 2, 2, 2), num_classes=num_classes,
                  in_channels=in_channels, **kwargs)
