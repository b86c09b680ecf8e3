"""What each step of fold-batched training works on: the words each fold knows in the shared
index space, the mini-batches of every fold per step, and every fold's sentences packed on the
device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from textcnn.batching import bucket_batches, random_batches
from textcnn.core.errors import TextCNNError

Examples = tuple[Sequence[Sequence[int]], Sequence[int]]  # (token ids of each sentence, class ids)


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


# -- the steps of an epoch, and the folds packed on the device --------------------------------------
class PackedFolds:
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


def eval_plan(lengths: Sequence[np.ndarray], batch_size: int) -> list[list[np.ndarray | None]]:
    """Dev batches in length order per fold (little padding), step i holding each fold's i-th."""
    per_fold = [[order[i : i + batch_size] for i in range(0, len(order), batch_size)]
                for order in (np.argsort(n, kind="stable") for n in lengths)]
    n_steps = max(len(b) for b in per_fold)
    return [[b[s] if s < len(b) else None for b in per_fold] for s in range(n_steps)]
