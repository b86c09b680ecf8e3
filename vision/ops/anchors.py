"""Anchor boxes: Faster R-CNN's per-level grids and SSD's default boxes (Liu et al. 2016)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError


class AnchorGenerator:
    """Anchors for a feature pyramid, one level per entry of `sizes`, with torchvision's
    conventions.

    An aspect ratio r means height / width = r: a base anchor of size s has w = s / sqrt(r) and
    h = s * sqrt(r) (area s^2), is centred at 0, and its corners are rounded to integers. Base
    anchors go ratio-major, then size. A level with grid (gh, gw) on an image (H, W) has strides
    (H // gh, W // gw); cell (i, j) shifts every base anchor by (j * stride_w, i * stride_h).
    Anchors run over cells row by row, then base anchors, then levels.
    """

    def __init__(self, sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
                 aspect_ratios: Sequence[Sequence[float]] | None = None) -> None:
        if aspect_ratios is None:
            aspect_ratios = ((0.5, 1.0, 2.0),) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise TextCNNError(f"AnchorGenerator: {len(sizes)} size levels but "
                               f"{len(aspect_ratios)} aspect-ratio levels; expected as many")
        self.sizes = tuple(tuple(float(s) for s in level) for level in sizes)
        self.aspect_ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)

    def num_anchors_per_location(self) -> list[int]:
        """How many anchors each cell of each level gets."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def base_anchors(self, level: int, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> Tensor:
        """The rounded, zero-centred anchors of one level, [A, 4]."""
        scales = torch.tensor(self.sizes[level], dtype=dtype, device=device)
        ratios = torch.tensor(self.aspect_ratios[level], dtype=dtype, device=device)
        h_ratios = torch.sqrt(ratios)
        ws = (scales[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (scales[None, :] * h_ratios[:, None]).reshape(-1)
        return (torch.stack((-ws, -hs, ws, hs), dim=1) / 2).round()

    def grid_anchors(self, feature_shapes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                     *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> list[Tensor]:
        """Anchors per level, each [gh * gw * A, 4] in image pixels (x1, y1, x2, y2)."""
        if len(feature_shapes) != len(self.sizes):
            raise TextCNNError(f"AnchorGenerator: got {len(feature_shapes)} feature maps for "
                               f"{len(self.sizes)} anchor levels; expected as many")
        out = []
        for level, (grid_h, grid_w) in enumerate(feature_shapes):
            stride_h, stride_w = image_size[0] // grid_h, image_size[1] // grid_w
            shift_y = torch.arange(grid_h, dtype=dtype, device=device) * stride_h
            shift_x = torch.arange(grid_w, dtype=dtype, device=device) * stride_w
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
            base = self.base_anchors(level, dtype=dtype, device=device)
            out.append((shifts + base[None]).reshape(-1, 4))
        return out

    def __call__(self, feature_shapes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                 *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
        """All levels' anchors concatenated, [sum of gh * gw * A, 4]."""
        return torch.cat(self.grid_anchors(feature_shapes, image_size, dtype=dtype,
                                           device=device))


def ssd_scales(num_levels: int, *, min_scale: float = 0.2, max_scale: float = 0.9) -> list[float]:
    """s_k = min_scale + (max_scale - min_scale) (k - 1) / (m - 1), k = 1..m, followed by 1.0 as
    s_{m+1} (torchvision's choice for the last level's extra box; the paper leaves it open)."""
    if num_levels == 1:
        return [min_scale, 1.0]
    step = (max_scale - min_scale) / (num_levels - 1)
    return [min_scale + step * k for k in range(num_levels)] + [1.0]


def ssd_default_boxes(feature_sizes: Sequence[int | tuple[int, int]], *, min_scale: float = 0.2,
                      max_scale: float = 0.9,
                      aspect_ratios: Sequence[Sequence[float]] | None = None,
                      clip: bool = True, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """SSD default boxes, [K, 4] as (cx, cy, w, h) relative to the image (Liu et al. 2016).

    Level k (scale s_k, see `ssd_scales`) puts, at the centre ((j + 0.5) / fw, (i + 0.5) / fh)
    of each cell (row by row): a box s_k x s_k, a box s' x s' with s' = sqrt(s_k s_{k+1}), then
    for each ratio r of the level (default (2, 3)) boxes (s_k sqrt(r), s_k / sqrt(r)) and
    (s_k / sqrt(r), s_k sqrt(r)). With `clip`, widths and heights are clamped to [0, 1].
    """
    if not feature_sizes:
        raise TextCNNError("ssd_default_boxes: expected at least one feature size")
    if aspect_ratios is None:
        aspect_ratios = ((2.0, 3.0),) * len(feature_sizes)
    if len(aspect_ratios) != len(feature_sizes):
        raise TextCNNError(f"ssd_default_boxes: {len(feature_sizes)} feature sizes but "
                           f"{len(aspect_ratios)} aspect-ratio levels; expected as many")
    scales = ssd_scales(len(feature_sizes), min_scale=min_scale, max_scale=max_scale)
    out = []
    for k, size in enumerate(feature_sizes):
        fh, fw = (size, size) if isinstance(size, int) else size
        s, s_extra = scales[k], math.sqrt(scales[k] * scales[k + 1])
        wh = [(s, s), (s_extra, s_extra)]
        for r in aspect_ratios[k]:
            wh += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        wh_t = torch.tensor(wh, dtype=dtype, device=device)
        cy = (torch.arange(fh, dtype=dtype, device=device) + 0.5) / fh
        cx = (torch.arange(fw, dtype=dtype, device=device) + 0.5) / fw
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack((xx, yy), dim=-1).reshape(-1, 1, 2).expand(-1, len(wh), 2)
        out.append(torch.cat((centres, wh_t[None].expand(fh * fw, -1, 2)), dim=2).reshape(-1, 4))
    boxes = torch.cat(out)
    if clip:
        boxes[:, 2:] = boxes[:, 2:].clamp(min=0, max=1)
    return boxes
