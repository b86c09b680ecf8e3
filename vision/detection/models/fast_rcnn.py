"""Fast R-CNN (Girshick 2015): external proposals (selective search) pooled with RoI max pooling
from one shared feature map of the whole image, then Faster R-CNN's RoI heads.

    model = create_detector("fast_rcnn", num_classes=3)

The proposal stage is injected (`ProposalStage`): the default `SelectiveSearchProposals` runs
selective search on the CPU for every image and caches the boxes, since training sees the same
images every epoch and selective search costs far more than the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from vision.detection.base import DetectionTransform
from vision.detection.generalized_rcnn import GeneralizedRCNN, ProposalStage
from vision.detection.models.faster_rcnn import make_backbone
from vision.detection.registry import register_detector
from vision.detection.roi_heads import FastRCNNPredictor, RoIHeads, RoIPool, TwoMLPHead
from vision.detection.selective_search import SelectiveSearchProposals


class FastRCNN(GeneralizedRCNN):
    """Backbone -> injected proposal stage -> `RoIHeads` (RoI max pooling by default).

    `proposals` is any `ProposalStage`; None gives `SelectiveSearchProposals` with the
    transform's mean and std. Training returns `loss_classifier` and `loss_box_reg` plus
    whatever losses the proposal stage returns (none for selective search).
    """

    def __init__(self, *, backbone: nn.Module, roi_heads: nn.Module, transform: DetectionTransform,
                 num_classes: int, proposals: ProposalStage | nn.Module | None = None) -> None:
        if proposals is None:
            proposals = SelectiveSearchProposals(mean=transform.mean, std=transform.std)
        super().__init__(backbone=backbone, rpn=proposals, roi_heads=roi_heads, transform=transform,
                         num_classes=num_classes)

    @property
    def proposals(self) -> nn.Module:
        """The proposal stage (stored as `rpn`, the slot `GeneralizedRCNN` calls)."""
        return self.rpn


@register_detector("fast_rcnn")
def fast_rcnn(
    *,
    num_classes: int,  # object classes; labels 1..num_classes, 0 is background
    backbone: str | nn.Module = "resnet18_small",  # registry name (stride 8) or a module with out_channels
    backbone_kwargs: dict[str, Any] | None = None,  # e.g. {"widths": (8, 16, 32, 64)} for a narrower net
    image_size: int = 96,  # every image is resized to image_size x image_size
    mean: Sequence[float] = (0.5, 0.5, 0.5),  # input normalisation
    std: Sequence[float] = (0.25, 0.25, 0.25),
    proposals: nn.Module | None = None,  # a ProposalStage; None: selective search (below)
    max_proposals: int = 300,  # selective-search boxes kept per image (the paper: 2000 at ~500 px)
    ss_scales: Sequence[float] = (50.0, 100.0),  # Felzenszwalb scales of selective search (fast mode)
    ss_sigma: float = 0.8,  # Gaussian smoothing before segmentation
    ss_min_size: int = 10,  # smallest initial segment, px
    roi_output_size: int = 7,  # RoI max pooling output, 7x7 cells (the paper's)
    representation_size: int = 256,  # width of fc6 / fc7 (the paper's VGG16: 4096)
    box_fg_iou_thresh: float = 0.5,  # RoI IoU >= this: foreground, else background
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 64,  # RoIs sampled per image (the paper: 128 per 2 images)
    box_positive_fraction: float = 0.25,  # the paper's 25% foreground
    bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),  # BoxCoder weights (targets normalised, as the paper)
    box_score_thresh: float = 0.05,  # eval: class scores at or below this are dropped
    box_nms_thresh: float = 0.5,  # eval: NMS within each class
    box_detections_per_img: int = 100,  # eval: at most this many detections per image
) -> FastRCNN:
    """Fast R-CNN for 96x96 images with objects of about 12-40 px.

    The default backbone, resnet18_small (widths 16-32-64-128, stride 8), gives one 12x12 map at
    96 px from which each proposal is max pooled to 7x7, then two fully connected layers of 256
    feed the class scores and class-specific boxes. Proposals come from selective search (at
    most 300 per image, cached) unless `proposals` injects another stage.
    """
    body = make_backbone(backbone, backbone_kwargs)
    transform = DetectionTransform(size=(image_size, image_size), mean=mean, std=std)
    if proposals is None:
        proposals = SelectiveSearchProposals(max_proposals=max_proposals, scales=ss_scales, sigma=ss_sigma,
                                             min_size=ss_min_size, mean=mean, std=std)
    roi_heads = RoIHeads(
        box_roi_pool=RoIPool(roi_output_size, kind="max"),
        box_head=TwoMLPHead(body.out_channels * roi_output_size ** 2, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
        bbox_reg_weights=bbox_reg_weights, score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img)
    return FastRCNN(backbone=body, roi_heads=roi_heads, transform=transform, num_classes=num_classes,
                    proposals=proposals)


__all__ = ["FastRCNN", "ProposalStage", "SelectiveSearchProposals", "fast_rcnn"]
