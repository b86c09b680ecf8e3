"""Anchor grids and SSD default boxes against loops over grid cells."""

from __future__ import annotations

import math

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import AnchorGenerator, ssd_default_boxes


def test_anchor_generator_matches_loop_over_cells() -> None:
    sizes = ((16.0, 40.0), (64.0,))
    ratios = ((0.5, 1.0, 2.0), (1.0, 3.0))
    shapes, image = [(4, 5), (2, 3)], (33, 50)
    gen = AnchorGenerator(sizes, ratios)
    want = []
    for (gh, gw), level_sizes, level_ratios in zip(shapes, sizes, ratios):
        stride_h, stride_w = image[0] // gh, image[1] // gw
        for i in range(gh):
            for j in range(gw):
                for r in level_ratios:
                    for s in level_sizes:
                        w, h = s / math.sqrt(r), s * math.sqrt(r)  # h / w == r, area s^2
                        want.append([round(-w / 2) + j * stride_w, round(-h / 2) + i * stride_h,
                                     round(w / 2) + j * stride_w, round(h / 2) + i * stride_h])
    got = gen(shapes, image)
    assert gen.num_anchors_per_location() == [6, 2]
    assert got.shape == (4 * 5 * 6 + 2 * 3 * 2, 4)
    assert got.tolist() == want
    per_level = gen.grid_anchors(shapes, image, dtype=torch.float64)
    assert [t.shape[0] for t in per_level] == [120, 12] and per_level[0].dtype == torch.float64


def test_base_anchor_aspect_ratio_is_height_over_width() -> None:
    base = AnchorGenerator(((1000.0,),), ((0.25, 4.0),)).base_anchors(0)
    w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    assert (h / w).tolist() == pytest.approx([0.25, 4.0], rel=1e-2)


def test_anchor_generator_level_mismatch_raises() -> None:
    with pytest.raises(TextCNNError, match="2 size levels but 1 aspect-ratio"):
        AnchorGenerator(((32,), (64,)), ((1.0,),))
    with pytest.raises(TextCNNError, match="1 feature maps for 2 anchor levels"):
        AnchorGenerator(((32,), (64,)))([(4, 4)], (64, 64))


@pytest.mark.parametrize("clip", [True, False])
def test_ssd_default_boxes_match_liu_et_al(clip: bool) -> None:
    sizes: list[int | tuple[int, int]] = [4, (2, 3), 1]
    ratios = ((2.0,), (2.0, 3.0), (3.0,))
    smin, smax, m = 0.2, 0.9, 3
    scales = [smin + (smax - smin) * (k - 1) / (m - 1) for k in range(1, m + 1)] + [1.0]
    want = []
    for k, (size, level_ratios) in enumerate(zip(sizes, ratios)):
        fh, fw = (size, size) if isinstance(size, int) else size
        s = scales[k]
        for i in range(fh):
            for j in range(fw):
                cx, cy = (j + 0.5) / fw, (i + 0.5) / fh
                whs = [(s, s), (math.sqrt(s * scales[k + 1]),) * 2]
                for r in level_ratios:
                    whs += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
                for w, h in whs:
                    if clip:
                        w, h = min(w, 1.0), min(h, 1.0)
                    want.append([cx, cy, w, h])
    got = ssd_default_boxes(sizes, min_scale=smin, max_scale=smax, aspect_ratios=ratios,
                            clip=clip)
    assert got.shape == (len(want), 4)
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)
    assert (got.max() > 1) != clip


def test_ssd_default_box_count_for_the_ssd300_layout() -> None:
    sizes = [38, 19, 10, 5, 3, 1]
    ratios = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
    got = ssd_default_boxes(sizes, aspect_ratios=ratios)
    assert got.shape == (8732, 4)  # the paper's count for SSD300
    assert got.min() >= 0 and got.max() <= 1
