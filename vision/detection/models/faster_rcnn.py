"""Faster R-CNN (Ren et al. 2015): a region proposal network shares the backbone's features with
Fast R-CNN's RoI heads, so proposals cost one small conv head instead of selective search.

    model = create_detector("faster_rcnn", num_classes=3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from textcnn.core.errors import TextCNNError
from vision.detection.base import DetectionTransform, RegistryBackbone
from vision.detection.generalized_rcnn import GeneralizedRCNN
from vision.detection.registry import register_detector
from vision.detection.roi_heads import FastRCNNPredictor, RoIHeads, RoIPool, TwoMLPHead
from vision.detection.rpn import RegionProposalNetwork, RPNHead
from vision.ops import AnchorGenerator


class FasterRCNN(GeneralizedRCNN):
    """Backbone -> `RegionProposalNetwork` -> `RoIHeads` (RoIAlign by default).

    Training returns `loss_objectness`, `loss_rpn_box_reg` (RPN) and `loss_classifier`,
    `loss_box_reg` (RoI heads), trained jointly ("approximate joint training": proposals are
    treated as constants).
    """


def make_backbone(backbone: str | nn.Module, backbone_kwargs: dict[str, Any] | None) -> nn.Module:
    """A registry model name -> `RegistryBackbone`; a module is used as it is (it must expose
    `out_channels`)."""
    if isinstance(backbone, str):
        return RegistryBackbone(backbone, **(backbone_kwargs or {}))
    if backbone_kwargs:
        raise TextCNNError("backbone_kwargs: only used with a backbone name, got a module as well")
    if not isinstance(getattr(backbone, "out_channels", None), int):
        raise TextCNNError(f"backbone: expected a registry model name or a module with an int "
                           f"`out_channels`, got {type(backbone).__name__}")
    return backbone


@register_detector("faster_rcnn")
def faster_rcnn(
    *,
    num_classes: int,  # object classes; labels 1..num_classes, 0 is background
    backbone: str | nn.Module = "resnet18_small",  # registry name (stride 8) or a module with out_channels
    backbone_kwargs: dict[str, Any] | None = None,  # e.g. {"widths": (8, 16, 32, 64)} for a narrower net
    image_size: int = 96,  # every image is resized to image_size x image_size
    mean: Sequence[float] = (0.5, 0.5, 0.5),  # input normalisation
    std: Sequence[float] = (0.25, 0.25, 0.25),
    anchor_sizes: Sequence[float] = (16, 24, 32, 48),  # px; bracket 12-40 px objects (torchvision: 32-512)
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),  # height / width; 12 anchors per cell in all
    rpn_pre_nms_top_n_train: int = 600,  # best anchors decoded per image before NMS (torchvision 2000)
    rpn_pre_nms_top_n_test: int = 300,  # (torchvision 1000)
    rpn_post_nms_top_n_train: int = 150,  # proposals per image after NMS (torchvision 2000)
    rpn_post_nms_top_n_test: int = 100,  # (torchvision 1000)
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,  # anchor IoU >= this: object (plus each box's best anchor)
    rpn_bg_iou_thresh: float = 0.3,  # anchor IoU < this: background; in between: ignored
    rpn_batch_size_per_image: int = 256,  # anchors sampled per image for the RPN losses
    rpn_positive_fraction: float = 0.5,
    rpn_min_size: float = 1e-3,  # proposals narrower or shorter than this (px) are dropped
    roi_output_size: int = 7,  # RoIAlign output, 7x7 cells
    roi_sampling_ratio: int = 2,  # bilinear samples per bin axis
    representation_size: int = 256,  # width of the two fully connected layers (torchvision 1024)
    box_fg_iou_thresh: float = 0.5,  # RoI IoU >= this: foreground, else background
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 128,  # RoIs sampled per image (torchvision 512)
    box_positive_fraction: float = 0.25,
    bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),  # BoxCoder weights of the second stage
    box_score_thresh: float = 0.05,  # eval: class scores at or below this are dropped
    box_nms_thresh: float = 0.5,  # eval: NMS within each class
    box_detections_per_img: int = 100,  # eval: at most this many detections per image
) -> FasterRCNN:
    """Faster R-CNN sized for 96x96 images with objects of about 12-40 px; defaults are
    torchvision's except where a comment says otherwise.

    The default backbone, resnet18_small (3x3 stem, no max pool, widths 16-32-64-128), gives 128
    channels at stride 8: a 12x12 map at 96 px, with 12 anchors per cell (sizes x ratios, one
    level). The RPN keeps 600 / 300 (train / eval) anchors before NMS at 0.7 and 150 / 100
    proposals after; the RoI heads pool 7x7 with RoIAlign into two fully connected layers of
    256, sample 128 RoIs per image (a quarter foreground at IoU >= 0.5) and, in eval, keep class
    scores > 0.05 after per-class NMS at 0.5, at most 100 detections per image.
    """
    body = make_backbone(backbone, backbone_kwargs)
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    rpn = RegionProposalNetwork(
        anchor_generator=anchors,
        head=RPNHead(body.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh, min_size=rpn_min_size)
    roi_heads = RoIHeads(
        box_roi_pool=RoIPool(roi_output_size, sampling_ratio=roi_sampling_ratio, kind="align"),
        box_head=TwoMLPHead(body.out_channels * roi_output_size ** 2, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
        bbox_reg_weights=bbox_reg_weights, score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img)
    transform = DetectionTransform(size=(image_size, image_size), mean=mean, std=std)
    return FasterRCNN(backbone=body, rpn=rpn, roi_heads=roi_heads, transform=transform,
                      num_classes=num_classes)


__all__ = ["FasterRCNN", "faster_rcnn", "make_backbone"]
