"""A synthetic detection set: circles, squares and triangles of random size, angle and colour on
textured backgrounds, with their tight boxes."""

from __future__ import annotations

import math

import numpy as np
import torch

from textcnn.core.errors import TextCNNError
from vision.detection.data.base import DetectionData

SHAPE_CLASSES = ["circle", "square", "triangle"]


def _shape_mask(kind: int, cx: float, cy: float, extent: float, angle: float, size: int
                ) -> tuple[int, int, np.ndarray]:
    """Rasterise one shape in a local window: (top row, left column, bool mask [h, w]).

    A pixel is inside when its centre is; 1 = circle (diameter `extent`), 2 = axis-aligned square
    (side `extent`), 3 = equilateral triangle (side `extent`) rotated by `angle`.
    """
    if kind == 3:
        radius = extent / math.sqrt(3.0)
        turns = angle + np.array([0.0, 2.0, 4.0]) * math.pi / 3.0
        vx, vy = cx + radius * np.cos(turns), cy + radius * np.sin(turns)
        x0, x1, y0, y1 = vx.min(), vx.max(), vy.min(), vy.max()
    else:
        half = extent / 2.0
        x0, x1, y0, y1 = cx - half, cx + half, cy - half, cy + half
    left, top = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    right, bottom = min(int(math.ceil(x1)), size), min(int(math.ceil(y1)), size)
    px = np.arange(left, right, dtype=np.float32)[None, :] + 0.5 - cx
    py = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5 - cy
    if kind == 1:
        mask = px * px + py * py <= (extent / 2.0) ** 2
    elif kind == 2:
        mask = (np.abs(px) <= extent / 2.0) & (np.abs(py) <= extent / 2.0)
    else:
        # inside a convex polygon: the point is on the same side of all three edges
        ex, ey = vx - cx, vy - cy
        sides = [(ex[(k + 1) % 3] - ex[k]) * (py - ey[k]) - (ey[(k + 1) % 3] - ey[k]) * (px - ex[k])
                 for k in range(3)]
        mask = ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | \
               ((sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
    return top, left, mask


def _tight_box(top: int, left: int, mask: np.ndarray) -> np.ndarray | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return None
    return np.array([left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1],
                    dtype=np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _contrasting_colour(rng: np.random.Generator, around: np.ndarray, min_distance: float) -> np.ndarray:
    """A random colour at least `min_distance` (RGB Euclidean) from every pixel in `around`
    [P, 3]; when 16 tries find none, the try farthest from its nearest pixel."""
    candidates = rng.random((16, 3), dtype=np.float32)
    if len(around) == 0:
        return candidates[0]
    around = around[::3]  # the background is smooth before noise: every third pixel is plenty
    nearest = np.sqrt(((candidates[:, None, :] - around[None, :, :]) ** 2).sum(-1)).min(1)
    good = np.flatnonzero(nearest >= min_distance)
    return candidates[good[0] if len(good) else int(nearest.argmax())]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random linear gradient between two related colours, [size, size, 3] float32."""
    start = rng.random(3, dtype=np.float32)
    end = np.clip(start + rng.uniform(-0.35, 0.35, 3).astype(np.float32), 0.0, 1.0)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    t = np.clip(grid[None, :] * math.cos(angle) + grid[:, None] * math.sin(angle) + 0.5, 0.0, 1.0)
    return start + (end - start) * t[..., None]


def _shapes_image(rng: np.random.Generator, size: int, count: int, object_size: tuple[float, float],
                  max_iou: float, min_visible: float, min_contrast: float, noise: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image [size, size, 3] with up to `count` shapes: (image, boxes [K, 4], labels [K])."""
    canvas = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int64)  # which object each pixel shows (-1: none)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    areas: list[int] = []
    visible: list[int] = []
    for _ in range(count):
        for _attempt in range(40):  # rejection sampling: a placement obeying the overlap rules
            kind = int(rng.integers(1, 4))
            extent = float(rng.uniform(*object_size))
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
            margin = (extent / math.sqrt(3.0) if kind == 3 else extent / 2.0) + 1.0  # stay inside
            cx, cy = rng.uniform(margin, size - margin, 2)
            top, left, mask = _shape_mask(kind, float(cx), float(cy), extent, angle, size)
            box = _tight_box(top, left, mask)
            if box is None:
                continue
            if boxes and _iou(box, np.stack(boxes)).max() > max_iou:
                continue
            window = owner[top:top + mask.shape[0], left:left + mask.shape[1]]
            covered = np.bincount(window[mask] + 1, minlength=len(boxes) + 1)[1:]
            if boxes and any(visible[k] - covered[k] < min_visible * areas[k] for k in range(len(boxes))):
                continue  # it would hide too much of an earlier shape
            break
        else:
            break  # no room left: fewer shapes in this image
        # the ring of pixels just around the shape decides which colours stand out
        r0, c0 = max(top - 2, 0), max(left - 2, 0)
        r1, c1 = min(top + mask.shape[0] + 2, size), min(left + mask.shape[1] + 2, size)
        inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        inside[top - r0:top - r0 + mask.shape[0], left - c0:left - c0 + mask.shape[1]] = mask
        colour = _contrasting_colour(rng, canvas[r0:r1, c0:c1][~inside], min_contrast)
        canvas[top:top + mask.shape[0], left:left + mask.shape[1]][mask] = colour
        for k in range(len(boxes)):
            visible[k] -= int(covered[k])
        window[mask] = len(boxes)
        boxes.append(box)
        labels.append(kind)
        areas.append(int(mask.sum()))
        visible.append(int(mask.sum()))
    sigma = rng.uniform(*noise)
    if sigma > 0:
        canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(sigma)
    np.clip(canvas, 0.0, 1.0, out=canvas)
    return (canvas, np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
            np.asarray(labels, dtype=np.int64))


def make_shapes(count: int, *, seed: int, size: int = 96, max_objects: int = 4, min_objects: int = 1,
                object_size: tuple[float, float] | None = None, max_iou: float = 0.3,
                min_visible: float = 0.7, min_contrast: float = 0.4,
                noise: tuple[float, float] = (0.01, 0.06)) -> DetectionData:
    """`count` synthetic images of circles (label 1), squares (2) and triangles (3).

    Each image has a random two-colour gradient background, `min_objects`..`max_objects` solid
    shapes of random colour (at least `min_contrast` away, in RGB, from every pixel around them;
    the best of 16 tries when none is), extent `object_size` px, position and (triangles)
    rotation (default extent: 12 to 40 px at size 96, in proportion at other sizes), and Gaussian pixel noise with a random standard deviation in `noise`. Shapes may
    overlap, but no two boxes have IoU above `max_iou` and every shape keeps at least
    `min_visible` of its pixels in view. An image holds fewer shapes only when 40 tries found no
    room. Boxes are the tight boxes of each shape's pixels (in view or not).

    Deterministic for a seed, and image i depends only on (seed, i): `make_shapes(10, seed=s)` is
    the first 10 images of `make_shapes(100, seed=s)`.
    """
    if not 0 <= min_objects <= max_objects:
        raise TextCNNError(f"make_shapes: expected 0 <= min_objects <= max_objects, "
                           f"got {min_objects} and {max_objects}")
    if object_size is None:
        object_size = (size / 8.0, size * 40.0 / 96.0)
    low, high = object_size
    if not 1 <= low <= high <= size - 2:
        raise TextCNNError(f"make_shapes: expected 1 <= object_size[0] <= object_size[1] <= size - 2 "
                           f"= {size - 2}, got {object_size}")
    images = np.empty((count, size, size, 3), dtype=np.float32)
    targets = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(count)):
        rng = np.random.default_rng(child)
        objects = int(rng.integers(min_objects, max_objects + 1))
        images[i], boxes, labels = _shapes_image(rng, size, objects, object_size, max_iou,
                                                 min_visible, min_contrast, noise)
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return DetectionData(tensor, targets, list(SHAPE_CLASSES), source=f"shapes(seed={seed})")


def shapes_splits(*, seed: int = 0, size: int = 96, train: int = 2000, val: int = 200, test: int = 300,
                  max_objects: int = 4) -> tuple[DetectionData, DetectionData, DetectionData]:
    """Train, validation and test shapes sets (at most `max_objects` shapes an image); each split
    has its own seed (3 * seed + 0, 1, 2), so no two splits (of any `seed`) share an image stream."""
    return tuple(make_shapes(n, seed=3 * seed + k, size=size,  # type: ignore[return-value]
                             max_objects=max_objects)
                 for k, n in enumerate((train, val, test)))
