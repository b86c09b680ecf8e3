"""Detection metrics: Pascal VOC mean average precision and COCO's mAP@[.5:.95] (pycocotools).

Both take one detections dict per image (`boxes` float [D, 4] xyxy, `labels` int64 [D],
`scores` float [D]) and one target dict per image (`boxes` [K, 4], `labels` [K], optional
`difficult` bool [K]: such objects are neither required nor counted as false positives when
found). Labels run 1..num_classes.

    from vision.detection.metrics import voc_map
    voc_map(detections, targets, num_classes=3)["map"]
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError
from vision.ops import box_iou


def _check(detections: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]],
           num_classes: int) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """CPU float64 copies, after checking the keys and shapes."""
    if len(detections) != len(targets):
        raise TextCNNError(f"detection metrics: expected one detections dict per target, "
                           f"got {len(detections)} detections and {len(targets)} targets")
    dets, gts = [], []
    for i, (det, gt) in enumerate(zip(detections, targets)):
        for what, d, keys in (("detections", det, ("boxes", "labels", "scores")), ("targets", gt, ("boxes", "labels"))):
            missing = [k for k in keys if k not in d]
            if missing:
                raise TextCNNError(f"detection metrics: {what}[{i}]: expected keys {list(keys)}, missing {missing}")
            count = d["boxes"].reshape(-1, 4).shape[0]
            if any(d[k].numel() != count for k in keys[1:]):
                raise TextCNNError(f"detection metrics: {what}[{i}]: expected {count} entries in "
                                   f"{', '.join(keys[1:])} (one per box), got "
                                   f"{[int(d[k].numel()) for k in keys[1:]]}")
            labels = d["labels"].reshape(-1)
            if len(labels) and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
                raise TextCNNError(f"detection metrics: {what}[{i}]: expected labels in 1..{num_classes}, "
                                   f"got {int(labels.min())}..{int(labels.max())}")
        dets.append({"boxes": det["boxes"].detach().cpu().double().reshape(-1, 4),
                     "labels": det["labels"].detach().cpu().long().reshape(-1),
                     "scores": det["scores"].detach().cpu().double().reshape(-1)})
        boxes = gt["boxes"].detach().cpu().double().reshape(-1, 4)
        difficult = gt.get("difficult")
        difficult = (difficult.detach().cpu().bool().reshape(-1) if difficult is not None
                     else torch.zeros(len(boxes), dtype=torch.bool))
        gts.append({"boxes": boxes, "labels": gt["labels"].detach().cpu().long().reshape(-1),
                    "difficult": difficult})
    return dets, gts


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision/recall curve with all-point interpolation (VOC2010 onwards):
    precision at recall r is the best precision at any recall >= r."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())


def voc_map(detections: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]], *,
            num_classes: int, iou_threshold: float = 0.5) -> dict:
    """Pascal VOC mean average precision.

    Per class, detections of all images are taken by descending score (ties: image order, then
    the order within the image); each is matched to the ground truth box of its class in its
    image with the highest IoU. IoU above `iou_threshold` with a box not matched before is a true
    positive; with an already matched box (a duplicate) or at lower IoU, a false positive; with a
    `difficult` box, ignored (as the VOC devkit does). IoU uses continuous coordinates (no VOC
    "+1"). AP is the all-point interpolated area (`average_precision`).

    Returns `{"map": mean AP over the classes with at least one non-difficult ground truth box,
    "ap": {label: AP} for those classes, "num_gt": {label: count}}`. A class with ground truth
    and no detections has AP 0; with no ground truth at all the mean is undefined: `map` is nan.
    """
    dets, gts = _check(detections, targets, num_classes)
    # every image's IoU table once: [D_i, K_i]
    ious = [box_iou(d["boxes"], g["boxes"]) for d, g in zip(dets, gts)]
    ap: dict[int, float] = {}
    num_gt: dict[int, int] = {}
    for c in range(1, num_classes + 1):
        npos = sum(int(((g["labels"] == c) & ~g["difficult"]).sum()) for g in gts)
        if npos == 0:
            continue
        image_of, index_of, scores = [], [], []
        for i, d in enumerate(dets):
            idx = torch.nonzero(d["labels"] == c).flatten()
            image_of += [i] * len(idx)
            index_of += idx.tolist()
            scores += d["scores"][idx].tolist()
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        matched = [torch.zeros(len(g["boxes"]), dtype=torch.bool) for g in gts]
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for rank, k in enumerate(order):
            i, j = image_of[k], index_of[k]
            of_class = gts[i]["labels"] == c
            overlaps = torch.where(of_class, ious[i][j], torch.full_like(ious[i][j], -1.0))
            best = int(overlaps.argmax()) if len(overlaps) else -1
            if best >= 0 and float(overlaps[best]) > iou_threshold:
                if gts[i]["difficult"][best]:
                    continue  # neither found nor false
                if not matched[i][best]:
                    tp[rank] = 1.0
                    matched[i][best] = True
                else:
                    fp[rank] = 1.0
            else:
                fp[rank] = 1.0
        tp_sum, fp_sum = np.cumsum(tp), np.cumsum(fp)
        recall = tp_sum / npos
        precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
        # ranks of ignored (difficult) detections repeat the previous point: harmless to the area
        ap[c] = average_precision(recall, precision)
        num_gt[c] = npos
    return {"map": float(np.mean(list(ap.values()))) if ap else math.nan, "ap": ap, "num_gt": num_gt}


def coco_map(detections: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]], *,
             num_classes: int) -> dict:
    """COCO box mAP by pycocotools' COCOeval: `{"map": mAP@[.5:.95], "map_50", "map_75"}`
    (at most 100 detections per image, all object sizes).

    Ground truth and detections are built in memory (image ids 1..N, category ids = labels);
    `difficult` objects become crowd regions, which COCO ignores. No detections at all gives 0
    (pycocotools' loadRes would crash on an empty list, so it is not used). With no ground truth
    every value is nan (COCOeval's -1 "undefined").
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise TextCNNError("coco_map needs pycocotools: pip install pycocotools") from None
    dets, gts = _check(detections, targets, num_classes)
    images = [{"id": i + 1} for i in range(len(gts))]
    categories = [{"id": c, "name": str(c)} for c in range(1, num_classes + 1)]

    def xywh(boxes: Tensor) -> list[list[float]]:
        return torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), dim=1).tolist()

    gt_anns, dt_anns = [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        for box, label, hard in zip(xywh(g["boxes"]), g["labels"].tolist(), g["difficult"].tolist()):
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": label, "bbox": box,
                            "area": box[2] * box[3], "iscrowd": int(hard)})
        for box, label, score in zip(xywh(d["boxes"]), d["labels"].tolist(), d["scores"].tolist()):
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": i + 1, "category_id": label, "bbox": box,
                            "area": box[2] * box[3], "score": score, "iscrowd": 0})
    if not any(not a["iscrowd"] for a in gt_anns):
        return {"map": math.nan, "map_50": math.nan, "map_75": math.nan}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "categories": categories, "annotations": gt_anns}
        coco_dt.dataset = {"images": images, "categories": categories, "annotations": dt_anns}
        coco_gt.createIndex()
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(s) if s >= 0 else math.nan for s in evaluator.stats[:3]]
    if not dt_anns:  # COCOeval gives 0 here already; say it plainly
        stats = [0.0, 0.0, 0.0]
    return {"map": stats[0], "map_50": stats[1], "map_75": stats[2]}


__all__ = ["average_precision", "coco_map", "voc_map"]
