"""YOLO v1 and SSD: losses against loop-based re-implementations of the papers' formulas, target
assignment against hand-worked cases and brute force, the training / eval contract, and a short
overfit on two images of filled shapes."""

from __future__ import annotations

import math

import pytest
import torch

from vision.detection import create_detector, list_detectors
from vision.detection.models.ssd import SSD, hard_negative_mask, ssd_match
from vision.detection.models.yolo import (
    YOLOv1,
    assign_cells,
    decode_grid,
    yolo_targets,
    yolo_v1_loss,
)
from vision.ops import box_iou

TINY_BACKBONE = {"widths": (8, 16, 16, 32)}


def tiny(name: str, **kwargs: object) -> YOLOv1 | SSD:
    """A few-thousand-parameter model on 64 px inputs (backbone stride 8: an 8 x 8 map)."""
    torch.manual_seed(0)
    extra = {"grid": 4, "head_channels": 32} if name == "yolo_v1" else {"extra_channels": (32, 32)}
    return create_detector(name, num_classes=3, backbone_kwargs=TINY_BACKBONE, image_size=64,
                           **{**extra, **kwargs})


def empty_target() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def some_targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]),
             "labels": torch.tensor([1, 3])},
            {"boxes": torch.tensor([[10.0, 12.0, 24.0, 40.0]]), "labels": torch.tensor([2])}]


LOSS_KEYS = {"yolo_v1": {"loss_box", "loss_obj", "loss_noobj", "loss_class"},
             "ssd": {"loss_classifier", "loss_box_reg"}}
BOX_KEYS = {"yolo_v1": ("loss_box", "loss_obj", "loss_class"), "ssd": ("loss_box_reg",)}


def test_registered() -> None:
    assert {"yolo_v1", "ssd"} <= set(list_detectors())


# -- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["yolo_v1", "ssd"])
def test_training_step_gives_finite_losses_and_backbone_gradients(name: str) -> None:
    model = tiny(name).train()
    losses = model(torch.rand(2, 3, 64, 64), some_targets())
    assert set(losses) == LOSS_KEYS[name]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first = model.backbone.body.stem.conv.weight.grad
    assert first is not None and float(first.abs().sum()) > 0


@pytest.mark.parametrize("name", ["yolo_v1", "ssd"])
def test_eval_returns_well_formed_detections_in_original_pixels(name: str) -> None:
    model = tiny(name, score_thresh=0.0, detections_per_img=7).eval()
    images = [torch.rand(3, 48, 80), torch.rand(3, 64, 64)]  # resized to 64 x 64 and back
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores"}
        k = len(det["scores"])
        assert 1 <= k <= 7
        assert det["boxes"].shape == (k, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64 and det["labels"].shape == (k,)
        assert bool(((det["labels"] >= 1) & (det["labels"] <= 3)).all())
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())  # best first
        assert bool(((det["scores"] >= 0) & (det["scores"] <= 1)).all())
        h, w = img.shape[-2:]
        b = det["boxes"]
        assert bool((b[:, 0] >= 0).all() and (b[:, 2] <= w + 1e-4).all() and (b[:, 1] >= 0).all()
                    and (b[:, 3] <= h + 1e-4).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all())


@pytest.mark.parametrize("name", ["yolo_v1", "ssd"])
def test_empty_targets_give_zero_box_losses(name: str) -> None:
    model = tiny(name).train()
    losses = model(torch.rand(2, 3, 64, 64), [empty_target(), empty_target()])
    for key in BOX_KEYS[name]:
        assert float(losses[key].detach()) == 0.0
    # empty images still teach "nothing here": YOLO's no-object term, SSD's mined negatives
    background = losses["loss_noobj"] if name == "yolo_v1" else losses["loss_classifier"]
    assert float(background.detach()) > 0
    sum(losses.values()).backward()
    # an empty image beside a full one
    mixed = model(torch.rand(2, 3, 64, 64), [some_targets()[0], empty_target()])
    assert all(torch.isfinite(v) for v in mixed.values())


