"""Image batch transforms in plain torch: resizing, normalisation and augmentation.

Every transform takes a float batch `[N, C, H, W]`. The random ones draw from an explicit
`torch.Generator`, so the same seed gives the same batch, and the training engine's per-epoch
generator makes augmented runs repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from textcnn.core.errors import TextCNNError


def _check_batch(images: Tensor, what: str) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise TextCNNError(f"{what}: expected a float batch [N, C, H, W], got "
                           f"{images.dtype} {tuple(images.shape)}")


def resize(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize to `size` (a side, or (height, width)); a no-op at that size already."""
    _check_batch(images, "resize")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False)


def to_channels(images: Tensor, channels: int) -> Tensor:
    """Grey -> RGB by repeating the channel, RGB -> grey by ITU-R 601 luma."""
    _check_batch(images, "to_channels")
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
        return (images * luma[:, None, None]).sum(1, keepdim=True)
    raise TextCNNError(f"channels: expected 1 or 3 (from {have}), got {channels}")


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - m) / s


def random_crop(images: Tensor, padding: int, *, generator: torch.Generator) -> Tensor:
    """Pad each side with `padding` zeros, then cut a window of the original size at a random
    offset per image (a shift of up to `padding` pixels in each direction)."""
    _check_batch(images, "random_crop")
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None]  # [N, 1, H, 1]
    cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(images: Tensor, p: float, *, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability `p`."""
    _check_batch(images, "random_hflip")
    if p <= 0:
        return images
    flip = torch.rand(images.shape[0], generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def gaussian_noise(images: Tensor, std: float, *, generator: torch.Generator) -> Tensor:
    """Add N(0, std^2) noise to every pixel."""
    _check_batch(images, "gaussian_noise")
    if std <= 0:
        return images
    return images + std * torch.randn(images.shape, generator=generator, dtype=images.dtype)


@dataclass
class Augment:
    """Training augmentation: random crop with padding, horizontal flip, gaussian noise."""

    crop_padding: int = 0  # shift by up to this many pixels (zero padding); 0: off
    hflip: float = 0.0  # probability of a left-right mirror; keep 0 for digits and text
    noise_std: float = 0.0  # std of added gaussian noise, in normalised units; 0: off

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) \
                or self.crop_padding < 0:
            raise TextCNNError(f"augment.crop_padding: expected an integer >= 0, "
                               f"got {self.crop_padding!r}")
        if not 0.0 <= self.hflip <= 1.0:
            raise TextCNNError(f"augment.hflip: expected a probability in [0, 1], got {self.hflip!r}")
        if not self.noise_std >= 0:
            raise TextCNNError(f"augment.noise_std: expected a number >= 0, got {self.noise_std!r}")

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.crop_padding or self.hflip or self.noise_std)

    def __call__(self, images: Tensor, *, generator: torch.Generator) -> Tensor:
        images = random_crop(images, self.crop_padding, generator=generator)
        images = random_hflip(images, self.hflip, generator=generator)
        return gaussian_noise(images, self.noise_std, generator=generator)


__all__ = ["Augment", "gaussian_noise", "normalize", "random_crop", "random_hflip", "resize",
           "to_channels"]
