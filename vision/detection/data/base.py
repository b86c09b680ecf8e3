"""`DetectionData`, what every detection source gives: float RGB images in [0, 1] and one target
per image, `{"boxes": float32 [K, 4] (x1, y1, x2, y2), "labels": int64 [K]}` with labels 1..C (0 is
background) and `classes[label - 1]` the name of a label.

Box coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j + 1] x [i, i + 1], so the tight box of a mask whose columns run c0..c1 has x1 = c0 and
x2 = c1 + 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from vision.data import read_image

Target = dict[str, Tensor]
# target keys that hold one entry per box: filtered together with the boxes by augmentation
PER_BOX_KEYS = ("labels", "difficult", "iscrowd")


@dataclass(eq=False)  # tensors have no single truth value: equality is identity
class DetectionData:
    """Images in [0, 1] with their boxes and labels.

    `images` is one float tensor [N, 3, H, W] when every image has the same size, else a list of
    [3, H, W] tensors. `category_ids[label - 1]` is the source's id of a label (COCO), and
    `image_ids[i]` the source's id of image i, when the source has them.
    """

    images: Tensor | list[Tensor]
    targets: list[Target]
    classes: list[str]
    category_ids: list[int] | None = None
    image_ids: list[int] | None = None
    source: str = ""  # where the data came from, for messages

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> DetectionData:
        """The examples at `indices`, in that order."""
        index = [int(i) for i in torch.as_tensor(indices, dtype=torch.long).flatten()]
        if isinstance(self.images, Tensor):
            images: Tensor | list[Tensor] = self.images[torch.tensor(index, dtype=torch.long)]
        else:
            images = [self.images[i] for i in index]
        image_ids = [self.image_ids[i] for i in index] if self.image_ids is not None else None
        return DetectionData(images, [self.targets[i] for i in index], list(self.classes),
                             self.category_ids, image_ids, self.source)


def read_rgb(path: Path, where: str) -> Tensor:
    """An image file as a float RGB tensor [3, H, W] in [0, 1] (grey images repeated); `where`
    names the annotation that lists it."""
    if not path.is_file():
        raise TextCNNError(f"{where}: image file {path} does not exist")
    array = read_image(path)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).contiguous()


def images_field(images: list[Tensor]) -> Tensor | list[Tensor]:
    """One stacked tensor when all images share a size, else the list."""
    if images and len({tuple(img.shape) for img in images}) == 1:
        return torch.stack(images)
    return images
