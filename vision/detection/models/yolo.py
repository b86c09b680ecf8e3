"""YOLO v1 (Redmon, Divvala, Girshick & Farhadi 2016): one network pass predicts an S x S grid of
cells, each with B boxes and their confidences plus one set of class probabilities.

    backbone  a registry model's `forward_features`    [N, C, H/8, W/8]  (resnet18_small: stride 8)
    head      3x3/2 conv + BN + leaky ReLU(0.1)       [N, h, H/16, W/16]
              3x3 conv + BN + leaky ReLU(0.1)
              adaptive average pool to S x S           (the identity when the map already is S x S,
                                                        e.g. a 112 px input: 112 / 16 = 7)
              1x1 conv to B*5 + C channels             [N, B*5 + C, S, S]
    output    [N, S, S, B*5 + C]: for each of the B boxes (x, y, sqrt w, sqrt h, confidence),
              then the C conditional class probabilities Pr(class | object) of the cell

The paper's head is two fully connected layers on a 7 x 7 x 1024 map; here a small conv head
does the job of mapping backbone features to the grid (its receptive field spans most of a small
image, which is what the fully connected layer bought). The paper's last layer is linear; here
x, y, sqrt w, sqrt h and the confidence go through a sigmoid and the class scores through a
softmax, so that every decoded quantity lies in its valid range ([0, 1] offsets, sizes and
probabilities) from the first step. The loss below is the paper's sum of squared errors on those
quantities, unchanged.

Coordinates: x, y are the box centre's offset inside its cell in [0, 1]; w, h are the box's size
relative to the whole image, predicted as their square roots (so that an error on a small box
costs more than the same error on a large one).

Training targets (the paper's): the cell containing a ground truth's centre is responsible for
it; of that cell's B predicted boxes, the one with the highest IoU with the ground truth is
"responsible" (ties: the lower box index). The loss, summed over the grid and averaged over the
images of the batch:

    loss_box   = lambda_coord * sum_resp [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
    loss_obj   =                sum_resp (C - C^)^2,         target C^ = IoU(predicted box, GT)
    loss_noobj = lambda_noobj * sum_not_resp  C^2            (every box not responsible, also the
                                                              other boxes of an object's cell)
    loss_class =                sum_cells_with_object sum_c (p(c) - p^(c))^2,  p^ one-hot

The confidence target is the IoU of the (detached) predicted box with its ground truth, as in the
paper (Pr(Object) * IOU_truth_pred; darknet's `rescore=1`); `rescore=False` uses 1 instead.
The model has one set of class probabilities per cell, so it can learn only one object per cell:
when several ground-truth centres fall in one cell the largest box (by area; ties: the lower
target index) is kept and the others are dropped from that image's targets.

Detection: the class-specific score of each box is confidence * Pr(class | object); scores above
`score_thresh` are kept, boxes clipped to the image, suppressed per class (NMS at `nms_thresh`)
and the best `detections_per_img` returned.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.conv import ConvBlock2d
from textcnn.core.errors import TextCNNError
from vision.detection.base import (
    Detections,
    DetectionTransform,
    Detector,
    RegistryBackbone,
    Target,
    empty_detections,
)
from vision.detection.registry import register_detector
from vision.ops import batched_nms, clip_boxes

_leaky = functools.partial(nn.LeakyReLU, 0.1)  # the paper's leaky ReLU slope


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a[..., 4] and b[..., 4] (xyxy) pair by pair (broadcast), not all pairs."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    union = area_a + area_b - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def assign_cells(boxes: Tensor, image_size: tuple[int, int], grid: int) -> tuple[Tensor, Tensor, Tensor]:
    """Which cell is responsible for each ground-truth box (xyxy pixels, [K, 4]).

    Returns (rows [M], cols [M], kept [M]): the indices into `boxes` of the boxes kept, one per
    occupied cell. A box belongs to the cell containing its centre (a centre on the image's
    far edge goes to the last cell). When several centres share a cell the box with the largest
    area is kept (ties: the lower index); the model has one set of class scores per cell.
    """
    height, width = image_size
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / width * grid
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / height * grid
    cols = cx.floor().long().clamp(0, grid - 1)
    rows = cy.floor().long().clamp(0, grid - 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    for cell in torch.unique(rows * grid + cols).tolist():
        members = torch.nonzero(rows * grid + cols == cell).flatten()
        # argmax returns the first maximum, so equal areas go to the lower index
        kept.append(int(members[area[members].argmax()]))
    kept_t = torch.tensor(kept, dtype=torch.long, device=boxes.device)
    return rows[kept_t], cols[kept_t], kept_t


def decode_grid(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Boxes [N, S, S, B, 4] as (x, y, sqrt w, sqrt h) -> (x1, y1, x2, y2) in pixels."""
    height, width = image_size
    grid = boxes.shape[1]
    idx = torch.arange(grid, dtype=boxes.dtype, device=boxes.device)
    cx = (boxes[..., 0] + idx.view(1, 1, grid, 1)) / grid * width  # column index runs along dim 2
    cy = (boxes[..., 1] + idx.view(1, grid, 1, 1)) / grid * height
    w = boxes[..., 2] ** 2 * width
    h = boxes[..., 3] ** 2 * height
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


