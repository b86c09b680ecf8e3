"""COCO-format detection annotations (JSON) and their images."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from textcnn.core.errors import TextCNNError
from vision.detection.data.base import DetectionData, images_field, read_rgb


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
        image = read_rgb(Path(image_dir) / entry["file_name"], f"{path}: images[{n}]")
        for key, actual in (("height", image.shape[1]), ("width", image.shape[2])):
            if key in entry and entry[key] != actual:
                raise TextCNNError(f"{path}: images[{n}]: '{key}' says {entry[key]}, "
                                   f"but {entry['file_name']} has {actual}")
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes[n], dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor(labels[n], dtype=torch.long)})
    return DetectionData(images_field(images), targets, [categories[c] for c in category_ids],
                         category_ids, [entry["id"] for entry in data["images"]], str(path))
