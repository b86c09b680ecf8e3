"""K Kim CNNs of one shape, their weights stacked on a leading fold axis: one forward and
backward pass serves every fold (see the package docstring for how)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from textcnn.core.regularization import max_norm_
from textcnn.model import KimCNN, KimCNNConfig

# The model settings beyond Kim's that the stacked model does not do: each keeps Kim's default.
FOLD_KIM_ONLY = ("activation", "pooling", "batch_norm", "weight_norm", "input_noise", "word_dropout")
ConvImpl = Literal["bmm", "grouped"]
CONV_IMPLS: tuple[str, ...] = ("bmm", "grouped")


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on `device_type`, or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no per-device query; the GEMMs still cast on their own
        return None
    return torch.get_autocast_dtype(device_type) if enabled else None


def _trainable(config: KimCNNConfig, channel: int) -> bool:
    """Whether embedding channel `channel` is fine-tuned (as `KimCNN.__init__` decides)."""
    return config.variant != "static" and (config.variant != "multichannel" or channel == 1)


def fold_max_norm_(weight: Tensor, max_norm: float) -> Tensor:
    """Kim's max-norm on stacked output layers `[K, classes, F]`: every row of every fold capped
    at `max_norm` (in place), exactly as `max_norm_` caps the rows of one `[classes, F]` layer."""
    if weight.dim() != 3:
        raise TextCNNError(f"fold_max_norm_: expected a [K, classes, F] weight, got shape "
                           f"{tuple(weight.shape)}")
    return max_norm_(weight, max_norm, dim=2)


class FoldBatchedKimCNN(nn.Module):
    """K independent Kim CNNs of one `KimCNNConfig`, their weights stacked on a leading fold axis.

    Parameters: `embeddings[c]` [K, V, D] per channel (frozen for static and multichannel's
    first channel), `conv_weight` [K, W, maps, C*D, max(widths)] (width i right-aligned in the
    taps), `conv_bias` [K, W, maps], `fc_weight` [K, classes, W*maps], `fc_bias` [K, classes].
    A fresh model draws each fold's weights as `KimCNN` does (embeddings U[-0.25, 0.25], torch's
    default conv/linear init); `vectors` [V, D] (shared) or [K, V, D] (per fold) is required for
    the pretrained variants. Only Kim's choices of the model's menu (FOLD_KIM_ONLY) are supported.

    `conv` picks how the convolutions run, both for all folds and widths at once: "bmm" (im2col
    windows and one batched GEMM) or "grouped" (one `conv1d` with groups=K). The values are the
    same; which is faster depends on the device (scripts/bench_fold_batched.py times both).
    """

    def __init__(self, config: KimCNNConfig, folds: int, *, vectors: Tensor | None = None,
                 conv: ConvImpl = "bmm") -> None:
        super().__init__()
        if conv not in CONV_IMPLS:
            raise TextCNNError(f"conv: expected one of {', '.join(CONV_IMPLS)}, got '{conv}'")
        menu = {key: getattr(config, key) for key in FOLD_KIM_ONLY}
        kim = {key: getattr(KimCNNConfig, key) for key in FOLD_KIM_ONLY}
        if menu != kim:
            raise TextCNNError(f"FoldBatchedKimCNN: expected Kim's {kim}, got {menu}")
        if folds < 1:
            raise TextCNNError(f"FoldBatchedKimCNN: expected at least one fold, got {folds}")
        if config.variant != "rand" and vectors is None:
            raise TextCNNError(f"FoldBatchedKimCNN: variant '{config.variant}' needs pretrained "
                               "vectors, got none")
        k, v, d = folds, config.vocab_size, config.embedding_dim
        if vectors is not None and tuple(vectors.shape) not in ((v, d), (k, v, d)):
            raise TextCNNError(f"vectors: expected shape ({v}, {d}) or ({k}, {v}, {d}), "
                               f"got {tuple(vectors.shape)}")
        self.config = config
        self.folds = folds
        self.conv = conv
        tables = []
        for channel in range(config.channels):
            if vectors is None:
                table = torch.empty(k, v, d).uniform_(-0.25, 0.25)
            else:
                table = vectors.detach().float().expand(k, v, d).clone()
            table[:, config.pad_id] = 0.0
            tables.append(nn.Parameter(table, requires_grad=_trainable(config, channel)))
        self.embeddings = nn.ParameterList(tables)

        widths, maps, taps = list(config.widths), config.maps, max(config.widths)
        in_channels = d * config.channels
        weight = torch.zeros(k, len(widths), maps, in_channels, taps)
        bias = torch.empty(k, len(widths), maps)
        tap_mask = torch.zeros(len(widths), 1, 1, taps)
        for i, width in enumerate(widths):
            bound = 1.0 / math.sqrt(in_channels * width)  # nn.Conv1d's default init
            weight[:, i, :, :, taps - width:].uniform_(-bound, bound)
            bias[:, i].uniform_(-bound, bound)
            tap_mask[i, ..., taps - width:] = 1.0
        self.conv_weight = nn.Parameter(weight)
        self.conv_bias = nn.Parameter(bias)
        bound = 1.0 / math.sqrt(config.num_features)  # nn.Linear's default init
        self.fc_weight = nn.Parameter(torch.empty(k, config.num_classes, config.num_features)
                                      .uniform_(-bound, bound))
        self.fc_bias = nn.Parameter(torch.empty(k, config.num_classes).uniform_(-bound, bound))
        self.register_buffer("tap_mask", tap_mask, persistent=False)
        self.register_buffer("width_offsets", torch.tensor(widths) - 1, persistent=False)

    # -- conversion to and from ordinary models --------------------------------------------------
    @classmethod
    def from_models(cls, models: Sequence[KimCNN], *, conv: ConvImpl = "bmm") -> FoldBatchedKimCNN:
        """Stack K `KimCNN`s of one config (exact copies of their weights), on the first's device."""
        if not models:
            raise TextCNNError("from_models: expected at least one KimCNN, got none")
        config = models[0].config
        for i, model in enumerate(models):
            if not isinstance(model, KimCNN):
                raise TextCNNError(f"from_models: expected KimCNN models, got {type(model).__name__} "
                                   f"at {i}")
            if replace(model.config, sparse=False) != replace(config, sparse=False):
                raise TextCNNError(f"from_models: expected every model with the config of model 0, "
                                   f"got {model.config} at {i}")
        with torch.random.fork_rng(devices=[]):  # the throw-away init leaves the caller's RNG alone
            stacked = cls(config, len(models),
                          vectors=torch.zeros(config.vocab_size, config.embedding_dim), conv=conv)
        taps = max(config.widths)
        with torch.no_grad():
            for k, model in enumerate(models):
                for table, emb in zip(stacked.embeddings, model.embeddings):
                    table[k].copy_(emb.weight)
                for i, (width, block) in enumerate(zip(config.widths, model.convs)):
                    stacked.conv_weight[k, i, :, :, taps - width:].copy_(block.conv.weight)
                    stacked.conv_bias[k, i].copy_(block.conv.bias)
                stacked.fc_weight[k].copy_(model.fc.weight)
                stacked.fc_bias[k].copy_(model.fc.bias)
        return stacked.to(models[0].fc.weight.device).train(models[0].training)

    @torch.no_grad()
    def to_models(self, *, known: Tensor | None = None, unk_id: int | None = None) -> list[KimCNN]:
        """K ordinary `KimCNN`s on the CPU, exact copies of each fold's weights.

        With `known` [K, V] (see `known_word_mask`) and `unk_id`, each fold's rows of words it
        never trained on get that fold's [UNK] row, so the shared vocabulary's tokenizer gives
        the model what a tokenizer trained on the fold alone would (unseen word -> [UNK]).
        """
        if known is not None and (unk_id is None or tuple(known.shape) != (self.folds, self.config.vocab_size)):
            raise TextCNNError(f"to_models: expected known [{self.folds}, {self.config.vocab_size}] "
                               f"and an unk_id, got {tuple(known.shape)} and {unk_id}")
        cfg, taps = self.config, max(self.config.widths)
        models = []
        for k in range(self.folds):
            with torch.random.fork_rng(devices=[]):
                model = KimCNN(cfg, vectors=torch.zeros(cfg.vocab_size, cfg.embedding_dim))
            for table, emb in zip(self.embeddings, model.embeddings):
                emb.weight.copy_(table[k])
                if known is not None:
                    unseen = ~known[k].to(emb.weight.device)
                    emb.weight[unseen] = emb.weight[unk_id].clone()
            for i, (width, block) in enumerate(zip(cfg.widths, model.convs)):
                block.conv.weight.copy_(self.conv_weight[k, i, :, :, taps - width:])
                block.conv.bias.copy_(self.conv_bias[k, i])
            model.fc.weight.copy_(self.fc_weight[k])
            model.fc.bias.copy_(self.fc_bias[k])
            models.append(model.train(self.training))
        return models

    # -- the forward pass -------------------------------------------------------------------------
    def embed(self, ids: Tensor) -> Tensor:
        """[K, B, L] token ids -> [K, B, L, C*D]: each fold's word vectors from its own tables."""
        k = ids.shape[0]
        cfg = self.config
        offsets = torch.arange(k, device=ids.device).view(k, 1, 1) * cfg.vocab_size
        # Fold k's ids index its own block of the flattened tables. Padding points at fold 0's
        # [PAD] row instead: that row is zero and, as `padding_idx`, gets no gradient, so no
        # fold's [PAD] row ever moves (KimCNN's padding_idx does the same for one model).
        flat = torch.where(ids == cfg.pad_id, cfg.pad_id, ids + offsets)
        vecs = [F.embedding(flat, table.view(k * cfg.vocab_size, -1), padding_idx=cfg.pad_id)
                for table in self.embeddings]
        return vecs[0] if len(vecs) == 1 else torch.cat(vecs, dim=-1)

    def features(self, ids: Tensor) -> Tensor:
        """[K, B, L] right-padded ids -> [K, B, maps * len(widths)] max-over-time features."""
        if ids.dim() != 3 or ids.shape[0] != self.folds or ids.is_floating_point():
            raise TextCNNError(f"FoldBatchedKimCNN: expected integer ids [{self.folds}, B, L], "
                               f"got {ids.dtype} {tuple(ids.shape)}")
        cfg = self.config
        k, b, _ = ids.shape
        n_widths, taps = len(cfg.widths), max(cfg.widths)
        weight = self.conv_weight * self.tap_mask  # [K, W, maps, C*D, taps]
        x = self.embed(ids)
        cast = _autocast_dtype(ids.device.type)
        if cast is not None:  # cast once here, not the taps-times larger windows below
            x = x.to(cast)
        if self.conv == "grouped":
            h = F.conv1d(x.permute(1, 0, 3, 2).reshape(b, -1, ids.shape[2]),
                         weight.reshape(-1, weight.shape[-2], taps), self.conv_bias.reshape(-1),
                         padding=taps - 1, groups=k)  # [B, K*W*maps, T]
            h = h.view(b, k, n_widths, cfg.maps, -1).permute(1, 0, 4, 2, 3)  # [K, B, T, W, maps]
        else:
            # im2col: every window of `taps` positions as one row, one batched GEMM per step
            x = F.pad(x, (0, 0, taps - 1, taps - 1))  # [K, B, L + 2(taps - 1), C*D]
            windows = x.unfold(2, taps, 1)  # [K, B, T, C*D, taps], a view
            t = windows.shape[2]
            h = torch.baddbmm(self.conv_bias.reshape(k, 1, -1), windows.reshape(k, b * t, -1),
                              weight.reshape(k, n_widths * cfg.maps, -1).transpose(1, 2))
            h = h.view(k, b, t, n_widths, cfg.maps)
        lengths = (ids != cfg.pad_id).sum(dim=-1)  # [K, B]
        positions = torch.arange(h.shape[2], device=ids.device)
        # Output t of width h covers inputs t-h+1..t: all padding once t >= length + h - 1; an
        # empty sentence has no window with a word (as KimCNN.features masks them).
        limit = lengths[:, :, None] + self.width_offsets  # [K, B, W]
        padding_only = (positions[:, None] >= limit[:, :, None, :]) | (lengths == 0)[:, :, None, None]
        pooled = h.masked_fill(padding_only[..., None], float("-inf")).amax(dim=2)  # [K, B, W, maps]
        return torch.relu(pooled).reshape(k, b, -1)

    def forward(self, ids: Tensor) -> Tensor:
        """[K, B, L] token ids (fold k's batch in row k) -> [K, B, num_classes] logits."""
        feats = F.dropout(self.features(ids), self.config.dropout, self.training)
        return torch.baddbmm(self.fc_bias.unsqueeze(1), feats, self.fc_weight.transpose(1, 2))

    def apply_max_norm(self) -> None:
        """Kim's constraint on every fold's output-layer rows (a no-op when `max_norm` is None)."""
        if self.config.max_norm is not None:
            fold_max_norm_(self.fc_weight, self.config.max_norm)