@dataclass
class YoloTargets:
    """Per-cell training targets of a batch (S = grid, B = boxes per cell)."""

    has_object: Tensor  # [N, S, S] bool: a ground truth's centre is in the cell
    boxes: Tensor       # [N, S, S, 4] (x, y, sqrt w, sqrt h) of the cell's ground truth
    classes: Tensor     # [N, S, S] long, 0..C-1 (label - 1), meaningful where has_object
    iou: Tensor         # [N, S, S, B] IoU of each predicted box with the cell's ground truth
    responsible: Tensor  # [N, S, S, B] bool: the box with the highest IoU in a cell with an object


def yolo_targets(pred_boxes: Tensor, targets: Sequence[Target], image_size: tuple[int, int]) -> YoloTargets:
    """Targets for predicted boxes [N, S, S, B, 4] (x, y, sqrt w, sqrt h; no gradient needed)
    and ground truth in pixels (labels 1..C)."""
    n, grid, _, num_boxes, _ = pred_boxes.shape
    height, width = image_size
    device, dtype = pred_boxes.device, pred_boxes.dtype
    has_object = torch.zeros(n, grid, grid, dtype=torch.bool, device=device)
    boxes = torch.zeros(n, grid, grid, 4, dtype=dtype, device=device)
    gt_xyxy = torch.zeros(n, grid, grid, 4, dtype=dtype, device=device)
    classes = torch.zeros(n, grid, grid, dtype=torch.long, device=device)
    for i, target in enumerate(targets):
        if not len(target["boxes"]):
            continue
        rows, cols, kept = assign_cells(target["boxes"], image_size, grid)
        gt = target["boxes"][kept].to(dtype)
        cx = (gt[:, 0] + gt[:, 2]) / 2 / width * grid
        cy = (gt[:, 1] + gt[:, 3]) / 2 / height * grid
        w = (gt[:, 2] - gt[:, 0]) / width
        h = (gt[:, 3] - gt[:, 1]) / height
        has_object[i, rows, cols] = True
        boxes[i, rows, cols] = torch.stack((cx - cols, cy - rows, w.clamp(min=0).sqrt(), h.clamp(min=0).sqrt()), dim=1)
        gt_xyxy[i, rows, cols] = gt
        classes[i, rows, cols] = target["labels"][kept].to(device) - 1
    iou = _paired_iou(decode_grid(pred_boxes, image_size), gt_xyxy[:, :, :, None, :]) * has_object[..., None]
    # argmax takes the first maximum: equal IoUs (e.g. both 0 early in training) pick box 0
    best = iou.argmax(dim=-1)
    responsible = F.one_hot(best, num_boxes).bool() & has_object[..., None]
    return YoloTargets(has_object, boxes, classes, iou, responsible)


def yolo_v1_loss(pred: Tensor, targets: Sequence[Target], image_size: tuple[int, int], *,
                 boxes_per_cell: int = 2, lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                 rescore: bool = True) -> dict[str, Tensor]:
    """The paper's sum-squared loss (see the module docstring) of `pred` [N, S, S, B*5 + C]
    (activated: sigmoid / softmax already applied), summed over the grid, averaged over N.

    Returns `loss_box` (lambda_coord included), `loss_obj`, `loss_noobj` (lambda_noobj
    included) and `loss_class`; their sum is the paper's loss divided by N."""
    n, grid = pred.shape[0], pred.shape[1]
    per_box = pred[..., :boxes_per_cell * 5].reshape(n, grid, grid, boxes_per_cell, 5)
    boxes, conf = per_box[..., :4], per_box[..., 4]
    probs = pred[..., boxes_per_cell * 5:]
    t = yolo_targets(boxes.detach(), targets, image_size)
    resp = t.responsible.to(pred.dtype)
    coord = ((boxes - t.boxes[..., None, :]) ** 2).sum(dim=-1)
    conf_target = t.iou if rescore else torch.ones_like(t.iou)
    onehot = F.one_hot(t.classes, probs.shape[-1]).to(pred.dtype)
    class_err = ((probs - onehot) ** 2).sum(dim=-1)
    return {
        "loss_box": lambda_coord * (coord * resp).sum() / n,
        "loss_obj": ((conf - conf_target) ** 2 * resp).sum() / n,
        "loss_noobj": lambda_noobj * (conf ** 2 * (1 - resp)).sum() / n,
        "loss_class": (class_err * t.has_object.to(pred.dtype)).sum() / n,
    }


class YOLOv1Head(nn.Module):
    """Backbone map -> [N, S, S, B*5 + C] raw grid (see the module docstring)."""

    def __init__(self, in_channels: int, *, grid: int, outputs: int, channels: int = 128) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            ConvBlock2d(in_channels, channels, 3, stride=2, padding=1, norm_layer="batch", act_layer=_leaky),
            ConvBlock2d(channels, channels, 3, padding=1, norm_layer="batch", act_layer=_leaky))
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.out = nn.Conv2d(channels, outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.pool(self.convs(x))).permute(0, 2, 3, 1)


