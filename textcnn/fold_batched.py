"""All K folds of a cross-validation run trained as one batched model (issue 4's moonshot).

On a GPU a single Kim CNN at batch 50 is bound by kernel launches, not arithmetic. The K folds
of a cross-validation run are independent models of the same shape, so their weights can be
stacked along a leading fold axis and one forward/backward pass can serve all K at once:

    ids [K, B, L] -> embeddings [K*V, D] gathered per fold -> [K, B, L, C*D]
      -> ONE batched GEMM over im2col windows (or one grouped conv1d, groups=K) for every width
         and fold -> masked max over time -> ReLU
      -> dropout -> ONE batched GEMM with the stacked output layers [K, classes, F]

- Every width shares one convolution: a width-h filter is stored right-aligned in `max(widths)`
  taps, the other taps held at zero by a fixed mask (their gradient is zero, so no element-wise
  optimizer ever moves them). With padding `max(widths) - 1`, output t of the wide filter equals
  output t of the width-h filter padded by h - 1 (as `KimCNN`); the extra outputs at the end are
  windows of padding alone, which the mask leaves out anyway.
- ReLU is monotone, so relu(max_t x_t) = max_t relu(x_t): it is applied after pooling, and it
  turns the -inf of an empty sentence (every window masked) into the 0 `max_over_time` gives.
- The parameters of different folds are disjoint, so the gradient of the sum of the per-fold mean
  losses with respect to fold k's slice is exactly fold k's own gradient, and an element-wise
  optimizer (Adadelta) on the stacked tensors is K separate optimizers.

`fit_folds` trains the K folds this way, each step one mini-batch of every fold, and selects
each fold's best epoch on its own dev set. `to_models` gives K ordinary `KimCNN`s to save.

- Vocabulary: the folds share one index space (a vocabulary of all their training text). A word
  fold k never trained on is mapped to [UNK] in fold k's dev/test ids (`known_word_mask`,
  `map_unseen`), as a tokenizer trained on fold k alone would map it; its own embedding row gets
  no gradient in fold k and never moves.
- Unequal folds: a fold's smaller batch is padded with empty sentences of zero loss weight; a
  fold with fewer batches sits out a step with its weights and optimizer state put back after it.

tests/text/test_fold_batched.py checks logits, gradients, optimizer steps and whole training
runs against separate `KimCNN`s. This is for GPUs: on a CPU the work is compute-bound, and
oneDNN's per-width convolutions beat the batched GEMM (the project's CPU path is
textcnn/projection.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.batching import bucket_batches, random_batches
from textcnn.core.engine import autocast_precision, resolve_device, uses_autocast
from textcnn.core.errors import TextCNNError
from textcnn.core.optim import create_optimizer
from textcnn.core.regularization import max_norm_
from textcnn.model import KimCNN, KimCNNConfig

Examples = tuple[Sequence[Sequence[int]], Sequence[int]]  # (token ids of each sentence, class ids)
ConvImpl = Literal["bmm", "grouped"]
CONV_IMPLS: tuple[str, ...] = ("bmm", "grouped")

# Optimizers that are element-wise and whose state after a zero gradient equals their fresh state
# (needed when a fold sits out a step; see `_SitOut`). Adam's bias correction counts steps per
# parameter tensor, not per fold, so it is not among them.
FOLD_OPTIMIZERS: tuple[str, ...] = ("adadelta", "sgd", "momentum", "nesterov", "adagrad", "rmsprop")


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
    the pretrained variants. Only the ReLU activation is supported (see the module docstring).

    `conv` picks how the convolutions run, both for all folds and widths at once: "bmm" (im2col
    windows and one batched GEMM) or "grouped" (one `conv1d` with groups=K). The values are the
    same; which is faster depends on the device (scripts/bench_fold_batched.py times both).
    """

    def __init__(self, config: KimCNNConfig, folds: int, *, vectors: Tensor | None = None,
                 conv: ConvImpl = "bmm") -> None:
        super().__init__()
        if conv not in CONV_IMPLS:
            raise TextCNNError(f"conv: expected one of {', '.join(CONV_IMPLS)}, got '{conv}'")
        if config.act_layer != "relu":
            raise TextCNNError(f"FoldBatchedKimCNN: expected act_layer 'relu', got '{config.act_layer}'")
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


