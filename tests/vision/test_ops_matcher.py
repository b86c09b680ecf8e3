"""Matcher and sampler against element-by-element Python versions."""

from __future__ import annotations

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import BalancedPositiveNegativeSampler, Matcher


def brute_match(q: list[list[float]], high: float, low: float, low_quality: bool) -> list[int]:
    num_gt, num_pred = len(q), len(q[0])
    out = []
    best_of = []
    for p in range(num_pred):
        column = [q[g][p] for g in range(num_gt)]
        best = max(column)
        best_of.append(column.index(best))  # first index among ties
        out.append(best_of[-1] if best >= high else (-2 if best >= low else -1))
    if low_quality:
        for g in range(num_gt):
            top = max(q[g])
            for p in range(num_pred):
                if top > 0 and q[g][p] == top:
                    out[p] = best_of[p]
    return out


def quality(num_gt: int, num_pred: int, seed: int) -> torch.Tensor:
    # quantized so that ties, within a column and within a row, happen often
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 10, (num_gt, num_pred), generator=g).float() / 10
    return q * (torch.rand(num_gt, num_pred, generator=g) < 0.7)


@pytest.mark.parametrize("low_quality", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_matcher_matches_brute_force(low_quality: bool, seed: int) -> None:
    q = quality(5, 30, seed)
    q[4] = torch.where(q[4] > 0.3, 0.0, q[4])  # one ground truth that only overlaps weakly
    # thresholds off the 0.1 grid: at 0.7 itself float32 and float64 disagree on >=
    got = Matcher(0.65, 0.35, allow_low_quality_matches=low_quality)(q)
    assert got.dtype == torch.long
    assert got.tolist() == brute_match(q.tolist(), 0.65, 0.35, low_quality)


def test_low_quality_matches_cover_every_gt_with_overlap() -> None:
    q = torch.tensor([[0.1, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0], [0.9, 0.0, 0.0, 0.4]])
    assert Matcher(0.5, 0.3)(q).tolist() == [2, -1, -1, -2]
    got = Matcher(0.5, 0.3, allow_low_quality_matches=True)(q)
    assert got.tolist() == [2, 0, 0, -2]  # ties for gt 0 both match; gt 1 adds nothing


def test_matcher_empty_inputs_and_bad_thresholds() -> None:
    assert Matcher(0.7, 0.3)(torch.zeros(0, 4)).tolist() == [-1] * 4
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(torch.zeros(3, 0)).numel() == 0
    with pytest.raises(TextCNNError, match="low_threshold"):
        Matcher(0.3, 0.7)


@pytest.mark.parametrize(("batch", "fraction"), [(16, 0.25), (8, 0.5), (64, 0.5), (10, 1.0)])
def test_sampler_counts_and_allowed_sets(batch: int, fraction: float) -> None:
    g = torch.Generator().manual_seed(0)
    labels = [torch.randint(-1, 3, (40,), generator=g), torch.tensor([0, 0, 1, -1, 0]),
              torch.full((6,), -1)]
    pos, neg = BalancedPositiveNegativeSampler(batch, fraction)(
        labels, generator=torch.Generator().manual_seed(1))
    for lab, p, n in zip(labels, pos, neg):
        num_positive = sum(1 for v in lab.tolist() if v >= 1)
        num_negative = sum(1 for v in lab.tolist() if v == 0)
        want_pos = min(int(batch * fraction), num_positive)
        assert p.dtype == torch.bool and p.shape == lab.shape
        assert int(p.sum()) == want_pos
        assert int(n.sum()) == min(batch - want_pos, num_negative)
        assert all(lab[i] >= 1 for i in torch.nonzero(p).flatten().tolist())
        assert all(lab[i] == 0 for i in torch.nonzero(n).flatten().tolist())


def test_sampler_is_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    labels = [torch.randint(-1, 3, (200,), generator=torch.Generator().manual_seed(2))]
    sampler = BalancedPositiveNegativeSampler(32, 0.25)

    def draw(seed: int) -> torch.Tensor:
        pos, neg = sampler(labels, generator=torch.Generator().manual_seed(seed))
        return torch.cat([pos[0], neg[0]])

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))
