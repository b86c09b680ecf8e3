"""Object detection on the vision backbones: R-CNN, Fast R-CNN, Faster R-CNN, YOLO v1 and SSD.

Conventions shared by every detector (torchvision's):

- images are float tensors `[3, H, W]` in [0, 1] (a list, or one `[N, 3, H, W]` batch);
- a target is `{"boxes": float [K, 4] (x1, y1, x2, y2) in pixels, "labels": int64 [K]}`;
- `num_classes` counts the object classes only; labels run 1..num_classes and 0 means
  background;
- in training mode `detector(images, targets)` returns a dict of scalar losses (their sum is
  the loss to minimise); in eval mode `detector(images)` returns one
  `{"boxes", "labels", "scores"}` dict per image, boxes in that image's own pixels.

    from vision.detection import create_detector, list_detectors
    model = create_detector("faster_rcnn", num_classes=3)
"""

from __future__ import annotations

from vision.detection.base import (
                                   DetectionTransform,
                                   Detector,
                                   RegistryBackbone,
                                   check_targets,
                                   empty_detections,
)
from vision.detection.registry import create_detector, list_detectors, register_detector

__all__ = ["DetectionTransform", "Detector", "RegistryBackbone", "check_targets", "create_detector",
           "empty_detections", "list_detectors", "register_detector"]
