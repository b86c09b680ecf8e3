"""Turning token-id sequences into padded mini-batches.

Batches are padded to their own longest sentence, not the corpus's. For training, sentences of
similar length are grouped (length bucketing) so little time goes into padding; the groups and
their order are still random for each epoch. For inference, `token_budget_batches` bounds each
batch's padded size, so one very long text cannot make a batch of many texts as wide as itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def pad_batch(seqs: Sequence[Sequence[int]], *, pad_id: int = 0, min_length: int = 1,
              multiple_of: int = 1) -> torch.Tensor:
    """Right-pad id sequences into a [N, max(len, min_length)] LongTensor, its width rounded up to
    a multiple of `multiple_of` (fewer distinct shapes, e.g. one CUDA graph per shape)."""
    width = max([min_length, *(len(s) for s in seqs)])
    width += -width % multiple_of
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = seq
    return torch.from_numpy(out)


def bucket_batches(lengths: Sequence[int], batch_size: int, *, generator: torch.Generator,
                   bucket_factor: int = 50) -> list[np.ndarray]:
    """Shuffled mini-batches of indices, each drawn from sentences of similar length.

    The indices are shuffled, cut into pools of `batch_size * bucket_factor`, each pool sorted by
    length and cut into batches; the batch order is shuffled again. Every index appears once.
    """
    lengths = np.asarray(lengths)
    order = torch.randperm(len(lengths), generator=generator).numpy()
    pool = batch_size * max(1, bucket_factor)
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def random_batches(n: int, batch_size: int, *, generator: torch.Generator) -> list[np.ndarray]:
    """Plain shuffled mini-batches of indices (no grouping by length)."""
    order = torch.randperm(n, generator=generator).numpy()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def token_budget_batches(lengths: Sequence[int], *, max_tokens: int, max_count: int) -> list[np.ndarray]:
    """Batches of indices in length order whose padded size (count x longest length, a length
    counting at least 1 as `pad_batch` pads) stays within `max_tokens`, with at most `max_count`
    indices each. A text longer than `max_tokens` is a batch of its own. Every index appears once,
    shorter texts first; the caller puts results back in input order."""
    if max_tokens < 1 or max_count < 1:
        raise ValueError(f"token_budget_batches: expected max_tokens and max_count >= 1, "
                         f"got {max_tokens} and {max_count}")
    widths = np.maximum(np.asarray(lengths, dtype=np.int64).reshape(-1), 1)
    order = np.argsort(widths, kind="stable")
    ascending = widths[order]
    batches = []
    start = 0
    while start < len(order):
        window = ascending[start : start + max_count]
        # the widths ascend, so count x width grows with the count and the texts that fit form a prefix
        fits = int(np.count_nonzero(np.arange(1, len(window) + 1) * window <= max_tokens))
        take = max(fits, 1)
        batches.append(order[start : start + take])
        start += take
    return batches
