"""GoogLeNet / Inception v1 (Szegedy et al. 2015), with batch norm in every conv as in
torchvision's reference (whose parameter count, 6,624,904 at 1000 classes, this matches).

    stem         7x7/2 conv (64), 3x3/2 max pool, 1x1 conv (64), 3x3 conv (192), 3x3/2 max pool
    inception    3a 3b, max pool, 4a 4b 4c 4d 4e, max pool, 5a 5b
    head         global average pool, dropout 0.4, linear 1024 -> classes

An inception module concatenates four branches: 1x1; 1x1 -> 3x3; 1x1 -> "5x5"; 3x3 max pool ->
1x1. torchvision's "5x5" branch uses a 3x3 kernel, and so does `branch5x5_kernel=3` here (the
pinned count); `branch5x5_kernel=5` gives the paper's 5x5. The optional auxiliary classifiers
(`aux_logits=True`, after 4a and 4d: 4x4 average pool, 1x1 conv 128, FC 1024, dropout 0.7, linear)
add 6,379,984 parameters; `forward_with_aux` returns their scores for training (weight 0.3).
Global pooling and padded max pools make any input size work.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from textcnn.core.conv import ConvBlock2d
from textcnn.core.pooling import GlobalPool, create_pool
from vision.models.base import ImageClassifier, Layer, init_kaiming
from vision.registry import register_model

# in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection (Table 1 of the paper)
INCEPTION: dict[str, tuple[int, ...]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches over the same input, concatenated along channels."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, *, branch5x5_kernel: int, norm_layer: Layer,
                 act_layer: Layer) -> None:
        super().__init__()
        conv = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.branch1 = ConvBlock2d(in_channels, ch1x1, 1, **conv)
        self.branch2 = nn.Sequential(ConvBlock2d(in_channels, ch3x3red, 1, **conv),
                                     ConvBlock2d(ch3x3red, ch3x3, 3, padding=1, **conv))
        self.branch3 = nn.Sequential(
            ConvBlock2d(in_channels, ch5x5red, 1, **conv),
            ConvBlock2d(ch5x5red, ch5x5, branch5x5_kernel, padding=branch5x5_kernel // 2, **conv))
        self.branch4 = nn.Sequential(create_pool("max", 3, stride=1, padding=1),
                                     ConvBlock2d(in_channels, pool_proj, 1, **conv))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on an intermediate feature map."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int, hidden: int,
                 norm_layer: Layer, act_layer: Layer) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBlock2d(in_channels, width, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.fc1 = nn.Linear(width * 16, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.pool(x)).flatten(1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class GoogLeNet(ImageClassifier):
    """Stem, nine inception modules in three groups, global average pooling, linear."""

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3,
                 stem: Literal["imagenet", "small"] = "imagenet", width_divisor: int = 1,
                 branch5x5_kernel: int = 3, aux_logits: bool = False, drop_rate: float = 0.4,
                 norm_layer: Layer = "batch", act_layer: Layer = "relu") -> None:
        super().__init__()
        self.num_classes = num_classes
        conv = dict(norm_layer=norm_layer, act_layer=act_layer)
        cfg = {name: tuple(c // width_divisor for c in row) for name, row in INCEPTION.items()}
        stem_width = cfg["3a"][0]
        if stem == "imagenet":
            self.stem = nn.Sequential(
                ConvBlock2d(in_channels, 64, 7, stride=2, padding=3, **conv),
                create_pool("max", 3, stride=2, padding=1),
                ConvBlock2d(64, 64, 1, **conv),
                ConvBlock2d(64, stem_width, 3, padding=1, **conv),
                create_pool("max", 3, stride=2, padding=1))
        else:
            self.stem = ConvBlock2d(in_channels, stem_width, 3, padding=1, **conv)

        def inception(name: str) -> Inception:
            return Inception(*cfg[name], branch5x5_kernel=branch5x5_kernel, **conv)

        self.inception3 = nn.Sequential(inception("3a"), inception("3b"),
                                        create_pool("max", 3, stride=2, padding=1))
        self.inception4a = inception("4a")
        self.inception4bcd = nn.Sequential(inception("4b"), inception("4c"), inception("4d"))
        self.inception4e = nn.Sequential(inception("4e"), create_pool("max", 3, stride=2, padding=1))
        self.inception5 = nn.Sequential(inception("5a"), inception("5b"))
        self.aux_logits = aux_logits
        self.aux1: nn.Module | None = None
        self.aux2: nn.Module | None = None
        if aux_logits:
            aux = dict(width=128 // width_divisor, hidden=1024 // width_divisor, **conv)
            self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes, **aux)
            self.aux2 = InceptionAux(self.inception4bcd[-1].out_channels, num_classes, **aux)
        self.num_features = self.inception5[-1].out_channels
        self.head_pool = GlobalPool("avg")
        self.head_hidden = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.fc = self.make_classifier(num_classes)
        init_kaiming(self)

    def _trunk(self, x: Tensor, *, aux: bool) -> tuple[Tensor, list[Tensor]]:
        x = self.inception4a(self.inception3(self.stem(x)))
        aux_out = [self.aux1(x)] if aux else []
        x = self.inception4bcd(x)
        if aux:
            aux_out.append(self.aux2(x))
        return self.inception5(self.inception4e(x)), aux_out

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, aux=False)[0]

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Main scores and the auxiliary classifiers' scores (empty without `aux_logits`)."""
        features, aux = self._trunk(x, aux=self.aux_logits and self.aux1 is not None)
        return self.forward_head(features), aux

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for name in ("aux1", "aux2"):
            head = getattr(self, name)
            if head is not None:
                head.fc2 = (nn.Linear(head.fc2.in_features, num_classes) if num_classes > 0
                            else nn.Identity()).to(head.fc1.weight.device)


@register_model(family="googlenet", input_size=224, min_input_size=1)
def googlenet(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet (Inception v1) with batch norm: 6,624,904 parameters at 1000 classes."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model(family="googlenet", input_size=32, min_input_size=1)
def googlenet_small(*, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet for 8x8 / 32x32 images: a 3x3 stem without pooling, every width divided by 4."""
    kwargs = {"stem": "small", "width_divisor": 4, **kwargs}
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