# -- vocabulary: one index space, per-fold known words ----------------------------------------------
def known_word_mask(train_ids: Sequence[Sequence[Sequence[int]]], vocab_size: int, *,
                    always: Sequence[int] = (0, 1)) -> Tensor:
    """[K, V] bool: True for the ids that occur in fold k's training sentences, and `always`
    ([PAD] and [UNK]). A vocabulary built on the whole corpus knows every word; this says which
    words a tokenizer trained on fold k's training text alone (min_frequency 1) would know."""
    known = np.zeros((len(train_ids), vocab_size), dtype=bool)
    for k, sentences in enumerate(train_ids):
        flat = np.fromiter((t for s in sentences for t in s), dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
            raise TextCNNError(f"fold {k}: expected token ids in 0..{vocab_size - 1}, got "
                               f"{int(flat.min())}..{int(flat.max())}")
        known[k, flat] = True
        known[k, list(always)] = True
    return torch.from_numpy(known)


def map_unseen(ids: Sequence[Sequence[int]], known: Tensor, unk_id: int) -> list[list[int]]:
    """Replace the ids `known` [V] marks as unseen by `unk_id` (one fold's dev or test sentences)."""
    table = known.cpu().numpy()
    return [[t if table[t] else unk_id for t in sentence] for sentence in ids]


# -- the training loop ------------------------------------------------------------------------------
@dataclass
class FoldFitConfig:
    """How `fit_folds` trains; defaults follow Kim (2014) and `TrainConfig`."""

    epochs: int = 25  # passes over every fold's training data
    batch_size: int = 50  # sentences per fold per step
    optimizer: str = "adadelta"  # one of FOLD_OPTIMIZERS
    lr: float | None = None  # None keeps the optimizer's default (Adadelta: 1.0, rho 0.95, eps 1e-6)
    seed: int = 0  # seeds the initial weights, dropout and the batch order
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on CPU
    bucket: bool = True  # length bucketing, with the folds' batches aligned by length
    eval_batch_size: int = 250  # sentences per fold per dev step (K times this many in memory)
    unk_id: int | None = 1  # dev words unseen in a fold's training ids become this; None: no mapping
    conv: str = "bmm"  # bmm or grouped: how FoldBatchedKimCNN runs the convolutions


@dataclass
class FoldsFitResult:
    """What `fit_folds` produced, fold by fold."""

    models: list[KimCNN]  # one per fold, on the CPU, holding its best epoch's weights
    best_epochs: list[int]  # 1-based best epoch of each fold on its dev set (the last without dev)
    dev_accuracy: list[float | None]  # each fold's dev accuracy at its best epoch
    known: Tensor  # [K, V] bool: the words each fold trained on, plus [PAD]/[UNK] (see map_unseen)
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: losses, accuracies, time


class _Packed:
    """Every fold's sentences in one padded id matrix on the device, plus one filler row.

    A batch is a [K, B] matrix of row numbers; the filler row (all [PAD], label 0) fills the slots
    of a fold whose batch is smaller, and gets zero weight in the loss and the accuracy.
    """

    def __init__(self, folds: Sequence[Examples], pad_id: int, device: torch.device,
                 id_maps: Sequence[np.ndarray] | None = None) -> None:
        self.lengths = [np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
                        for ids, _ in folds]
        self.offsets = np.cumsum([0] + [len(ids) for ids, _ in folds])
        self.filler = int(self.offsets[-1])
        width = max([1, *(int(n.max()) for n in self.lengths if n.size)])
        matrix = np.full((self.filler + 1, width), pad_id, dtype=np.int64)
        labels = np.zeros(self.filler + 1, dtype=np.int64)
        for k, (ids, y) in enumerate(folds):
            start = self.offsets[k]
            for row, sentence in enumerate(ids):
                matrix[start + row, : len(sentence)] = sentence
            if id_maps is not None:
                block = matrix[start : self.offsets[k + 1]]
                block[:] = id_maps[k][block]
            labels[start : self.offsets[k + 1]] = np.asarray(y, dtype=np.int64)
        self.ids = torch.from_numpy(matrix).to(device)
        self.labels = torch.from_numpy(labels).to(device)

    def plan(self, steps: Sequence[Sequence[np.ndarray | None]]) -> tuple[Tensor, list[int], np.ndarray]:
        """Batches -> ([S, K, B] rows on the device, per-step width, [S, K, B] host validity)."""
        n_steps, k = len(steps), len(self.lengths)
        size = max([1, *(len(idx) for step in steps for idx in step if idx is not None)])
        rows = np.full((n_steps, k, size), self.filler, dtype=np.int64)
        widths = []
        for s, step in enumerate(steps):
            width = 1
            for f, idx in enumerate(step):
                if idx is not None and len(idx):
                    rows[s, f, : len(idx)] = self.offsets[f] + idx
                    width = max(width, int(self.lengths[f][idx].max()))
            widths.append(width)
        return torch.from_numpy(rows).to(self.ids.device), widths, rows != self.filler

    def batch(self, rows: Tensor, width: int) -> tuple[Tensor, Tensor]:
        """[K, B] rows -> ([K, B, width] ids, [K, B] labels)."""
        return self.ids[:, :width][rows], self.labels[rows]


def _seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from (seed, epoch[, fold]), distinct for every tuple."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def fold_epoch_plan(lengths: Sequence[Sequence[int]], batch_size: int, *, seed: int, epoch: int,
                    bucket: bool = True) -> list[list[np.ndarray | None]]:
    """Per step, per fold, the indices of that fold's mini-batch; None where the fold sits out.

    Each fold's batches come from `bucket_batches` (or `random_batches`) with its own generator,
    so each fold sees every sentence once per epoch in a random order. With `bucket`, the folds'
    batches are also aligned by length: each fold's batches are ranked by their longest sentence
    and one shared random permutation of ranks orders all folds, so a step's K batches have similar
    lengths and little padding, while each fold's own order stays uniformly random. A fold with
    fewer batches than the others sits out the steps whose rank it lacks.
    """
    per_fold = []
    for k, lens in enumerate(lengths):
        gen = torch.Generator().manual_seed(_seed(seed, epoch, k))
        batches = (bucket_batches(lens, batch_size, generator=gen) if bucket
                   else random_batches(len(lens), batch_size, generator=gen))
        if bucket:
            lens_arr = np.asarray(lens)
            batches = sorted(batches, key=lambda idx: int(lens_arr[idx].max()))
        per_fold.append(batches)
    n_steps = max(len(b) for b in per_fold)
    if not bucket:
        return [[b[s] if s < len(b) else None for b in per_fold] for s in range(n_steps)]
    order = torch.randperm(n_steps, generator=torch.Generator().manual_seed(_seed(seed, epoch)))
    return [[b[r] if r < len(b) else None for b in per_fold] for r in order.tolist()]


