"""SSD (Liu, Anguelov, Erhan, Szegedy, Reed, Fu & Berg 2016): class scores and box offsets for a
fixed set of default boxes on several feature maps of decreasing size, in one pass.

    backbone  a registry model's `forward_features`   96 px, stride 8 -> 12 x 12  (level 0)
    extras    per level: 1x1 conv (halve channels) + BN + ReLU, 3x3/2 conv + BN + ReLU
                                                      12 -> 6 -> 3 -> 2           (levels 1..)
    heads     per level: a 3x3 conv to A * (C + 1) class logits (0 = background) and a 3x3 conv
              to A * 4 box offsets, A default boxes per location

Default boxes come from `vision.ops.ssd_default_boxes` (cells row by row, then the boxes of a
cell, then levels: the order in which the heads' outputs are flattened) and are converted to
pixel (x1, y1, x2, y2). Unlike the paper's VGG there is no L2Norm on the first map: the
backbone's batch norm already keeps its scale in line with the others.

Matching (the paper's): every ground truth takes the default box it overlaps most (its IoU must
be > 0; when two ground truths pick the same default box, the later one keeps it), and every
other default box whose best IoU with some ground truth is >= `iou_threshold` (0.5) is matched
to that ground truth (ties: the lower index). Matched boxes are encoded with
`BoxCoder((10, 10, 5, 5))`, i.e. SSD's variances 0.1 (centre) and 0.2 (size).

Loss: L = (L_conf + alpha L_loc) / N with N the number of matched default boxes in the batch.
L_conf is the softmax cross-entropy over the positives and the hard negatives: per image, the
unmatched default boxes with the highest background loss (-log p(background)), at most
`neg_pos_ratio` (3) per positive. An image without positives (no objects) still contributes its
`min_negatives` hardest negatives, so empty images teach background; when the whole batch has no
positives the sum is divided by 1 instead of N. L_loc is the smooth L1 (beta 1) between
predicted and target offsets over the positives only, so it is exactly 0 without positives.
Returned as `loss_classifier` = L_conf / N and `loss_box_reg` = alpha L_loc / N.

Detection: softmax; per object class, the scores above `score_thresh` (at most
`topk_candidates` of them), decoded and clipped boxes, per-class NMS at `nms_thresh` (0.45);
then the best `detections_per_img` (100) over all classes.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from vision.ops import (
    BoxCoder,
    Matcher,
    batched_nms,
    box_convert,
    box_iou,
    clip_boxes,
    ssd_default_boxes,
)


def ssd_match(gt_boxes: Tensor, default_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """Index of the ground truth matched to each default box, [P], or -1 (background).

    Both in xyxy pixels; see the module docstring for the rule."""
    if not len(gt_boxes):
        return torch.full((len(default_boxes),), -1, dtype=torch.long, device=default_boxes.device)
    iou = box_iou(gt_boxes, default_boxes)
    matches = Matcher(iou_threshold, iou_threshold)(iou)
    best_default = iou.argmax(dim=1)  # first maximum on ties
    # a plain loop so that, when two ground truths want one default box, the later one wins
    # deterministically (indexed assignment with repeated indices does not promise an order)
    for g in range(len(gt_boxes)):
        if iou[g, best_default[g]] > 0:
            matches[best_default[g]] = g
    return matches


def hard_negative_mask(background_loss: Tensor, positive: Tensor, *, neg_pos_ratio: float = 3.0,
                       min_negatives: int = 0) -> Tensor:
    """Mined negatives, [N, P] bool: per image, the non-positive boxes with the highest
    background loss, max(neg_pos_ratio * #positives, min_negatives) of them (fewer when there
    are not enough negatives). Equal losses go to the lower index."""
    num_pos = positive.sum(dim=1)
    num_neg = torch.maximum((num_pos * neg_pos_ratio).long(), torch.full_like(num_pos, min_negatives))
    loss = background_loss.detach().masked_fill(positive, float("-inf"))
    order = torch.sort(loss, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < num_neg[:, None]) & ~positive


class SSDHead(nn.Module):
    """One 3x3 conv per level for the class logits and one for the box offsets."""

    def __init__(self, in_channels: Sequence[int], boxes_per_location: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.num_outputs = num_classes + 1
        self.cls = nn.ModuleList(nn.Conv2d(c, a * self.num_outputs, 3, padding=1)
                                 for c, a in zip(in_channels, boxes_per_location))
        self.reg = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(in_channels, boxes_per_location))
        for conv in [*self.cls, *self.reg]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    @staticmethod
    def _flatten(x: Tensor, width: int) -> Tensor:
        # [N, A * K, H, W] -> [N, H * W * A, K]: cells row by row, then boxes, as the default boxes
        n = x.shape[0]
        return x.permute(0, 2, 3, 1).reshape(n, -1, width)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(class logits [N, P, C + 1], box offsets [N, P, 4]) over all levels."""
        logits = torch.cat([self._flatten(conv(f), self.num_outputs) for conv, f in zip(self.cls, features)], dim=1)
        deltas = torch.cat([self._flatten(conv(f), 4) for conv, f in zip(self.reg, features)], dim=1)
        return logits, deltas


