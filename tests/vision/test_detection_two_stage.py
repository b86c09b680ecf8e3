"""Fast / Faster R-CNN: one training step, eval outputs, empty targets, the RPN loss and the RoI
heads' losses and postprocessing against hand-written loops, the selective-search proposal
stage's cache, and a short overfit run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.detection import create_detector
from vision.detection.generalized_rcnn import GeneralizedRCNN
from vision.detection.models.fast_rcnn import FastRCNN, SelectiveSearchProposals, fast_rcnn
from vision.detection.models.faster_rcnn import FasterRCNN, faster_rcnn
from vision.detection.roi_heads import RoIHeads, RoIPool
from vision.detection.rpn import RegionProposalNetwork
from vision.ops import AnchorGenerator, box_iou, roi_align, roi_pool

NARROW = {"widths": (8, 16, 32, 64)}
RPN_KEYS = {"loss_objectness", "loss_rpn_box_reg"}
ROI_KEYS = {"loss_classifier", "loss_box_reg"}
COLOURS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.2, 0.9)}


def squares(size: int = 64) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Two noisy grey images with filled squares: red = label 1, blue = label 2."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, size, size, generator=g) * 0.2 + 0.4
    boxes = [torch.tensor([[6.0, 8.0, 26.0, 28.0], [36.0, 34.0, 50.0, 48.0]]),
             torch.tensor([[20.0, 14.0, 48.0, 42.0]])]
    labels = [torch.tensor([1, 2]), torch.tensor([2])]
    for image, image_boxes, image_labels in zip(images, boxes, labels):
        for (x1, y1, x2, y2), label in zip(image_boxes.long().tolist(), image_labels.tolist()):
            image[:, y1:y2, x1:x2] = torch.tensor(COLOURS[label])[:, None, None]
    return images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]


def empty_targets(count: int) -> list[dict[str, Tensor]]:
    return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in range(count)]


class GridProposals(nn.Module):
    """A cheap proposal stage: a fixed grid of boxes, plus jittered ground truth in training."""

    def forward(self, batch: Tensor, features: Tensor, targets: list | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        height, width = batch.shape[-2:]
        grid = [[x, y, x + s, y + s] for s in (12, 24) for y in range(0, height - s + 1, 8)
                for x in range(0, width - s + 1, 8)]
        grid = torch.tensor(grid, dtype=batch.dtype)
        out = []
        g = torch.Generator().manual_seed(1)
        for i in range(len(batch)):
            boxes = grid
            if targets is not None and len(targets[i]["boxes"]):
                gt = targets[i]["boxes"]
                jitter = gt.repeat(4, 1) + torch.randn(4 * len(gt), 4, generator=g) * 2
                boxes = torch.cat((boxes, jitter))
            out.append(boxes)
        return out, {}


def small_faster(**kwargs) -> FasterRCNN:
    torch.manual_seed(0)
    return faster_rcnn(num_classes=2, backbone_kwargs=NARROW, image_size=64, representation_size=64,
                       rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                       rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=30,
                       rpn_batch_size_per_image=64, box_batch_size_per_image=32, **kwargs)


def small_fast() -> FastRCNN:
    torch.manual_seed(0)
    return fast_rcnn(num_classes=2, backbone_kwargs=NARROW, image_size=64, representation_size=64,
                     proposals=GridProposals(), box_batch_size_per_image=32)


def stem_grad(model: GeneralizedRCNN) -> Tensor:
    return next(model.backbone.parameters()).grad


@pytest.mark.parametrize("build, keys", [(small_faster, RPN_KEYS | ROI_KEYS), (small_fast, ROI_KEYS)])
def test_training_step_losses_and_backbone_gradients(build, keys):
    model = build()
    images, targets = squares()
    model.train()
    losses = model(images, targets)
    assert set(losses) == keys
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    sum(losses.values()).backward()
    grad = stem_grad(model)
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("build", [small_faster, small_fast])
def test_eval_detections_per_image(build):
    model = build().eval()
    # two images of different sizes: boxes must come back in each image's own pixels
    images = [torch.rand(3, 64, 64), torch.rand(3, 40, 80)]
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det, image in zip(detections, images):
        assert set(det) == {"boxes", "labels", "scores"}
        count = len(det["scores"])
        assert det["boxes"].shape == (count, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].shape == (count,) and det["labels"].dtype == torch.int64
        assert det["scores"].dtype == torch.float32
        if count:
            height, width = image.shape[-2:]
            boxes = det["boxes"]
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width + 1e-4).all()
            assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height + 1e-4).all()
            assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
            assert ((det["labels"] >= 1) & (det["labels"] <= 2)).all()
            assert ((det["scores"] > 0.05) & (det["scores"] <= 1)).all()
            assert (det["scores"][:-1] >= det["scores"][1:]).all()


@pytest.mark.parametrize("build", [small_faster, small_fast])
def test_empty_targets_give_zero_box_losses(build):
    model = build().train()
    images, targets = squares()
    losses = model(images, empty_targets(2))
    for name in losses:
        assert torch.isfinite(losses[name]), name
    assert losses["loss_box_reg"].item() == 0.0
    if "loss_rpn_box_reg" in losses:
        assert losses["loss_rpn_box_reg"].item() == 0.0
    sum(losses.values()).backward()
    # one empty image next to one with objects trains as well
    mixed = model(images, [targets[0], empty_targets(1)[0]])
    assert all(torch.isfinite(v) for v in mixed.values())


def test_training_without_targets_is_an_error():
    model = small_faster().train()
    with pytest.raises(TextCNNError, match="targets"):
        model(torch.rand(1, 3, 64, 64))


def test_registry_builds_both():
    assert isinstance(create_detector("faster_rcnn", num_classes=3, backbone_kwargs=NARROW), FasterRCNN)
    model = create_detector("fast_rcnn", num_classes=3, backbone_kwargs=NARROW)
    assert isinstance(model, FastRCNN) and isinstance(model.proposals, SelectiveSearchProposals)
    assert isinstance(model.roi_heads.box_roi_pool, RoIPool) and model.roi_heads.box_roi_pool.kind == "max"


# -- the RPN loss on a hand-made case ---------------------------------------------------------


class FixedHead(nn.Module):
    def __init__(self, objectness: Tensor, deltas: Tensor) -> None:
        super().__init__()
        self.objectness = nn.Parameter(objectness)
        self.deltas = nn.Parameter(deltas)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.objectness, self.deltas


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def test_rpn_losses_against_a_loop():
    # image 32x32, 8x8 feature map (stride 4), two square anchors (8 and 20 px) per cell
    sizes, grid, stride = (8.0, 20.0), 8, 4
    g = torch.Generator().manual_seed(0)
    objectness = torch.randn(2, 2, grid, grid, generator=g, dtype=torch.float64)
    deltas = torch.randn(2, 8, grid, grid, generator=g, dtype=torch.float64) * 0.3
    # box 0 has two anchors above 0.7 and several between 0.3 and 0.7; box 1's best anchor
    # (IoU 0.66) is positive only as its best match
    gts = [[5.0, 5.0, 25.0, 26.0], [21.0, 20.0, 27.0, 27.0]]
    rpn = RegionProposalNetwork(anchor_generator=AnchorGenerator(sizes=(sizes,), aspect_ratios=((1.0,),)),
                                head=FixedHead(objectness.clone(), deltas.clone()),
                                batch_size_per_image=10_000,  # every labelled anchor is sampled
                                pre_nms_top_n=1000, post_nms_top_n=1000).train()
    targets = [{"boxes": torch.tensor(gts, dtype=torch.float64), "labels": torch.tensor([1, 2])},
               {"boxes": torch.zeros(0, 4, dtype=torch.float64), "labels": torch.zeros(0, dtype=torch.long)}]
    proposals, losses = rpn(torch.zeros(2, 3, 32, 32, dtype=torch.float64), torch.zeros(2, 1, grid, grid), targets)
    assert not any(p.requires_grad for p in proposals)

    # the same by hand: anchors centred on (stride * j, stride * i), cell by cell then size
    anchors = {(i, j, a): [stride * j - s / 2, stride * i - s / 2, stride * j + s / 2, stride * i + s / 2]
               for i in range(grid) for j in range(grid) for a, s in enumerate(sizes)}
    ious = {k: [iou(box, gt) for gt in gts] for k, box in anchors.items()}
    best_of_gt = [max(v[n] for v in ious.values()) for n in range(len(gts))]
    bce_terms, box_sum, counts = [], 0.0, {"pos": 0, "ignored": 0}
    for image in range(2):
        for (i, j, a), box in anchors.items():
            overlaps = ious[(i, j, a)]
            best = max(range(len(gts)), key=lambda n: overlaps[n])  # first on ties
            if image == 1:
                label = 0
            elif overlaps[best] >= 0.7 or any(overlaps[n] == best_of_gt[n] for n in range(len(gts))):
                label = 1
            elif overlaps[best] < 0.3:
                label = 0
            else:
                counts["ignored"] += 1
                continue
            p = 1 / (1 + math.exp(-objectness[image, a, i, j].item()))
            bce_terms.append(-math.log(p) if label else -math.log(1 - p))
            if label:
                counts["pos"] += 1
                gt = gts[best]
                aw, ah = box[2] - box[0], box[3] - box[1]
                ax, ay = box[0] + aw / 2, box[1] + ah / 2
                gw, gh = gt[2] - gt[0], gt[3] - gt[1]
                target = [(gt[0] + gw / 2 - ax) / aw, (gt[1] + gh / 2 - ay) / ah, math.log(gw / aw), math.log(gh / ah)]
                box_sum += sum(smooth_l1(deltas[image, 4 * a + k, i, j].item() - target[k], 1 / 9) for k in range(4))
    assert counts["pos"] == 3 and counts["ignored"] >= 1  # the case exercises every rule
    assert losses["loss_objectness"].item() == pytest.approx(sum(bce_terms) / len(bce_terms), rel=1e-9)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(box_sum / len(bce_terms), rel=1e-9)


def test_rpn_proposals_are_clipped_nms_filtered_and_capped():
    g = torch.Generator().manual_seed(0)
    head = FixedHead(torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 8, 4, 4, generator=g))
    rpn = RegionProposalNetwork(anchor_generator=AnchorGenerator(sizes=((6.0, 10.0),), aspect_ratios=((1.0,),)),
                                head=head, pre_nms_top_n={"training": 20, "testing": 12},
                                post_nms_top_n={"training": 10, "testing": 5}, nms_thresh=0.5).eval()
    (boxes,), losses = rpn(torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 4, 4))
    assert losses == {} and len(boxes) <= 5
    assert (boxes >= 0).all() and (boxes <= 16).all()
    overlap = box_iou(boxes, boxes) - torch.eye(len(boxes))
    assert (overlap <= 0.5).all()


# -- RoI heads against loops ------------------------------------------------------------------


class FixedPredictor(nn.Module):
    """Ignores its input and returns preset outputs (one row per pooled RoI)."""

    def __init__(self, logits: Tensor, deltas: Tensor) -> None:
        super().__init__()
        self.logits, self.deltas = nn.Parameter(logits), nn.Parameter(deltas)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        assert len(x) == len(self.logits)
        return self.logits, self.deltas


class CountPool(nn.Module):
    def forward(self, features: Tensor, boxes: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        return torch.zeros(sum(len(b) for b in boxes), 1)


def decode(delta: list[float], box: list[float], weights=(10.0, 10.0, 5.0, 5.0)) -> list[float]:
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = box[0] + w / 2 + delta[0] / weights[0] * w, box[1] + h / 2 + delta[1] / weights[1] * h
    w, h = w * math.exp(delta[2] / weights[2]), h * math.exp(delta[3] / weights[3])
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_roi_heads_training_losses_against_a_loop():
    num_classes = 3
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 12.0], [20.0, 20.0, 30.0, 28.0],
                              [21.0, 19.0, 31.0, 30.0], [5.0, 30.0, 15.0, 40.0]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    gt_labels = torch.tensor([3, 1])
    rows = len(proposals) + len(gt)  # the ground truth joins the proposals
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, num_classes + 1, generator=g)
    deltas = torch.randn(rows, 4 * (num_classes + 1), generator=g)
    heads = RoIHeads(box_roi_pool=CountPool(), box_head=nn.Identity(), box_predictor=FixedPredictor(logits, deltas),
                     batch_size_per_image=10_000, positive_fraction=1.0,  # every RoI is sampled
                     score_thresh=0.05, nms_thresh=0.5, detections_per_img=10).train()
    _, losses = heads(torch.zeros(1, 1, 5, 5), [proposals], (40, 40), [{"boxes": gt, "labels": gt_labels}])

    rois = proposals.tolist() + gt.tolist()
    ce, box_sum = 0.0, 0.0
    for r, roi in enumerate(rois):
        overlaps = [iou(roi, box) for box in gt.tolist()]
        best = max(range(len(overlaps)), key=lambda k: overlaps[k])
        label = int(gt_labels[best]) if overlaps[best] >= 0.5 else 0
        ce -= torch.log_softmax(logits[r], 0)[label].item()
        if label:
            box = gt[best].tolist()
            pw, ph, gw, gh = roi[2] - roi[0], roi[3] - roi[1], box[2] - box[0], box[3] - box[1]
            target = [10 * ((box[0] + gw / 2) - (roi[0] + pw / 2)) / pw, 10 * ((box[1] + gh / 2) - (roi[1] + ph / 2)) / ph,
                      5 * math.log(gw / pw), 5 * math.log(gh / ph)]
            box_sum += sum(smooth_l1(deltas[r, 4 * label + k].item() - target[k], 1 / 9) for k in range(4))
    assert losses["loss_classifier"].item() == pytest.approx(ce / rows, rel=1e-5)
    assert losses["loss_box_reg"].item() == pytest.approx(box_sum / rows, rel=1e-5)


def brute_nms(candidates: list[tuple[float, int, list[float]]], threshold: float) -> list:
    kept = []
    for cand in sorted(candidates, key=lambda c: -c[0]):
        if all(k[1] != cand[1] or iou(k[2], cand[2]) <= threshold for k in kept):
            kept.append(cand)
    return kept


def test_roi_heads_postprocess_against_a_loop():
    num_classes, size = 3, (40, 50)  # (height, width)
    g = torch.Generator().manual_seed(0)
    # overlapping clusters so that NMS has work, some boxes across the border so that clipping has
    centres = torch.tensor([[12.0, 10.0], [30.0, 25.0], [47.0, 38.0]])
    proposals = []
    for count in (7, 5):
        c = centres[torch.randint(0, 3, (count,), generator=g)] + torch.randn(count, 2, generator=g) * 2
        half = 4 + torch.rand(count, 2, generator=g) * 6
        proposals.append(torch.cat((c - half, c + half), dim=1))
    rows = sum(len(p) for p in proposals)
    logits = torch.randn(rows, num_classes + 1, generator=g) * 2
    deltas = torch.randn(rows, 4 * (num_classes + 1), generator=g)
    heads = RoIHeads(box_roi_pool=CountPool(), box_head=nn.Identity(), box_predictor=nn.Identity(),
                     score_thresh=0.1, nms_thresh=0.3, detections_per_img=6, min_size=1.0)
    results = heads.postprocess_detections(logits, deltas, proposals, size)

    offset = 0
    for image_proposals, det in zip(proposals, results):
        candidates = []
        for p, roi in enumerate(image_proposals.tolist()):
            scores = torch.softmax(logits[offset + p], 0).tolist()
            for c in range(1, num_classes + 1):
                box = decode(deltas[offset + p, 4 * c:4 * c + 4].tolist(), roi)
                box = [min(max(box[0], 0), size[1]), min(max(box[1], 0), size[0]),
                       min(max(box[2], 0), size[1]), min(max(box[3], 0), size[0])]
                if scores[c] > 0.1 and box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    candidates.append((scores[c], c, box))
        offset += len(image_proposals)
        expected = brute_nms(candidates, 0.3)[:6]
        assert len(expected) >= 2
        assert det["labels"].tolist() == [e[1] for e in expected]
        assert det["scores"].tolist() == pytest.approx([e[0] for e in expected], rel=1e-5)
        assert det["boxes"].tolist() == [pytest.approx(e[2], abs=1e-4) for e in expected]


def test_roi_pool_module_matches_the_ops():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 8, 8, generator=g)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 16.0], [4.0, 8.0, 30.0, 31.0]]), torch.tensor([[10.0, 2.0, 25.0, 12.0]])]
    rois = torch.tensor([[0, 0.0, 0.0, 20.0, 16.0], [0, 4.0, 8.0, 30.0, 31.0], [1, 10.0, 2.0, 25.0, 12.0]])
    # a 32 px image on an 8-cell map: the scale 1/4 is inferred
    align = RoIPool(3, sampling_ratio=2, kind="align")(features, boxes, (32, 32))
    assert torch.equal(align, roi_align(features, rois, 3, spatial_scale=0.25, sampling_ratio=2))
    pooled = RoIPool(3, kind="max")(features, boxes, (32, 32))
    assert torch.equal(pooled, roi_pool(features, rois, 3, spatial_scale=0.25))


# -- the selective-search proposal stage --------------------------------------------------------


def test_selective_search_stage_unnormalises_caps_and_caches(monkeypatch):
    import vision.detection.selective_search as ss

    seen = []

    def fake(image, *, scales, sigma, min_size):
        seen.append(image.copy())
        return torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 3.0, 3.5, 9.0], [1.0, 2.0, 8.0, 9.0],
                             [4.0, 4.0, 12.0, 12.0]]).numpy()

    monkeypatch.setattr(ss, "selective_search_fast", fake)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    stage = SelectiveSearchProposals(max_proposals=2, mean=mean, std=std)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = (images - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    boxes, losses = stage(batch, None, None)
    assert losses == {} and len(seen) == 2
    assert torch.allclose(torch.from_numpy(seen[0]), images[0].permute(1, 2, 0), atol=1e-6)
    # the 0.5 px wide box is dropped, then the first two are kept
    assert boxes[0].tolist() == [[0.0, 0.0, 10.0, 10.0], [1.0, 2.0, 8.0, 9.0]]
    stage(batch, None, None)  # a second epoch: both images come from the cache
    stage(batch[1:], None, None)
    assert len(seen) == 2
    stage.clear_cache()
    stage(batch[1:], None, None)
    assert len(seen) == 3


# -- overfitting two images ----------------------------------------------------------------------


@pytest.mark.slow
def test_faster_rcnn_overfits_two_images():
    model = small_faster()
    images, targets = squares()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    first = None
    for _ in range(150):
        losses = model(images, targets)
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first
    model.eval()
    with torch.no_grad():
        detections = model(images)
    for det, target in zip(detections, targets):
        confident = det["scores"] > 0.5
        boxes, labels = det["boxes"][confident], det["labels"][confident]
        overlap = box_iou(target["boxes"], boxes)
        for k, label in enumerate(target["labels"]):
            # the most confident detection on each object has the right label
            hits = torch.nonzero(overlap[k] > 0.5).flatten()
            assert len(hits), f"object {k} not found"
            assert labels[hits[0]] == label
