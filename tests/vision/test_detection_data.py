"""Detection data: the shapes generator, COCO and VOC readers, box-aware augmentation, drawing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from textcnn.core.errors import TextCNNError
from vision.detection.data import (
    DetectionAugment,
    DetectionData,
    hflip,
    load_coco,
    load_voc,
    make_shapes,
    scale_jitter,
    shapes_splits,
)
from vision.detection.draw import PALETTE, draw_detections, readable_scale, save_png
from vision.ops import box_iou


def mask_box(mask: torch.Tensor) -> list[float]:
    """Tight xyxy box of a bool mask [H, W] in continuous pixel coordinates (brute force)."""
    rows = [i for i in range(mask.shape[0]) if bool(mask[i].any())]
    cols = [j for j in range(mask.shape[1]) if bool(mask[:, j].any())]
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


# -- shapes --------------------------------------------------------------------------------------


def test_shapes_are_deterministic_and_prefix_stable():
    a = make_shapes(6, seed=3, size=64, object_size=(10, 24))
    b = make_shapes(6, seed=3, size=64, object_size=(10, 24))
    first = make_shapes(2, seed=3, size=64, object_size=(10, 24))
    other = make_shapes(6, seed=4, size=64, object_size=(10, 24))
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["labels"], y["labels"])
               for x, y in zip(a.targets, b.targets))
    assert torch.equal(first.images, a.images[:2])  # image i depends on (seed, i) only
    assert not torch.equal(other.images, a.images)


def test_shapes_layout_rules():
    data = make_shapes(40, seed=1)
    assert data.images.shape == (40, 3, 96, 96) and data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert data.classes == ["circle", "square", "triangle"]
    counts = []
    for t in data.targets:
        boxes, labels = t["boxes"], t["labels"]
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
        assert 1 <= len(labels) <= 4 and set(labels.tolist()) <= {1, 2, 3}
        wh = boxes[:, 2:] - boxes[:, :2]
        assert float(wh.min()) >= 9 and float(wh.max()) <= 41  # triangles are ~0.87 of their side
        assert float(boxes.min()) >= 0 and float(boxes.max()) <= 96
        iou = box_iou(boxes, boxes) - torch.eye(len(boxes))
        assert float(iou.max()) <= 0.3
        counts.append(len(labels))
    assert len(set(counts)) >= 3  # the number of objects varies


def test_shape_boxes_are_tight_and_shapes_distinct():
    """Without noise a shape is one flat colour: the pixels of that colour near its box must have
    exactly the target box as their tight box, and fill it like a circle, square or triangle."""
    data = make_shapes(30, seed=2, noise=(0.0, 0.0))
    for image, target in zip(data.images, data.targets):
        box = target["boxes"][-1]  # the last shape drawn is never covered
        x1, y1, x2, y2 = (int(v) for v in box)
        assert torch.equal(box, torch.tensor([x1, y1, x2, y2], dtype=torch.float32))  # whole pixels
        r0, c0 = max(y1 - 2, 0), max(x1 - 2, 0)
        window = image[:, r0:y2 + 2, c0:x2 + 2]
        # the flat colours inside the box (an earlier shape may show there too), most pixels first
        inside = image[:, y1:y2, x1:x2].reshape(3, -1).T
        colours, counts = torch.unique(inside, dim=0, return_counts=True)
        boxes = {}
        for colour in colours[counts.argsort(descending=True)[:3]]:
            mask = (window == colour[:, None, None]).all(0)
            found = mask_box(mask)
            boxes[(found[0] + c0, found[1] + r0, found[2] + c0, found[3] + r0)] = mask
        assert (x1, y1, x2, y2) in boxes  # one colour fills exactly the box, nothing around it
        mask = boxes[(x1, y1, x2, y2)]
        fill = float(mask.sum()) / ((x2 - x1) * (y2 - y1))
        label = int(target["labels"][-1])
        low, high = {1: (0.7, 0.87), 2: (0.97, 1.0), 3: (0.38, 0.62)}[label]
        assert low <= fill <= high, (label, fill)


def test_shapes_min_objects_zero_and_options():
    data = make_shapes(30, seed=0, size=48, object_size=(8, 16), min_objects=0, max_objects=2)
    counts = [len(t["labels"]) for t in data.targets]
    assert 0 in counts and max(counts) <= 2
    empty = next(t for t in data.targets if len(t["labels"]) == 0)
    assert empty["boxes"].shape == (0, 4)
    with pytest.raises(TextCNNError, match="object_size"):
        make_shapes(1, seed=0, size=32, object_size=(12, 40))
    with pytest.raises(TextCNNError, match="min_objects"):
        make_shapes(1, seed=0, min_objects=3, max_objects=2)


def test_shapes_splits_are_disjoint():
    train, val, test = shapes_splits(seed=0, size=32, train=5, val=3, test=4)
    assert (len(train), len(val), len(test)) == (5, 3, 4)
    flat = torch.cat([train.images, val.images, test.images]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 12
    again, _, _ = shapes_splits(seed=0, size=32, train=5, val=3, test=4)
    assert torch.equal(again.images, train.images)


def test_subset_keeps_order_for_tensor_and_list_images():
    data = make_shapes(5, seed=0, size=32, object_size=(8, 14))
    part = data.subset([3, 1])
    assert torch.equal(part.images, data.images[[3, 1]])
    assert torch.equal(part.targets[0]["boxes"], data.targets[3]["boxes"])
    as_list = DetectionData(list(data.images), data.targets, data.classes, image_ids=[10, 11, 12, 13, 14])
    part = as_list.subset(torch.tensor([4, 0]))
    assert isinstance(part.images, list) and torch.equal(part.images[0], data.images[4])
    assert part.image_ids == [14, 10] and len(part) == 2


# -- COCO ----------------------------------------------------------------------------------------


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def coco_fixture(tmp_path: Path) -> tuple[Path, dict, np.ndarray]:
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[5:10, 2:12] = (255, 128, 0)
    write_png(tmp_path / "a.png", rgb)
    write_png(tmp_path / "b.png", np.full((20, 30), 200, dtype=np.uint8))  # grey
    data = {
        "images": [{"id": 5, "file_name": "a.png", "width": 30, "height": 20},
                   {"id": 9, "file_name": "b.png"}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [2, 5, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0.5, 1.5, 3, 4]},
            {"id": 3, "image_id": 5, "category_id": 3, "bbox": [0, 0, 30, 20], "iscrowd": 1},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, data, rgb


def test_load_coco(tmp_path):
    path, _, rgb = coco_fixture(tmp_path)
    data = load_coco(path, tmp_path)
    assert data.classes == ["cat", "dog"] and data.category_ids == [3, 7]  # sorted by id
    assert data.image_ids == [5, 9]
    assert data.images.shape == (2, 3, 20, 30)
    assert torch.allclose(data.images[0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    assert torch.allclose(data.images[1], torch.full((3, 20, 30), 200 / 255))
    assert data.targets[0]["boxes"].tolist() == [[2, 5, 12, 10], [0.5, 1.5, 3.5, 5.5]]
    assert data.targets[0]["labels"].tolist() == [2, 1]  # crowd skipped
    assert data.targets[1]["boxes"].shape == (0, 4) and data.targets[1]["labels"].dtype == torch.int64
    # the box of the orange patch is its pixels' tight box
    assert mask_box(data.images[0][0] > 0.5) == data.targets[0]["boxes"][0].tolist()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("annotations"), "key 'annotations'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), "bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 4]), "positive width and height"),
    (lambda d: d["annotations"][0].update(image_id=99), "image_id 99"),
    (lambda d: d["annotations"][0].update(category_id=1), "category_id 1"),
    (lambda d: d["images"][1].update(file_name="missing.png"), "missing.png does not exist"),
    (lambda d: d["images"][0].update(width=31), "'width' says 31"),
])
def test_load_coco_errors(tmp_path, edit, message):
    path, data, _ = coco_fixture(tmp_path)
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(TextCNNError, match=message) as err:
        load_coco(path, tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_coco_not_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("{not json")
    with pytest.raises(TextCNNError, match="invalid JSON"):
        load_coco(path, tmp_path)


# -- VOC -----------------------------------------------------------------------------------------


def voc_xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{hard}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, hard in objects)
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


def test_load_voc_root(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    image = np.zeros((24, 32, 3), dtype=np.uint8)
    image[4:10, 10:20] = 255  # rows 4..9, columns 10..19 (0-based) = VOC 5..10, 11..20
    write_png(tmp_path / "JPEGImages" / "one.png", image)
    write_png(tmp_path / "JPEGImages" / "two.png", image)
    (tmp_path / "Annotations" / "one.xml").write_text(
        voc_xml("one.png", [("person", (11, 5, 20, 10), 0), ("car", (1, 1, 4, 4), 1)]))
    (tmp_path / "Annotations" / "two.xml").write_text(voc_xml("two.png", [("car", (2, 2, 3, 3), 0)]))
    data = load_voc(tmp_path)
    assert data.classes == ["car", "person"]
    first = data.targets[0]
    assert first["boxes"][0].tolist() == mask_box(data.images[0][0] > 0.5) == [10, 4, 20, 10]
    assert first["boxes"][1].tolist() == [0, 0, 4, 4]
    assert first["labels"].tolist() == [2, 1] and first["difficult"].tolist() == [False, True]
    fixed = load_voc([tmp_path / "Annotations" / "two.xml"], classes=["bg", "car"])
    assert fixed.targets[0]["labels"].tolist() == [2] and len(fixed) == 1


@pytest.mark.parametrize("xml, message", [
    ("<annotation><filename>x.png</filename", "parse error"),
    ("<annotation></annotation>", "missing <filename>"),
    ("<annotation><filename>x.png</filename><object><name>a</name></object></annotation>",
     "object 0: missing <bndbox>"),
    ("<annotation><filename>x.png</filename><object><name>a</name><bndbox><xmin>1</xmin>"
     "<ymin>1</ymin><xmax>2</xmax></bndbox></object></annotation>", "missing <ymax>"),
    ("<annotation><filename>x.png</filename><object><name>a</name><bndbox><xmin>one</xmin>"
     "<ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "<xmin> should be a number"),
    (voc_xml("x.png", [("dog", (1, 1, 2, 2), 0)]), "class 'dog' is not in classes"),
    (voc_xml("gone.png", []), "gone.png does not exist"),
])
def test_load_voc_errors(tmp_path, xml, message):
    write_png(tmp_path / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
    path = tmp_path / "x.xml"
    path.write_text(xml)
    with pytest.raises(TextCNNError, match=message) as err:
        load_voc([path], classes=["cat"] if "dog" in xml else None)
    assert str(path) in str(err.value)


# -- augmentation --------------------------------------------------------------------------------


def square_image(x1: int, y1: int, x2: int, y2: int, size: tuple[int, int] = (40, 48)):
    image = torch.zeros(3, *size)
    image[:, y1:y2, x1:x2] = 1.0
    target = {"boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32),
              "labels": torch.tensor([2]), "difficult": torch.tensor([True])}
    return image, target


def test_hflip_matches_pixels_and_twice_is_identity():
    image, target = square_image(3, 5, 15, 20)
    flipped, ft = hflip(image, target)
    assert ft["boxes"][0].tolist() == mask_box(flipped[0] > 0.5) == [33, 5, 45, 20]
    back, bt = hflip(flipped, ft)
    assert torch.equal(back, image) and torch.equal(bt["boxes"], target["boxes"])
    assert torch.equal(bt["labels"], target["labels"])


@pytest.mark.parametrize("scale", [0.6, 0.85, 1.0, 1.3, 1.7])
def test_scale_jitter_boxes_follow_pixels(scale):
    image, target = square_image(16, 12, 32, 28)
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        out, t = scale_jitter(image, target, scale_range=(scale, scale), generator=gen)
        assert out.shape == image.shape
        assert len(t["boxes"]) == 1  # the square is central: always mostly in view
        found = torch.tensor(mask_box(out[0] > 0.5), dtype=torch.float32)
        assert torch.allclose(t["boxes"][0], found, atol=1.0), (t["boxes"][0], found)
        size = t["boxes"][0, 2:] - t["boxes"][0, :2]
        if t["boxes"].min() > 0 and (t["boxes"][0, 2:] < torch.tensor([48.0, 40.0])).all():  # not clipped
            assert torch.allclose(size, torch.tensor([16.0, 16.0]) * scale, atol=0.6)


def test_scale_jitter_drops_boxes_pushed_out():
    """Zooming 1.5x with a square in the corner: the box is kept exactly when at least half of the
    square's (scaled) pixels are still in view, and then it is clipped to the image."""
    image, target = square_image(0, 0, 10, 10, size=(40, 40))
    image[:, 18:22, 18:22] = 0.3  # a second, dimmer object that always stays in view
    target = {"boxes": torch.tensor([[0, 0, 10, 10], [18, 18, 22, 22]], dtype=torch.float32),
              "labels": torch.tensor([1, 3]), "difficult": torch.tensor([False, True])}
    seen = set()
    for seed in range(30):
        out, t = scale_jitter(image, target, scale_range=(1.5, 1.5), generator=torch.Generator().manual_seed(seed))
        visible = float((out[0] > 0.5).sum()) / 225.0  # the corner square is 15x15 after zooming
        kept = 1 in t["labels"].tolist()
        if abs(visible - 0.5) > 0.05:
            assert kept == (visible >= 0.5), (seed, visible, t)
        seen.add(kept)
        assert t["labels"].tolist()[-1] == 3 and bool(t["difficult"][-1])  # per-box keys follow
        assert len(t["labels"]) == len(t["boxes"]) == len(t["difficult"])
        if kept:
            assert t["boxes"][0].tolist() == mask_box(out[0] > 0.5)
    assert seen == {True, False}


