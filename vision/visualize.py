"""Zeiler & Fergus (2014) style pictures of a network's first layer, as PNG grids.

- `filter_grid`: every first-layer filter (colour filters in RGB, others as grey).
- `activation_grid`: a few inputs, each followed by the feature maps of chosen filters.
- `patch_grid`: for each chosen filter, the input patches (its receptive field) that excite it
  most over a set of images, one patch per image.

Grids are plain arrays: cells of equal size on a mid-grey background (so black and white
patches both stand out) with `GAP` pixels between and around them; small pictures are scaled up by a whole factor (nearest neighbour) until their
longer side reaches `CELL`. PNGs are written atomically and have exactly the grid's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from textcnn.core.conv import ConvBlock2d
from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write

GAP = 2  # background pixels between and around cells
BACKGROUND = 0.5  # mid grey
CELL = 64  # pictures are scaled up by whole factors until their longer side is at least this
FILTER_COLUMNS = 8  # filters per row in `filter_grid`


def scale_factor(height: int, width: int) -> int:
    """The whole factor that brings the longer side up to at least `CELL` pixels."""
    return max(1, math.ceil(CELL / max(height, width)))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of `[h, w, 3]` by a whole `factor`."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def grid(cells: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Lay out rows of equal-size `[h, w, 3]` cells on grey, `GAP` pixels apart."""
    h, w = cells[0][0].shape[:2]
    rows, cols = len(cells), max(len(row) for row in cells)
    canvas = np.full((rows * h + (rows + 1) * GAP, cols * w + (cols + 1) * GAP, 3), BACKGROUND,
                     dtype=np.float32)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            top, left = GAP + r * (h + GAP), GAP + c * (w + GAP)
            canvas[top:top + h, left:left + w] = cell
    return canvas


def _unit(x: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] (a constant array becomes 0.5)."""
    lo, hi = float(x.min()), float(x.max())
    return np.full_like(x, 0.5) if hi <= lo else (x - lo) / (hi - lo)


def _rgb(image: Tensor) -> np.ndarray:
    """`[C, H, W]` -> `[H, W, 3]`: RGB as is, one channel repeated, other counts averaged."""
    array = image.detach().float().cpu().numpy()
    if array.shape[0] != 3:
        array = np.repeat(array.mean(0, keepdims=True), 3, axis=0)
    return array.transpose(1, 2, 0)


def _colormap(values: np.ndarray) -> np.ndarray:
    import matplotlib

    return matplotlib.colormaps["viridis"](_unit(values))[..., :3].astype(np.float32)


def first_block(model: nn.Module) -> ConvBlock2d:
    """The model's first conv block (the layer that sees the pixels)."""
    for module in model.modules():
        if isinstance(module, ConvBlock2d):
            return module
    raise TextCNNError(f"{type(model).__name__}: expected a ConvBlock2d layer, found none")


def first_layer_maps(model: nn.Module, images: Tensor) -> Tensor:
    """Outputs of the first conv block (after norm and activation) for prepared `images`."""
    captured: list[Tensor] = []
    handle = first_block(model).register_forward_hook(lambda m, i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), 256):
                model.forward_features(images[i:i + 256])
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


def filter_grid(weight: Tensor) -> np.ndarray:
    """All filters `[K, C, k, k]`, each scaled to [0, 1] on its own, `FILTER_COLUMNS` a row."""
    cells = [_unit(_rgb(f)) for f in weight]
    factor = scale_factor(*cells[0].shape[:2])
    cells = [upscale(c, factor) for c in cells]
    rows = [cells[i:i + FILTER_COLUMNS] for i in range(0, len(cells), FILTER_COLUMNS)]
    return grid(rows)


def activation_grid(raw: Tensor, maps: Tensor, filters: Sequence[int]) -> np.ndarray:
    """One row per input: the image, then the maps of `filters` (viridis, each scaled on its
    own) enlarged to the image's size."""
    h, w = raw.shape[-2:]
    factor = scale_factor(h, w)
    size = (h * factor, w * factor)
    rows = []
    for image, fmaps in zip(raw, maps):
        row = [upscale(_rgb(image).clip(0, 1), factor)]
        chosen = F.interpolate(fmaps[list(filters)][None].float(), size=size, mode="nearest")[0]
        row += [_colormap(m.numpy()) for m in chosen]
        rows.append(row)
    return grid(rows)