def ssd_extras(in_channels: int, channels: Sequence[int]) -> nn.ModuleList:
    """Extra feature layers, each halving the map: 1x1 conv to half its width, 3x3/2 conv."""
    layers = []
    for out in channels:
        mid = max(out // 2, 1)
        layers.append(nn.Sequential(
            ConvBlock2d(in_channels, mid, 1, norm_layer="batch"),
            ConvBlock2d(mid, out, 3, stride=2, padding=1, norm_layer="batch")))
        in_channels = out
    return nn.ModuleList(layers)


class SSD(Detector):
    """SSD on an injected backbone (with `out_channels`) and extra layers (`out_channels` given
    per layer); see the module docstring for matching, loss and decoding."""

    def __init__(self, backbone: nn.Module, extras: nn.ModuleList, extra_channels: Sequence[int], *,
                 num_classes: int, image_size: int | tuple[int, int] = 96, min_scale: float = 0.16,
                 max_scale: float = 0.6, aspect_ratios: Sequence[Sequence[float]] | None = None,
                 iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0, min_negatives: int = 3,
                 alpha: float = 1.0, score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 topk_candidates: int = 200, detections_per_img: int = 100,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)) -> None:
        super().__init__()
        num_levels = 1 + len(extras)
        if len(extra_channels) != len(extras):
            raise TextCNNError(f"SSD: expected one channel count per extra layer ({len(extras)}), "
                               f"got {len(extra_channels)}")
        if aspect_ratios is None:
            aspect_ratios = ((2.0,),) * num_levels
        if len(aspect_ratios) != num_levels:
            raise TextCNNError(f"SSD: {num_levels} feature levels but {len(aspect_ratios)} aspect-ratio levels; "
                               "expected as many")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.num_classes = num_classes
        self.transform = DetectionTransform(size=size, mean=mean, std=std)
        self.backbone, self.extras = backbone, extras
        self.min_scale, self.max_scale = min_scale, max_scale
        self.aspect_ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)
        boxes_per_location = [2 + 2 * len(r) for r in self.aspect_ratios]
        self.head = SSDHead([backbone.out_channels, *extra_channels], boxes_per_location, num_classes)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.iou_threshold, self.neg_pos_ratio, self.min_negatives, self.alpha = (
            iou_threshold, neg_pos_ratio, min_negatives, alpha)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img
        self._defaults: dict[tuple, Tensor] = {}

    def features(self, batch: Tensor) -> list[Tensor]:
        """The backbone map followed by each extra layer's map."""
        maps = [self.backbone(batch)]
        for layer in self.extras:
            maps.append(layer(maps[-1]))
        return maps

    def default_boxes(self, feature_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                      device: torch.device) -> Tensor:
        """Default boxes [P, 4] in xyxy pixels for these feature-map sizes (cached)."""
        key = (tuple(feature_sizes), image_size, str(device))
        if key not in self._defaults:
            rel = ssd_default_boxes(list(feature_sizes), min_scale=self.min_scale, max_scale=self.max_scale,
                                    aspect_ratios=self.aspect_ratios, device=device)
            height, width = image_size
            scale = torch.tensor([width, height, width, height], dtype=rel.dtype, device=device)
            self._defaults[key] = box_convert(rel * scale, in_fmt="cxcywh", out_fmt="xyxy")
        return self._defaults[key]

    def forward_batch(self, batch: Tensor, targets: list[Target] | None) -> dict[str, Tensor] | list[Detections]:
        maps = self.features(batch)
        logits, deltas = self.head(maps)
        image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
        defaults = self.default_boxes([tuple(m.shape[-2:]) for m in maps], image_size, batch.device)
        if targets is not None:
            return self.compute_loss(logits, deltas, defaults, targets)
        return self.postprocess(logits, deltas, defaults, image_size)

    def match_targets(self, defaults: Tensor, targets: Sequence[Target]) -> tuple[Tensor, Tensor]:
        """(class targets [N, P] with 0 = background, box offset targets [N, P, 4], zero where
        unmatched)."""
        labels, offsets = [], []
        for target in targets:
            matches = ssd_match(target["boxes"], defaults, self.iou_threshold)
            pos = matches >= 0
            img_labels = torch.zeros(len(defaults), dtype=torch.long, device=defaults.device)
            img_offsets = torch.zeros(len(defaults), 4, dtype=defaults.dtype, device=defaults.device)
            if bool(pos.any()):
                img_labels[pos] = target["labels"][matches[pos]]
                img_offsets[pos] = self.box_coder.encode(target["boxes"][matches[pos]], defaults[pos])
            labels.append(img_labels)
            offsets.append(img_offsets)
        return torch.stack(labels), torch.stack(offsets)

    def compute_loss(self, logits: Tensor, deltas: Tensor, defaults: Tensor,
                     targets: Sequence[Target]) -> dict[str, Tensor]:
        """`loss_classifier` and `loss_box_reg` (see the module docstring)."""
        labels, offsets = self.match_targets(defaults, targets)
        positive = labels > 0
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                             reduction="none").reshape(labels.shape)
        # for a negative the cross-entropy is the background loss -log p(background)
        background_loss = -F.log_softmax(logits.detach(), dim=-1)[..., 0]
        negative = hard_negative_mask(background_loss, positive, neg_pos_ratio=self.neg_pos_ratio,
                                      min_negatives=self.min_negatives)
        normaliser = positive.sum().clamp(min=1).to(logits.dtype)
        box = F.smooth_l1_loss(deltas[positive], offsets[positive], beta=1.0, reduction="sum")
        return {"loss_classifier": (ce * (positive | negative)).sum() / normaliser,
                "loss_box_reg": self.alpha * box / normaliser}

    def postprocess(self, logits: Tensor, deltas: Tensor, defaults: Tensor,
                    image_size: tuple[int, int]) -> list[Detections]:
        """Per image: softmax, per-class threshold and top-k, decode, clip, per-class NMS, top-k."""
        scores = torch.softmax(logits, dim=-1)
        out = []
        for img_scores, img_deltas in zip(scores, deltas):
            boxes = clip_boxes(self.box_coder.decode(img_deltas, defaults), image_size)
            keep_boxes, keep_scores, keep_labels = [], [], []
            for label in range(1, self.num_classes + 1):
                cls_scores = img_scores[:, label]
                idx = torch.nonzero(cls_scores > self.score_thresh).flatten()
                idx = idx[cls_scores[idx].topk(min(self.topk_candidates, len(idx))).indices]
                keep_boxes.append(boxes[idx])
                keep_scores.append(cls_scores[idx])
                keep_labels.append(torch.full_like(idx, label))
            cand_boxes, cand_scores, labels = torch.cat(keep_boxes), torch.cat(keep_scores), torch.cat(keep_labels)
            ok = (cand_boxes[:, 2] > cand_boxes[:, 0]) & (cand_boxes[:, 3] > cand_boxes[:, 1])
            cand_boxes, cand_scores, labels = cand_boxes[ok], cand_scores[ok], labels[ok]
            if not len(cand_scores):
                out.append(empty_detections(logits.device))
                continue
            keep = batched_nms(cand_boxes, cand_scores, labels, self.nms_thresh)[:self.detections_per_img]
            out.append({"boxes": cand_boxes[keep], "labels": labels[keep], "scores": cand_scores[keep]})
        return out


