"""The second stage of Fast / Faster R-CNN: pool each proposal's features, classify it over the
object classes plus background, and regress one refined box per class (Girshick 2015)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.detection.base import Detections, Target, empty_detections
from vision.ops import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    batched_nms,
    box_iou,
    clip_boxes,
    remove_small_boxes,
    roi_align,
    roi_pool,
)


class RoIPool(nn.Module):
    """Pool a fixed-size [C, s, s] patch of one feature map for every box.

    `kind="align"`: RoIAlign (bilinear samples, `sampling_ratio` per bin axis, <= 0: adaptive);
    `kind="max"`: Fast R-CNN's quantised RoI max pooling. `spatial_scale` maps image pixels to
    feature cells; None infers it per call as feature size / image size, rounded to a power of
    two (a stride-8 backbone gives 1/8 even when the image side is not a multiple of 8).
    """

    def __init__(self, output_size: int | tuple[int, int] = 7, spatial_scale: float | None = None,
                 sampling_ratio: int = 2, kind: Literal["align", "max"] = "align", *,
                 aligned: bool = False) -> None:
        super().__init__()
        if kind not in ("align", "max"):
            raise TextCNNError(f"RoIPool kind: expected 'align' or 'max', got {kind!r}")
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.kind = kind
        self.aligned = aligned

    def scale(self, features: Tensor, image_size: tuple[int, int]) -> float:
        if self.spatial_scale is not None:
            return self.spatial_scale
        return 2.0 ** round(math.log2(features.shape[-1] / image_size[1]))

    def forward(self, features: Tensor, boxes: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        """features [N, C, h, w], boxes: one [K_i, 4] xyxy tensor per image -> [sum K_i, C, s, s]
        (image 0's boxes first)."""
        if len(boxes) != features.shape[0]:
            raise TextCNNError(f"RoIPool: expected one box tensor per image ({features.shape[0]}), "
                               f"got {len(boxes)}")
        rois = torch.cat([torch.cat((torch.full_like(b[:, :1], i), b), dim=1)
                          for i, b in enumerate(boxes)]).to(features.dtype)
        scale = self.scale(features, image_size)
        if self.kind == "max":
            return roi_pool(features, rois, self.output_size, spatial_scale=scale)
        return roi_align(features, rois, self.output_size, spatial_scale=scale,
                         sampling_ratio=self.sampling_ratio, aligned=self.aligned)


class TwoMLPHead(nn.Module):
    """Flatten the pooled patch, then two fully connected layers with ReLU (fc6, fc7)."""

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits over num_classes + 1 (0 = background) and class-specific box deltas
    4 * (num_classes + 1), in class order."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (num_classes + 1))
        # the paper's init: near-uniform class scores, near-zero deltas (boxes start at the proposals)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """Pooling, box head and predictor around the second stage's training and inference rules.

    Training: the ground-truth boxes join each image's proposals; a proposal is foreground (its
    best ground truth's label) at IoU >= `fg_iou_thresh` and background (0) below
    `bg_iou_thresh`; `batch_size_per_image` of them are sampled, at most `positive_fraction`
    foreground. `loss_classifier` is the cross-entropy over the sampled RoIs (mean);
    `loss_box_reg` is smooth L1 (beta `box_loss_beta`) between each foreground RoI's deltas for
    its own class and its targets (BoxCoder `bbox_reg_weights`), summed and divided by the number
    of sampled RoIs. Without ground truth every RoI is background and the box loss is exactly 0.

    Eval: softmax scores; each proposal decoded once per class; boxes clipped; background,
    scores <= `score_thresh` and boxes smaller than `min_size` dropped; NMS at `nms_thresh`
    within each class; the `detections_per_img` best kept.
    """

    def __init__(self, *, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                 batch_size_per_image: int = 128, positive_fraction: float = 0.25,
                 bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 min_size: float = 1e-2, box_loss_beta: float = 1.0 / 9) -> None:
        super().__init__()
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(weights=bbox_reg_weights)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.min_size = min_size
        self.box_loss_beta = box_loss_beta

    def forward(self, features: Tensor, proposals: Sequence[Tensor], image_size: tuple[int, int],
                targets: list[Target] | None = None) -> tuple[list[Detections], dict[str, Tensor]]:
        """(detections per image (empty list in training), losses (empty in eval))."""
        proposals = [p.detach().to(features.dtype) for p in proposals]
        if self.training:
            if targets is None:
                raise TextCNNError("RoI heads in training mode: expected targets, got None")
            proposals, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_size))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            return [], self.loss(class_logits, box_regression, labels, regression_targets)
        return self.postprocess_detections(class_logits, box_regression, proposals, image_size), {}

    def select_training_samples(self, proposals: list[Tensor], targets: list[Target]
                                ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: the sampled RoIs [S, 4], their labels [S] (0 = background) and regression
        targets [S, 4] (zeros for background rows)."""
        if len(targets) != len(proposals):
            raise TextCNNError(f"RoI heads: expected {len(proposals)} targets, got {len(targets)}")
        sampled_rois, sampled_labels, sampled_targets = [], [], []
        for rois, target in zip(proposals, targets):
            gt, gt_labels = target["boxes"].to(rois), target["labels"].to(rois.device)
            # the ground truth itself is always a (perfect) proposal: it guarantees positives
            rois = torch.cat((rois, gt))
            if gt.numel() == 0:
                matches = torch.full((len(rois),), Matcher.BELOW_LOW_THRESHOLD, dtype=torch.long,
                                     device=rois.device)
                labels = torch.zeros(len(rois), dtype=torch.long, device=rois.device)
            else:
                matches = self.matcher(box_iou(gt, rois))
                labels = gt_labels[matches.clamp(min=0)]
                labels[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1
            (positive,), (negative,) = self.sampler([labels])
            keep = torch.nonzero(positive | negative).flatten()
            rois, labels, matches = rois[keep], labels[keep], matches[keep]
            regression = torch.zeros_like(rois)
            foreground = labels > 0
            if bool(foreground.any()):
                regression[foreground] = self.box_coder.encode(gt[matches[foreground]], rois[foreground])
            sampled_rois.append(rois)
            sampled_labels.append(labels)
            sampled_targets.append(regression)
        return sampled_rois, sampled_labels, sampled_targets

    def loss(self, class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
             regression_targets: list[Tensor]) -> dict[str, Tensor]:
        """`loss_classifier` and `loss_box_reg` (see the class docstring)."""
        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        if labels_all.numel() == 0:  # no proposals and no ground truth anywhere
            zero = class_logits.sum() * 0.0 + box_regression.sum() * 0.0
            return {"loss_classifier": zero, "loss_box_reg": zero.clone()}
        classifier_loss = F.cross_entropy(class_logits, labels_all)
        foreground = torch.nonzero(labels_all > 0).flatten()
        deltas = box_regression.reshape(len(labels_all), -1, 4)[foreground, labels_all[foreground]]
        box_loss = F.smooth_l1_loss(deltas, targets_all[foreground], beta=self.box_loss_beta,
                                    reduction="sum") / labels_all.numel()
        return {"loss_classifier": classifier_loss, "loss_box_reg": box_loss}

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor,
                               proposals: Sequence[Tensor], image_size: tuple[int, int]
                               ) -> list[Detections]:
        """Per image {"boxes", "labels", "scores"} from the predictor's outputs over all images'
        proposals concatenated (see the class docstring)."""
        num_rois, num_outputs = class_logits.shape
        if box_regression.shape != (num_rois, 4 * num_outputs):
            raise TextCNNError(f"RoI heads: expected box regression [{num_rois}, {4 * num_outputs}], "
                               f"got {tuple(box_regression.shape)}")
        counts = [len(p) for p in proposals]
        rois = torch.cat(list(proposals)) if proposals else class_logits.new_zeros(0, 4)
        pred_boxes = self.box_coder.decode(box_regression, rois).reshape(num_rois, num_outputs, 4)
        pred_scores = F.softmax(class_logits, dim=-1)
        results = []
        for boxes, scores in zip(pred_boxes.split(counts), pred_scores.split(counts)):
            if boxes.numel() == 0:
                results.append(empty_detections(class_logits.device))
                continue
            boxes = clip_boxes(boxes.reshape(-1, 4), image_size).reshape(-1, num_outputs, 4)
            labels = torch.arange(num_outputs, device=boxes.device).expand(len(boxes), num_outputs)
            # column 0 is background: never a detection
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.nonzero(scores > self.score_thresh).flatten()
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return results


__all__ = ["FastRCNNPredictor", "RoIHeads", "RoIPool", "TwoMLPHead"]