def _eval_plan(lengths: Sequence[np.ndarray], batch_size: int) -> list[list[np.ndarray | None]]:
    """Dev batches in length order per fold (little padding), step i holding each fold's i-th."""
    per_fold = [[order[i : i + batch_size] for i in range(0, len(order), batch_size)]
                for order in (np.argsort(n, kind="stable") for n in lengths)]
    n_steps = max(len(b) for b in per_fold)
    return [[b[s] if s < len(b) else None for b in per_fold] for s in range(n_steps)]


class _SitOut:
    """Keeps the folds that sit out a step exactly as they were.

    A zero gradient does not leave Adadelta alone: its running averages still shrink by rho. So
    the parameters and optimizer state of the idle folds are saved before the step and put back
    after it (and after max-norm). Only a fold with fewer batches than the others ever sits out,
    at most a step or two per epoch, so the copies cost nothing worth measuring.
    """

    def __init__(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                 idle: list[int]) -> None:
        self.index = torch.tensor(idle, device=params[0].device)
        self.saved: list[tuple[Tensor, Tensor]] = []
        for p in params:
            tensors = [p.data] + [v for v in optimizer.state.get(p, {}).values()
                                  if isinstance(v, Tensor) and v.shape == p.shape]
            self.saved.extend((t, t.index_select(0, self.index)) for t in tensors)

    def restore(self) -> None:
        for tensor, copy in self.saved:
            tensor.index_copy_(0, self.index, copy)


