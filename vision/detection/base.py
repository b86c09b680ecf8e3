"""What every detector shares: the input/target contract, a registry backbone, the transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.registry import create_model

Target = dict[str, Tensor]
Detections = dict[str, Tensor]


def check_targets(targets: Sequence[Target] | None, count: int) -> list[Target]:
    """Validate training targets: one dict per image with float boxes [K, 4] and int64 labels [K]
    (K may be 0). Raises `TextCNNError` saying what was expected and what came."""
    if targets is None:
        raise TextCNNError("detector in training mode: expected targets (one dict per image), got None")
    if len(targets) != count:
        raise TextCNNError(f"detector: expected {count} targets (one per image), got {len(targets)}")
    checked = []
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise TextCNNError(f"target {i}: expected a dict with 'boxes' and 'labels', got {t!r:.80}")
        boxes, labels = t["boxes"], t["labels"]
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise TextCNNError(f"target {i}: expected boxes [K, 4], got {tuple(boxes.shape)}")
        if labels.shape != boxes.shape[:1]:
            raise TextCNNError(f"target {i}: expected labels [{boxes.shape[0]}], got {tuple(labels.shape)}")
        if len(boxes) and bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
            raise TextCNNError(f"target {i}: every box needs x2 > x1 and y2 > y1")
        if len(labels) and int(labels.min()) < 1:
            raise TextCNNError(f"target {i}: labels run 1..num_classes (0 is background), "
                               f"got {int(labels.min())}")
        checked.append({**t, "boxes": boxes.float(), "labels": labels.long()})
    return checked


def empty_detections(device: torch.device | str | None = None) -> Detections:
    """The detections of an image in which nothing was found."""
    return {"boxes": torch.zeros(0, 4, device=device), "labels": torch.zeros(0, dtype=torch.long, device=device),
            "scores": torch.zeros(0, device=device)}


class RegistryBackbone(nn.Module):
    """A model from the vision registry used as a feature extractor: `forward_features` only.

    `out_channels` and `stride` are measured with one dummy forward at `probe_size`.
    """

    def __init__(self, name: str = "resnet18_small", *, in_channels: int = 3, probe_size: int = 64,
                 **kwargs: Any) -> None:
        super().__init__()
        self.name = name
        self.body = create_model(name, num_classes=0, in_channels=in_channels, **kwargs)
        self.body.head_pool = nn.Identity()  # unused: the head is never run
        with torch.no_grad():
            was_training = self.body.training
            self.body.eval()
            probe = self.body.forward_features(torch.zeros(1, in_channels, probe_size, probe_size))
            self.body.train(was_training)
        self.out_channels = int(probe.shape[1])
        self.stride = probe_size // int(probe.shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_features(x)


class DetectionTransform(nn.Module):
    """Images in, one normalised batch out; detections mapped back to each image's pixels.

    Every image is resized to `size` (H, W) (None: all images must already share one size);
    boxes of the targets are scaled with them.
    """

    def __init__(self, *, size: tuple[int, int] | None = None,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)) -> None:
        super().__init__()
        self.size = tuple(size) if size is not None else None
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[Target] | None = None
                ) -> tuple[Tensor, list[Target] | None, list[tuple[int, int]]]:
        """(batch [N, 3, H, W], resized targets, original (h, w) per image)."""
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise TextCNNError(f"detector: expected images [N, C, H, W] or a list of [C, H, W], "
                                   f"got {tuple(images.shape)}")
            images = list(images)
        if not images:
            raise TextCNNError("detector: expected at least one image, got none")
        original = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        size = self.size
        if size is None:
            if len(set(original)) > 1:
                raise TextCNNError(f"detector: images differ in size {sorted(set(original))}; "
                                   "give the transform a size")
            size = original[0]
        batch = []
        out_targets = [] if targets is not None else None
        for i, img in enumerate(images):
            if img.dim() != 3:
                raise TextCNNError(f"detector: image {i}: expected [C, H, W], got {tuple(img.shape)}")
            img = img.float()
            if original[i] != size:
                img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            batch.append((img - self.mean) / self.std)
            if targets is not None:
                sy, sx = size[0] / original[i][0], size[1] / original[i][1]
                scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32, device=img.device)
                out_targets.append({**targets[i], "boxes": targets[i]["boxes"] * scale})
        return torch.stack(batch), out_targets, original

    def postprocess(self, detections: list[Detections], batch_size: tuple[int, int],
                    original: Sequence[tuple[int, int]]) -> list[Detections]:
        """Scale boxes from the batch's (H, W) back to each original image."""
        out = []
        for det, (h, w) in zip(detections, original):
            sy, sx = h / batch_size[0], w / batch_size[1]
            scale = torch.tensor([sx, sy, sx, sy], dtype=det["boxes"].dtype, device=det["boxes"].device)
            out.append({**det, "boxes": det["boxes"] * scale})
        return out


class Detector(nn.Module):
    """Base class: `forward(images, targets=None)` -> losses (training) or detections (eval).

    Subclasses set `num_classes` and `transform` and implement `forward_batch(batch, targets)`,
    which sees the transformed batch and targets in batch pixels and returns losses in training
    mode, detections in batch pixels in eval mode.
    """

    num_classes: int
    transform: DetectionTransform

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[Target] | None = None
                ) -> dict[str, Tensor] | list[Detections]:
        if self.training:
            count = len(images)
            targets = check_targets(targets, count)
        batch, batch_targets, original = self.transform(images, targets if self.training else None)
        if self.training:
            return self.forward_batch(batch, batch_targets)
        detections = self.forward_batch(batch, None)
        return self.transform.postprocess(detections, tuple(batch.shape[-2:]), original)

    def forward_batch(self, batch: Tensor, targets: list[Target] | None
                      ) -> dict[str, Tensor] | list[Detections]:
        raise NotImplementedError


__all__ = ["Detections", "DetectionTransform", "Detector", "RegistryBackbone", "Target", "check_targets",
           "empty_detections"]
