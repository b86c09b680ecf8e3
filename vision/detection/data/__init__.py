"""Detection data: a synthetic shapes set, COCO and Pascal VOC readers, and box-aware augmentation.

Every source gives a `DetectionData`: float RGB images in [0, 1] and one target per image,
`{"boxes": float32 [K, 4] (x1, y1, x2, y2), "labels": int64 [K]}` with labels 1..C (0 is
background) and `classes[label - 1]` the name of a label.

Box coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j + 1] x [i, i + 1], so the tight box of a mask whose columns run c0..c1 has x1 = c0 and
x2 = c1 + 1. COCO's [x, y, w, h] boxes use the same convention; Pascal VOC's 1-based inclusive
corners are converted (x1 = xmin - 1, x2 = xmax).

    from vision.detection.data import shapes_splits
    train, val, test = shapes_splits(seed=0)

The package, file by file: `base.py` (`DetectionData`), `shapes.py` (the synthetic set), `coco.py`,
`voc.py` and `augment.py`.
"""

from vision.detection.data.augment import DetectionAugment, hflip, scale_jitter
from vision.detection.data.base import PER_BOX_KEYS, DetectionData, Target
from vision.detection.data.coco import load_coco
from vision.detection.data.shapes import SHAPE_CLASSES, make_shapes, shapes_splits
from vision.detection.data.voc import load_voc

__all__ = ["PER_BOX_KEYS", "SHAPE_CLASSES", "DetectionAugment", "DetectionData", "Target", "hflip",
           "load_coco", "load_voc", "make_shapes", "scale_jitter", "shapes_splits"]
