"""The two-stage detector skeleton shared by Fast R-CNN and Faster R-CNN (as in torchvision).

A backbone turns the batch into one feature map; a proposal stage turns the batch and the
features into candidate boxes (an RPN in Faster R-CNN, selective search in Fast R-CNN); the RoI
heads pool each proposal's features, classify it and refine its box. Every part is injected, so
the two detectors differ only in what they hand to `GeneralizedRCNN`.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.detection.base import Detections, DetectionTransform, Detector, Target


class ProposalStage(Protocol):
    """Anything called as `stage(batch, features, targets)` that returns
    (boxes [K_i, 4] xyxy per image in batch pixels, a dict of losses (empty when it has none)).
    `targets` is None in eval mode."""

    def __call__(self, batch: Tensor, features: Tensor, targets: list[Target] | None
                 ) -> tuple[list[Tensor], dict[str, Tensor]]: ...


class GeneralizedRCNN(Detector):
    """backbone -> proposal stage -> RoI heads.

    - `backbone(batch)` gives one feature map [N, C, h, w];
    - `rpn(batch, features, targets)` gives (proposals per image, proposal losses);
    - `roi_heads(features, proposals, image_size, targets)` gives (detections per image,
      detector losses).

    Training returns the proposal and detector losses merged into one dict; eval returns the
    RoI heads' detections (batch pixels; `Detector.forward` maps them back to each image).
    """

    def __init__(self, *, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module,
                 transform: DetectionTransform, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.transform = transform
        self.num_classes = num_classes

    def forward_batch(self, batch: Tensor, targets: list[Target] | None
                      ) -> dict[str, Tensor] | list[Detections]:
        features = self.backbone(batch)
        if not isinstance(features, Tensor) or features.dim() != 4:
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise TextCNNError(f"two-stage detector: expected the backbone to return one feature map "
                               f"[N, C, h, w], got {got}")
        image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, image_size, targets)
        if self.training:
            return {**proposal_losses, **detector_losses}
        return detections


__all__ = ["GeneralizedRCNN", "ProposalStage"]