# -- YOLO v1 -----------------------------------------------------------------------------------


def test_yolo_cell_assignment_hand_worked() -> None:
    # 70 x 70 image, 7 x 7 grid: cells of 10 px
    boxes = torch.tensor([[12.0, 23.0, 18.0, 37.0],   # centre (15, 30): row 3, col 1
                          [60.0, 60.0, 70.0, 70.0],   # centre (65, 65): row 6, col 6
                          [11.0, 21.0, 19.0, 39.0],   # centre (15, 30) again, larger: wins the cell
                          [40.0, 0.0, 70.0, 20.0],    # centre (55, 10): row 1, col 5
                          [52.0, 8.0, 58.0, 12.0]])   # centre (55, 10) again, smaller: dropped
    rows, cols, kept = assign_cells(boxes, (70, 70), 7)
    got = sorted(zip(kept.tolist(), rows.tolist(), cols.tolist()))
    assert got == [(1, 6, 6), (2, 3, 1), (3, 1, 5)]
    # a centre on the far edge goes to the last cell; non-square images use each axis' size
    rows, cols, _ = assign_cells(torch.tensor([[80.0, 30.0, 100.0, 50.0]]), (50, 100), 5)
    assert (rows.item(), cols.item()) == (4, 4)


def test_yolo_targets_and_responsible_box_hand_worked() -> None:
    # 70 x 70, S = 7, B = 2; ground truth [10, 30, 20, 40]: cell (row 3, col 1), centre offset
    # (0.5, 0.5), w = h = 10/70
    gt = {"boxes": torch.tensor([[10.0, 30.0, 20.0, 40.0]]), "labels": torch.tensor([2])}
    s = math.sqrt(10 / 70)
    pred = torch.full((1, 7, 7, 2, 4), 0.5)
    pred[0, 3, 1, 0] = torch.tensor([0.0, 0.5, s, s])  # shifted left by 5 px: IoU 50 / 150 = 1/3
    pred[0, 3, 1, 1] = torch.tensor([0.5, 0.5, s, s])  # exactly the ground truth: IoU 1
    t = yolo_targets(pred, [gt], (70, 70))
    assert t.has_object.sum() == 1 and bool(t.has_object[0, 3, 1])
    torch.testing.assert_close(t.boxes[0, 3, 1], torch.tensor([0.5, 0.5, s, s]))
    assert t.classes[0, 3, 1] == 1
    torch.testing.assert_close(t.iou[0, 3, 1], torch.tensor([1 / 3, 1.0]))
    assert t.responsible[0, 3, 1].tolist() == [False, True]
    assert t.responsible.sum() == 1
    # the better box is responsible whatever its index; equal IoUs go to box 0
    pred[0, 3, 1] = pred[0, 3, 1].flip(0)
    assert yolo_targets(pred, [gt], (70, 70)).responsible[0, 3, 1].tolist() == [True, False]
    pred[0, 3, 1, 1] = pred[0, 3, 1, 0]
    assert yolo_targets(pred, [gt], (70, 70)).responsible[0, 3, 1].tolist() == [True, False]