def test_detection_augment():
    image, target = square_image(4, 6, 14, 20)
    images = torch.stack([image, image.roll(5, dims=-1)])
    targets = [target, {**target, "boxes": target["boxes"] + torch.tensor([5.0, 0, 5, 0])}]
    flip_only = DetectionAugment(hflip=1.0, scale_range=None)
    out, out_t = flip_only(images, targets, torch.Generator().manual_seed(0))
    assert isinstance(out, torch.Tensor) and torch.equal(out, images.flip(-1))
    assert out_t[1]["boxes"][0].tolist() == mask_box(out[1][0] > 0.5)
    same, _ = DetectionAugment(hflip=0.0, scale_range=None)(list(images), targets)
    assert isinstance(same, list) and torch.equal(same[0], images[0])
    augment = DetectionAugment()
    a, at = augment(list(images), targets, torch.Generator().manual_seed(7))
    b, bt = augment(list(images), targets, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(at, bt))
    for img, t in zip(a, at):
        assert torch.allclose(t["boxes"][0], torch.tensor(mask_box(img[0] > 0.5), dtype=torch.float32), atol=1.0)
    with pytest.raises(TextCNNError, match="hflip"):
        DetectionAugment(hflip=1.5)


# -- drawing -------------------------------------------------------------------------------------


