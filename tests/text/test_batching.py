"""Batches bounded by a token budget (inference, and training with train.max_batch_tokens),
against brute-force greedy references."""

import itertools

import numpy as np
import pytest
import torch

from textcnn.batching import bucket_batches, pad_batch, random_batches, token_budget_batches


def greedy_reference(lengths, max_tokens, max_count):
    """Walk the texts narrowest first (a padded width is at least 1; ties in input order) and close
    a batch when the next text would break a bound: count x widest over max_tokens, or max_count."""
    order = sorted(range(len(lengths)), key=lambda i: (max(1, lengths[i]), i))
    batches, current = [], []
    for i in order:
        widest = max(1, lengths[i])
        if current and ((len(current) + 1) * widest > max_tokens or len(current) + 1 > max_count):
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


@pytest.mark.parametrize("seed", range(5))
def test_batches_follow_the_greedy_reference_and_respect_the_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = [*rng.integers(0, 40, 300).tolist(), 100_000, 0, 0, 250]
    rng.shuffle(lengths)
    max_tokens, max_count = 200, 16
    batches = token_budget_batches(lengths, max_tokens=max_tokens, max_count=max_count)
    assert [b.tolist() for b in batches] == greedy_reference(lengths, max_tokens, max_count)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        padded = len(b) * max(1, max(lengths[i] for i in b))
        assert len(b) <= max_count
        assert padded <= max_tokens or len(b) == 1  # a longer text is a batch of its own
    huge = [b for b in batches if any(lengths[i] > max_tokens for i in b)]
    assert huge and all(len(b) == 1 for b in huge)


def test_the_count_cap_alone_and_bad_bounds():
    batches = token_budget_batches([3] * 10, max_tokens=10**9, max_count=4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert token_budget_batches([], max_tokens=10, max_count=10) == []
    with pytest.raises(ValueError, match="max_tokens"):
        token_budget_batches([1], max_tokens=0, max_count=1)


def cut_reference(order, lengths, batch_size, max_tokens):
    """Walk `order`; close a batch when the next text would break a bound: batch_size texts, or
    (count + 1) x the widest so far over max_tokens."""
    batches, current = [], []
    for i in order:
        if current and (len(current) == batch_size or
                        (len(current) + 1) * max(max(1, lengths[j]) for j in [*current, i]) > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


@pytest.mark.parametrize("seed", range(4))
def test_training_batches_keep_the_token_budget_and_bucket_by_length(seed):
    rng = np.random.default_rng(seed)
    lengths = [*rng.integers(1, 300, 500).tolist(), 5000, 0]
    budget, size = 1000, 50
    batches = bucket_batches(lengths, size, generator=torch.Generator().manual_seed(seed), bucket_factor=4,
                             max_tokens=budget)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= size
        assert len(b) * max(1, max(lengths[i] for i in b)) <= budget or len(b) == 1
    # within a pool the texts come sorted by length, so each batch is a run of similar lengths
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches if len(b) > 1])
    assert spread < 60
    plain = random_batches(len(lengths), size, generator=torch.Generator().manual_seed(seed),
                           lengths=lengths, max_tokens=budget)
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    assert [b.tolist() for b in plain] == cut_reference(order, lengths, size, budget)
    # without a budget: batch_size alone, as before
    assert [len(b) for b in random_batches(120, 50, generator=torch.Generator())] == [50, 50, 20]


def test_pad_batch_equals_a_row_by_row_copy():
    """Ragged lists, arrays and empty texts, short (one copy of all ids) and long (a copy per
    row), against padding each row on its own."""
    rng = np.random.default_rng(0)
    short = [rng.integers(1, 100, size=rng.integers(0, 12)).tolist() for _ in range(40)] + [[], np.array([5, 6])]
    long = [rng.integers(1, 100, size=rng.integers(60, 200)).tolist() for _ in range(10)] + [[], np.array([5, 6])]
    for seqs, (min_length, multiple_of) in itertools.product((short, long), ((1, 1), (20, 1), (1, 8))):
        width = max(min_length, max(len(s) for s in seqs))
        width += -width % multiple_of
        expected = np.full((len(seqs), width), 7, dtype=np.int64)
        for row, seq in enumerate(seqs):
            expected[row, :len(seq)] = seq
        got = pad_batch(seqs, pad_id=7, min_length=min_length, multiple_of=multiple_of)
        assert got.dtype == torch.int64
        np.testing.assert_array_equal(got.numpy(), expected)
    assert pad_batch([], pad_id=0).shape == (0, 1)
