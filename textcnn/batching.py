"""Turning token-id sequences into padded mini-batches.

Batches are padded to their own longest text, not the corpus's. For training, texts of similar
length are grouped (length bucketing) so little time goes into padding; the groups and their
order are still random for each epoch, and a budget of padded tokens (`train.max_batch_tokens`)
bounds each batch, so a batch of long documents holds fewer of them. For inference,
`token_budget_batches` bounds each batch's padded size, so one very long text cannot make a batch
of many texts as wide as itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch


def pad_batch(seqs: Sequence[Sequence[int]], *, pad_id: int = 0, min_length: int = 1,
              multiple_of: int = 1) -> torch.Tensor:
    """Right-pad id sequences into a [N, max(len, min_length)] LongTensor, its width rounded up to
    a multiple of `multiple_of` (fewer distinct shapes, e.g. one CUDA graph per shape)."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    width = max(min_length, int(lengths.max(initial=0)))
    width += -width % multiple_of
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    if lengths.sum() < 64 * len(seqs):
        # short texts: every id in one copy into the positions left of each row's length (a
        # slice assignment per row costs more than a sentence's ids)
        out[np.arange(width) < lengths[:, None]] = np.array(list(chain.from_iterable(seqs)), dtype=np.int64)
    else:
        for row, seq in enumerate(seqs):
            out[row, : len(seq)] = seq
    return torch.from_numpy(out)


def bucket_batches(lengths: Sequence[int], batch_size: int, *, generator: torch.Generator,
                   bucket_factor: int = 50, max_tokens: int | None = None) -> list[np.ndarray]:
    """Shuffled mini-batches of indices, each drawn from texts of similar length.

    The indices are shuffled, cut into pools of `batch_size * bucket_factor`, each pool sorted by
    length and cut into batches (`cut_batches`: at most `batch_size` texts and, with
    `max_tokens`, at most that many padded tokens); the batch order is shuffled again. Every
    index appears once.
    """
    lengths = np.asarray(lengths)
    order = torch.randperm(len(lengths), generator=generator).numpy()
    pool = batch_size * max(1, bucket_factor)
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(cut_batches(chunk, lengths, batch_size=batch_size, max_tokens=max_tokens))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def random_batches(n: int, batch_size: int, *, generator: torch.Generator,
                   lengths: Sequence[int] | None = None, max_tokens: int | None = None) -> list[np.ndarray]:
    """Plain shuffled mini-batches of indices (no grouping by length); with `max_tokens`, a batch
    also ends before its padded size (count x longest of `lengths`) would pass it."""
    order = torch.randperm(n, generator=generator).numpy()
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return cut_batches(order, np.asarray(lengths), batch_size=batch_size, max_tokens=max_tokens)


def cut_batches(order: np.ndarray, lengths: np.ndarray, *, batch_size: int,
                max_tokens: int | None) -> list[np.ndarray]:
    """`order` cut, in its order, into batches of at most `batch_size` indices whose padded size
    (count x longest length, a length counting at least 1 as `pad_batch` pads) stays within
    `max_tokens` (None: no token bound). A text longer than `max_tokens` is a batch of its own."""
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    widths = np.maximum(lengths[order], 1)
    batches, start, longest = [], 0, 0
    for i, width in enumerate(widths.tolist()):
        count = i - start
        wider = max(longest, width)
        if count and (count >= batch_size or (count + 1) * wider > max_tokens):
            batches.append(order[start:i])
            start, wider = i, width
        longest = wider
    if start < len(order):
        batches.append(order[start:])
    return batches


def token_budget_batches(lengths: Sequence[int], *, max_tokens: int, max_count: int) -> list[np.ndarray]:
    """Batches of indices in length order whose padded size (count x longest length, a length
    counting at least 1 as `pad_batch` pads) stays within `max_tokens`, with at most `max_count`
    indices each. A text longer than `max_tokens` is a batch of its own. Every index appears once,
    shorter texts first; the caller puts results back in input order."""
    if max_tokens < 1 or max_count < 1:
        raise ValueError(f"token_budget_batches: expected max_tokens and max_count >= 1, "
                         f"got {max_tokens} and {max_count}")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    return cut_batches(np.argsort(np.maximum(lengths, 1), kind="stable"), lengths, batch_size=max_count,
                       max_tokens=max_tokens)
