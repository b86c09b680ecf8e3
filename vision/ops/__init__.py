"""Box and region ops for detection: box geometry, NMS, box coding, matching and sampling,
anchors, and RoI pooling. Pure torch: every op runs on its inputs' device.

    from vision.ops import box_iou, nms, roi_align
"""

from __future__ import annotations

from vision.ops.anchors import AnchorGenerator, ssd_default_boxes, ssd_scales
from vision.ops.boxes import box_area, box_convert, box_iou, clip_boxes, remove_small_boxes
from vision.ops.coder import BoxCoder
from vision.ops.matcher import BalancedPositiveNegativeSampler, Matcher
from vision.ops.nms import batched_nms, nms
from vision.ops.roi import roi_align, roi_pool

__all__ = ["AnchorGenerator", "BalancedPositiveNegativeSampler", "BoxCoder", "Matcher",
           "batched_nms", "box_area", "box_convert", "box_iou", "clip_boxes", "nms",
           "remove_small_boxes", "roi_align", "roi_pool", "ssd_default_boxes", "ssd_scales"]
