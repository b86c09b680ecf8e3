"""Box-aware augmentation: flips and zooms that move the boxes with the pixels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from textcnn.core.errors import TextCNNError
from vision.detection.data.base import PER_BOX_KEYS, Target


def _keep_boxes(target: Target, boxes: Tensor, keep: Tensor) -> Target:
    out = {**target, "boxes": boxes[keep]}
    for key in PER_BOX_KEYS:
        if key in target:
            out[key] = target[key][keep]
    return out


def hflip(image: Tensor, target: Target) -> tuple[Tensor, Target]:
    """Mirror an image [C, H, W] left-right and its boxes with it."""
    width = image.shape[-1]
    boxes = target["boxes"]
    flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)
    return image.flip(-1), {**target, "boxes": flipped}


def scale_jitter(image: Tensor, target: Target, *, scale_range: tuple[float, float] = (0.8, 1.2),
                 generator: torch.Generator | None = None, min_visible: float = 0.5
                 ) -> tuple[Tensor, Target]:
    """Zoom by a random factor in `scale_range`, keeping the image size.

    The image is resized (bilinear) and its boxes scaled by the same factors; a larger image is
    then cropped at a random offset, a smaller one pasted at a random offset on its mean colour.
    Boxes are clipped to the image; those keeping less than `min_visible` of their area (or
    under 1 px wide or tall) are dropped, with their labels.
    """
    height, width = image.shape[-2:]
    low, high = scale_range
    scale = low + (high - low) * float(torch.rand((), generator=generator))
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear",
                            align_corners=False)[0]
    factors = torch.tensor([new_w / width, new_h / height] * 2, dtype=torch.float32)
    boxes = target["boxes"].float() * factors

    def offset(extra: int) -> int:
        return int(torch.randint(0, abs(extra) + 1, (), generator=generator))

    dx, dy = offset(new_w - width), offset(new_h - height)
    if new_w >= width:
        resized, shift_x = resized[..., dx:dx + width], -dx
    else:
        shift_x = dx
    if new_h >= height:
        resized, shift_y = resized[..., dy:dy + height, :], -dy
    else:
        shift_y = dy
    out = resized
    if resized.shape[-2:] != (height, width):
        fill = image.float().mean(dim=(-2, -1), keepdim=True)
        out = fill.expand(image.shape[0], height, width).clone()
        top, left = max(shift_y, 0), max(shift_x, 0)  # a cropped axis is pasted at 0
        out[..., top:top + resized.shape[-2], left:left + resized.shape[-1]] = resized
    boxes = boxes + torch.tensor([shift_x, shift_y, shift_x, shift_y], dtype=torch.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = torch.stack((boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                           boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)), dim=1)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w >= 1) & (h >= 1) & (w * h >= min_visible * area)
    return out.to(image.dtype), _keep_boxes(target, clipped, keep)


class DetectionAugment:
    """Training augmentation: a random horizontal flip (probability `hflip`) then a random zoom
    (`scale_range`, None: off). `augment(images, targets, generator)` -> (images, targets); a
    batch tensor comes back as a batch tensor, a list as a list."""

    def __init__(self, hflip: float = 0.5, scale_range: tuple[float, float] | None = (0.8, 1.2),
                 min_visible: float = 0.5) -> None:
        if not 0.0 <= hflip <= 1.0:
            raise TextCNNError(f"DetectionAugment: expected hflip probability in [0, 1], got {hflip}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise TextCNNError(f"DetectionAugment: expected 0 < low <= high scale_range, got {scale_range}")
        self.hflip = hflip
        self.scale_range = tuple(scale_range) if scale_range is not None else None
        self.min_visible = min_visible

    def __call__(self, images: Tensor | Sequence[Tensor], targets: Sequence[Target],
                 generator: torch.Generator | None = None) -> tuple[Tensor | list[Tensor], list[Target]]:
        out_images, out_targets = [], []
        for image, target in zip(images, targets):
            if self.hflip > 0 and float(torch.rand((), generator=generator)) < self.hflip:
                image, target = hflip(image, target)
            if self.scale_range is not None:
                image, target = scale_jitter(image, target, scale_range=self.scale_range,
                                             generator=generator, min_visible=self.min_visible)
            out_images.append(image)
            out_targets.append(target)
        if isinstance(images, Tensor):
            return torch.stack(out_images), out_targets
        return out_images, out_targets

    def __repr__(self) -> str:
        return f"DetectionAugment(hflip={self.hflip}, scale_range={self.scale_range})"
