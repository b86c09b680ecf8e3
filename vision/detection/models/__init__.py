"""Detector files; importing them registers their builders."""

from vision.detection.models import fast_rcnn, faster_rcnn, rcnn, ssd, yolo  # noqa: F401
