"""Region proposal network (Ren et al. 2015): objectness and box deltas for every anchor of one
feature map, decoded into a few hundred proposals for the RoI heads."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.detection.base import Target
from vision.ops import (
    AnchorGenerator,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    box_iou,
    clip_boxes,
    nms,
    remove_small_boxes,
)


def train_eval(value: int | Mapping[str, int], what: str) -> tuple[int, int]:
    """An int (used in both modes) or {"training": n, "testing": m} -> (n, m)."""
    if isinstance(value, Mapping):
        if set(value) != {"training", "testing"}:
            raise TextCNNError(f"{what}: expected an int or a dict with keys 'training' and "
                               f"'testing', got keys {sorted(value)}")
        pair = (value["training"], value["testing"])
    else:
        pair = (value, value)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise TextCNNError(f"{what}: expected positive integers, got {value!r}")
    return int(pair[0]), int(pair[1])


class RPNHead(nn.Module):
    """A 3x3 conv + ReLU shared by two sibling 1x1 convs: one objectness logit and four box deltas
    per anchor and cell."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            # small initial outputs (the paper's N(0, 0.01)): every anchor starts near p = 0.5, delta 0
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(objectness [N, A, h, w], deltas [N, 4A, h, w])."""
        t = F.relu(self.conv(x))
        return self.cls_logits(t), self.bbox_pred(t)


class RegionProposalNetwork(nn.Module):
    """Anchors + head -> proposals per image (detached) and, in training, the RPN losses.

    Training targets (torchvision's conventions): an anchor is positive when its IoU with some
    ground truth is >= `fg_iou_thresh` or it is that ground truth's best anchor, negative below
    `bg_iou_thresh`, ignored in between. `batch_size_per_image` anchors are sampled per image,
    at most `positive_fraction` of them positive. `loss_objectness` is the binary cross-entropy
    over the sampled anchors (mean); `loss_rpn_box_reg` is smooth L1 (beta 1/9) between the
    positives' deltas and their targets (BoxCoder weights (1, 1, 1, 1)), summed and divided by
    the number of sampled anchors. An image without ground truth has only negative anchors.

    Proposals: the `pre_nms_top_n` highest-objectness anchors per image are decoded, clipped to
    the image, freed of boxes smaller than `min_size`, reduced by NMS at `nms_thresh`, and the
    best `post_nms_top_n` survive. Both counts are an int or {"training": n, "testing": m}.
    """

    def __init__(self, *, anchor_generator: AnchorGenerator, head: nn.Module,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: int | Mapping[str, int], post_nms_top_n: int | Mapping[str, int],
                 nms_thresh: float = 0.7, min_size: float = 1e-3) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = train_eval(pre_nms_top_n, "pre_nms_top_n")
        self._post_nms_top_n = train_eval(post_nms_top_n, "post_nms_top_n")
        self.nms_thresh = nms_thresh
        self.min_size = min_size

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n[0 if self.training else 1]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n[0 if self.training else 1]

    def forward(self, batch: Tensor, features: Tensor, targets: list[Target] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """(proposals [K_i, 4] per image, losses: empty in eval mode)."""
        image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
        objectness, deltas = self.head(features)
        num, num_anchors, height, width = objectness.shape
        # to anchor order: cells row by row, then the cell's anchors (as AnchorGenerator)
        objectness = objectness.permute(0, 2, 3, 1).reshape(num, -1)
        deltas = deltas.reshape(num, num_anchors, 4, height, width).permute(0, 3, 4, 1, 2).reshape(num, -1, 4)
        anchors = self.anchor_generator([(height, width)], image_size, dtype=deltas.dtype,
                                        device=deltas.device)
        if anchors.shape[0] != objectness.shape[1]:
            raise TextCNNError(f"RPN: the head gives {num_anchors} anchors per cell but the anchor "
                               f"generator {anchors.shape[0] // (height * width)}; expected as many")
        # proposals never carry gradient into the RPN (the paper's approximate joint training)
        decoded = self.box_coder.decode(deltas.detach().reshape(-1, 4), anchors.repeat(num, 1))
        proposals = self.filter_proposals(decoded.view(num, -1, 4), objectness.detach(), image_size)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise TextCNNError("RPN in training mode: expected targets, got None")
            labels, matched_boxes = self.assign_targets(anchors, targets)
            losses = self.compute_loss(objectness, deltas, labels, matched_boxes, anchors)
        return proposals, losses

    def filter_proposals(self, proposals: Tensor, objectness: Tensor, image_size: tuple[int, int]
                         ) -> list[Tensor]:
        """Top-k by objectness, clip, drop small boxes, NMS, keep the best post_nms_top_n."""
        out = []
        for boxes, scores in zip(proposals, objectness):
            top = scores.topk(min(self.pre_nms_top_n(), scores.numel())).indices
            boxes, scores = clip_boxes(boxes[top], image_size), scores[top]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            keep = nms(boxes, scores, self.nms_thresh)[: self.post_nms_top_n()]
            out.append(boxes[keep])
        return out

    def assign_targets(self, anchors: Tensor, targets: list[Target]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: labels [A] (1 positive, 0 negative, -1 ignored) and each anchor's matched
        ground-truth box [A, 4] (zeros where there is none)."""
        labels, matched_boxes = [], []
        for target in targets:
            gt = target["boxes"].to(anchors)
            if gt.numel() == 0:
                labels.append(torch.zeros(len(anchors), dtype=anchors.dtype, device=anchors.device))
                matched_boxes.append(torch.zeros_like(anchors))
                continue
            matches = self.matcher(box_iou(gt, anchors))
            image_labels = (matches >= 0).to(anchors.dtype)
            image_labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(image_labels)
            matched_boxes.append(gt[matches.clamp(min=0)])
        return labels, matched_boxes

    def compute_loss(self, objectness: Tensor, deltas: Tensor, labels: list[Tensor],
                     matched_boxes: list[Tensor], anchors: Tensor) -> dict[str, Tensor]:
        """`loss_objectness` and `loss_rpn_box_reg` over a balanced sample of anchors."""
        pos_masks, neg_masks = self.sampler(labels)
        positive, negative = torch.cat(pos_masks), torch.cat(neg_masks)
        sampled = positive | negative
        objectness, deltas = objectness.reshape(-1), deltas.reshape(-1, 4)
        all_labels = torch.cat(labels)
        all_anchors = anchors.repeat(len(labels), 1)
        count = int(sampled.sum())
        if count == 0:  # no anchors at all: nothing to learn, but keep the graph
            zero = objectness.sum() * 0.0 + deltas.sum() * 0.0
            return {"loss_objectness": zero, "loss_rpn_box_reg": zero.clone()}
        regression_targets = self.box_coder.encode(torch.cat(matched_boxes)[positive], all_anchors[positive])
        box_loss = F.smooth_l1_loss(deltas[positive], regression_targets, beta=1.0 / 9,
                                    reduction="sum") / count
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], all_labels[sampled])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}


__all__ = ["RPNHead", "RegionProposalNetwork", "train_eval"]
