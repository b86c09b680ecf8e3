"""`fit_folds`: the training loop of K folds as one `FoldBatchedKimCNN`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.engine import resolve_device, uses_autocast
from textcnn.core.errors import TextCNNError
from textcnn.core.optim import create_optimizer
from textcnn.fold_batched.model import FoldBatchedKimCNN
from textcnn.fold_batched.plan import (
    Examples,
    PackedFolds,
    eval_plan,
    fold_epoch_plan,
    known_word_mask,
)
from textcnn.model import KimCNN, KimCNNConfig

# Optimizers that are element-wise and whose state after a zero gradient equals their fresh state
# (needed when a fold sits out a step; see `_SitOut`). Adam's bias correction counts steps per
# parameter tensor, not per fold, so it is not among them.
FOLD_OPTIMIZERS: tuple[str, ...] = ("adadelta", "sgd", "momentum", "nesterov", "adagrad", "rmsprop")


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
    train_data = PackedFolds(train, config_.pad_id, device)
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
        dev_data = PackedFolds(dev, config_.pad_id, device, id_maps)
    dev_plan = dev_data.plan(eval_plan(dev_data.lengths, cfg.eval_batch_size)) if dev_data else None

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
def _dev_accuracy(model: FoldBatchedKimCNN, data: PackedFolds,
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