def receptive_field(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(height, width, stride, padding) of a first-layer unit's window on the input."""
    kh, kw = (conv.dilation[i] * (conv.kernel_size[i] - 1) + 1 for i in range(2))
    if conv.stride[0] != conv.stride[1] or not isinstance(conv.padding, tuple) \
            or conv.padding[0] != conv.padding[1]:
        raise TextCNNError("patches: expected a first layer with equal strides and padding")
    return kh, kw, conv.stride[0], conv.padding[0]


def top_patches(raw: Tensor, maps: Tensor, conv: nn.Conv2d, filter_index: int,
                count: int) -> list[Tensor]:
    """The input windows `[C, kh, kw]` of the `count` images whose strongest response of the
    filter is largest, cut where that response is (zero padding outside the image)."""
    kh, kw, stride, padding = receptive_field(conv)
    fmaps = maps[:, filter_index]
    best, where = fmaps.flatten(1).max(dim=1)
    padded = F.pad(raw, (padding,) * 4)
    patches = []
    for n in best.argsort(descending=True)[:count].tolist():
        i, j = divmod(int(where[n]), fmaps.shape[-1])
        top, left = i * stride, j * stride  # in padded coordinates
        patches.append(padded[n, :, top:top + kh, left:left + kw])
    return patches


def patch_grid(raw: Tensor, maps: Tensor, conv: nn.Conv2d, filters: Sequence[int],
               samples: int) -> np.ndarray:
    """One row per filter: its `samples` top-activating input patches."""
    rows = [[_rgb(p).clip(0, 1) for p in top_patches(raw, maps, conv, f, samples)]
            for f in filters]
    factor = scale_factor(*rows[0][0].shape[:2])
    return grid([[upscale(c, factor) for c in row] for row in rows])


def save_png(array: np.ndarray, path: Path) -> Path:
    """Write an `[H, W, 3]` array in [0, 1] as a PNG of exactly that size, atomically."""
    import matplotlib.image as mpimg

    return atomic_write(path, lambda tmp: mpimg.imsave(tmp, np.clip(array, 0, 1), format="png"))


def check_filters(model: nn.Module, filters: Sequence[int]) -> None:
    """Raise `TextCNNError` naming the valid range unless `filters` are first-layer filter
    indices (the CLI's --maps)."""
    count = first_block(model).conv.out_channels
    bad = [f for f in filters if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < count]
    if bad or not filters:
        raise TextCNNError(f"maps: expected first-layer filter indices in 0..{count - 1} (the "
                           f"first layer has {count} filters), got {list(filters)}")


def write_all(model: nn.Module, raw: Tensor, prepared: Tensor, out_dir: Path, *,
              filters: Sequence[int], samples: int) -> list[Path]:
    """filters.png, activations.png and patches.png for `model` on images `raw` ([0, 1], at the
    model's input size) / `prepared` (normalised)."""
    block = first_block(model)
    weight = block.conv.weight.detach().cpu()
    check_filters(model, filters)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise TextCNNError(f"samples: expected an integer >= 1, got {samples!r}")
    if len(raw) == 0:
        raise TextCNNError("visualize: expected at least one input image, got none")
    maps = first_layer_maps(model, prepared).cpu()
    shown = min(samples, len(raw))
    return [
        save_png(filter_grid(weight), out_dir / "filters.png"),
        save_png(activation_grid(raw[:shown], maps[:shown], filters), out_dir / "activations.png"),
        save_png(patch_grid(raw, maps, block.conv, filters, shown), out_dir / "patches.png"),
    ]


__all__ = ["BACKGROUND", "CELL", "FILTER_COLUMNS", "GAP", "activation_grid", "check_filters",
           "filter_grid", "first_block",
           "first_layer_maps", "grid", "patch_grid", "receptive_field", "save_png",
           "scale_factor", "top_patches", "upscale", "write_all"]
