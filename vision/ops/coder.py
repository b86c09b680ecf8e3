"""Box regression targets as in Faster R-CNN: centre offsets relative to the proposal's size and
log size ratios, each multiplied by a weight."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from vision.ops.boxes import check_boxes


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


class BoxCoder:
    """Encode boxes as deltas against proposals and decode them back.

    With proposal centre (px, py) and size (pw, ph), target (gx, gy, gw, gh) and weights
    (wx, wy, ww, wh): dx = wx (gx - px) / pw, dy = wy (gy - py) / ph, dw = ww log(gw / pw),
    dh = wh log(gh / ph). Decoding clamps dw / ww and dh / wh at `bbox_xform_clip` so that exp
    cannot overflow.
    """

    def __init__(self, weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0), *,
                 bbox_xform_clip: float = math.log(1000.0 / 16)) -> None:
        if len(weights) != 4:
            raise TextCNNError(f"BoxCoder weights: expected 4 numbers (wx, wy, ww, wh), "
                               f"got {len(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = float(bbox_xform_clip)

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas [N, 4] that take each proposal to its reference (ground-truth) box."""
        check_boxes(reference_boxes, "reference_boxes")
        check_boxes(proposals, "proposals")
        if reference_boxes.shape != proposals.shape:
            raise TextCNNError(f"BoxCoder.encode: reference_boxes {tuple(reference_boxes.shape)} "
                               f"and proposals {tuple(proposals.shape)} must have the same shape")
        wx, wy, ww, wh = self.weights
        px, py, pw, ph = _centres(proposals)
        gx, gy, gw, gh = _centres(reference_boxes)
        return torch.stack((wx * (gx - px) / pw, wy * (gy - py) / ph,
                            ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=1)

    def decode(self, deltas: Tensor, proposals: Tensor) -> Tensor:
        """Boxes from deltas. `deltas` is [N, 4 * K] (K boxes per proposal, e.g. one per class)
        and `proposals` [N, 4]; the result has the shape of `deltas`."""
        check_boxes(proposals, "proposals")
        if deltas.dim() != 2 or deltas.shape[0] != proposals.shape[0] or deltas.shape[1] % 4:
            raise TextCNNError(f"BoxCoder.decode: expected deltas [{proposals.shape[0]}, 4*K], "
                               f"got {tuple(deltas.shape)}")
        d = deltas.reshape(deltas.shape[0], -1, 4)
        wx, wy, ww, wh = self.weights
        px, py, pw, ph = (t[:, None] for t in _centres(proposals.to(deltas.dtype)))
        cx = d[..., 0] / wx * pw + px
        cy = d[..., 1] / wy * ph + py
        w = torch.exp((d[..., 2] / ww).clamp(max=self.bbox_xform_clip)) * pw
        h = torch.exp((d[..., 3] / wh).clamp(max=self.bbox_xform_clip)) * ph
        boxes = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=2)
        return boxes.reshape(deltas.shape)
