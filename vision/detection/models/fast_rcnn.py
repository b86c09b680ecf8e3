"""Fast R-CNN (Girshick 2015): external proposals (selective search) pooled with RoI max pooling
from one shared feature map of the whole image, then Faster R-CNN's RoI heads.

    model = create_detector("fast_rcnn", num_classes=3)

The proposal stage is injected (`ProposalStage`): the default `SelectiveSearchProposals` runs
selective search on the CPU for every image and caches the boxes, since training sees the same
images every epoch and selective search costs far more than the network.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from textcnn.errors import TextCNNError
from vision.detection.base import DetectionTransform, Target
from vision.detection.generalized_rcnn import GeneralizedRCNN, ProposalStage
from vision.detection.models.faster_rcnn import make_backbone
from vision.detection.registry import register_detector
from vision.detection.roi_heads import FastRCNNPredictor, RoIHeads, RoIPool, TwoMLPHead


class SelectiveSearchProposals(nn.Module):
    """Selective search as a proposal stage: `(batch, features, targets) -> (boxes per image, {})`.

    The normalised batch is mapped back to [0, 1] with `mean` / `std` (the detector's transform),
    each image goes through `vision.detection.selective_search.selective_search_fast(scales,
    sigma, min_size)` (the paper's fast mode: several scales and similarity sets), boxes
    thinner than `min_box_size` px are dropped and the first `max_proposals` (selective
    search's own ranking, whole regions first) are kept. Results are cached per image,
    keyed by a hash of its pixels and the settings, in an LRU of at most `cache_size` images
    (0: no cache); `clear_cache()` empties it, e.g. before timing inference.
    """

    def __init__(self, *, max_proposals: int = 300, scales: Sequence[float] = (50.0, 100.0), sigma: float = 0.8,
                 min_size: int = 10, min_box_size: float = 2.0,
                 mean: Sequence[float] | Tensor = (0.5, 0.5, 0.5),
                 std: Sequence[float] | Tensor = (0.25, 0.25, 0.25), cache_size: int = 50_000) -> None:
        super().__init__()
        if max_proposals < 1 or cache_size < 0:
            raise TextCNNError(f"SelectiveSearchProposals: expected max_proposals >= 1 and "
                               f"cache_size >= 0, got {max_proposals} and {cache_size}")
        self.max_proposals = max_proposals
        self.scales, self.sigma, self.min_size = tuple(float(k) for k in scales), sigma, min_size
        self.min_box_size = min_box_size
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1).clone(),
                             persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1).clone(),
                             persistent=False)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def proposals(self, image: np.ndarray) -> Tensor:
        """Boxes [K, 4] (CPU float32) of one (H, W, 3) image in [0, 1], from the cache if seen."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        key = hashlib.sha1(image.tobytes()).hexdigest() + f"|{image.shape}|{self.scales}|{self.sigma}|{self.min_size}"
        boxes = self._cache.get(key)
        if boxes is not None:
            self._cache.move_to_end(key)
        else:
            # imported here: selective search (and scikit-image) is only needed when it runs
            from vision.detection.selective_search import selective_search_fast

            boxes = torch.as_tensor(selective_search_fast(image, scales=self.scales, sigma=self.sigma,
                                                          min_size=self.min_size), dtype=torch.float32).reshape(-1, 4)
            if self.cache_size:
                self._cache[key] = boxes
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        wide = (boxes[:, 2] - boxes[:, 0] >= self.min_box_size) & (boxes[:, 3] - boxes[:, 1] >= self.min_box_size)
        return boxes[wide][: self.max_proposals]

    def clear_cache(self) -> None:
        """Forget every cached image (e.g. before timing inference on images seen before)."""
        self._cache.clear()

    def forward(self, batch: Tensor, features: Tensor | None = None, targets: list[Target] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        images = (batch.detach() * self.std + self.mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        boxes = [self.proposals(image).to(device=batch.device, dtype=batch.dtype) for image in images]
        return boxes, {}


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
