"""Detection metrics: VOC mAP against a brute-force reference and hand-worked cases; COCO mAP."""

from __future__ import annotations

import math
import random

import pytest
import torch

from textcnn.core.errors import TextCNNError
from vision.detection.metrics import average_precision, coco_map, voc_map


def det(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long), "scores": torch.tensor(scores, dtype=torch.float32)}


def gt(boxes, labels, difficult=None):
    out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
           "labels": torch.tensor(labels, dtype=torch.long)}
    if difficult is not None:
        out["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return out


# -- brute-force reference -----------------------------------------------------------------------


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_ap(detections, targets, cls, threshold):
    """VOC devkit AP by explicit loops, or None when the class has no (non-difficult) GT."""
    gts = [[(b, bool(d)) for b, lab, d in zip(t["boxes"].tolist(), t["labels"].tolist(),
                                                 t.get("difficult", torch.zeros(len(t["labels"]))).tolist())
            if lab == cls] for t in targets]
    npos = sum(1 for image in gts for _, d in image if not d)
    if npos == 0:
        return None
    found = []
    for i, d in enumerate(detections):
        for b, lab, s in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist()):
            if lab == cls:
                found.append((s, i, b))
    found.sort(key=lambda x: -x[0])  # stable: ties keep image order
    used = [[False] * len(image) for image in gts]
    tp, fp = [], []
    for _, i, b in found:
        best, best_j = -1.0, None
        for j, (g, _) in enumerate(gts[i]):
            o = iou(b, g)
            if o > best:
                best, best_j = o, j
        if best_j is not None and best > threshold:
            if gts[i][best_j][1]:
                continue
            if not used[i][best_j]:
                used[i][best_j] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    precision, recall, ctp, cfp = [], [], 0, 0
    for a, b in zip(tp, fp):
        ctp += a
        cfp += b
        precision.append(ctp / (ctp + cfp))
        recall.append(ctp / npos)
    ap, previous = 0.0, 0.0
    for k in range(len(recall)):
        if recall[k] > previous:  # area of each recall step at the best precision to its right
            ap += (recall[k] - previous) * max(precision[k:])
            previous = recall[k]
    return ap


def random_case(seed, images=6, num_classes=3):
    rng = random.Random(seed)
    detections, targets = [], []
    for _ in range(images):
        boxes, labels, hard = [], [], []
        for _ in range(rng.randint(0, 4)):
            x, y = rng.uniform(0, 60), rng.uniform(0, 60)
            boxes.append([x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30)])
            labels.append(rng.randint(1, num_classes))
            hard.append(rng.random() < 0.15)
        d_boxes, d_labels, d_scores = [], [], []
        for b, lab in zip(boxes, labels):
            for _ in range(rng.randint(0, 2)):  # hits, near misses and duplicates
                j = [v + rng.gauss(0, 3) for v in b]
                d_boxes.append([min(j[0], j[2] - 1), min(j[1], j[3] - 1), j[2], j[3]])
                d_labels.append(lab if rng.random() < 0.85 else rng.randint(1, num_classes))
                d_scores.append(rng.random())
        for _ in range(rng.randint(0, 3)):  # background false positives
            x, y = rng.uniform(0, 60), rng.uniform(0, 60)
            d_boxes.append([x, y, x + 10, y + 10])
            d_labels.append(rng.randint(1, num_classes))
            d_scores.append(rng.random())
        targets.append(gt(boxes, labels, hard))
        detections.append(det(d_boxes, d_labels, d_scores))
    return detections, targets


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_voc_map_matches_brute_force(seed, threshold):
    detections, targets = random_case(seed)
    result = voc_map(detections, targets, num_classes=3, iou_threshold=threshold)
    expected = {c: reference_ap(detections, targets, c, threshold) for c in (1, 2, 3)}
    expected = {c: ap for c, ap in expected.items() if ap is not None}
    assert set(result["ap"]) == set(expected)
    for c, ap in expected.items():
        assert result["ap"][c] == pytest.approx(ap, abs=1e-9)
    assert result["map"] == pytest.approx(sum(expected.values()) / len(expected), abs=1e-9)


# -- hand-worked cases ---------------------------------------------------------------------------


A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 20]


def test_perfect_detections_give_one():
    targets = [gt([A, B], [1, 2]), gt([C], [3])]
    detections = [det([A, B], [1, 2], [0.9, 0.8]), det([C], [3], [0.7])]
    result = voc_map(detections, targets, num_classes=3)
    assert result["map"] == 1.0 and result["ap"] == {1: 1.0, 2: 1.0, 3: 1.0}
    assert result["num_gt"] == {1: 1, 2: 1, 3: 1}