def _check_folds(name: str, folds: Sequence[Examples], k: int, config: KimCNNConfig) -> None:
    if len(folds) != k:
        raise TextCNNError(f"{name}: expected {k} folds, got {len(folds)}")
    for f, (ids, labels) in enumerate(folds):
        if len(ids) != len(labels):
            raise TextCNNError(f"{name}[{f}]: expected as many labels as sentences, got "
                               f"{len(labels)} labels for {len(ids)} sentences")
        if not len(ids):
            raise TextCNNError(f"{name}[{f}]: expected at least one sentence, got none")
        y = np.asarray(labels)
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= config.num_classes:
            raise TextCNNError(f"{name}[{f}]: expected class ids in 0..{config.num_classes - 1}, "
                               f"got {y.dtype} {y.min()}..{y.max()}")


def fit_folds(
    model_config: KimCNNConfig,
    train: Sequence[Examples],
    dev: Sequence[Examples] | None = None,
    config: FoldFitConfig | None = None,
    *,
    vectors: Tensor | None = None,
    models: Sequence[KimCNN] | None = None,
) -> FoldsFitResult:
    """Train the K = len(train) folds of a cross-validation run as one `FoldBatchedKimCNN`.

    `train[k]` and `dev[k]` are fold k's (token ids, class ids), all in one vocabulary index
    space of `model_config.vocab_size` ids. Dev words that do not occur in fold k's training ids
    are mapped to `config.unk_id` for fold k (`known_word_mask`, `map_unseen`), as a tokenizer
    trained on the fold's text alone would; training ids need no mapping, every word in them is
    known. `result.known` does the same for test sets.

    Each step takes one mini-batch from every fold (`fold_epoch_plan`); a fold's smaller batch
    is padded with empty sentences of zero loss weight, and a fold with fewer batches sits out
    the steps it has none for (its weights and optimizer state untouched, see `_SitOut`). The loss
    is the sum of the folds' mean cross-entropies, so each fold's gradient is its own; then one
    optimizer step (element-wise: K separate optimizers) and max-norm per fold. Every epoch each
    fold's dev accuracy is measured and its best epoch's weights kept (strictly better wins;
    without dev data the last epoch). `models` (K `KimCNN`s) sets the initial weights; otherwise
    they are drawn with `config.seed`; `vectors` as in `FoldBatchedKimCNN`.
    """
    cfg = config or FoldFitConfig()
    k = len(train)
    if k < 1:
        raise TextCNNError("fit_folds: expected at least one fold of training data, got none")
    if cfg.optimizer not in FOLD_OPTIMIZERS:
        raise TextCNNError(f"fit_folds: expected an optimizer in {', '.join(FOLD_OPTIMIZERS)}, "
                           f"got '{cfg.optimizer}'")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise TextCNNError(f"fit_folds: expected epochs, batch_size and eval_batch_size >= 1, got "
                           f"{cfg.epochs}, {cfg.batch_size}, {cfg.eval_batch_size}")
    _check_folds("train", train, k, model_config)
    if dev is not None:
        _check_folds("dev", dev, k, model_config)
    if models is not None and len(models) != k:
        raise TextCNNError(f"fit_folds: expected {k} initial models, got {len(models)}")

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (FoldBatchedKimCNN.from_models(models, conv=cfg.conv) if models is not None
             else FoldBatchedKimCNN(model_config, k, vectors=vectors, conv=cfg.conv)).to(device)
    config_ = model.config
    always = [config_.pad_id] + ([cfg.unk_id] if cfg.unk_id is not None else [])
    known = known_word_mask([ids for ids, _ in train], config_.vocab_size, always=always)
    train_data = _Packed(train, config_.pad_id, device)
    dev_data = None
    if dev is not None:
        id_maps = None
        if cfg.unk_id is not None:
            identity = np.arange(config_.vocab_size)
            id_maps = [np.where(known[f].numpy(), identity, cfg.unk_id) for f in range(k)]
        for f, (ids, _) in enumerate(dev):
            top = max((max(s) for s in ids if len(s)), default=0)
            if top >= config_.vocab_size:
                raise TextCNNError(f"dev[{f}]: expected token ids below {config_.vocab_size}, got {top}")
        dev_data = _Packed(dev, config_.pad_id, device, id_maps)
    dev_plan = dev_data.plan(_eval_plan(dev_data.lengths, cfg.eval_batch_size)) if dev_data else None

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = create_optimizer(cfg.optimizer, params, lr=cfg.lr)
    use_amp = uses_autocast(cfg.amp, device)
    best = {name: p.detach().clone() for name, p in model.named_parameters()}
    best_acc: list[float | None] = [None] * k
    best_epochs = [0] * k
    history: list[dict[str, Any]] = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)

    for epoch in range(1, cfg.epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        steps = fold_epoch_plan(train_data.lengths, cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                bucket=cfg.bucket)
        rows, widths, valid = train_data.plan(steps)
        # per-row loss weights: 1/|batch| on a fold's real rows, so each fold's term is its mean
        counts = valid.sum(axis=2, keepdims=True)
        scale = torch.from_numpy((valid / np.maximum(counts, 1)).astype(np.float32)).to(device)
        total = torch.zeros(k, device=device)
        model.train()
        for s in range(len(steps)):
            ids, labels = train_data.batch(rows[s], widths[s])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = model(ids)
            losses = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                     reduction="none").view_as(labels)
            per_fold = (losses * scale[s]).sum(dim=1)
            idle = [f for f in range(k) if counts[s, f, 0] == 0]
            sit_out = _SitOut(params, optimizer, idle) if idle else None
            optimizer.zero_grad(set_to_none=True)
            per_fold.sum().backward()
            optimizer.step()
            model.apply_max_norm()
            if sit_out is not None:
                sit_out.restore()
            total += per_fold.detach()
        mean_loss = (total / torch.from_numpy(np.maximum((counts[:, :, 0] > 0).sum(0), 1))
                     .to(device)).tolist()  # syncs the device
        train_seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch, "train_loss": mean_loss,
                                  "train_seconds": round(train_seconds, 4),
                                  "train_sentences": int(valid.sum())}
        if not all(math.isfinite(v) for v in mean_loss):
            raise FloatingPointError(f"epoch {epoch}: a fold's training loss became {mean_loss}")

        if dev_data is not None:
            t1 = time.perf_counter()
            accuracy = _dev_accuracy(model, dev_data, dev_plan, use_amp)
            record.update(dev_accuracy=accuracy, eval_seconds=round(time.perf_counter() - t1, 4))
            improved = [f for f in range(k) if best_acc[f] is None or accuracy[f] > best_acc[f]]
        else:
            accuracy, improved = [None] * k, list(range(k))
        if improved:
            index = torch.tensor(improved, device=device)
            for name, p in model.named_parameters():
                best[name].index_copy_(0, index, p.detach().index_select(0, index))
            for f in improved:
                best_acc[f], best_epochs[f] = accuracy[f], epoch
        history.append(record)

    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(best[name])
    return FoldsFitResult(models=[m.eval() for m in model.to_models()], best_epochs=best_epochs,
                          dev_accuracy=best_acc, known=known, history=history)


