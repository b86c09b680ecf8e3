"""Image data: scikit-learn's bundled 8x8 digits, folders of images, and `datasets` image sets.

Every loader gives an `ImageData`: float images `[N, C, H, W]` scaled to [0, 1], int64 labels and
the class names (strings, sorted, so the same classes give the same ids). A data spec string
picks the source: `digits`, a folder (`<class>/<image>` files, or one written by `datasets`'
`save_to_disk`), or `hf:<hub name or local path>`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.splits import holdout_split
from vision.transforms import resize, to_channels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm")


@dataclass
class ImageData:
    """Images in [0, 1], their class ids and the class names."""

    images: Tensor  # float32 [N, C, H, W]
    labels: Tensor  # int64 [N], indices into `classes`
    classes: list[str]
    source: str  # where the images came from, for messages

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | Tensor) -> ImageData:
        """The examples at `index`, in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageData(self.images[index], self.labels[index], self.classes, self.source)

    def prepared(self, *, size: int | None, channels: int | None) -> ImageData:
        """The same examples at `size` x `size` (bilinear) with `channels` channels."""
        images = self.images
        if channels is not None:
            images = to_channels(images, channels)
        if size is not None:
            images = resize(images, size)
        return ImageData(images, self.labels, self.classes, self.source)

    def relabelled(self, classes: Sequence[str]) -> ImageData:
        """The same examples with ids into `classes` (a model's); unknown classes raise."""
        ids = {name: i for i, name in enumerate(classes)}
        missing = [c for c in self.classes if c not in ids]
        if missing:
            raise TextCNNError(f"{self.source}: class '{missing[0]}' is not one the model knows"
                               f"{did_you_mean(missing[0], classes)}; known: {', '.join(classes)}")
        table = torch.tensor([ids[c] for c in self.classes], dtype=torch.long)
        return ImageData(self.images, table[self.labels], list(classes), self.source)


