"""Greedy non-maximum suppression, plain and per class."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from vision.ops.boxes import box_iou, check_boxes


def _check_scores(boxes: Tensor, scores: Tensor, what: str = "scores") -> None:
    check_boxes(boxes)
    if scores.shape != (boxes.shape[0],):
        raise TextCNNError(
            f"{what}: expected shape [{boxes.shape[0]}] (one per box), got {tuple(scores.shape)}")


def _order(scores: Tensor) -> Tensor:
    """Indices by decreasing score; equal scores keep ascending index (stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: take the highest-scoring box, drop every remaining box whose IoU with it is
    greater than `iou_threshold`, repeat. Ties in score go to the lower index.

    Returns the kept indices (LongTensor) sorted by decreasing score.
    """
    _check_scores(boxes, scores)
    order = _order(scores)
    # The greedy pass has a dependency from row to row, so it runs on the host: one transfer of
    # the [N, N] overlap matrix, then a NumPy loop (about a microsecond per box, where indexing
    # a tensor per box cost ~10x more and synced a GPU every step).
    over = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(order.numel(), dtype=bool)
    keep = np.zeros(order.numel(), dtype=bool)
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep[i] = True
        suppressed |= over[i]
    return order[torch.from_numpy(keep).to(order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each label separately: boxes with different labels never suppress each other.

    Returns the kept indices sorted by decreasing score (ties: lower index first). Runs `nms`
    once per label rather than offsetting coordinates, so it is exact for any coordinates.
    """
    _check_scores(boxes, scores)
    _check_scores(boxes, labels, "labels")
    kept = [torch.nonzero(labels == label).flatten() for label in torch.unique(labels)]
    kept = [idx[nms(boxes[idx], scores[idx], iou_threshold)] for idx in kept]
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = torch.sort(torch.cat(kept)).values  # ascending index, so the stable sort breaks ties
    return keep[_order(scores[keep])]
