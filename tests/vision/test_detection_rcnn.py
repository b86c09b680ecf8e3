"""Selective search and R-CNN: similarities, adjacency and histograms against hand computation and
brute force; proposals on flat rectangles; R-CNN's training loss, labels, SVMs (against
scikit-learn), hard negative mining, box regressors, state_dict round trip and detections."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import Ridge
from sklearn.svm import LinearSVC

import vision.detection.models.rcnn as rcnn_module
from textcnn.core.errors import TextCNNError
from vision.detection import create_detector, list_detectors
from vision.detection.selective_search import (
    colour_histograms,
    colour_similarity,
    fill_similarity,
    hierarchy_order,
    region_adjacency,
    region_boxes,
    selective_search,
    size_similarity,
    texture_histograms,
    texture_similarity,
)
from vision.ops import box_iou

pytest.importorskip("skimage")

# -- selective search -----------------------------------------------------------------------------

RECTS = [(5, 8, 21, 31, (0.9, 0.1, 0.1)), (30, 4, 58, 18, (0.1, 0.8, 0.2)), (26, 36, 44, 60, (0.15, 0.2, 0.9))]


def _rect_image() -> np.ndarray:
    image = np.full((64, 64, 3), 0.5)
    for x1, y1, x2, y2, colour in RECTS:
        image[y1:y2, x1:x2] = colour
    return image


def test_selective_search_finds_flat_rectangles_and_the_whole_image() -> None:
    boxes = selective_search(_rect_image())
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    gt = torch.tensor([r[:4] for r in RECTS], dtype=torch.float32)
    assert (box_iou(gt, torch.from_numpy(boxes)).max(dim=1).values >= 0.9).all()
    assert [0, 0, 64, 64] in boxes.tolist()
    assert boxes.tolist()[0] == [0, 0, 64, 64]  # the root of the hierarchy comes first
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)  # deduplicated


def test_selective_search_is_deterministic_and_caps_to_a_prefix() -> None:
    rng = np.random.default_rng(0)
    image = np.clip(_rect_image() + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1)
    full = selective_search(image)
    np.testing.assert_array_equal(full, selective_search(image))
    np.testing.assert_array_equal(selective_search(image, max_proposals=3), full[:3])
    only_colour = selective_search(image, strategies=("colour",))
    assert only_colour.shape[1] == 4 and len(only_colour) > 0


def test_selective_search_rejects_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TextCNNError, match="expected an image"):
        selective_search(np.zeros((3, 8, 8)))
    with pytest.raises(TextCNNError, match="float"):
        selective_search(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(TextCNNError, match="strategies"):
        selective_search(np.zeros((8, 8, 3)), strategies=("shape",))
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)  # as if not installed
    with pytest.raises(TextCNNError, match="scikit-image"):
        selective_search(np.zeros((8, 8, 3)))


def test_similarities_against_hand_computed_values() -> None:
    h1 = np.array([0.5, 0.5, 0.0, 0.0])
    h2 = np.array([0.25, 0.25, 0.5, 0.0])
    assert colour_similarity(h1, h2) == pytest.approx(0.5)  # min: 0.25 + 0.25
    assert texture_similarity(h1, h1) == pytest.approx(1.0)
    assert texture_similarity(h1, np.array([0.0, 0.0, 0.3, 0.7])) == pytest.approx(0.0)
    assert size_similarity(2.0, 3.0, 10.0) == pytest.approx(0.5)
    # boxes (0,0)-(2,2) of 4 px and (3,0)-(4,2) of 2 px: their joint box is 4 x 2 = 8 px
    box1, box2 = np.array([0.0, 0.0, 2.0, 2.0]), np.array([3.0, 0.0, 4.0, 2.0])
    assert fill_similarity(box1, box2, 4.0, 2.0, 20.0) == pytest.approx(1 - (8 - 4 - 2) / 20)
    batched = colour_similarity(np.stack([h1, h1]), np.stack([h2, h1]))
    np.testing.assert_allclose(batched, [0.5, 1.0])


def test_region_adjacency_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=(7, 9))
    expected = set()
    for r in range(7):
        for c in range(9):
            for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < 7 and 0 <= cc < 9 and labels[r, c] != labels[rr, cc]:
                    expected.add((min(labels[r, c], labels[rr, cc]), max(labels[r, c], labels[rr, cc])))
    got = region_adjacency(labels)
    assert [tuple(p) for p in got.tolist()] == sorted(expected)
    assert region_adjacency(np.zeros((3, 3), dtype=np.int64)).shape == (0, 2)


def test_region_histograms_and_boxes_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((10, 12, 3))
    labels = rng.integers(0, 4, size=(10, 12))
    colour = colour_histograms(image, labels, 4)
    texture = texture_histograms(image, labels, 4)
    assert colour.shape == (4, 75) and texture.shape == (4, 240)
    np.testing.assert_allclose(colour.sum(1), 1.0)
    np.testing.assert_allclose(texture.sum(1), 1.0)
    for region in range(4):
        pixels = image[labels == region]
        hist = np.concatenate([np.histogram(pixels[:, c], bins=25, range=(0, 1))[0] for c in range(3)])
        np.testing.assert_allclose(colour[region], hist / hist.sum())
        rows, cols = np.nonzero(labels == region)
        assert region_boxes(labels, 4)[region].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_hierarchy_order_is_by_level_then_newest() -> None:
    # 4 initial regions; merges: (0,1)->4, (2,3)->5, (4,5)->6
    order = hierarchy_order(4, [(0, 1), (2, 3), (4, 5)])
    assert order.tolist() == [6, 5, 4, 3, 2, 1, 0]
    # unbalanced: (0,1)->4, (4,2)->5, (5,3)->6: levels 6 | 5,3 | 4,2 | 1,0
    assert hierarchy_order(4, [(0, 1), (4, 2), (5, 3)]).tolist() == [6, 5, 3, 4, 2, 1, 0]


# -- R-CNN ----------------------------------------------------------------------------------------

SIZE = 48


def _tiny_rcnn(**kwargs) -> rcnn_module.RCNN:
    torch.manual_seed(0)
    defaults = {"backbone_kwargs": {"widths": (4, 8, 16, 32)}, "warp_size": 16, "size": (SIZE, SIZE),
                "regions_per_image": 16}
    return create_detector("rcnn", num_classes=2, **{**defaults, **kwargs})


def _squares(count: int, seed: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Red squares (label 1) and blue squares (label 2) on a noisy grey background."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for i in range(count):
        img = np.clip(0.5 + 0.03 * rng.standard_normal((3, SIZE, SIZE)), 0, 1).astype(np.float32)
        boxes, labels = [], []
        for label, x0 in ((1 + i % 2, 4), (2 - i % 2, 26)):
            side = int(rng.integers(12, 18))
            y0 = int(rng.integers(2, SIZE - side - 2))
            img[:, y0:y0 + side, x0:x0 + side] = np.array([0.9, 0.1, 0.1] if label == 1 else [0.1, 0.1, 0.9],
                                                          dtype=np.float32)[:, None, None]
            boxes.append([x0, y0, x0 + side, y0 + side])
            labels.append(label)
        images.append(torch.from_numpy(img))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


def test_rcnn_is_registered() -> None:
    assert "rcnn" in list_detectors()
    assert isinstance(_tiny_rcnn(), rcnn_module.RCNN)


def test_training_step_gives_a_finite_loss_with_gradients() -> None:
    model = _tiny_rcnn()
    images, targets = _squares(2, seed=0)
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier"}
    assert torch.isfinite(losses["loss_classifier"])
    losses["loss_classifier"].backward()
    for name, p in [("classifier", model.classifier.weight), ("backbone", next(model.backbone.parameters()))]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_labels_follow_the_best_overlap_and_empty_targets_give_background(monkeypatch) -> None:
    model = _tiny_rcnn()
    gt = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]), "labels": torch.tensor([2, 1])}
    boxes = torch.tensor([[0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 20.0, 20.0], [21.0, 21.0, 30.0, 30.0], [40.0, 40, 45, 45]])
    iou = box_iou(boxes, gt["boxes"])  # brute force: best overlap's label when >= 0.5
    expected = [int(gt["labels"][int(row.argmax())]) if float(row.max()) >= 0.5 else 0 for row in iou]
    assert model.assign_labels(boxes, gt).tolist() == expected == [2, 0, 1, 0]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    assert model.assign_labels(boxes, empty).tolist() == [0, 0, 0, 0]
    seen = []
    real = rcnn_module.F.cross_entropy

    def spy(logits, labels):
        seen.append(labels.clone())
        return real(logits, labels)

    monkeypatch.setattr(rcnn_module.F, "cross_entropy", spy)
    images, _ = _squares(1, seed=1)
    loss = model(images, [empty])["loss_classifier"]
    assert torch.isfinite(loss) and len(seen) == 1
    assert len(seen[0]) > 0 and (seen[0] == 0).all()


def test_warp_keeps_the_box_inside_its_context_margin() -> None:
    model = _tiny_rcnn(context=0.25)  # warp 16: 4 px of context each side, the box in the middle 8
    batch = torch.zeros(1, 3, SIZE, SIZE)
    batch[:, :, 10:30, 12:28] = 1.0
    crop = model.warp(batch, [torch.tensor([[12.0, 10.0, 28.0, 30.0]])])[0]
    assert torch.allclose(crop[:, 4:12, 4:12], torch.ones(3, 8, 8))
    assert crop[:, :3].abs().max() < 1e-6 and crop[:, :, :3].abs().max() < 1e-6  # context: outside


def test_proposals_are_cached_by_image_bytes(monkeypatch) -> None:
    model = _tiny_rcnn()
    calls = []
    import vision.detection.selective_search as ss

    real = ss.selective_search_fast

    def counting(image, **kw):
        calls.append(1)
        return real(image, **kw)

    monkeypatch.setattr(ss, "selective_search_fast", counting)
    images, _ = _squares(2, seed=2)
    batch, _, _ = model.transform(images)
    first = model.proposals(batch[0])
    again = model.proposals(batch[0].clone())
    model.proposals(batch[1])
    assert len(calls) == 2 and torch.equal(first, again)
    assert (first[:, 2:] - first[:, :2] >= model.min_proposal_size).all()


def test_mining_adds_only_uncached_margin_violators_like_brute_force() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(-1.0, 0.8, size=200)
    scores[5] = scores[6] = 0.25  # a tie
    cache = rng.random(200) < 0.3
    for limit in (None, 7):
        got = rcnn_module.mine_hard_negatives(scores, cache, limit=limit)
        brute = [i for i in range(200) if not cache[i] and scores[i] > -1.0]
        brute.sort(key=lambda i: (-scores[i], i))
        assert got.tolist() == (brute if limit is None else brute[:limit])


def test_hard_negative_training_ends_with_no_violators_outside_the_cache() -> None:
    rng = np.random.default_rng(0)
    pos = rng.normal(1.0, 1.0, size=(30, 5))
    neg = rng.normal(-1.0, 1.0, size=(400, 5))
    w, b, cache = rcnn_module.train_svm_hard_negatives(pos, neg, C=0.1, rounds=50, initial_negatives=20,
                                                       rng=np.random.default_rng(1))
    assert 20 < cache.sum() < 400
    assert (neg[~cache] @ w + b <= -1.0).all()  # mining stopped because none were left
    w0, b0 = rcnn_module.fit_linear_svm(pos, neg[cache], C=0.1)
    np.testing.assert_allclose(w, w0)
    assert b == pytest.approx(b0)


def test_post_fit_learns_the_svms_and_regressors_sklearn_would() -> None:
    # no mining and every negative from the start: the buffers must be plain LinearSVC / Ridge fits
    model = _tiny_rcnn(svm_rounds=0, svm_initial_negatives=10**6, svm_C=1.0, bbox_alpha=10.0)
    images, targets = _squares(6, seed=3)
    model.eval()
    data = model.collect_post_fit_data(images, targets)
    report = model.post_fit(images, targets)
    assert bool(model.svm_fitted)
    assert report["svm_positives"] == [6, 6]
    scale = 20.0 / np.linalg.norm(data.svm_features, axis=1).mean()
    assert float(model.svm_feature_scale) == pytest.approx(scale, rel=1e-5)
    x = data.svm_features * scale
    for c in (1, 2):
        pos, neg = x[data.svm_labels == c], x[data.svm_overlap[:, c - 1] < 0.3]
        svm = LinearSVC(C=1.0, class_weight={1: 2.0, 0: 1.0}, intercept_scaling=10.0, max_iter=5000,
                        random_state=0).fit(np.concatenate((pos, neg)), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        np.testing.assert_allclose(model.svm_weight[c - 1].numpy(), svm.coef_[0], rtol=1e-4, atol=1e-6)
        assert float(model.svm_bias[c - 1]) == pytest.approx(svm.intercept_[0], rel=1e-4, abs=1e-6)
        # the SVM separates its class's ground-truth boxes from the background on the training set
        margin = pos @ svm.coef_[0] + svm.intercept_[0]
        background = x[(data.svm_labels == 0) & (data.svm_overlap.max(1) < 0.3)]
        assert (margin > 0).all() and (background @ svm.coef_[0] + svm.intercept_[0] < 0).all()
        mask = data.reg_labels == c
        ridge = Ridge(alpha=10.0).fit(data.reg_features[mask] * float(model.bbox_feature_scale), data.reg_deltas[mask])
        np.testing.assert_allclose(model.bbox_weight[c - 1].numpy(), ridge.coef_, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(model.bbox_bias[c - 1].numpy(), ridge.intercept_, rtol=1e-3, atol=1e-5)


def _check_detections(dets, count: int, num_classes: int) -> None:
    assert len(dets) == count
    for d in dets:
        assert set(d) == {"boxes", "labels", "scores"}
        assert d["boxes"].shape == (len(d["labels"]), 4) and d["scores"].shape == d["labels"].shape
        assert d["labels"].dtype == torch.int64
        if len(d["labels"]):
            assert d["labels"].min() >= 1 and d["labels"].max() <= num_classes
            assert (d["scores"] >= 0).all() and (d["scores"] <= 1).all()
            assert (d["scores"][:-1] >= d["scores"][1:]).all()
            assert (d["boxes"][:, 2] > d["boxes"][:, 0]).all() and (d["boxes"][:, 3] > d["boxes"][:, 1]).all()
            assert d["boxes"].min() >= 0 and d["boxes"].max() <= SIZE


def test_eval_before_post_fit_scores_with_the_softmax() -> None:
    model = _tiny_rcnn(score_thresh=0.0)
    images, _ = _squares(2, seed=4)
    model.eval()
    with torch.no_grad():
        dets = model(images)
        batch, _, _ = model.transform(images)
        props = model.proposals(batch[0])
        pooled, maps = model.region_features(batch[:1], [props])
        expected = torch.softmax(model.classifier(pooled), dim=1)[:, 1:]
        assert torch.allclose(model.class_scores(pooled), expected)
        assert torch.equal(model.regress(maps, props), props[:, None].expand(-1, 2, -1))
    _check_detections(dets, 2, 2)
    assert len(dets[0]["labels"]) > 0


def test_state_dict_round_trip_keeps_the_svms(tmp_path) -> None:
    model = _tiny_rcnn(svm_C=1.0)
    images, targets = _squares(4, seed=5)
    model.post_fit(images, targets)
    model.eval()
    with torch.no_grad():
        before = model(images)
    _check_detections(before, 4, 2)
    path = tmp_path / "rcnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = _tiny_rcnn(svm_C=1.0)
    assert not bool(fresh.svm_fitted)
    fresh.load_state_dict(load_file(str(path)))
    fresh.eval()
    assert bool(fresh.svm_fitted)
    for name in ("svm_weight", "svm_bias", "svm_feature_scale", "bbox_weight", "bbox_bias"):
        assert torch.equal(getattr(fresh, name), getattr(model, name)), name
    with torch.no_grad():
        after = fresh(images)
    for a, b in zip(before, after):
        for key in ("boxes", "labels", "scores"):
            assert torch.equal(a[key], b[key])


def test_fast_mode_interleaves_the_runs_and_dedupes() -> None:
    from vision.detection.selective_search import selective_search_fast

    image = _rect_image()
    runs = [selective_search(image, scale=k, strategies=s) for k in (50, 100)
            for s in (("colour", "texture", "size", "fill"), ("texture", "size", "fill"))]
    expected, seen = [], set()
    for i in range(max(len(r) for r in runs)):  # brute force: round-robin, first occurrence kept
        for r in runs:
            if i < len(r) and tuple(r[i]) not in seen:
                seen.add(tuple(r[i]))
                expected.append(r[i])
    np.testing.assert_array_equal(selective_search_fast(image), np.stack(expected))
    np.testing.assert_array_equal(selective_search_fast(image, max_proposals=3), np.stack(expected[:3]))
