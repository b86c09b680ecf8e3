"""Image transforms against brute-force versions: crops are shifted windows of the padded
image, flips are exact mirrors, and every random transform repeats for a seed."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from textcnn.core.errors import TextCNNError
from vision.transforms import (
    Augment,
    gaussian_noise,
    normalize,
    random_crop,
    random_hflip,
    resize,
    to_channels,
)

BATCH = torch.rand(16, 3, 9, 7, generator=torch.Generator().manual_seed(0))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_augment_is_deterministic_for_a_seed() -> None:
    aug = Augment(crop_padding=2, hflip=0.5, noise_std=0.1)
    assert torch.equal(aug(BATCH, generator=gen(3)), aug(BATCH, generator=gen(3)))
    assert not torch.equal(aug(BATCH, generator=gen(3)), aug(BATCH, generator=gen(4)))
    assert torch.equal(Augment()(BATCH, generator=gen(3)), BATCH) and not Augment().active


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Brute force: out[y, x] = image[y + dy, x + dx], zero outside."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                out[:, y, x] = image[:, y + dy, x + dx]
    return out


def test_random_crop_keeps_size_and_is_a_shifted_window() -> None:
    padding = 2
    out = random_crop(BATCH, padding, generator=gen(0))
    assert out.shape == BATCH.shape
    offsets = set()
    for image, cropped in zip(BATCH, out):
        matches = [(dy, dx) for dy in range(-padding, padding + 1)
                   for dx in range(-padding, padding + 1)
                   if torch.equal(shifted(image, dy, dx), cropped)]
        assert matches, "not a shifted window of the zero-padded image"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets differ per image
    assert torch.equal(random_crop(BATCH, 0, generator=gen(0)), BATCH)


def test_flip_is_an_exact_mirror() -> None:
    assert torch.equal(random_hflip(BATCH, 1.0, generator=gen(0)), BATCH.flip(-1))
    assert torch.equal(random_hflip(BATCH, 0.0, generator=gen(0)), BATCH)
    out = random_hflip(BATCH, 0.5, generator=gen(0))
    mirrored = [torch.equal(o, b.flip(-1)) for o, b in zip(out, BATCH)]
    kept = [torch.equal(o, b) for o, b in zip(out, BATCH)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)
    reference = torch.stack([b[:, :, torch.arange(b.shape[-1] - 1, -1, -1)] for b in BATCH])
    assert torch.equal(BATCH.flip(-1), reference)


def test_gaussian_noise_has_the_asked_spread() -> None:
    big = torch.zeros(64, 1, 32, 32)
    noise = gaussian_noise(big, 0.3, generator=gen(1))
    assert abs(noise.mean().item()) < 0.01 and noise.std().item() == pytest.approx(0.3, rel=0.02)
    assert torch.equal(noise, gaussian_noise(big, 0.3, generator=gen(1)))


def test_resize_channels_and_normalize() -> None:
    grey = torch.rand(2, 1, 8, 8)
    up = resize(grey, 32)
    assert up.shape == (2, 1, 32, 32)
    torch.testing.assert_close(up, F.interpolate(grey, scale_factor=4, mode="bilinear"))
    assert resize(grey, 8) is grey
    torch.testing.assert_close(resize(torch.full((1, 1, 8, 8), 0.25), (5, 11)),
                               torch.full((1, 1, 5, 11), 0.25))
    rgb = to_channels(grey, 3)
    assert rgb.shape == (2, 3, 8, 8) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    torch.testing.assert_close(to_channels(rgb, 1), grey)  # luma weights sum to 1
    torch.testing.assert_close(normalize(rgb, [0.5, 0.5, 0.5], [2.0, 2.0, 2.0]), (rgb - 0.5) / 2)
    with pytest.raises(TextCNNError, match="float batch"):
        resize(torch.zeros(2, 8, 8, dtype=torch.uint8), 4)
    with pytest.raises(TextCNNError, match="channels"):
        to_channels(grey, 2)


def test_augment_rejects_bad_settings() -> None:
    with pytest.raises(TextCNNError, match="augment.hflip"):
        Augment(hflip=1.5)
    with pytest.raises(TextCNNError, match="augment.crop_padding"):
        Augment(crop_padding=-1)
