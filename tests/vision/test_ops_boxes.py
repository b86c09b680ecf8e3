"""Box geometry against per-box Python arithmetic."""

from __future__ import annotations

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import box_area, box_convert, box_iou, clip_boxes, remove_small_boxes


def boxes(n: int, seed: int, side: float = 20.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * side
    return torch.cat([corner, corner + torch.rand(n, 2, generator=g) * side / 2], dim=1)


def iou_one(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_box_area_is_width_times_height() -> None:
    b = boxes(7, 0)
    want = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b.tolist()]
    assert torch.allclose(box_area(b), torch.tensor(want))
    assert box_area(torch.tensor([[5.0, 5.0, 4.0, 9.0]])).item() == 0.0


def test_box_iou_matches_pairwise_loop_incl_zero_area() -> None:
    a = torch.cat([boxes(6, 1), torch.tensor([[3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 5.0]])])
    b = torch.cat([boxes(5, 2), torch.tensor([[3.0, 3.0, 3.0, 3.0]]), a[:2]])
    got = box_iou(a, b)
    want = torch.tensor([[iou_one(x, y) for y in b.tolist()] for x in a.tolist()])
    assert got.shape == (8, 8)
    assert not got.isnan().any()
    assert torch.allclose(got, want, atol=1e-6)
    assert got[6, 5] == 0  # two identical points: union 0
    assert torch.allclose(got[:2, 6:], torch.eye(2))


def test_box_iou_integer_and_empty_inputs() -> None:
    got = box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 1, 3, 3]]))
    assert got.is_floating_point() and got.item() == pytest.approx(1 / 7)
    assert box_iou(torch.zeros(0, 4), boxes(3, 0)).shape == (0, 3)


def test_clip_boxes_clamps_each_coordinate() -> None:
    b = boxes(9, 3, side=40.0) - 10
    height, width = 17, 23
    got = clip_boxes(b, (height, width))
    for row, (x1, y1, x2, y2) in zip(got.tolist(), b.tolist()):
        want = [min(max(x1, 0), width), min(max(y1, 0), height),
                min(max(x2, 0), width), min(max(y2, 0), height)]
        assert row == pytest.approx(want)


def test_remove_small_boxes_keeps_boxes_at_least_min_size() -> None:
    b = boxes(30, 4)
    got = remove_small_boxes(b, 4.0)
    want = [i for i, (x1, y1, x2, y2) in enumerate(b.tolist()) if x2 - x1 >= 4 and y2 - y1 >= 4]
    assert got.dtype == torch.long and got.tolist() == want
    assert 0 < len(want) < 30


def test_box_convert_formulas_and_round_trips() -> None:
    b = boxes(6, 5)
    cxcywh = box_convert(b, in_fmt="xyxy", out_fmt="cxcywh")
    xywh = box_convert(b, in_fmt="xyxy", out_fmt="xywh")
    for (x1, y1, x2, y2), c, w in zip(b.tolist(), cxcywh.tolist(), xywh.tolist()):
        assert c == pytest.approx([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], abs=1e-5)
        assert w == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-5)
    for fmt, converted in (("cxcywh", cxcywh), ("xywh", xywh)):
        assert torch.allclose(box_convert(converted, in_fmt=fmt, out_fmt="xyxy"), b, atol=1e-5)
    assert torch.allclose(box_convert(cxcywh, in_fmt="cxcywh", out_fmt="xywh"), xywh, atol=1e-5)


def test_bad_input_raises_one_line_errors() -> None:
    with pytest.raises(TextCNNError, match="did you mean 'cxcywh'"):
        box_convert(boxes(2, 0), in_fmt="xyxy", out_fmt="cxcyhw")
    with pytest.raises(TextCNNError, match=r"shape \[N, 4\], got \(3, 5\)"):
        box_area(torch.zeros(3, 5))