@torch.no_grad()
def _dev_accuracy(model: FoldBatchedKimCNN, data: _Packed,
                  plan: tuple[Tensor, list[int], np.ndarray], use_amp: bool) -> list[float]:
    """Each fold's accuracy on its own dev sentences (one host sync at the end)."""
    rows, widths, valid = plan
    model.eval()
    correct = torch.zeros(len(data.lengths), device=rows.device)
    mask = torch.from_numpy(valid).to(rows.device)
    for s in range(len(widths)):
        ids, labels = data.batch(rows[s], widths[s])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            logits = model(ids)
        correct += ((logits.argmax(dim=-1) == labels) & mask[s]).sum(dim=1)
    model.train()
    sizes = torch.tensor([len(n) for n in data.lengths], device=rows.device)
    return (correct / sizes).tolist()


# -- folds of classifiers ---------------------------------------------------------------------------
FoldTexts = tuple[Sequence[str], Sequence[Any], Sequence[str] | None, Sequence[Any] | None]
"""One fold for `fit_fold_classifiers`: (train texts, train labels, dev texts or None, dev labels)."""


# The estimator settings `fit_folds` has no equivalent for: each must keep its default.
UNSUPPORTED_PARAMS = ("patience", "class_weight", "label_smoothing", "multi_label", "weight_decay", "l1",
                      "l2", "grad_clip", "lr_schedule", "warmup_steps", "metric", "mode", "max_seconds",
                      "cuda_graphs")


