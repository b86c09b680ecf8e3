"""Drawing detections on an image: box outlines with a class (and score) label, saved as PNG.

    array = draw_detections(image, detections, classes, scale=4)
    save_png(array, "out/detections.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write

# one colour per class (label 1 takes the first), cycling past the end
PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128)],
                   dtype=np.uint8)


READABLE_SIDE = 480  # `readable_scale` enlarges a drawing until its longer side has this many pixels


def readable_scale(height: int, width: int) -> int:
    """The whole factor that brings an image's longer side to at least READABLE_SIDE pixels, so
    that its boxes and labels can be read (a 96 px shapes image is drawn 5x)."""
    return max(1, math.ceil(READABLE_SIDE / max(height, width, 1)))


def _to_uint8(image: Tensor) -> np.ndarray:
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise TextCNNError(f"draw_detections: expected an image tensor [3, H, W] in [0, 1], got {got}")
    image = image.detach().float().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def _outline(array: np.ndarray, x1: int, y1: int, x2: int, y2: int, colour: np.ndarray, width: int) -> None:
    """Paint the `width`-pixel ring just inside the pixel rectangle columns x1..x2-1, rows y1..y2-1."""
    w = max(1, min(width, (x2 - x1 + 1) // 2, (y2 - y1 + 1) // 2))
    array[y1:y1 + w, x1:x2] = colour
    array[y2 - w:y2, x1:x2] = colour
    array[y1:y2, x1:x1 + w] = colour
    array[y1:y2, x2 - w:x2] = colour


def _labels(array: np.ndarray, texts: list[tuple[int, int, str, np.ndarray]]) -> np.ndarray:
    """Write each text on a filled tab of its colour, above its box when there is room (so the
    inside of the box stays visible), else just inside its top edge; moved left where it would
    run past the right edge, so every label lies inside the picture. The font grows with the
    picture (1/30 of its height, at least 11 px). Needs Pillow; without it the boxes alone are
    drawn."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return array
    pil = Image.fromarray(array)
    draw = ImageDraw.Draw(pil)
    try:
        font = ImageFont.load_default(size=max(11, array.shape[0] // 30))
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    for x, y, text, colour in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        ty = y - th if y - th >= 0 else y
        x = max(0, min(x, array.shape[1] - tw))
        draw.rectangle((x, ty, x + tw - 1, ty + th - 1), fill=tuple(int(c) for c in colour))
        ink = (0, 0, 0) if int(colour.astype(np.int32).sum()) > 380 else (255, 255, 255)
        draw.text((x + 2 - left, ty + 2 - top), text, fill=ink, font=font)
    return np.asarray(pil).copy()


def draw_detections(image: Tensor, detections: dict[str, Tensor], classes: Sequence[str], *,
                    score_threshold: float = 0.5, scale: int = 1, line_width: int | None = None,
                    show_labels: bool = True) -> np.ndarray:
    """The image as uint8 [H * scale, W * scale, 3] with one outline per detection scoring at least
    `score_threshold`, coloured by class, and a "class score" tab above it.

    Detections without "scores" (ground-truth targets) are all drawn, labelled by class only.
    A box (x1, y1, x2, y2) is outlined on the pixels just inside it (columns round(x1) ..
    round(x2) - 1), so the pixels strictly inside the outline are untouched. `scale` enlarges the
    image first (nearest neighbour) so that labels on small images stay legible.
    """
    if scale < 1:
        raise TextCNNError(f"draw_detections: expected scale >= 1, got {scale}")
    array = _to_uint8(image)
    if scale > 1:
        array = np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)
    height, width = array.shape[:2]
    boxes = detections["boxes"].detach().float().cpu().reshape(-1, 4) * scale
    labels = detections["labels"].detach().cpu().reshape(-1)
    scores = detections.get("scores")
    scores = scores.detach().float().cpu().reshape(-1) if scores is not None else None
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise TextCNNError(f"draw_detections: expected as many labels and scores as boxes ({len(boxes)}), "
                           f"got {len(labels)} labels and {len(scores) if scores is not None else 'no'} scores")
    line = line_width if line_width is not None else max(1, scale // 2)
    order = torch.argsort(scores, stable=True) if scores is not None else torch.arange(len(boxes))
    texts = []
    for i in order.tolist():  # lowest score first, so the best boxes end on top
        if scores is not None and float(scores[i]) < score_threshold:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[i])
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 <= x1 or y2 <= y1:
            continue
        label = int(labels[i])
        colour = PALETTE[(label - 1) % len(PALETTE)]
        _outline(array, x1, y1, x2, y2, colour, line)
        name = classes[label - 1] if 1 <= label <= len(classes) else str(label)
        texts.append((x1, y1, name if scores is None else f"{name} {float(scores[i]):.2f}", colour))
    return _labels(array, texts) if show_labels and texts else array


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 [H, W, 3] (or [H, W]) array as a PNG, atomically (a temporary file renamed
    over `path`, so a reader never sees half an image)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise TextCNNError(f"save_png: expected a uint8 [H, W, 3] array, got {array.dtype} {array.shape}")

    def write(tmp: Path) -> None:
        try:
            from PIL import Image
        except ImportError:
            import matplotlib.image as mpimg

            mpimg.imsave(tmp, array, format="png", cmap="gray" if array.ndim == 2 else None)
            return
        Image.fromarray(array).save(tmp, format="PNG")

    return atomic_write(path, write)


__all__ = ["PALETTE", "READABLE_SIDE", "draw_detections", "readable_scale", "save_png"]
