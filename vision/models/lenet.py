"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), in the paper's form and in a modern form.

Paper form (`lenet5_paper`), 32x32 input, 60,000 trainable parameters::

    C1  conv 5x5, 6 maps                                 6 * (25 + 1)            =    156
    S2  2x2 sums, a trainable coefficient + bias per map 6 * 2                   =     12
    C3  conv 5x5, 16 maps, partial connections (Table I) 60 * 25 + 16            =  1,516
    S4  2x2 sums, coefficient + bias                     16 * 2                  =     32
    C5  conv 5x5, 120 maps (its output is 1x1)           120 * (16 * 25 + 1)     = 48,120
    F6  full, 84 units                                   84 * (120 + 1)          = 10,164
    output: 10 Euclidean RBF units with fixed 7x12 bitmaps of the digits (not trained)

Every layer up to F6 is squashed by f(a) = 1.7159 tanh(2a/3). The RBF output y_i = ||x - w_i||^2
is a distance, so its negation serves as the class scores; cross-entropy on them is the paper's
loss (eq. 9) in the limit of its constant j -> infinity.

Modern form (`lenet5`): full C3 connectivity (2,416), average pooling without coefficients, a
linear 84 -> 10 output: 61,706 parameters. It pools adaptively to 5x5 before C5, so inputs of
16x16 and up work; the paper form takes 32x32 only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from textcnn.core.activations import create_act_layer
from textcnn.core.conv import ConvBlock2d
from textcnn.core.errors import TextCNNError
from textcnn.core.pooling import create_pool
from vision.models.base import ImageClassifier
from vision.registry import register_model