def _check_fold_params(clf: Any) -> None:
    """The estimator settings `fit_folds` has no equivalent for, as one clear error."""
    defaults = type(clf)().get_params()
    for name in UNSUPPORTED_PARAMS:
        if getattr(clf, name) != defaults[name]:
            raise TextCNNError(f"fold-batched training: expected {name}={defaults[name]!r} (not supported "
                               f"when the folds train as one model), got {getattr(clf, name)!r}")
    if clf.optimizer not in FOLD_OPTIMIZERS:
        raise TextCNNError(f"fold-batched training: expected an optimizer in "
                           f"{', '.join(FOLD_OPTIMIZERS)}, got '{clf.optimizer}'")


@torch.no_grad()
def shrink_vocab(model: KimCNN, vocab_size: int) -> KimCNN:
    """A copy of `model` whose embedding tables keep their first `vocab_size` rows only.

    `fit_fold_classifiers` trains each fold in its own tokenizer's id space, padded to the largest
    fold vocabulary; the rows past a fold's vocabulary are never looked up, so dropping them
    leaves every logit the same."""
    config = replace(model.config, vocab_size=vocab_size, sparse=False)
    with torch.random.fork_rng(devices=[]):
        small = KimCNN(config, vectors=torch.zeros(vocab_size, config.embedding_dim))
    state = model.state_dict()
    for name, emb in small.named_modules():
        if isinstance(emb, nn.Embedding):
            state[f"{name}.weight"] = state[f"{name}.weight"][:vocab_size]
    small.load_state_dict(state)
    return small.train(model.training)