def brute_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_yolo_loss(pred: torch.Tensor, targets: list[dict[str, torch.Tensor]], height: int, width: int,
                        num_boxes: int, lambda_coord: float, lambda_noobj: float) -> dict[str, float]:
    """The paper's equation (3), written cell by cell and box by box."""
    n, grid = pred.shape[0], pred.shape[1]
    p = pred.tolist()
    total = {"loss_box": 0.0, "loss_obj": 0.0, "loss_noobj": 0.0, "loss_class": 0.0}
    for i in range(n):
        # which ground truth each cell takes: the largest box whose centre lies in it
        owner: dict[tuple[int, int], int] = {}
        gts = targets[i]["boxes"].tolist()
        for k, (x1, y1, x2, y2) in enumerate(gts):
            cell = (min(int((y1 + y2) / 2 / height * grid), grid - 1), min(int((x1 + x2) / 2 / width * grid), grid - 1))
            area = (x2 - x1) * (y2 - y1)
            if cell not in owner or area > (gts[owner[cell]][2] - gts[owner[cell]][0]) * (
                    gts[owner[cell]][3] - gts[owner[cell]][1]):
                owner[cell] = k
        for r in range(grid):
            for c in range(grid):
                cell = p[i][r][c]
                resp_box = -1
                if (r, c) in owner:
                    x1, y1, x2, y2 = gts[owner[(r, c)]]
                    label = int(targets[i]["labels"][owner[(r, c)]])
                    tx, ty = (x1 + x2) / 2 / width * grid - c, (y1 + y2) / 2 / height * grid - r
                    tw, th = math.sqrt((x2 - x1) / width), math.sqrt((y2 - y1) / height)
                    ious = []
                    for b in range(num_boxes):
                        bx, by, bw, bh = cell[5 * b:5 * b + 4]
                        cx, cy = (c + bx) / grid * width, (r + by) / grid * height
                        w, h = bw * bw * width, bh * bh * height
                        ious.append(brute_iou([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], [x1, y1, x2, y2]))
                    resp_box = ious.index(max(ious))
                    bx, by, bw, bh, conf = cell[5 * resp_box:5 * resp_box + 5]
                    total["loss_box"] += lambda_coord * ((bx - tx) ** 2 + (by - ty) ** 2
                                                         + (bw - tw) ** 2 + (bh - th) ** 2)
                    total["loss_obj"] += (conf - ious[resp_box]) ** 2
                    for cls, prob in enumerate(cell[5 * num_boxes:]):
                        total["loss_class"] += (prob - (1.0 if cls == label - 1 else 0.0)) ** 2
                for b in range(num_boxes):
                    if b != resp_box:
                        total["loss_noobj"] += lambda_noobj * cell[5 * b + 4] ** 2
    return {k: v / n for k, v in total.items()}


@pytest.mark.parametrize("seed", range(3))
def test_yolo_loss_matches_loop_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    grid, num_boxes, num_classes, height, width = 3, 2, 4, 60, 90
    pred = torch.rand(2, grid, grid, num_boxes * 5 + num_classes, generator=g, dtype=torch.float64)
    # make some predicted boxes overlap the ground truth so that responsibility is not always box 0
    pred[..., 2:4] = 0.3 + 0.4 * pred[..., 2:4]
    targets = [{"boxes": torch.tensor([[5.0, 4.0, 40.0, 30.0], [50.0, 30.0, 85.0, 58.0], [10.0, 35.0, 25.0, 55.0],
                                       [8.0, 8.0, 30.0, 18.0]], dtype=torch.float64),  # last two share a cell
                "labels": torch.tensor([1, 4, 2, 3])},
               {"boxes": torch.tensor([[31.0, 21.0, 58.0, 39.0]], dtype=torch.float64), "labels": torch.tensor([2])}]
    got = yolo_v1_loss(pred, targets, (height, width), boxes_per_cell=num_boxes, lambda_coord=5.0, lambda_noobj=0.5)
    want = reference_yolo_loss(pred, targets, height, width, num_boxes, 5.0, 0.5)
    assert set(got) == set(want)
    for key in want:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


