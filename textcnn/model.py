"""Kim (2014): a one-layer CNN over word vectors, in the paper's four variants.

    ids [N, L] -> embedding channel(s) [N, L, C*D] -> for each width h: conv (h x C*D, `maps`
    filters) -> ReLU -> max over time -> concatenate [N, maps * len(widths)] -> dropout -> linear

- rand: one embedding table, randomly initialised U[-0.25, 0.25] (as Kim's code) and trained.
- static: one table of pretrained vectors, frozen.
- non-static: one table of pretrained vectors, fine-tuned.
- multichannel: two tables of the same vectors, one frozen and one fine-tuned; each filter
  spans both channels and their results add up, which is one convolution over the channels
  stacked along the feature axis.

Kim zero-pads each sentence by (h - 1) on both sides, so a sentence shorter than the widest
filter (even an empty one) still has windows. His code also pads every sentence to the longest in
the corpus; windows that lie wholly in that extra padding only add a constant relu(bias) candidate
to the max. We pad each batch only to its own longest sentence and mask those windows out, so a
prediction never depends on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from textcnn.core.config import check_literals, check_number, internal, is_integer, shown
from textcnn.core.conv import ConvBlock1d
from textcnn.core.errors import TextCNNError
from textcnn.core.pooling import max_over_time
from textcnn.core.regularization import max_norm_

Variant = Literal["rand", "static", "non-static", "multichannel"]
VARIANTS: tuple[str, ...] = ("rand", "static", "non-static", "multichannel")


@dataclass
class KimCNNConfig:
    """Shape of a Kim CNN; defaults are the paper's.

    Its settings (every field but the `internal` ones) are declared here once: the recipe's
    `model` section takes them from here (textcnn/recipe.py), and `TextCNNClassifier` its
    parameters, with these defaults and comments. The `internal` fields come from the data and
    the training settings."""

    vocab_size: int = internal()  # rows of each embedding table, [PAD] and [UNK] included
    num_classes: int = internal()  # number of outputs (labels)
    variant: Variant = "rand"  # rand, static, non-static or multichannel
    widths: list[int] = field(default_factory=lambda: [3, 4, 5])  # filter widths in words
    maps: int = 100  # feature maps (filters) per width
    dropout: float = 0.5  # dropout on the pooled features, before the output layer
    max_norm: float | None = 3.0  # l2 max-norm of each output-layer weight row; None (null): off
    embedding_dim: int = 300  # word-vector size for rand and in-domain word2vec; pretrained vectors bring theirs
    pad_id: int = internal(0)  # token id of [PAD]; its vector stays zero
    act_layer: str = internal("relu")  # activation after each convolution
    sparse: bool = internal(False)  # sparse embedding gradients (for an optimizer that takes them: adadelta)

    def __post_init__(self) -> None:
        check_literals(self, "model")
        self.check_settings(self)
        check_number("model.vocab_size", self.vocab_size, low=1, integer=True)
        check_number("model.num_classes", self.num_classes, low=1, integer=True)

    @staticmethod
    def check_settings(settings: Any) -> None:
        """Check the settings `settings` holds (this config, or the recipe's model section that
        takes them from it); errors name the recipe key (model.maps, ...)."""
        widths = settings.widths
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths or \
                not all(is_integer(w) and w >= 1 for w in widths):
            raise TextCNNError(f"model.widths: expected a non-empty list of integers >= 1, got {shown(widths)}")
        check_number("model.maps", settings.maps, low=1, integer=True)
        check_number("model.dropout", settings.dropout, low=0, high=1, high_open=True)
        check_number("model.max_norm", settings.max_norm, low=0, low_open=True, optional=True)
        check_number("model.embedding_dim", settings.embedding_dim, low=1, integer=True)

    @property
    def channels(self) -> int:
        """Embedding channels: two for multichannel, else one."""
        return 2 if self.variant == "multichannel" else 1

    @property
    def num_features(self) -> int:
        """Size of the pooled feature vector fed to the output layer."""
        return self.maps * len(self.widths)


class KimCNN(nn.Module):
    """Kim's sentence CNN. `vectors` [vocab_size, embedding_dim] is required except for rand."""

    def __init__(self, config: KimCNNConfig, *, vectors: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        if config.variant != "rand" and vectors is None:
            raise ValueError(f"variant '{config.variant}' needs pretrained vectors")
        if vectors is not None and tuple(vectors.shape) != (config.vocab_size, config.embedding_dim):
            raise ValueError(f"vectors: expected shape ({config.vocab_size}, {config.embedding_dim}), "
                             f"got {tuple(vectors.shape)}")
        self.embeddings = nn.ModuleList(
            self._embedding(config, vectors, trainable=config.variant != "static" and (
                config.variant != "multichannel" or channel == 1))
            for channel in range(config.channels))
        in_channels = config.embedding_dim * config.channels
        self.convs = nn.ModuleList(
            ConvBlock1d(in_channels, config.maps, width, padding=width - 1, bias=True,
                        act_layer=config.act_layer)
            for width in config.widths)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.num_features, config.num_classes)

    @staticmethod
    def _embedding(config: KimCNNConfig, vectors: torch.Tensor | None, *, trainable: bool) -> nn.Embedding:
        emb = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id,
                           sparse=config.sparse)
        with torch.no_grad():
            if vectors is None:
                emb.weight.uniform_(-0.25, 0.25)
            else:
                emb.weight.copy_(vectors)
            emb.weight[config.pad_id].zero_()
        emb.weight.requires_grad_(trainable)
        return emb

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, C*D, L] stacked embedding channels, ready for Conv1d."""
        return torch.cat([emb(ids) for emb in self.embeddings], dim=-1).transpose(1, 2)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] right-padded token ids -> [N, maps * len(widths)] max-over-time features."""
        x = self.embed(ids)
        lengths = (ids != self.config.pad_id).sum(dim=1)
        pooled = []
        for width, conv in zip(self.config.widths, self.convs):
            h = conv(x)  # [N, maps, L + width - 1]
            # output t covers inputs t-width+1..t: it is all padding once t >= length+width-1
            positions = torch.arange(h.shape[-1], device=ids.device)
            padding_only = (positions[None, :] >= lengths[:, None] + width - 1) | (lengths[:, None] == 0)
            pooled.append(max_over_time(h, padding_only))
        return torch.cat(pooled, dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, num_classes] logits."""
        return self.fc(self.dropout(self.features(ids)))

    def apply_max_norm(self) -> None:
        """Kim's constraint: rescale output-layer weight rows whose l2 norm exceeds `max_norm`."""
        if self.config.max_norm is not None:
            max_norm_(self.fc.weight, self.config.max_norm)
