"""Pascal VOC detection annotations (one XML file per image) and their images. VOC's 1-based
inclusive corners become continuous pixel coordinates (x1 = xmin - 1, x2 = xmax)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import torch

from textcnn.core.errors import TextCNNError, did_you_mean
from vision.detection.data.base import DetectionData, images_field, read_rgb


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
        images.append(read_rgb(image_path, str(file)))
        targets.append({
            "boxes": torch.tensor([box for _, box, _ in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label_of[name] for name, _, _ in objects], dtype=torch.long),
            "difficult": torch.tensor([hard for _, _, hard in objects], dtype=torch.bool)})
    source = str(root_or_xml_files) if isinstance(root_or_xml_files, (str, os.PathLike)) else "voc files"
    return DetectionData(images_field(images), targets, classes, source=source)
