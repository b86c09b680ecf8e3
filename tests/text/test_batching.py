"""Inference batches bounded by a token budget, against a brute-force greedy reference."""

import numpy as np
import pytest

from textcnn.batching import token_budget_batches


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
