"""RoI pooling against per-bin Python loops (bilinear interpolation written out), values and
gradients with respect to the features."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.ops import roi_align, roi_pool

FEATURES = torch.randn(3, 2, 7, 9, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
# image 1 has no rois; some rois leave the map, one is tiny, one is inverted
ROIS = torch.tensor([
    [0, 1.0, 1.0, 6.0, 5.0], [2, 0.0, 0.0, 17.0, 13.0], [0, -3.2, 2.6, 4.4, 20.0],
    [2, 5.3, 4.1, 5.6, 4.4], [0, 10.5, 2.5, 15.0, 9.0], [2, 8.0, 9.0, 3.0, 4.0],
    [0, 2.5, 1.5, 13.7, 11.9],
], dtype=torch.float64)


def c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def brute_roi_pool(f: torch.Tensor, rois: torch.Tensor, ph: int, pw: int,
                   scale: float) -> torch.Tensor:
    height, width = f.shape[2:]
    out = []
    for b, x1, y1, x2, y2 in rois.tolist():
        sx, sy, ex, ey = (c_round(v * scale) for v in (x1, y1, x2, y2))
        rh, rw = max(ey - sy + 1, 1), max(ex - sx + 1, 1)
        bins = []
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(Fraction(i * rh, ph)) + sy, 0), height)
                he = min(max(math.ceil(Fraction((i + 1) * rh, ph)) + sy, 0), height)
                ws = min(max(math.floor(Fraction(j * rw, pw)) + sx, 0), width)
                we = min(max(math.ceil(Fraction((j + 1) * rw, pw)) + sx, 0), width)
                if he <= hs or we <= ws:
                    bins.append(f.new_zeros(f.shape[1]))
                else:
                    bins.append(f[int(b), :, hs:he, ws:we].amax(dim=(1, 2)))
        out.append(torch.stack(bins, dim=1).reshape(-1, ph, pw))
    return torch.stack(out)


def bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    height, width = fmap.shape[1:]
    if y < -1 or y > height or x < -1 or x > width:
        return fmap.new_zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def brute_roi_align(f: torch.Tensor, rois: torch.Tensor, ph: int, pw: int, scale: float,
                    ratio: int, aligned: bool) -> torch.Tensor:
    shift = 0.5 if aligned else 0.0
    out = []
    for b, x1, y1, x2, y2 in rois.tolist():
        sx, sy = x1 * scale - shift, y1 * scale - shift
        rw, rh = x2 * scale - shift - sx, y2 * scale - shift - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        bins = []
        for i in range(ph):
            for j in range(pw):
                total = f.new_zeros(f.shape[1])
                for iy in range(gh):
                    for ix in range(gw):
                        y = sy + i * bh + (iy + 0.5) * bh / gh
                        x = sx + j * bw + (ix + 0.5) * bw / gw
                        total = total + bilinear(f[int(b)], y, x)
                bins.append(total / max(gh * gw, 1))
        out.append(torch.stack(bins, dim=1).reshape(-1, ph, pw))
    return torch.stack(out)


@pytest.mark.parametrize(("output_size", "scale"), [((2, 3), 1.0), (3, 0.5), ((4, 1), 0.7)])
def test_roi_pool_matches_brute_force_values_and_gradients(
        output_size: int | tuple[int, int], scale: float) -> None:
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    f1 = FEATURES.clone().requires_grad_(True)
    f2 = FEATURES.clone().requires_grad_(True)
    got = roi_pool(f1, ROIS, output_size, spatial_scale=scale)
    want = brute_roi_pool(f2, ROIS, ph, pw, scale)
    assert got.shape == (7, 2, ph, pw)
    assert torch.equal(got, want)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(1), dtype=got.dtype)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert torch.allclose(f1.grad, f2.grad)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize(("output_size", "scale", "ratio"),
                         [((2, 3), 1.0, -1), (3, 0.5, 2), ((1, 2), 0.8, -1), (2, 1.3, 1)])
def test_roi_align_matches_brute_force_values_and_gradients(
        output_size: int | tuple[int, int], scale: float, ratio: int, aligned: bool) -> None:
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    f1 = FEATURES.clone().requires_grad_(True)
    f2 = FEATURES.clone().requires_grad_(True)
    got = roi_align(f1, ROIS, output_size, spatial_scale=scale, sampling_ratio=ratio,
                    aligned=aligned)
    want = brute_roi_align(f2, ROIS, ph, pw, scale, ratio, aligned)
    assert got.shape == (7, 2, ph, pw)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(2), dtype=got.dtype)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert torch.allclose(f1.grad, f2.grad, rtol=0, atol=1e-12)


def test_aligned_roi_align_over_the_whole_map_returns_the_map() -> None:
    # aligned: one sample per bin lands on each pixel centre, so interpolation is exact
    f = FEATURES[:1]
    roi = torch.tensor([[0.0, 0.0, 0.0, 9.0, 7.0]], dtype=torch.float64)
    got = roi_align(f, roi, (7, 9), sampling_ratio=1, aligned=True)
    assert torch.allclose(got, f)


def test_roi_pool_float32_and_a_whole_map_roi() -> None:
    f = FEATURES[:1].float()
    roi = torch.tensor([[0.0, 0.0, 0.0, 8.0, 6.0]])
    assert torch.equal(roi_pool(f, roi, (7, 9)), f)  # one cell per bin
    assert torch.equal(roi_pool(f, roi, 1), f.amax(dim=(2, 3), keepdim=True))


def test_empty_rois_give_empty_output() -> None:
    rois = torch.zeros(0, 5, dtype=torch.float64)
    assert roi_pool(FEATURES, rois, (2, 3)).shape == (0, 2, 2, 3)
    assert roi_align(FEATURES, rois, 4).shape == (0, 2, 4, 4)


def test_bad_rois_raise() -> None:
    with pytest.raises(TextCNNError, match=r"rois \[K, 5\]"):
        roi_align(FEATURES, torch.zeros(2, 4), 2)
    with pytest.raises(TextCNNError, match=r"batch indices must lie in \[0, 3\)"):
        roi_pool(FEATURES, torch.tensor([[3.0, 0, 0, 1, 1]]), 2)
    with pytest.raises(TextCNNError, match="output_size"):
        roi_pool(FEATURES, ROIS, 0)