def fit_fold_classifiers(params: dict[str, Any], folds: Sequence[FoldTexts]) -> list[Any]:
    """K `TextCNNClassifier(**params)`, fold k fitted on `folds[k]`, all trained as one model.

    Each fold gets what `TextCNNClassifier.fit` would give it before training
    (`TextCNNClassifier.prepare_fit`: its own labels, dev split, tokenizer trained on its own text
    and vectors, e.g. in-domain word2vec), and the initial weights `fit` would draw
    (`torch.manual_seed(seed)`). The folds then train together with `fit_folds`, each in its own
    tokenizer's id space (tables padded to the largest vocabulary), and each classifier adopts
    its fold's best-epoch weights (`adopt_fitted`), with its `fit_result_` (best epoch, dev
    metrics of the returned model, per-epoch history) and `fit_result_.seconds` = the shared
    training time / K. Early stopping (`patience`), class weights, label smoothing, multi-label,
    penalties and weight decay, gradient clipping, learning rate schedules, a selection metric
    other than accuracy, a time budget and CUDA graphs are not supported here (`UNSUPPORTED_PARAMS`
    must keep their defaults) and raise an error; so does an optimizer outside FOLD_OPTIMIZERS.
    supported here and raise an error.
    """
    from textcnn.core.engine import FitResult
    from textcnn.estimator import FitData, TextCNNClassifier

    if not folds:
        raise TextCNNError("fit_fold_classifiers: expected at least one fold, got none")

    def prepare(fold: FoldTexts) -> tuple[TextCNNClassifier, FitData]:
        clf = TextCNNClassifier(**params)
        _check_fold_params(clf)
        texts, labels, dev_texts, dev_labels = fold
        return clf, clf.prepare_fit(texts, labels, X_dev=dev_texts, y_dev=dev_labels)

    # Each fold's tokenizer and vectors (in-domain word2vec: seconds per fold) are independent;
    # gensim and tokenizers release the GIL, so threads prepare the folds side by side.
    with ThreadPoolExecutor(max_workers=min(len(folds), os.cpu_count() or 1)) as pool:
        prepared = list(pool.map(prepare, folds))
    clfs = [clf for clf, _ in prepared]
    train = [(data.train_ids, data.train_targets.tolist()) for _, data in prepared]
    dev = [(clf.tokenizer_.encode_batch(data.dev_texts), data.dev_targets.tolist())
           if data.dev_targets is not None else None for clf, data in prepared]
    first = clfs[0]
    classes = [len(c.classes_) for c in clfs]
    if len(set(classes)) > 1:
        raise TextCNNError(f"fold-batched training: expected every fold to have the same classes, got "
                           f"{classes} classes")
    if len({d is None for d in dev}) > 1:
        raise TextCNNError("fold-batched training: expected dev data for every fold or for none")
    sizes = [c.tokenizer_.vocab_size for c in clfs]
    pads = {c.tokenizer_.pad_id for c in clfs}
    if len(pads) > 1:
        raise TextCNNError(f"fold-batched training: expected one [PAD] id in every fold, got {sorted(pads)}")
    vocab = max(sizes)
    config = replace(first.model_config(prepared[0][1]), vocab_size=vocab)
    start_models = []
    for _, data in prepared:
        padded = None
        if data.vectors is not None:
            padded = torch.zeros(vocab, config.embedding_dim)
            padded[: len(data.vectors)] = data.vectors
        torch.manual_seed(first.seed)  # as `fit` seeds each fold's initial weights
        start_models.append(KimCNN(config, vectors=padded))
    fit = FoldFitConfig(epochs=first.epochs, batch_size=first.batch_size, optimizer=first.optimizer,
                        lr=first.lr, seed=first.seed, device=first.device, amp=first.amp, bucket=first.fast,
                        unk_id=None)  # each fold's own tokenizer already maps its unseen words
    if first.threads:
        torch.set_num_threads(first.threads)
    result = fit_folds(config, train, None if dev[0] is None else dev, fit, models=start_models)
    seconds = sum(r["train_seconds"] for r in result.history) / len(folds)
    precision = autocast_precision(first.amp, resolve_device(first.device))
    for k, ((clf, data), size) in enumerate(zip(prepared, sizes)):
        history = [{"epoch": r["epoch"], "train_loss": r["train_loss"][k],
                    **({"dev_accuracy": r["dev_accuracy"][k]} if "dev_accuracy" in r else {}),
                    "train_seconds": r["train_seconds"] / len(folds)} for r in result.history]
        fitted = FitResult(best_epoch=result.best_epochs[k], best_metrics={}, epochs_run=len(result.history),
                           seconds=seconds, history=history)
        clf.adopt_fitted(shrink_vocab(result.models[k], size), data, fit_result=fitted, precision=precision)
    return clfs

__all__ = [
    "FOLD_OPTIMIZERS",
    "FoldBatchedKimCNN",
    "FoldFitConfig",
    "FoldsFitResult",
    "UNSUPPORTED_PARAMS",
    "fit_fold_classifiers",
    "fit_folds",
    "fold_epoch_plan",
    "fold_max_norm_",
    "known_word_mask",
    "map_unseen",
    "shrink_vocab",
]
