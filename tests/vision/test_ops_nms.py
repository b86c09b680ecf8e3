"""NMS against a greedy Python loop over a hand-computed IoU."""

from __future__ import annotations

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import batched_nms, nms


def clustered_boxes(n: int, seed: int) -> torch.Tensor:
    # boxes drawn around a few centres, so that plenty of them overlap
    g = torch.Generator().manual_seed(seed)
    centre = torch.randint(0, 4, (n, 2), generator=g).float() * 6 + torch.rand(n, 2, generator=g)
    half = 1 + torch.rand(n, 2, generator=g) * 3
    return torch.cat([centre - half, centre + half], dim=1)


def greedy(box_list: list[list[float]], score_list: list[float], threshold: float) -> list[int]:
    def iou(a: list[float], b: list[float]) -> float:
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / union if union > 0 else 0.0

    order = sorted(range(len(score_list)), key=lambda i: (-score_list[i], i))
    kept: list[int] = []
    for i in order:
        if all(iou(box_list[i], box_list[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
def test_nms_matches_greedy_loop(seed: int, threshold: float) -> None:
    b = clustered_boxes(40, seed)
    # coarse scores make ties, which must go to the lower index
    s = torch.randint(0, 8, (40,), generator=torch.Generator().manual_seed(seed)).float()
    got = nms(b, s, threshold)
    assert got.dtype == torch.long
    assert got.tolist() == greedy(b.tolist(), s.tolist(), threshold)


def test_nms_keeps_everything_at_threshold_one_and_handles_empty() -> None:
    b = clustered_boxes(10, 9)
    s = torch.arange(10.0)
    assert nms(b, s, 1.0).tolist() == list(range(9, -1, -1))
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.long and empty.numel() == 0
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert empty.dtype == torch.long and empty.numel() == 0


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_per_class_greedy(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    b = clustered_boxes(50, seed) - 12  # negative coordinates too
    s = torch.randint(0, 10, (50,), generator=g).float()
    labels = torch.randint(0, 4, (50,), generator=g) * 3 - 2
    got = batched_nms(b, s, labels, 0.4)
    want: list[int] = []
    for label in set(labels.tolist()):
        idx = [i for i in range(50) if labels[i].item() == label]
        kept = greedy([b[i].tolist() for i in idx], [s[i].item() for i in idx], 0.4)
        want += [idx[k] for k in kept]
    want.sort(key=lambda i: (-s[i].item(), i))
    assert got.tolist() == want


def test_identical_boxes_in_different_classes_both_survive() -> None:
    b = torch.tensor([[0.0, 0.0, 4.0, 4.0]] * 3)
    got = batched_nms(b, torch.tensor([0.2, 0.9, 0.5]), torch.tensor([1, 1, 2]), 0.5)
    assert got.tolist() == [1, 2]


def test_scores_of_the_wrong_length_raise() -> None:
    with pytest.raises(TextCNNError, match=r"scores: expected shape \[3\]"):
        nms(torch.zeros(3, 4), torch.zeros(4), 0.5)
