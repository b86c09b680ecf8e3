"""Kim (2014): a one-layer CNN over word vectors, in the paper's four variants.

    ids [N, L] -> embedding channel(s) [N, L, C*D] -> for each width h: conv (h x C*D, `maps`
    filters) -> ReLU -> max over time -> concatenate [N, maps * len(widths)] -> dropout -> linear

Beside Kim's choices (the defaults), the model takes the lecture's menu from the core: any
activation of `textcnn.core.activations` (`activation`), average, L2 or k-max pooling over time
(`pooling`, `k`), batch norm after each convolution (`batch_norm`, its statistics taken over the
sentences' windows only), weight-normalised filters (`weight_norm`), Gaussian noise on the word
vectors (`input_noise`) and word dropout to [UNK] (`word_dropout`), the last two in training only.

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

from textcnn.core.activations import ACTIVATIONS
from textcnn.core.config import check_literals, check_number, internal, is_integer, shown
from textcnn.core.conv import ConvBlock1d
from textcnn.core.errors import TextCNNError
from textcnn.core.pooling import pool_over_time
from textcnn.core.regularization import GaussianNoise, WordDropout, apply_weight_norm, max_norm_

Variant = Literal["rand", "static", "non-static", "multichannel"]
VARIANTS: tuple[str, ...] = ("rand", "static", "non-static", "multichannel")
Pooling = Literal["max", "avg", "l2", "kmax"]
# Non-decreasing activations: max_t act(x_t + b) = act(max_t x_t + b), so with max pooling (and no
# batch norm) the activation can follow the pooling (textcnn/projection.py uses it).
MONOTONE_ACTIVATIONS = frozenset({"relu", "leaky_relu", "selu", "tanh", "sigmoid", "linear", "identity",
                                  "none"})


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
    activation: str = "relu"  # after each convolution: a name of textcnn.core.activations (relu, tanh, selu, ...)
    pooling: Pooling = "max"  # over time: max (Kim's), avg, l2 or kmax (the k largest values in order)
    k: int = 2  # values kept per feature map by pooling kmax (used with it only)
    batch_norm: bool = False  # batch norm after each convolution, over the sentences' windows
    weight_norm: bool = False  # weight normalisation of the convolution filters (g * v / ||v||)
    input_noise: float = 0.0  # std of Gaussian noise added to the word vectors in training
    word_dropout: float = 0.0  # probability of replacing a word by [UNK] in training
    pad_id: int = internal(0)  # token id of [PAD]; its vector stays zero
    unk_id: int | None = internal(1)  # token id of [UNK], what word_dropout puts in a word's place
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
        activation = settings.activation
        if not isinstance(activation, str) or activation.lower().replace("-", "_") not in ACTIVATIONS:
            raise TextCNNError(f"model.activation: expected one of {', '.join(ACTIVATIONS)}, "
                               f"got {shown(activation)}")
        check_number("model.k", settings.k, low=1, integer=True)
        if settings.pooling != "kmax" and settings.k != KimCNNConfig.k:
            raise TextCNNError(f"model.k: used with model.pooling kmax only (the values kept per "
                               f"feature map), got {shown(settings.k)} with pooling {shown(settings.pooling)}")
        for key in ("batch_norm", "weight_norm"):
            if not isinstance(getattr(settings, key), bool):
                raise TextCNNError(f"model.{key}: expected true or false, got {shown(getattr(settings, key))}")
        check_number("model.input_noise", settings.input_noise, low=0)
        check_number("model.word_dropout", settings.word_dropout, low=0, high=1, high_open=True)

    @property
    def channels(self) -> int:
        """Embedding channels: two for multichannel, else one."""
        return 2 if self.variant == "multichannel" else 1

    @property
    def pooled_per_map(self) -> int:
        """Values each feature map gives after pooling: k for kmax, else one."""
        return self.k if self.pooling == "kmax" else 1

    @property
    def num_features(self) -> int:
        """Size of the pooled feature vector fed to the output layer."""
        return self.maps * len(self.widths) * self.pooled_per_map

    @property
    def activation_after_max(self) -> bool:
        """Whether the features are act(max_t conv + b): max pooling, no batch norm, and an
        activation that keeps order (the projection path pools before activating then)."""
        return (self.pooling == "max" and not self.batch_norm
                and self.activation.lower().replace("-", "_") in MONOTONE_ACTIVATIONS)


def valid_windows(lengths: torch.Tensor, width: int, positions: int) -> torch.Tensor:
    """[N, positions] True where a convolution window of `width` (output t covers inputs
    t-width+1..t of a sentence zero-padded by width-1 on both sides) holds a word of a sentence of
    `lengths` [N] words: windows of padding alone, and every window of an empty sentence, are not."""
    t = torch.arange(positions, device=lengths.device)
    return (t[None, :] < lengths[:, None] + width - 1) & (lengths[:, None] > 0)


def pool_windows(windows: torch.Tensor, valid: torch.Tensor, *, norm: nn.Module, act: nn.Module,
                 config: KimCNNConfig) -> torch.Tensor:
    """One width's features from its windows [N, T, maps] (the convolution with its bias, one row
    per window) and their `valid` mask [N, T]: batch norm (over the valid windows only), the
    activation (over each window's maps, so a softmax spreads over the maps), then pooling over
    the valid windows -> [N, maps * config.pooled_per_map]; an empty sentence gives zeros."""
    if config.batch_norm:
        windows = windows.index_put((valid,), norm(windows[valid]))
    return pool_over_time(act(windows).transpose(1, 2), ~valid, kind=config.pooling, k=config.k)


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
        # conv, norm and act of each width: the model calls them one by one (`pool_windows`)
        self.convs = nn.ModuleList(
            ConvBlock1d(in_channels, config.maps, width, padding=width - 1,
                        norm_layer="batch" if config.batch_norm else None, act_layer=config.activation)
            for width in config.widths)
        if config.weight_norm:
            for block in self.convs:
                apply_weight_norm(block.conv)
        if config.word_dropout and config.unk_id is None:
            raise ValueError("word_dropout needs an [UNK] token id (unk_id), got None")
        self.word_dropout = WordDropout(config.word_dropout, replacement_id=config.unk_id or 0,
                                        pad_id=config.pad_id)
        self.input_noise = GaussianNoise(config.input_noise)
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
        """[N, L] right-padded token ids -> [N, num_features] pooled features (in training, after
        word dropout and input noise)."""
        ids = self.word_dropout(ids)
        x = self.embed(ids)
        not_pad = ids != self.config.pad_id
        if self.training and self.config.input_noise:
            x = self.input_noise(x) * not_pad[:, None, :]  # padding stays zero: no batch dependence
        lengths = not_pad.sum(dim=1)
        pooled = []
        for width, block in zip(self.config.widths, self.convs):
            windows = block.conv(x).transpose(1, 2)  # [N, L + width - 1, maps]
            pooled.append(pool_windows(windows, valid_windows(lengths, width, windows.shape[1]),
                                       norm=block.norm, act=block.act, config=self.config))
        return torch.cat(pooled, dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, num_classes] logits."""
        return self.fc(self.dropout(self.features(ids)))

    def apply_max_norm(self) -> None:
        """Kim's constraint: rescale output-layer weight rows whose l2 norm exceeds `max_norm`."""
        if self.config.max_norm is not None:
            max_norm_(self.fc.weight, self.config.max_norm)
