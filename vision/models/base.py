"""What every vision model shares: the features / head split and a swappable classifier.

A model is `forward_features` (the convolutional trunk, giving `[N, C, h, w]` feature maps) then
`forward_head`: `head_pool` (global or adaptive pooling, ending flat `[N, F]`), `head_hidden`
(the fully connected layers before the classifier, if any) and `fc` (the classifier). The split
follows timm, so `reset_classifier(0)` turns any model into a feature extractor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from textcnn.core.activations import create_act_layer
from textcnn.core.errors import TextCNNError

Layer = str | Callable[..., nn.Module]  # a layer by name (the core's registries) or class


class ImageClassifier(nn.Module):
    """Base class: subclasses build `head_pool`, `head_hidden` and `fc`, and `forward_features`.

    `num_features` is the width of the vector `fc` reads (after `head_hidden`).
    """

    num_classes: int
    num_features: int
    head_pool: nn.Module
    head_hidden: nn.Module
    fc: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        """Feature maps `[N, C, h, w]` of images `[N, in_channels, H, W]`."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Class scores `[N, num_classes]` from feature maps; `pre_logits` stops before `fc`."""
        x = self.head_hidden(self.head_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final classification layer."""
        return self.fc

    def make_classifier(self, num_classes: int) -> nn.Module:
        """A fresh classifier for `num_classes` (0: none, the model outputs its features)."""
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for `num_classes` classes."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise TextCNNError(f"num_classes: expected an integer >= 0, got {num_classes!r}")
        device = next(self.parameters()).device
        self.num_classes = num_classes
        self.fc = self.make_classifier(num_classes).to(device)


def flat_pool(pool_size: int) -> nn.Module:
    """Adaptive average pooling to `pool_size` x `pool_size`, flattened: any input size works."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(1))


def mlp(in_features: int, hidden: Sequence[int], *, drop_rate: float, act_layer: Layer,
        dropout_first: bool) -> tuple[nn.Sequential, int]:
    """Hidden fully connected layers: Linear, act, Dropout each (VGG), or Dropout, Linear, act
    (`dropout_first`, AlexNet). Returns the layers and their output width."""
    layers: list[nn.Module] = []
    for width in hidden:
        block = [nn.Linear(in_features, width), create_act_layer(act_layer)]
        drop = [nn.Dropout(drop_rate)] if drop_rate else []
        layers += drop + block if dropout_first else block + drop
        in_features = width
    return nn.Sequential(*layers), in_features


def init_kaiming(model: nn.Module, *, linear_std: float | None = None) -> None:
    """He initialisation (fan-out, ReLU gain) for convs, unit/zero batch norm, and for linear
    layers N(0, linear_std^2) when given (VGG's 0.01), else torch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


__all__ = ["ImageClassifier", "Layer", "flat_pool", "init_kaiming", "mlp"]
