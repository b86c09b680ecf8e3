"""Detection data: a synthetic shapes set, COCO and Pascal VOC readers, and box-aware augmentation.

Every source gives a `DetectionData`: float RGB images in [0, 1] and one target per image,
`{"boxes": float32 [K, 4] (x1, y1, x2, y2), "labels": int64 [K]}` with labels 1..C (0 is
background) and `classes[label - 1]` the name of a label.

Box coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j + 1] x [i, i + 1], so the tight box of a mask whose columns run c0..c1 has x1 = c0 and
x2 = c1 + 1. COCO's [x, y, w, h] boxes use the same convention; Pascal VOC's 1-based inclusive
corners are converted (x1 = xmin - 1, x2 = xmax).

    from vision.detection.data import shapes_splits
    train, val, test = shapes_splits(seed=0)
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textcnn.core.errors import TextCNNError, did_you_mean
from vision.data import read_image

Target = dict[str, Tensor]
SHAPE_CLASSES = ["circle", "square", "triangle"]
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


# -- synthetic shapes ----------------------------------------------------------------------------


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


# -- COCO and Pascal VOC ------------------------------------------------------------------------


def _read_rgb(path: Path, where: str) -> Tensor:
    if not path.is_file():
        raise TextCNNError(f"{where}: image file {path} does not exist")
    array = read_image(path)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).contiguous()


def _images_field(images: list[Tensor]) -> Tensor | list[Tensor]:
    """One stacked tensor when all images share a size, else the list."""
    if images and len({tuple(img.shape) for img in images}) == 1:
        return torch.stack(images)
    return images


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_coco(annotation_json: str | os.PathLike, image_dir: str | os.PathLike) -> DetectionData:
    """A COCO-format detection set: `images` (id, file_name), `annotations` (image_id,
    category_id, bbox [x, y, w, h] in pixels, optional iscrowd) and `categories` (id, name).

    Category ids map to labels 1..C in ascending id order (`category_ids[label - 1]` is the id);
    crowd annotations are skipped; images keep the file's order and ids (`image_ids`). Any
    malformed entry raises `TextCNNError` naming the file and the problem.
    """
    path = Path(annotation_json)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TextCNNError(f"{path}: expected a readable COCO json file, got: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TextCNNError(f"{path}: expected COCO json, got invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise TextCNNError(f"{path}: expected a COCO json object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            got = "nothing" if key not in data else type(data[key]).__name__
            raise TextCNNError(f"{path}: expected a list under key '{key}', got {got}")
    categories = {}
    for n, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise TextCNNError(f"{path}: categories[{n}]: expected {{'id': int, 'name': str}}, got {cat!r:.80}")
        categories[cat["id"]] = str(cat["name"])
    category_ids = sorted(categories)
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}
    image_index = {}
    for n, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise TextCNNError(f"{path}: images[{n}]: expected {{'id', 'file_name'}}, got {entry!r:.80}")
        if entry["id"] in image_index:
            raise TextCNNError(f"{path}: images[{n}]: image id {entry['id']} appears twice")
        image_index[entry["id"]] = n
    boxes: list[list[list[float]]] = [[] for _ in data["images"]]
    labels: list[list[int]] = [[] for _ in data["images"]]
    for n, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{n}]"
        if not isinstance(ann, dict):
            raise TextCNNError(f"{where}: expected an object, got {type(ann).__name__}")
        if ann.get("iscrowd"):
            continue
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise TextCNNError(f"{where}: missing key '{key}'")
        if ann["image_id"] not in image_index:
            raise TextCNNError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in label_of:
            raise TextCNNError(f"{where}: category_id {ann['category_id']!r} is not in 'categories'")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            raise TextCNNError(f"{where}: expected bbox [x, y, w, h] (4 numbers), got {bbox!r:.80}")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise TextCNNError(f"{where}: expected a bbox with positive width and height, got {bbox}")
        i = image_index[ann["image_id"]]
        boxes[i].append([x, y, x + w, y + h])
        labels[i].append(label_of[ann["category_id"]])
    images, targets = [], []
    for n, entry in enumerate(data["images"]):
        image = _read_rgb(Path(image_dir) / entry["file_name"], f"{path}: images[{n}]")
        for key, actual in (("height", image.shape[1]), ("width", image.shape[2])):
            if key in entry and entry[key] != actual:
                raise TextCNNError(f"{path}: images[{n}]: '{key}' says {entry[key]}, "
                                   f"but {entry['file_name']} has {actual}")
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes[n], dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor(labels[n], dtype=torch.long)})
    return DetectionData(_images_field(images), targets, [categories[c] for c in category_ids],
                         category_ids, [entry["id"] for entry in data["images"]], str(path))


def _voc_files(root_or_xml_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(root_or_xml_files, (str, os.PathLike)):
        root = Path(root_or_xml_files)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise TextCNNError(f"{root}: expected a VOC folder or XML file, found nothing there")
        folder = root / "Annotations" if (root / "Annotations").is_dir() else root
        files = sorted(folder.glob("*.xml"))
        if not files:
            raise TextCNNError(f"{folder}: expected Pascal VOC .xml annotation files, found none")
        return files
    return [Path(f) for f in root_or_xml_files]


def _voc_text(node: ET.Element, tag: str, file: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise TextCNNError(f"{file}: {where}missing <{tag}>")
    return child.text.strip()


def _parse_voc(file: Path) -> tuple[str, list[tuple[str, list[float], bool]]]:
    """(image file name, [(class name, [x1, y1, x2, y2], difficult)]) of one VOC XML file."""
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as err:
        raise TextCNNError(f"{file}: expected Pascal VOC XML, got a parse error ({err})") from None
    except OSError as err:
        raise TextCNNError(f"{file}: expected a readable XML file, got: {err}") from None
    if root.tag != "annotation":
        raise TextCNNError(f"{file}: expected an <annotation> root element, got <{root.tag}>")
    filename = _voc_text(root, "filename", file, "")
    objects = []
    for n, obj in enumerate(root.findall("object")):
        where = f"object {n}: "
        name = _voc_text(obj, "name", file, where)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise TextCNNError(f"{file}: {where}missing <bndbox>")
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = _voc_text(bndbox, tag, file, f"{where}bndbox: ")
            try:
                corners.append(float(text))
            except ValueError:
                raise TextCNNError(f"{file}: {where}<{tag}> should be a number, got {text!r}") from None
        xmin, ymin, xmax, ymax = corners
        if xmax < xmin or ymax < ymin:
            raise TextCNNError(f"{file}: {where}expected xmin <= xmax and ymin <= ymax, got {corners}")
        difficult = obj.find("difficult")
        hard = difficult is not None and (difficult.text or "0").strip() not in ("0", "", "false")
        # 1-based inclusive pixel indices -> continuous corners
        objects.append((name, [xmin - 1.0, ymin - 1.0, xmax, ymax], hard))
    return filename, objects


def load_voc(root_or_xml_files: str | os.PathLike | Sequence[str | os.PathLike], *,
             classes: Sequence[str] | None = None) -> DetectionData:
    """Pascal VOC annotations: a VOC root (`Annotations/*.xml`, `JPEGImages/`), a folder of XML
    files with their images beside them, or a list of XML files.

    VOC corners are 1-based and inclusive, so a box becomes x1 = xmin - 1, y1 = ymin - 1,
    x2 = xmax, y2 = ymax. `classes` fixes the label order (label = index + 1; an unknown name
    raises); by default the sorted set of names found. Targets carry `difficult` (bool [K]).
    An image is looked for beside its XML, then in `../JPEGImages/`.
    """
    files = _voc_files(root_or_xml_files)
    parsed = [_parse_voc(f) for f in files]
    names = sorted({name for _, objects in parsed for name, _, _ in objects})
    classes = list(classes) if classes is not None else names
    label_of = {name: i + 1 for i, name in enumerate(classes)}
    images, targets = [], []
    for file, (filename, objects) in zip(files, parsed):
        for name, _, _ in objects:
            if name not in label_of:
                raise TextCNNError(f"{file}: class '{name}' is not in classes{did_you_mean(name, classes)}; "
                                   f"known: {', '.join(classes)}")
        image_path = file.parent / filename
        if not image_path.is_file() and (file.parent.parent / "JPEGImages" / filename).is_file():
            image_path = file.parent.parent / "JPEGImages" / filename
        images.append(_read_rgb(image_path, str(file)))
        targets.append({
            "boxes": torch.tensor([box for _, box, _ in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label_of[name] for name, _, _ in objects], dtype=torch.long),
            "difficult": torch.tensor([hard for _, _, hard in objects], dtype=torch.bool)})
    source = str(root_or_xml_files) if isinstance(root_or_xml_files, (str, os.PathLike)) else "voc files"
    return DetectionData(_images_field(images), targets, classes, source=source)


# -- augmentation --------------------------------------------------------------------------------


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


__all__ = ["DetectionAugment", "DetectionData", "SHAPE_CLASSES", "hflip", "load_coco", "load_voc",
           "make_shapes", "scale_jitter", "shapes_splits"]