def test_yolo_decode_hand_worked() -> None:
    model = tiny("yolo_v1", score_thresh=0.1).eval()  # 64 px, 4 x 4 grid: cells of 16 px
    pred = torch.zeros(1, 4, 4, 2 * 5 + 3)
    pred[..., 10:] = 1 / 3
    # cell (row 1, col 2), box 1: centre (2.25 * 16, 1.5 * 16) = (36, 24), w = 0.25 * 64, h = 0.5 * 64
    pred[0, 1, 2, 5:10] = torch.tensor([0.25, 0.5, 0.5, math.sqrt(0.5), 0.8])
    pred[0, 1, 2, 10:] = torch.tensor([0.1, 0.75, 0.15])
    torch.testing.assert_close(decode_grid(pred[..., 5:9].reshape(1, 4, 4, 1, 4), (64, 64))[0, 1, 2, 0],
                               torch.tensor([28.0, 8.0, 44.0, 40.0]))
    det = model.postprocess(pred, (64, 64))[0]
    # scores 0.8 * (0.1, 0.75, 0.15): only class 2 passes 0.1 and 3 (0.12)
    assert det["labels"].tolist() == [2, 3]
    torch.testing.assert_close(det["scores"], torch.tensor([0.6, 0.12]))
    torch.testing.assert_close(det["boxes"], torch.tensor([[28.0, 8.0, 44.0, 40.0]] * 2))


# -- SSD ---------------------------------------------------------------------------------------


def brute_negatives(loss: list[list[float]], positive: list[list[bool]], ratio: float, minimum: int
                    ) -> list[list[bool]]:
    out = []
    for row, pos in zip(loss, positive):
        candidates = sorted((i for i in range(len(row)) if not pos[i]), key=lambda i: (-row[i], i))
        k = max(int(sum(pos) * ratio), minimum)
        chosen = set(candidates[:k])
        out.append([i in chosen for i in range(len(row))])
    return out


@pytest.mark.parametrize("minimum", [0, 3])
def test_ssd_hard_negative_mining_matches_brute_force(minimum: int) -> None:
    g = torch.Generator().manual_seed(minimum)
    loss = torch.rand(4, 40, generator=g)
    positive = torch.zeros(4, 40, dtype=torch.bool)
    positive[0, [3, 7]] = True                  # 2 positives: 6 negatives
    positive[1] = torch.rand(40, generator=g) < 0.2
    positive[3, :35] = True                     # 35 positives, only 5 negatives left: all of them
    # image 2 has none: `minimum` negatives
    got = hard_negative_mask(loss, positive, neg_pos_ratio=3.0, min_negatives=minimum)
    want = brute_negatives(loss.tolist(), positive.tolist(), 3.0, minimum)
    assert got.tolist() == want
    assert got[0].sum() == 6 and got[2].sum() == minimum and got[3].sum() == 5


def test_ssd_matching_matches_brute_force() -> None:
    model = tiny("ssd")
    defaults = model.default_boxes([(8, 8), (4, 4), (2, 2)], (64, 64), torch.device("cpu"))
    assert defaults.shape == ((64 + 16 + 4) * 4, 4)
    g = torch.Generator().manual_seed(0)
    targets = []
    for count in (3, 2):
        xy = torch.rand(count, 2, generator=g) * 40
        wh = 8 + torch.rand(count, 2, generator=g) * 24
        targets.append({"boxes": torch.cat((xy, xy + wh), dim=1), "labels": torch.randint(1, 4, (count,), generator=g)})
    targets.append(empty_target())
    labels, offsets = model.match_targets(defaults, targets)
    d = defaults.tolist()
    for i, target in enumerate(targets):
        gts = target["boxes"].tolist()
        # brute force: threshold matches, then each ground truth's best default box
        want = []
        for p in range(len(d)):
            ious = [brute_iou(gt, d[p]) for gt in gts]
            best = max(ious, default=0.0)
            want.append(ious.index(best) if best >= 0.5 else -1)
        for k, gt in enumerate(gts):
            ious = [brute_iou(gt, box) for box in d]
            want[ious.index(max(ious))] = k
        assert i == 2 or sum(w >= 0 for w in want) >= len(gts)
        assert ssd_match(target["boxes"], defaults).tolist() == want
        for p, k in enumerate(want):
            if k < 0:
                assert labels[i, p] == 0 and offsets[i, p].abs().sum() == 0
                continue
            assert labels[i, p] == target["labels"][k]
            (x1, y1, x2, y2), (a1, b1, a2, b2) = gts[k], d[p]
            dw, dh = a2 - a1, b2 - b1
            # SSD's encoding with variances 0.1 (centre) and 0.2 (log size)
            ref = [((x1 + x2) / 2 - (a1 + a2) / 2) / dw / 0.1, ((y1 + y2) / 2 - (b1 + b2) / 2) / dh / 0.1,
                   math.log((x2 - x1) / dw) / 0.2, math.log((y2 - y1) / dh) / 0.2]
            torch.testing.assert_close(offsets[i, p], torch.tensor(ref), rtol=1e-4, atol=1e-4)


