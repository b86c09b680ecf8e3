"""BoxCoder against the Faster R-CNN formulas written out per box."""

from __future__ import annotations

import math

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import BoxCoder


def random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x1y1 = torch.rand(n, 2, generator=g) * 50
    return torch.cat([x1y1, x1y1 + 2 + torch.rand(n, 2, generator=g) * 30], dim=1)


def centre(box: list[float]) -> tuple[float, float, float, float]:
    w, h = box[2] - box[0], box[3] - box[1]
    return box[0] + w / 2, box[1] + h / 2, w, h


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 2.0, 3.0, 4.0)])
def test_encode_matches_formulas(weights: tuple[float, float, float, float]) -> None:
    gt, proposals = random_boxes(8, 0), random_boxes(8, 1)
    got = BoxCoder(weights).encode(gt, proposals)
    wx, wy, ww, wh = weights
    for row, g, p in zip(got.tolist(), gt.tolist(), proposals.tolist()):
        gx, gy, gw, gh = centre(g)
        px, py, pw, ph = centre(p)
        want = [wx * (gx - px) / pw, wy * (gy - py) / ph,
                ww * math.log(gw / pw), wh * math.log(gh / ph)]
        assert row == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_decode_inverts_encode_incl_k_boxes_per_proposal() -> None:
    coder = BoxCoder()
    proposals = random_boxes(10, 2)
    targets = [random_boxes(10, 3), random_boxes(10, 4)]
    deltas = torch.cat([coder.encode(t, proposals) for t in targets], dim=1)
    decoded = coder.decode(deltas, proposals)
    assert decoded.shape == (10, 8)
    assert torch.allclose(decoded, torch.cat(targets, dim=1), atol=1e-4)


def test_decode_matches_formulas_and_clips_size_deltas() -> None:
    clip = math.log(1000.0 / 16)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0), bbox_xform_clip=clip)
    proposals = random_boxes(4, 5)
    deltas = torch.tensor([[1.0, -2.0, 0.5, -0.5], [0.0, 0.0, 50.0, 0.0],
                           [3.0, 3.0, -40.0, 25.0], [-1.0, 0.5, 100.0, 100.0]])
    got = coder.decode(deltas, proposals)
    for row, d, p in zip(got.tolist(), deltas.tolist(), proposals.tolist()):
        px, py, pw, ph = centre(p)
        cx, cy = d[0] / 10 * pw + px, d[1] / 10 * ph + py
        w, h = math.exp(min(d[2] / 5, clip)) * pw, math.exp(min(d[3] / 5, clip)) * ph
        assert row == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rel=1e-5)
    widths = got[:, 2] - got[:, 0]
    assert widths[1].item() == pytest.approx(1000 / 16 * (proposals[1, 2] - proposals[1, 0]).item(),
                                             rel=1e-5)


def test_bad_shapes_raise() -> None:
    with pytest.raises(TextCNNError, match="4 numbers"):
        BoxCoder((1.0, 1.0))
    with pytest.raises(TextCNNError, match=r"deltas \[3, 4\*K\], got \(3, 6\)"):
        BoxCoder().decode(torch.zeros(3, 6), random_boxes(3, 0))
