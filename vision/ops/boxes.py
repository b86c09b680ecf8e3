"""Axis-aligned box utilities. Boxes are [N, 4] tensors in (x1, y1, x2, y2) unless a format says
otherwise; every op works on whatever device and floating dtype its inputs have."""

from __future__ import annotations

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError, did_you_mean

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def check_boxes(boxes: Tensor, what: str = "boxes") -> None:
    """Raise `TextCNNError` unless `boxes` is an [N, 4] tensor."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise TextCNNError(f"{what}: expected a tensor of shape [N, 4], got {got}")


def _as_float(boxes: Tensor) -> Tensor:
    return boxes if boxes.is_floating_point() else boxes.to(torch.get_default_dtype())


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box, [N]. Inverted boxes (x2 < x1 or y2 < y1) count as zero area."""
    check_boxes(boxes)
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair, [N, M]. A pair whose union is empty (two
    zero-area boxes) has IoU 0, never NaN."""
    check_boxes(boxes1, "boxes1")
    check_boxes(boxes2, "boxes2")
    boxes1, boxes2 = _as_float(boxes1), _as_float(boxes2)
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    # where the union is 0 the intersection is 0 too, so any positive divisor gives 0
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp boxes into an image of `size` = (height, width): x to [0, width], y to [0, height]."""
    check_boxes(boxes)
    height, width = size
    x = boxes[:, 0::2].clamp(min=0, max=width)
    y = boxes[:, 1::2].clamp(min=0, max=height)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (ascending LongTensor) of the boxes whose width and height are both >= min_size."""
    check_boxes(boxes)
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh[:, 0] >= min_size) & (wh[:, 1] >= min_size)
    return torch.nonzero(keep).flatten()


def box_convert(boxes: Tensor, *, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert between "xyxy" (corners), "xywh" (top-left corner and size) and "cxcywh" (centre
    and size)."""
    check_boxes(boxes)
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise TextCNNError(f"box_convert {name}: unknown format '{fmt}'"
                               f"{did_you_mean(fmt, BOX_FORMATS)}; known: {', '.join(BOX_FORMATS)}")
    a, b, c, d = boxes.unbind(1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=1)