def test_ssd_loss_is_normalised_by_positives() -> None:
    """L = (CE over positives and mined negatives + smooth L1 over positives) / N, by hand."""
    model = tiny("ssd", min_negatives=0)
    g = torch.Generator().manual_seed(1)
    defaults = model.default_boxes([(8, 8), (4, 4), (2, 2)], (64, 64), torch.device("cpu"))
    logits = torch.randn(2, len(defaults), 4, generator=g)
    deltas = torch.randn(2, len(defaults), 4, generator=g)
    targets = some_targets()
    losses = model.compute_loss(logits, deltas, defaults, targets)
    labels, offsets = model.match_targets(defaults, targets)
    cls_total, box_total, num_pos = 0.0, 0.0, 0
    for i in range(2):
        pos = [p for p in range(len(defaults)) if labels[i, p] > 0]
        log_p = torch.log_softmax(logits[i], dim=-1)
        background = [(-float(log_p[p, 0]), p) for p in range(len(defaults)) if labels[i, p] == 0]
        negatives = [p for _, p in sorted(background, key=lambda t: (-t[0], t[1]))[:3 * len(pos)]]
        cls_total += sum(-float(log_p[p, labels[i, p]]) for p in pos) + sum(-float(log_p[p, 0]) for p in negatives)
        for p in pos:
            for diff in (deltas[i, p] - offsets[i, p]).tolist():
                box_total += 0.5 * diff ** 2 if abs(diff) < 1 else abs(diff) - 0.5
        num_pos += len(pos)
    assert float(losses["loss_classifier"]) == pytest.approx(cls_total / num_pos, rel=1e-5)
    assert float(losses["loss_box_reg"]) == pytest.approx(box_total / num_pos, rel=1e-5)


# -- overfitting two images --------------------------------------------------------------------


def two_shape_images() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two 64 px images of filled red squares (label 1) and blue discs (label 2) on noise."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    images, targets = [], []
    for spec in ([(8, 10, 26, 1), (36, 30, 20, 2)], [(30, 6, 22, 2), (6, 34, 24, 1)]):
        img = 0.4 + 0.1 * torch.rand(3, 64, 64, generator=g)
        for x, y, s, label in spec:
            if label == 1:
                mask, colour = (xx >= x) & (xx < x + s) & (yy >= y) & (yy < y + s), [0.9, 0.1, 0.1]
            else:
                mask, colour = (xx - x - s / 2) ** 2 + (yy - y - s / 2) ** 2 <= (s / 2) ** 2, [0.1, 0.2, 0.9]
            img[:, mask] = torch.tensor(colour)[:, None]
        images.append(img)
        targets.append({"boxes": torch.tensor([[x, y, x + s, y + s] for x, y, s, _ in spec], dtype=torch.float),
                        "labels": torch.tensor([label for *_, label in spec])})
    return torch.stack(images), targets


@pytest.mark.parametrize("name", ["yolo_v1", "ssd"])
def test_overfits_two_images(name: str) -> None:
    images, targets = two_shape_images()
    model = tiny(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = sum(model.train()(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        detections = model.eval()(images)
    for det, target in zip(detections, targets):
        # the two best detections are the two shapes, with the right labels
        top = {"boxes": det["boxes"][:2], "labels": det["labels"][:2]}
        iou = box_iou(target["boxes"], top["boxes"])
        for k in range(2):
            j = int(iou[k].argmax())
            assert float(iou[k, j]) > 0.5 and top["labels"][j] == target["labels"][k]