def load_digits() -> ImageData:
    """scikit-learn's bundled handwritten digits: 1,797 grey 8x8 images, values 0..16 -> [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    return ImageData(images, torch.as_tensor(bunch.target, dtype=torch.long),
                     [str(c) for c in bunch.target_names], "digits")


# -- reading image files --------------------------------------------------------------------------


def read_image(path: str | os.PathLike | bytes, *, name: str | None = None) -> np.ndarray:
    """One image file (or the bytes of one, e.g. a PNG sent to the server; errors then name
    `name`) as float32 `[H, W]` (grey) or `[H, W, 3]` (colour) in [0, 1].

    Pillow reads it when installed (it comes with matplotlib); otherwise matplotlib's own reader,
    which handles PNG only. An alpha channel is dropped.
    """
    if isinstance(path, bytes):
        import io

        source: Any = io.BytesIO(path)
        name = name or "<image bytes>"
    else:
        source = path
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return _read_with_matplotlib(source, name or path)
    return _read_with_pil(source, name or path)


def _read_with_pil(path: Any, name: Any = None) -> np.ndarray:
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow only warns about an image beyond its pixel limit (up to twice it), then decodes
        # it: a few bytes of PNG can declare gigapixels. Beyond the limit is an error here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
        with img:
            return pil_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise TextCNNError(f"{name or path}: expected an image of at most {Image.MAX_IMAGE_PIXELS} pixels, "
                           f"got more ({err})") from None
    except (OSError, UnidentifiedImageError) as err:
        raise TextCNNError(f"{name or path}: expected a readable image, got: {err}") from None


def pil_array(img: Any) -> np.ndarray:
    """A PIL image as float32 in [0, 1]: `[H, W]` for grey modes (and grey palettes), else
    `[H, W, 3]`."""
    if img.mode == "I;16":
        return np.asarray(img, dtype=np.float32) / 65535.0
    if img.mode in ("1", "L", "LA", "I", "F"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if img.mode == "P" and (rgb == rgb[..., :1]).all():
        return rgb[..., 0]
    return rgb


def _read_with_matplotlib(path: Any, name: Any = None) -> np.ndarray:
    import matplotlib.image as mpimg

    try:
        array = np.asarray(mpimg.imread(path), dtype=np.float32)
    except (OSError, ValueError, SyntaxError) as err:
        raise TextCNNError(f"{name or path}: expected a readable PNG image, got: {err}") from None
    if array.ndim == 3:
        array = array[..., 0] if array.shape[-1] == 2 else array[..., :3]  # drop alpha
    return array


def _stack(arrays: list[np.ndarray], files: list[Path], *, size: int | None,
           channels: int | None) -> Tensor:
    """Same-size images `[N, C, H, W]`; mixed sizes need `size`."""
    want = channels or (3 if any(a.ndim == 3 for a in arrays) else 1)
    tensors = []
    for array, file in zip(arrays, files):
        image = torch.from_numpy(array)
        image = image[None, None] if image.dim() == 2 else image.permute(2, 0, 1)[None]
        image = to_channels(image, want)
        if size is not None:
            image = resize(image, size)
        elif tensors and image.shape[-2:] != tensors[0].shape[-2:]:
            raise TextCNNError(
                f"{file}: expected {tensors[0].shape[-2]}x{tensors[0].shape[-1]} like "
                f"{files[0]}, got {image.shape[-2]}x{image.shape[-1]} (set data.size to resize)")
        tensors.append(image)
    return torch.cat(tensors)


def load_image_folder(path: str | os.PathLike, *, size: int | None = None,
                      channels: int | None = None) -> ImageData:
    """A folder with one subfolder per class holding its images (`<class>/<name>.png`).

    Images of different sizes need `size` (each is resized to size x size); colour and grey
    images mixed become colour unless `channels` is set.
    """
    root = Path(path)
    if not root.is_dir():
        raise TextCNNError(f"{root}: expected an image folder (<class>/<image> files), found none")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TextCNNError(f"{root}: expected one subfolder per class, got none")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(f for f in (root / name).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise TextCNNError(f"{root / name}: expected image files ({', '.join(IMAGE_SUFFIXES)}), "
                               "got none")
        files += found
        labels += [label] * len(found)
    images = _stack([read_image(f) for f in files], files, size=size, channels=channels)
    return ImageData(images, torch.tensor(labels, dtype=torch.long), classes, str(root))


# -- datasets (hub or local) ----------------------------------------------------------------------


def load_hf_images(name: str | os.PathLike, *, split: str = "train", image_column: str = "image",
                   label_column: str = "label", size: int | None = None,
                   channels: int | None = None) -> ImageData:
    """An image dataset through Hugging Face `datasets`: a hub name, or a local folder (one
    written by `save_to_disk`, or files `load_dataset` understands). Offline, a hub name raises
    `TextCNNError`; nothing is retried."""
    import datasets

    from textcnn.core.hub import open_hub_dataset

    source = f"dataset '{name}'"
    ds = open_hub_dataset(name, split=split)
    for column in (image_column, label_column):
        if column not in ds.column_names:
            raise TextCNNError(f"{source}: expected a column '{column}'"
                               f"{did_you_mean(column, ds.column_names)}, got columns "
                               f"{', '.join(ds.column_names)}")
    feature = ds.features[label_column]
    raw = list(ds[label_column])
    if isinstance(feature, datasets.ClassLabel):
        classes = list(feature.names)
        labels = [int(v) for v in raw]
    else:
        classes = sorted({str(v) for v in raw})
        ids = {c: i for i, c in enumerate(classes)}
        labels = [ids[str(v)] for v in raw]
    arrays = [_as_array(item, f"{source}[{i}].{image_column}")
              for i, item in enumerate(ds[image_column])]
    where = [Path(f"{source}[{i}]") for i in range(len(arrays))]
    images = _stack(arrays, where, size=size, channels=channels)
    return ImageData(images, torch.tensor(labels, dtype=torch.long), classes, source)


def _as_array(item: Any, where: str) -> np.ndarray:
    """A `datasets` image cell (PIL image or nested lists of numbers) as float [0, 1]."""
    if hasattr(item, "convert"):  # a PIL image
        return pil_array(item)
    array = np.asarray(item, dtype=np.float32)
    if array.ndim not in (2, 3):
        raise TextCNNError(f"{where}: expected an image, got an array of shape {array.shape}")
    return array / 255.0 if array.max(initial=0.0) > 1.0 else array


# -- one entry point and splits -------------------------------------------------------------------


def load_images(spec: str | os.PathLike, *, split: str = "train", image_column: str = "image",
                label_column: str = "label", size: int | None = None,
                channels: int | None = None) -> ImageData:
    """Load `spec`: 'digits', 'hf:<name or path>', a `save_to_disk` folder or an image folder."""
    text = str(spec)
    hf = dict(split=split, image_column=image_column, label_column=label_column, size=size,
              channels=channels)
    if text == "digits":
        return load_digits().prepared(size=size, channels=channels)
    if text.startswith("hf:"):
        return load_hf_images(text[3:], **hf)
    path = Path(text)
    if path.is_dir():
        from textcnn.core.hub import is_saved_dataset

        if is_saved_dataset(path):
            return load_hf_images(path, **hf)
        return load_image_folder(path, size=size, channels=channels)
    raise TextCNNError(f"data: expected 'digits', an image folder or hf:<dataset>, got '{text}' "
                       "(no such folder)")


def split_indices(labels: Tensor, *, dev_fraction: float, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded (train, dev, test) indices; a fraction of 0 gives an empty part.

    The test part is cut first, so changing `dev_fraction` never moves a test example.
    """
    y = labels.numpy()
    rest = np.arange(len(y))
    test = np.empty(0, dtype=np.int64)
    if test_fraction > 0:
        keep, held = holdout_split(y, fraction=test_fraction, seed=seed)
        rest, test = rest[keep], rest[held]
    dev = np.empty(0, dtype=np.int64)
    if dev_fraction > 0:
        keep, held = holdout_split(y[rest], fraction=dev_fraction / (1 - test_fraction), seed=seed)
        rest, dev = rest[keep], rest[held]
    return rest, dev, test


__all__ = ["IMAGE_SUFFIXES", "ImageData", "load_digits", "load_hf_images", "load_image_folder",
           "load_images", "read_image", "split_indices"]