def test_draw_detections_outlines_box_and_keeps_inside(tmp_path):
    image = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    before = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    dets = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 35.0], [1.0, 1.0, 5.0, 5.0]]),
            "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.2])}
    out = draw_detections(image, dets, ["circle", "square"], score_threshold=0.5)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    edge = np.zeros((40, 50), dtype=bool)
    edge[20, 10:30] = edge[34, 10:30] = edge[20:35, 10] = edge[20:35, 29] = True
    colour = out[20, 15]
    assert (out[edge] == colour).all() and not (before[edge] == colour).all(axis=1).all()
    assert (out[21:34, 11:29] == before[21:34, 11:29]).all()  # inside untouched
    assert (out[:5, :8] == before[:5, :8]).all()  # the low-scoring box is not drawn
    assert (out[:20] != before[:20]).any()  # a label tab above the box
    big = draw_detections(image, {"boxes": dets["boxes"], "labels": dets["labels"]}, ["c", "s"], scale=3)
    assert big.shape == (120, 150, 3)
    path = save_png(out, tmp_path / "sub" / "det.png")
    assert np.array_equal(np.asarray(Image.open(path)), out)
    assert [p.name for p in path.parent.iterdir()] == ["det.png"]  # no temporary file left


def test_drawings_are_enlarged_to_a_readable_size_with_labels_inside() -> None:
    assert [readable_scale(*hw) for hw in ((96, 96), (100, 50), (480, 640), (481, 10))] == [5, 5, 1, 1]
    image = torch.zeros(3, 96, 96)  # black: only the drawing is coloured
    dets = {"boxes": torch.tensor([[90.0, 30.0, 96.0, 50.0]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.9])}
    out = draw_detections(image, dets, ["circle"], scale=readable_scale(96, 96))
    assert out.shape == (480, 480, 3)
    tab = np.all(out[:150] == PALETTE[0], axis=-1)  # above the box's top edge (30 x 5)
    rows, cols = np.nonzero(tab)
    # the tab is moved left to end at the picture's edge instead of running past it, and its
    # font grows with the picture: at least 16 px high here
    assert cols.max() == 479 and cols.min() < 450 and rows.max() - rows.min() + 1 >= 16


def test_shapes_splits_take_max_objects() -> None:
    counts = [len(t["labels"]) for split in shapes_splits(size=48, train=12, val=4, test=4, max_objects=1)
              for t in split.targets]
    assert max(counts) == 1 and min(counts) == 1  # min_objects is 1: every image holds exactly one
    many = [len(t["labels"]) for t in shapes_splits(size=48, train=12, val=1, test=1)[0].targets]
    assert max(many) > 1  # the default (4) gives images with several


def test_detection_recipe_max_objects_reaches_the_data() -> None:
    from vision.detection.pipeline import DetectionDataSection, load_detection_splits

    train, _, _ = load_detection_splits(DetectionDataSection(size=48, train_images=12, val_images=2,
                                                             test_images=0, max_objects=1))
    assert all(len(t["labels"]) == 1 for t in train.targets)