class YOLOv1(Detector):
    """YOLO v1 on an injected backbone (anything with `out_channels` mapping [N, 3, H, W] to a
    feature map); see the module docstring for the head, loss and decoding."""

    def __init__(self, backbone: nn.Module, *, num_classes: int, image_size: int | tuple[int, int] = 112,
                 grid: int = 7, boxes_per_cell: int = 2, head_channels: int = 128,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5, rescore: bool = True,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)) -> None:
        super().__init__()
        if grid < 1 or boxes_per_cell < 1:
            raise TextCNNError(f"YOLOv1: expected grid >= 1 and boxes_per_cell >= 1, got {grid} and {boxes_per_cell}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.num_classes = num_classes
        self.grid, self.boxes_per_cell = grid, boxes_per_cell
        self.lambda_coord, self.lambda_noobj, self.rescore = lambda_coord, lambda_noobj, rescore
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.transform = DetectionTransform(size=size, mean=mean, std=std)
        self.backbone = backbone
        self.head = YOLOv1Head(backbone.out_channels, grid=grid, outputs=boxes_per_cell * 5 + num_classes,
                               channels=head_channels)

    def predict_grid(self, batch: Tensor) -> Tensor:
        """Activated grid [N, S, S, B*5 + C]: sigmoid on box coordinates and confidences,
        softmax over the class scores."""
        raw = self.head(self.backbone(batch))
        split = self.boxes_per_cell * 5
        return torch.cat((torch.sigmoid(raw[..., :split]), torch.softmax(raw[..., split:], dim=-1)), dim=-1)

    def forward_batch(self, batch: Tensor, targets: list[Target] | None) -> dict[str, Tensor] | list[Detections]:
        pred = self.predict_grid(batch)
        image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
        if targets is not None:
            return yolo_v1_loss(pred, targets, image_size, boxes_per_cell=self.boxes_per_cell,
                                lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj, rescore=self.rescore)
        return self.postprocess(pred, image_size)

    def postprocess(self, pred: Tensor, image_size: tuple[int, int]) -> list[Detections]:
        """Per image: class-specific scores, threshold, clip, per-class NMS, top-k."""
        n, grid = pred.shape[0], pred.shape[1]
        per_box = pred[..., :self.boxes_per_cell * 5].reshape(n, grid, grid, self.boxes_per_cell, 5)
        boxes = decode_grid(per_box[..., :4], image_size).reshape(n, -1, 4)
        probs = pred[..., self.boxes_per_cell * 5:]
        # [N, S, S, B, C]: confidence * Pr(class | object), the cell's probabilities for each box
        scores = (per_box[..., 4:5] * probs[:, :, :, None, :]).reshape(n, -1, self.num_classes)
        out = []
        for img_boxes, img_scores in zip(boxes, scores):
            box_idx, cls_idx = torch.nonzero(img_scores > self.score_thresh, as_tuple=True)
            if not len(box_idx):
                out.append(empty_detections(pred.device))
                continue
            cand_boxes = clip_boxes(img_boxes[box_idx], image_size)
            cand_scores = img_scores[box_idx, cls_idx]
            # a clipped box can collapse to zero width; it can match nothing
            ok = (cand_boxes[:, 2] > cand_boxes[:, 0]) & (cand_boxes[:, 3] > cand_boxes[:, 1])
            cand_boxes, cand_scores, labels = cand_boxes[ok], cand_scores[ok], cls_idx[ok] + 1
            keep = batched_nms(cand_boxes, cand_scores, labels, self.nms_thresh)[:self.detections_per_img]
            out.append({"boxes": cand_boxes[keep], "labels": labels[keep], "scores": cand_scores[keep]})
        return out


@register_detector("yolo_v1")
def yolo_v1(*, num_classes: int, backbone: str = "resnet18_small", backbone_kwargs: dict[str, Any] | None = None,
            image_size: int = 112, grid: int = 7, boxes_per_cell: int = 2, head_channels: int = 128,
            lambda_coord: float = 5.0, lambda_noobj: float = 0.5, rescore: bool = True,
            score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100) -> YOLOv1:
    """YOLO v1 on a registry backbone. Defaults: resnet18_small (widths 16-32-64-128, stride 8),
    112 px input, so the head's stride-2 conv lands exactly on the paper's 7 x 7 grid."""
    body = RegistryBackbone(backbone, **(backbone_kwargs or {}))
    return YOLOv1(body, num_classes=num_classes, image_size=image_size, grid=grid, boxes_per_cell=boxes_per_cell,
                  head_channels=head_channels, lambda_coord=lambda_coord, lambda_noobj=lambda_noobj,
                  rescore=rescore, score_thresh=score_thresh, nms_thresh=nms_thresh,
                  detections_per_img=detections_per_img)


__all__ = ["YOLOv1", "YOLOv1Head", "YoloTargets", "assign_cells", "decode_grid", "yolo_targets", "yolo_v1",
           "yolo_v1_loss"]