# Table I: which S2 maps (0-5) feed each C3 map (0-15): six see 3 neighbours, six see 4, three
# see 4 non-neighbours and one sees all six.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Our own 7x12 drawings of the digits for the RBF centres (the paper drew ASCII characters).
_DIGIT_ART = """
..###.. ...#... .####.. .####.. ....#.. ####### ..###.. ####### .#####. .#####.
.#...#. ..##... #....#. #....#. ...##.. #...... .#..... ......# #.....# #.....#
#.....# .#.#... .....#. .....#. ..#.#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... .....#. .....#. .#..#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... ....#.. ..###.. #...#.. ######. #.####. ....#.. .#####. #.....#
#.....# ...#... ...#... .....#. ####### ......# ##....# ....#.. #.....# .######
#.....# ...#... ..#.... ......# ....#.. ......# #.....# ...#... #.....# ......#
#.....# ...#... .#..... ......# ....#.. ......# #.....# ...#... #.....# ......#
#.....# ...#... #...... #.....# ....#.. #.....# #.....# ..#.... #.....# .....#.
.#...#. ...#... #...... .#...#. ....#.. .#...#. .#...#. ..#.... #.....# ....#..
..###.. .#####. ####### ..###.. ....#.. ..###.. ..###.. ..#.... .#####. .###...
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_bitmaps() -> Tensor:
    """The 10 RBF centres `[10, 84]`: +1 for ink, -1 for background, rows of 7 pixels."""
    rows = [line.split() for line in _DIGIT_ART.strip("\n").splitlines()]
    return torch.tensor([[1.0 if ch == "#" else -1.0 for row in rows for ch in row[d]]
                         for d in range(10)])


class LeCunTanh(nn.Module):
    """f(a) = 1.7159 tanh(2a/3): f(+-1) = +-1, and the gain is largest around 0 (Appendix A)."""

    amplitude = 1.7159
    slope = 2.0 / 3.0

    def forward(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class Subsampling(nn.Module):
    """S2/S4: sum each 2x2 window, times a trainable coefficient, plus a trainable bias, squashed."""

    def __init__(self, channels: int, *, act_layer: str | Callable[..., nn.Module]) -> None:
        super().__init__()
        self.pool = create_pool("avg", 2)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.act = create_act_layer(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        sums = self.pool(x) * 4  # the mean of 4 inputs times 4
        return self.act(sums * self.weight[:, None, None] + self.bias[:, None, None])


class PartialConv(nn.Module):
    """A conv layer in which output map j sees only the input maps `table[j]`.

    Maps with the same number of inputs form one grouped convolution over their gathered
    inputs, so no weight exists for a missing connection (C3 has 1,516 parameters, not 2,416).
    """

    def __init__(self, table: Sequence[Sequence[int]], kernel_size: int, *,
                 act_layer: str | Callable[..., nn.Module]) -> None:
        super().__init__()
        by_fan_in: dict[int, list[int]] = {}
        for out_map, inputs in enumerate(table):
            by_fan_in.setdefault(len(inputs), []).append(out_map)
        self.convs = nn.ModuleList()
        order: list[int] = []
        for fan_in, maps in by_fan_in.items():
            gather = torch.tensor([i for m in maps for i in table[m]])
            self.register_buffer(f"gather{len(self.convs)}", gather, persistent=False)
            self.convs.append(ConvBlock2d(fan_in * len(maps), len(maps), kernel_size,
                                          groups=len(maps), act_layer=act_layer))
            order += maps
        self.register_buffer("restore", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        parts = [conv(x.index_select(1, getattr(self, f"gather{i}")))
                 for i, conv in enumerate(self.convs)]
        return torch.cat(parts, dim=1).index_select(1, self.restore)


class EuclideanRBF(nn.Module):
    """Output units y_i = sum_j (x_j - w_ij)^2 with fixed centres; returns -y as class scores."""

    def __init__(self, centres: Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres.clone())

    def forward(self, x: Tensor) -> Tensor:
        return -(x[:, None, :] - self.centres).square().sum(-1)


def rbf_centres(num_classes: int) -> Tensor:
    """The digit bitmaps for up to 10 classes; beyond that, fixed random +-1 codes (Section II.B
    allows codes chosen at random)."""
    centres = digit_bitmaps()[:num_classes]
    extra = num_classes - len(centres)
    if extra > 0:
        codes = torch.randint(0, 2, (extra, 84), generator=torch.Generator().manual_seed(5))
        centres = torch.cat([centres, codes.float() * 2 - 1])
    return centres


class LeNet5(ImageClassifier):
    """LeNet-5: C1 S2 C3 S4 (features) and C5 F6 output (head); see the module docstring."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1,
                 form: Literal["paper", "modern"] = "paper",
                 act_layer: str | Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        if form not in ("paper", "modern"):
            raise TextCNNError(f"LeNet5 form: expected 'paper' or 'modern', got {form!r}")
        self.form = form
        self.num_classes = num_classes
        self.num_features = 84
        paper = form == "paper"
        act = act_layer or (LeCunTanh if paper else "relu")
        self.c1 = ConvBlock2d(in_channels, 6, 5, act_layer=act)
        if paper:
            self.s2 = Subsampling(6, act_layer=act)
            self.c3: nn.Module = PartialConv(C3_TABLE, 5, act_layer=act)
            self.s4 = Subsampling(16, act_layer=act)
        else:
            self.s2 = create_pool("avg", 2)
            self.c3 = ConvBlock2d(6, 16, 5, act_layer=act)
            self.s4 = create_pool("avg", 2)
        c5 = ConvBlock2d(16, 120, 5, act_layer=act)
        self.head_pool = (nn.Sequential(c5, nn.Flatten(1)) if paper
                          else nn.Sequential(nn.AdaptiveAvgPool2d(5), c5, nn.Flatten(1)))
        self.head_hidden = nn.Sequential(nn.Linear(120, 84), create_act_layer(act))
        self.fc = self.make_classifier(num_classes)
        if paper:
            self._init_paper()

    def make_classifier(self, num_classes: int) -> nn.Module:
        if self.form == "paper" and num_classes > 0:
            return EuclideanRBF(rbf_centres(num_classes))
        return super().make_classifier(num_classes)

    def _init_paper(self) -> None:
        """Uniform in +-2.4 / F_i with F_i the fan-in of the unit (Appendix A)."""
        fan_ins = {self.s2: 4, self.s4: 4}
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                fan_ins[conv] = conv.weight[0].numel()
            elif isinstance(conv, nn.Linear):
                fan_ins[conv] = conv.in_features
        with torch.no_grad():
            for module, fan_in in fan_ins.items():
                for p in (module.weight, module.bias):
                    p.uniform_(-2.4 / fan_in, 2.4 / fan_in)

    def forward_features(self, x: Tensor) -> Tensor:
        if self.form == "paper" and tuple(x.shape[-2:]) != (32, 32):
            raise TextCNNError(f"LeNet-5 (paper form): expected 32x32 inputs, got "
                               f"{'x'.join(map(str, x.shape[-2:]))} (use size: 32 or lenet5)")
        return self.s4(self.c3(self.s2(self.c1(x))))


@register_model(family="lenet", input_size=32, min_input_size=32, fixed_size=True)
def lenet5_paper(*, num_classes: int = 10, in_channels: int = 1, **kwargs: Any) -> LeNet5:
    """LeNet-5 as in LeCun et al. (1998): 60,000 trainable parameters, fixed 32x32 input."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, form="paper", **kwargs)


@register_model(family="lenet", input_size=32, min_input_size=16)
def lenet5(*, num_classes: int = 10, in_channels: int = 1, **kwargs: Any) -> LeNet5:
    """Modern LeNet-5 (full C3, plain average pooling, linear output, ReLU): 61,706 parameters."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, form="modern", **kwargs)