def test_duplicate_is_a_false_positive():
    # A (TP), A again (FP: A is taken), B (TP): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    targets = [gt([A, B], [1, 1])]
    detections = [det([A, [0, 0, 10, 11], B], [1, 1, 1], [0.9, 0.8, 0.7])]
    assert voc_map(detections, targets, num_classes=1)["map"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_worked_example():
    """3 GT boxes, 5 detections by score: TP, FP, TP, FP, TP.
    precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1;
    AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45."""
    targets = [gt([A, B], [1, 1]), gt([C], [1])]
    detections = [det([A, [70, 70, 80, 80], [22, 21, 40, 40]], [1, 1, 1], [0.9, 0.8, 0.7]),
                  det([[0, 0, 5, 5], C], [1, 1], [0.6, 0.5])]
    result = voc_map(detections, targets, num_classes=1)
    assert result["ap"][1] == pytest.approx(34 / 45)
    assert average_precision(torch.tensor([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1]).numpy(),
                             torch.tensor([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5]).numpy()) == pytest.approx(34 / 45)


def test_difficult_objects_are_ignored():
    targets = [gt([A, B], [1, 1], [False, True])]
    # finding the difficult B first is neither a TP nor an FP; missing it costs nothing
    assert voc_map([det([B, A], [1, 1], [0.9, 0.8])], targets, num_classes=1)["map"] == 1.0
    assert voc_map([det([A], [1], [0.8])], targets, num_classes=1)["map"] == 1.0
    assert voc_map([det([B], [1], [0.8])], targets, num_classes=1)["map"] == 0.0
    assert voc_map([det([A], [1], [0.8])], targets, num_classes=1)["num_gt"] == {1: 1}


def test_threshold_label_and_class_without_gt():
    shifted = [0, 0, 10, 12.5]  # IoU with A = 100 / 125 = 0.8
    targets = [gt([A], [1])]
    assert voc_map([det([shifted], [1], [0.9])], targets, num_classes=2)["map"] == 1.0
    assert voc_map([det([shifted], [1], [0.9])], targets, num_classes=2, iou_threshold=0.85)["map"] == 0.0
    wrong_label = voc_map([det([A], [2], [0.9])], targets, num_classes=2)
    assert wrong_label["ap"] == {1: 0.0} and wrong_label["map"] == 0.0  # class 2 has no GT: not averaged
    # false positives of a class without GT do not touch the mean
    assert voc_map([det([A, B], [1, 2], [0.9, 0.95])], targets, num_classes=2)["map"] == 1.0


def test_empty_cases():
    targets = [gt([A], [1]), gt([], [])]
    nothing = [det([], [], []), det([], [], [])]
    assert voc_map(nothing, targets, num_classes=2) == {"map": 0.0, "ap": {1: 0.0}, "num_gt": {1: 1}}
    no_gt = voc_map([det([A], [1], [0.9]), det([], [], [])], [gt([], []), gt([], [])], num_classes=2)
    assert math.isnan(no_gt["map"]) and no_gt["ap"] == {}
    assert math.isnan(voc_map([], [], num_classes=1)["map"])


def test_voc_map_errors():
    with pytest.raises(TextCNNError, match="one detections dict per target"):
        voc_map([det([A], [1], [0.9])], [], num_classes=1)
    with pytest.raises(TextCNNError, match=r"labels in 1\.\.2"):
        voc_map([det([A], [3], [0.9])], [gt([A], [1])], num_classes=2)
    with pytest.raises(TextCNNError, match="missing \\['scores'\\]"):
        voc_map([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [gt([A], [1])], num_classes=1)
    with pytest.raises(TextCNNError, match="one per box"):
        voc_map([det([A], [1], [0.9])], [gt([A, B], [1])], num_classes=1)


# -- COCO ----------------------------------------------------------------------------------------


def test_coco_map():
    pytest.importorskip("pycocotools", reason="coco_map needs pycocotools (pip install pycocotools)")
    targets = [gt([A, B], [1, 2]), gt([C], [1])]
    perfect = [det([A, B], [1, 2], [0.9, 0.8]), det([C], [1], [0.7])]
    result = coco_map(perfect, targets, num_classes=2)
    assert result == pytest.approx({"map": 1.0, "map_50": 1.0, "map_75": 1.0})
    # B shifted to IoU 0.62: found at thresholds 0.50, 0.55, 0.60, not at 0.65 and above
    shifted = [det([A, [20, 20, 40, 32.4]], [1, 2], [0.9, 0.8]), det([C], [1], [0.7])]
    result = coco_map(shifted, targets, num_classes=2)
    assert result["map_50"] == pytest.approx(1.0) and result["map"] < 1.0
    # class 2 AP: 1 at 3 of the 10 thresholds, 0 at the 7 others; class 1: 1 at all
    assert result["map_75"] == pytest.approx(0.5)
    assert result["map"] == pytest.approx((1.0 + 3 / 10) / 2)
    empty = [det([], [], []), det([], [], [])]
    assert coco_map(empty, targets, num_classes=2) == {"map": 0.0, "map_50": 0.0, "map_75": 0.0}
    no_gt = coco_map(perfect, [gt([], []), gt([], [])], num_classes=2)
    assert all(math.isnan(v) for v in no_gt.values())
    # a difficult object becomes a crowd region: ignored, so missing it costs nothing
    hard = [gt([A, B], [1, 2], [False, True]), gt([C], [1])]
    assert coco_map([det([A], [1], [0.9]), det([C], [1], [0.7])], hard, num_classes=2)["map"] == pytest.approx(1.0)
