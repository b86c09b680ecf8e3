"""Zeiler & Fergus (2014) style pictures of a network's first layer, as PNG grids.

- `plot_filters`: every first-layer filter, large enough to see each weight, titled, on one
  colour scale shown beside them (colour filters as RGB on a shared scale, others as a heat map;
  small kernels also print each weight).
- `activation_grid`: a few inputs, each followed by the feature maps of chosen filters.
- `patch_grid`: for each chosen filter, the input patches (its receptive field) that excite it
  most over a set of images, one patch per image.

The other two grids are plain arrays: cells of equal size on a mid-grey background (so black and white
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


FILTER_INCHES = 1.6  # the side of one filter's panel in `plot_filters`
ANNOTATED_WEIGHTS = 49  # kernels of at most this many weights (7x7) print each value


def filter_panels(weight: Tensor) -> tuple[np.ndarray, float]:
    """What `plot_filters` draws of `weight` [K, C, kh, kw], and the scale's limit max|w|: for
    three channels, RGB images [K, kh, kw, 3] of 0.5 + w / (2 max|w|); otherwise the weights
    [K, kh, kw] (their mean over the input channels when there are several)."""
    w = weight.detach().float().cpu().numpy()
    if w.ndim != 4:
        raise TextCNNError(f"plot_filters: expected filters [K, C, kh, kw], got shape {w.shape}")
    if w.shape[1] == 3:
        limit = float(np.abs(w).max()) or 1.0
        return np.clip(0.5 + w.transpose(0, 2, 3, 1) / (2 * limit), 0, 1), limit
    shown = w.mean(axis=1)
    return shown, float(np.abs(shown).max()) or 1.0


def plot_filters(weight: Tensor, path: str | Path, *, title: str | None = None) -> Path:
    """Every filter of `weight` [K, C, kh, kw] as a titled panel, `FILTER_COLUMNS` a row, saved
    as a PNG. One colour scale for all, symmetric about 0 (so panels compare and 0 is neutral):
    three-channel filters as RGB, 0.5 + w / (2 max|w|) per channel; others as a blue-white-red
    heat map of the weights (their mean over the input channels when there are several), with
    each weight printed on kernels of up to `ANNOTATED_WEIGHTS` weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown, limit = filter_panels(weight)
    count, channels, kh, kw = weight.shape
    rgb = channels == 3
    cols = min(count, FILTER_COLUMNS)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(cols * FILTER_INCHES + 1.2, rows * (FILTER_INCHES + 0.25) + 0.5))
    for ax in axes.flat:
        ax.axis("off")
    image = None
    for i in range(count):
        ax = axes.flat[i]
        if rgb:
            ax.imshow(shown[i], interpolation="nearest")
        else:
            image = ax.imshow(shown[i], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            if kh * kw <= ANNOTATED_WEIGHTS:
                for (r, c), value in np.ndenumerate(shown[i]):
                    ax.text(c, r, f"{value:.2f}".replace("0.", "."), ha="center", va="center",
                            fontsize=min(8.0, 28.0 / max(kh, kw)),
                            color="white" if abs(value) > 0.6 * limit else "black")
        ax.set_title(f"filter {i}", fontsize=9)
    if image is None:  # RGB: the scale each channel is drawn on
        image = plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(-limit, limit), cmap="gray")
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=min(1.0, 0.5 + 0.25 * rows), aspect=15)
    bar.set_label("weight" + (" (each RGB channel)" if rgb else
                              f" (mean over {channels} input channels)" if channels > 1 else ""), fontsize=8)
    fig.suptitle(title or f"{count} first-layer filters, {kh}x{kw}"
                 + ("" if rgb or channels == 1 else f" x {channels} channels"), fontsize=10)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    plt.close(fig)
    return Path(path)


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
        plot_filters(weight, out_dir / "filters.png"),
        save_png(activation_grid(raw[:shown], maps[:shown], filters), out_dir / "activations.png"),
        save_png(patch_grid(raw, maps, block.conv, filters, shown), out_dir / "patches.png"),
    ]


__all__ = ["BACKGROUND", "CELL", "FILTER_COLUMNS", "GAP", "activation_grid", "check_filters",
           "filter_panels", "first_block", "plot_filters",
           "first_layer_maps", "grid", "patch_grid", "receptive_field", "save_png",
           "scale_factor", "top_patches", "upscale", "write_all"]
