"""Region-of-interest pooling: Fast R-CNN's RoI max pooling and Mask R-CNN's RoIAlign.

Both take features [N, C, H, W] and rois [K, 5] rows (batch_index, x1, y1, x2, y2) in image
coordinates, which `spatial_scale` maps onto the feature map, and return [K, C, ph, pw].
Gradients flow to the features only, never to the rois (as in torchvision).
"""

from __future__ import annotations

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError


def _pair(output_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or min(size) < 1:
        raise TextCNNError(f"output_size: expected a positive int or (height, width), "
                           f"got {output_size}")
    return size[0], size[1]


def _check(features: Tensor, rois: Tensor, op: str) -> Tensor:
    """Validate shapes; return the rois' batch indices as a LongTensor."""
    if features.dim() != 4:
        raise TextCNNError(f"{op}: expected features [N, C, H, W], got {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise TextCNNError(f"{op}: expected rois [K, 5] (batch_index, x1, y1, x2, y2), "
                           f"got {tuple(rois.shape)}")
    batch = rois[:, 0].detach().long()
    if batch.numel() and (batch.min().item() < 0 or batch.max().item() >= features.shape[0]):
        raise TextCNNError(f"{op}: roi batch indices must lie in [0, {features.shape[0]}), got "
                           f"{batch.min().item()}..{batch.max().item()}")
    return batch


def _round_half_away(x: Tensor) -> Tensor:
    """C's round(): halves go away from zero (torch.round goes to even)."""
    return (torch.sign(x) * torch.floor(x.abs() + 0.5)).long()


def _bins(start: Tensor, length: Tensor, pooled: int, size: int) -> tuple[Tensor, Tensor]:
    """RoI-pool bin edges [K, pooled]: floor(p * L / pooled) and ceil((p + 1) * L / pooled),
    offset by the roi start and clamped to [0, size]. Integer arithmetic, so exact."""
    p = torch.arange(pooled, device=start.device)
    lo = (p[None] * length[:, None]) // pooled
    hi = -((-(p[None] + 1) * length[:, None]) // pooled)
    return ((lo + start[:, None]).clamp(0, size), (hi + start[:, None]).clamp(0, size))


def roi_pool(features: Tensor, rois: Tensor, output_size: int | tuple[int, int], *,
             spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling (Fast R-CNN) with torchvision's quantization.

    Corners are scaled and rounded half away from zero to feature cells; the roi spans
    max(x2 - x1 + 1, 1) cells (inclusive corners). Bin p of `pooled` covers cells
    [floor(p L / pooled), ceil((p + 1) L / pooled)) from the roi start, clamped to the map, so
    neighbouring bins may share a cell. An empty bin gives 0.
    """
    batch = _check(features, rois, "roi_pool")
    ph, pw = _pair(output_size)
    num, channels, height, width = features.shape
    if rois.shape[0] == 0:
        return features.new_zeros(0, channels, ph, pw)
    corners = _round_half_away(rois[:, 1:].detach().double() * spatial_scale)
    x1, y1, x2, y2 = corners.unbind(1)
    hstart, hend = _bins(y1, (y2 - y1 + 1).clamp(min=1), ph, height)
    wstart, wend = _bins(x1, (x2 - x1 + 1).clamp(min=1), pw, width)
    empty = (hend <= hstart)[:, :, None] | (wend <= wstart)[:, None, :]
    # pad every bin to the widest one by repeating its last cell, which leaves the max alone
    span_h = max(int((hend - hstart).max().item()), 1)
    span_w = max(int((wend - wstart).max().item()), 1)
    rows = torch.minimum(hstart[..., None] + torch.arange(span_h, device=features.device),
                         hend[..., None] - 1).clamp(0, height - 1)
    cols = torch.minimum(wstart[..., None] + torch.arange(span_w, device=features.device),
                         wend[..., None] - 1).clamp(0, width - 1)
    # index order (roi, bin row, bin col, cell in bin): the gathered rows reshape straight into
    # [K, ph, pw, cells, C], so the max needs no permuted copy of the gathered values
    flat = (batch[:, None, None, None, None] * (height * width)
            + rows[:, :, None, :, None] * width + cols[:, None, :, None, :])
    source = features.permute(0, 2, 3, 1).reshape(-1, channels)  # one row of channels per cell
    values = source[flat.reshape(-1)].reshape(-1, ph, pw, span_h * span_w, channels)
    pooled = values.max(dim=3).values.permute(0, 3, 1, 2)
    return pooled.masked_fill(empty[:, None], 0)


def _align_weights(start: Tensor, length: Tensor, pooled: int, size: int,
                   sampling_ratio: int) -> Tensor:
    """Interpolation matrix [K, pooled, size] along one axis: row p averages the bilinear
    weights of bin p's sample points, so the pooled map is Wy @ F @ Wx^T."""
    bin_size = length / pooled
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(bin_size).long()
    points = max(int(grid.max().item()), 1)
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)[None, :, None]
    i = torch.arange(points, device=start.device)[None, None, :]
    step = (bin_size / grid.clamp(min=1))[:, None, None]
    coord = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * step
    # samples beyond one cell outside the map count as 0; the rest clamp onto the map
    valid = (i < grid[:, None, None]) & (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, 0.0, coord - low)
    weight = valid.to(start.dtype) / grid.clamp(min=1)[:, None, None]
    cells = torch.arange(size, device=start.device)
    matrix = (((1 - frac) * weight)[..., None] * (low[..., None] == cells)
              + (frac * weight)[..., None] * (high[..., None] == cells))
    return matrix.sum(dim=2)


def roi_align(features: Tensor, rois: Tensor, output_size: int | tuple[int, int], *,
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """RoIAlign (Mask R-CNN): each bin is the mean of a grid of bilinear samples.

    Scaled corners are not rounded. With `aligned`, they shift by -0.5 so that a pixel's centre
    is at its index + 0.5; without it, roi sides are at least 1. Each bin takes
    `sampling_ratio` samples per axis, or ceil(roi side / output side) when it is <= 0, at the
    centres of an even sub-grid. Interpolation follows torchvision: samples further than one
    cell outside the map are 0, the rest clamp to the border.
    """
    batch = _check(features, rois, "roi_align")
    ph, pw = _pair(output_size)
    num, channels, height, width = features.shape
    out = features.new_zeros(rois.shape[0], channels, ph, pw)
    if rois.shape[0] == 0:
        return out
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:].detach().to(features.dtype) * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    weight_y = _align_weights(y1, roi_h, ph, height, sampling_ratio)
    weight_x = _align_weights(x1, roi_w, pw, width, sampling_ratio)
    for image in range(num):
        chosen = torch.nonzero(batch == image).flatten()
        if chosen.numel() == 0:
            continue
        rows = torch.einsum("kph,chw->kcpw", weight_y[chosen], features[image])
        out = out.index_copy(0, chosen, torch.einsum("kcpw,kqw->kcpq", rows, weight_x[chosen]))
    return out