@register_detector("ssd")
def ssd(*, num_classes: int, backbone: str = "resnet18_small", backbone_kwargs: dict[str, Any] | None = None,
        image_size: int = 96, extra_channels: Sequence[int] = (128, 128, 128), min_scale: float = 0.16,
        max_scale: float = 0.6, aspect_ratios: Sequence[Sequence[float]] | None = None,
        iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0, min_negatives: int = 3, alpha: float = 1.0,
        score_thresh: float = 0.01, nms_thresh: float = 0.45, topk_candidates: int = 200,
        detections_per_img: int = 100) -> SSD:
    """SSD on a registry backbone. Defaults: resnet18_small (stride 8) at 96 px plus three extra
    layers give maps of 12, 6, 3 and 2 cells. Scales 0.16..0.6 (square default boxes of 15 and
    21 px on the 12 x 12 map, 29 and 35 px on 6 x 6, 43 and 50 px on 3 x 3, 58 and 74 px on
    2 x 2) plus aspect ratios 2 and 1/2: on the shapes data (objects of 10-40 px, 96 px images)
    94% of the objects have a default box at IoU >= 0.5, 3.3 on average (0.1..0.5: 78%, 1.6),
    the rest get their best default box by the matching rule."""
    body = RegistryBackbone(backbone, **(backbone_kwargs or {}))
    extras = ssd_extras(body.out_channels, extra_channels)
    return SSD(body, extras, extra_channels, num_classes=num_classes, image_size=image_size,
               min_scale=min_scale, max_scale=max_scale, aspect_ratios=aspect_ratios, iou_threshold=iou_threshold,
               neg_pos_ratio=neg_pos_ratio, min_negatives=min_negatives, alpha=alpha, score_thresh=score_thresh,
               nms_thresh=nms_thresh, topk_candidates=topk_candidates, detections_per_img=detections_per_img)


__all__ = ["SSD", "SSDHead", "hard_negative_mask", "ssd", "ssd_extras", "ssd_match"]
