"""R-CNN (Girshick et al. 2014): selective search proposals, each warped and run through a CNN.

    image -> selective search, fast mode (~2k boxes in the paper; about a hundred on 96 px shapes)
          -> each box, with 16/227 of context, warped to warp_size x warp_size
          -> CNN (a registry backbone + global average pooling) -> feature vector
          -> per-class linear SVM scores, per-class ridge box regression, per-class NMS (0.3)

Training runs in the paper's stages:

(a) fine-tune the CNN as a (num_classes + 1)-way softmax classifier on warped proposals (IoU >=
    0.5 with a ground-truth box: that box's class, else background; 25% positives per batch).
    This is what `forward` returns `loss_classifier` for, so any gradient loop trains it.
(b) `post_fit(images, targets)`, after gradient training: extract features of proposals and fit
    one-vs-rest linear SVMs (scikit-learn LinearSVC; ground-truth boxes are the positives,
    proposals with IoU < 0.3 with every box of the class the negatives, with hard negative
    mining) and class-specific ridge box regressors on the conv features of proposals with IoU >=
    0.6. The learned weights live in buffers of fixed shapes, so the detector saves and loads
    with a plain `state_dict` / safetensors.

Until `post_fit` has run (`svm_fitted` is False), eval scores are the fine-tuned softmax and
boxes are the proposals themselves; afterwards, SVM scores (through a sigmoid, so they lie in
[0, 1] like the other detectors'; it is monotone, so rankings and AP are the SVMs') and
regressed boxes. One CNN pass per proposal makes R-CNN the slowest detector per image, as in the
paper; the crops go through the CNN in batches of `region_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError
from vision.detection.base import (
    Detections,
    DetectionTransform,
    Detector,
    RegistryBackbone,
    Target,
    check_targets,
    empty_detections,
)
from vision.detection.registry import register_detector
from vision.detection.selective_search import SelectiveSearchProposals
from vision.ops import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    batched_nms,
    box_iou,
    clip_boxes,
    roi_align,
)

# -- SVM training with hard negative mining, ridge box regression (numpy / scikit-learn) ----------


def mine_hard_negatives(scores: np.ndarray, in_cache: np.ndarray, *, threshold: float = -1.0,
                        limit: int | None = None) -> np.ndarray:
    """Indices of the negatives not yet in the cache that the current SVM scores above
    `threshold` (-1: inside the margin, so their hinge loss is positive), highest score first
    (ties: lower index), at most `limit` of them."""
    candidates = np.flatnonzero(~in_cache & (scores > threshold))
    order = np.lexsort((candidates, -scores[candidates]))
    chosen = candidates[order]
    return chosen if limit is None else chosen[:limit]


def fit_linear_svm(positives: np.ndarray, negatives: np.ndarray, *, C: float,
                   positive_weight: float = 2.0, intercept_scaling: float = 10.0
                   ) -> tuple[np.ndarray, float]:
    """One linear SVM (scikit-learn LinearSVC, squared hinge, L2): positives +1, negatives -1.
    Returns (w [F], b). `positive_weight` weighs the positives' loss (the paper's code uses 2,
    there being far fewer of them); `intercept_scaling` regularises the bias less (the paper's
    bias multiplier 10)."""
    try:
        from sklearn.svm import LinearSVC
    except ImportError as err:  # scikit-learn is a dependency; say so if it went missing
        raise TextCNNError("R-CNN's SVMs need scikit-learn, which is not installed") from err
    x = np.concatenate((positives, negatives)).astype(np.float64)
    y = np.concatenate((np.ones(len(positives)), np.zeros(len(negatives)))).astype(np.int64)
    svm = LinearSVC(C=C, class_weight={1: positive_weight, 0: 1.0}, intercept_scaling=intercept_scaling,
                    max_iter=5000, random_state=0)
    svm.fit(x, y)
    return svm.coef_[0].copy(), float(svm.intercept_[0])


def train_svm_hard_negatives(positives: np.ndarray, negatives: np.ndarray, *, C: float, rounds: int,
                             initial_negatives: int, rng: np.random.Generator,
                             positive_weight: float = 2.0, intercept_scaling: float = 10.0,
                             max_added: int | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """Fit on the positives and a random subset of `initial_negatives` negatives; then up to
    `rounds` times add the hard negatives (`mine_hard_negatives`, at most `max_added` a round) and
    refit, stopping early when none is left. Returns (w, b, the final negative cache mask)."""
    in_cache = np.zeros(len(negatives), dtype=bool)
    start = rng.choice(len(negatives), size=min(initial_negatives, len(negatives)), replace=False)
    in_cache[start] = True
    kw = {"C": C, "positive_weight": positive_weight, "intercept_scaling": intercept_scaling}
    w, b = fit_linear_svm(positives, negatives[in_cache], **kw)
    for _ in range(rounds):
        hard = mine_hard_negatives(negatives @ w + b, in_cache, limit=max_added)
        if len(hard) == 0:
            break
        in_cache[hard] = True
        w, b = fit_linear_svm(positives, negatives[in_cache], **kw)
    return w, b, in_cache


def fit_box_regressor(features: np.ndarray, deltas: np.ndarray, *, alpha: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression (scikit-learn Ridge) from features [N, D] to box deltas [N, 4]:
    (W [4, D], b [4])."""
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=alpha).fit(features.astype(np.float64), deltas.astype(np.float64))
    return ridge.coef_.copy(), ridge.intercept_.copy()


@dataclass
class PostFitData:
    """What `post_fit` learns from, gathered by `RCNN.collect_post_fit_data`.

    svm_features [M, F] (pooled features of ground-truth boxes and sampled proposals),
    svm_labels [M] (the class of a ground-truth box, 0 for a proposal), svm_overlap [M, C] (each
    row's largest IoU with a ground-truth box of class c); reg_features [R, D] (flattened conv
    features of proposals with IoU >= bbox_iou), reg_labels [R], reg_deltas [R, 4].
    """

    svm_features: np.ndarray
    svm_labels: np.ndarray
    svm_overlap: np.ndarray
    reg_features: np.ndarray
    reg_labels: np.ndarray
    reg_deltas: np.ndarray


# -- the detector ---------------------------------------------------------------------------------


class RCNN(Detector):
    """R-CNN on an injected backbone (`forward(x) -> [N, C, h, w]`, `out_channels`); see the module
    docstring. Every size is in the batch's pixels (`size`, 96 x 96 by default)."""

    def __init__(self, *, num_classes: int, backbone: nn.Module, size: tuple[int, int] | None = (96, 96),
                 warp_size: int = 48, context: float = 16 / 227,
                 proposal_kwargs: dict[str, Any] | None = None, max_proposals: int = 200,
                 min_proposal_size: float = 4.0, proposal_cache_size: int = 20000,
                 regions_per_image: int = 32, positive_fraction: float = 0.25, fg_iou: float = 0.5,
                 svm_negative_iou: float = 0.3, svm_C: float = 1e-3, svm_rounds: int = 3,
                 svm_initial_negatives: int = 2000, svm_positive_weight: float = 2.0,
                 svm_feature_norm: float = 20.0, bbox_iou: float = 0.6, bbox_alpha: float = 1000.0,
                 post_fit_max_images: int | None = 600, post_fit_negatives_per_image: int = 64,
                 post_fit_seed: int = 0, score_thresh: float = 0.05, nms_thresh: float = 0.3,
                 detections_per_img: int = 100, region_batch: int = 512,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)) -> None:
        super().__init__()
        if warp_size < 8 or not 0 <= context < 0.5:
            raise TextCNNError(f"R-CNN: expected warp_size >= 8 and context in [0, 0.5), "
                               f"got {warp_size} and {context}")
        self.num_classes = num_classes
        self.transform = DetectionTransform(size=size, mean=mean, std=std)
        self.backbone = backbone
        self.warp_size = warp_size
        self.context = context
        self.max_proposals = max_proposals
        self.min_proposal_size = min_proposal_size
        # proposal_kwargs: scales, sigma, min_size of selective search (fast mode)
        self.proposal_stage = SelectiveSearchProposals(
            max_proposals=max_proposals, min_box_size=min_proposal_size, mean=mean, std=std,
            cache_size=proposal_cache_size, **(proposal_kwargs or {}))
        self.sampler = BalancedPositiveNegativeSampler(regions_per_image, positive_fraction)
        self.fg_iou = fg_iou
        self.svm_negative_iou, self.svm_C, self.svm_rounds = svm_negative_iou, svm_C, svm_rounds
        self.svm_initial_negatives, self.svm_positive_weight = svm_initial_negatives, svm_positive_weight
        self.svm_feature_norm = svm_feature_norm
        self.bbox_iou, self.bbox_alpha = bbox_iou, bbox_alpha
        self.post_fit_max_images = post_fit_max_images
        self.post_fit_negatives_per_image = post_fit_negatives_per_image
        self.post_fit_seed = post_fit_seed
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.region_batch = region_batch
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # the paper's plain deltas
        with torch.no_grad():  # the conv map's shape at warp_size fixes the regressors' width
            was_training = backbone.training
            backbone.eval()
            probe = backbone(torch.zeros(1, 3, warp_size, warp_size))
            backbone.train(was_training)
        features, map_features = int(probe.shape[1]), int(probe[0].numel())
        self.num_features, self.num_map_features = features, map_features
        # stage (a): the fine-tuned softmax classifier (its "fc7" is the pooled backbone feature)
        self.classifier = nn.Linear(features, num_classes + 1)
        # stage (b): buffers of their final shapes, filled by post_fit
        self.register_buffer("svm_weight", torch.zeros(num_classes, features))
        self.register_buffer("svm_bias", torch.zeros(num_classes))
        self.register_buffer("svm_feature_scale", torch.tensor(1.0))
        self.register_buffer("bbox_weight", torch.zeros(num_classes, 4, map_features))
        self.register_buffer("bbox_bias", torch.zeros(num_classes, 4))
        self.register_buffer("bbox_feature_scale", torch.tensor(1.0))
        self.register_buffer("svm_fitted", torch.tensor(False))

    # -- proposals and region features -----------------------------------------------------------

    def proposals(self, image: Tensor) -> Tensor:
        """Selective search boxes [K, 4] of one normalised image [3, H, W], cached per image
        (proposals are the slow, gradient-free part)."""
        return self.proposal_stage(image[None])[0][0]

    def warp(self, batch: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        """Crops [R, 3, S, S] of `boxes` (one [K_i, 4] per image), each box grown so that after
        warping to S it has `context` * S pixels of image around it (the paper's 16 at 227);
        outside the image the crop is 0, the mean colour."""
        rois = torch.cat([torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(boxes)])
        pad = self.context * self.warp_size
        grow = pad / (self.warp_size - 2 * pad)  # per side, as a fraction of the box's size
        wh = (rois[:, 3:5] - rois[:, 1:3]) * grow
        rois = torch.cat((rois[:, :1], rois[:, 1:3] - wh, rois[:, 3:5] + wh), dim=1)
        return roi_align_crops(batch, rois, self.warp_size)

    def region_features(self, batch: Tensor, boxes: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(pooled features [R, F], flattened conv features [R, D]) of every box, through the CNN
        in chunks of `region_batch` crops."""
        crops = self.warp(batch, boxes)
        pooled, maps = [], []
        for i in range(0, max(len(crops), 1), self.region_batch):
            fmap = self.backbone(crops[i:i + self.region_batch])
            pooled.append(fmap.mean(dim=(2, 3)))
            maps.append(fmap.flatten(1))
        return torch.cat(pooled), torch.cat(maps)

    # -- forward ---------------------------------------------------------------------------------

    def forward_batch(self, batch: Tensor, targets: list[Target] | None
                      ) -> dict[str, Tensor] | list[Detections]:
        proposals = [self.proposals(img) for img in batch]
        if self.training:
            return self._losses(batch, proposals, targets)
        return self._detect(batch, proposals)

    def assign_labels(self, boxes: Tensor, target: Target) -> Tensor:
        """Class of each box: its best-overlapping ground truth's if IoU >= fg_iou, else 0."""
        if len(target["boxes"]) == 0:
            return torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        best, idx = box_iou(boxes, target["boxes"]).max(dim=1)
        return torch.where(best >= self.fg_iou, target["labels"][idx], torch.zeros_like(idx))

    def _losses(self, batch: Tensor, proposals: list[Tensor], targets: list[Target]) -> dict[str, Tensor]:
        # ground-truth boxes join the proposals as positives, as in the paper's fine-tuning
        regions = [torch.cat((p, t["boxes"].to(p))) for p, t in zip(proposals, targets)]
        labels = [self.assign_labels(r, t) for r, t in zip(regions, targets)]
        pos, neg = self.sampler(labels)
        keep = [p | n for p, n in zip(pos, neg)]
        boxes = [r[k] for r, k in zip(regions, keep)]
        chosen = torch.cat([lab[k] for lab, k in zip(labels, keep)])
        if len(chosen) == 0:  # nothing to learn from (no proposals at all): a zero that has gradients
            return {"loss_classifier": self.classifier.weight.sum() * 0.0}
        pooled, _ = self.region_features(batch, boxes)
        return {"loss_classifier": F.cross_entropy(self.classifier(pooled), chosen)}

    def class_scores(self, pooled: Tensor) -> Tensor:
        """[R, num_classes] scores in [0, 1]: sigmoid of the SVM margins once post_fit has run,
        else the softmax classifier's class probabilities."""
        if bool(self.svm_fitted):
            return torch.sigmoid(pooled * self.svm_feature_scale @ self.svm_weight.T + self.svm_bias)
        return F.softmax(self.classifier(pooled), dim=1)[:, 1:]

    def regress(self, maps: Tensor, boxes: Tensor) -> Tensor:
        """[R, num_classes, 4] boxes: the class-specific ridge regressors applied to each box
        (the box itself for every class before post_fit)."""
        if not bool(self.svm_fitted):
            return boxes[:, None, :].expand(-1, self.num_classes, -1)
        deltas = torch.einsum("rd,ckd->rck", maps * self.bbox_feature_scale, self.bbox_weight) + self.bbox_bias
        return self.box_coder.decode(deltas.reshape(len(boxes), -1), boxes).reshape(len(boxes), -1, 4)

    def _detect(self, batch: Tensor, proposals: list[Tensor]) -> list[Detections]:
        size = tuple(batch.shape[-2:])
        if sum(len(p) for p in proposals) == 0:
            return [empty_detections(batch.device) for _ in proposals]
        pooled, maps = self.region_features(batch, proposals)
        scores = self.class_scores(pooled)
        boxes = self.regress(maps, torch.cat(proposals))
        out = []
        start = 0
        for p in proposals:
            s, b = scores[start:start + len(p)], boxes[start:start + len(p)]
            start += len(p)
            labels = torch.arange(1, self.num_classes + 1, device=batch.device).expand_as(s)
            s, b, labels = s.reshape(-1), clip_boxes(b.reshape(-1, 4), size), labels.reshape(-1)
            keep = (s > self.score_thresh) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            s, b, labels = s[keep], b[keep], labels[keep]
            keep = batched_nms(b, s, labels, self.nms_thresh)[:self.detections_per_img]
            out.append({"boxes": b[keep], "labels": labels[keep], "scores": s[keep]})
        return out

    # -- stage (b): SVMs and box regressors ------------------------------------------------------

    @torch.no_grad()
    def collect_post_fit_data(self, images: Sequence[Tensor] | Tensor, targets: Sequence[Target]
                              ) -> PostFitData:
        """Features for the SVMs and regressors (eval mode; see `PostFitData`), from at most
        `post_fit_max_images` images (the first ones) and `post_fit_negatives_per_image` sampled
        proposals per image."""
        count = len(images) if self.post_fit_max_images is None else min(len(images), self.post_fit_max_images)
        images, targets = list(images[:count]), check_targets(list(targets[:count]), count)
        rng = np.random.default_rng(self.post_fit_seed)
        was_training = self.training
        self.eval()
        svm_f, svm_l, svm_o, reg_f, reg_l, reg_d = [], [], [], [], [], []
        try:
            for start in range(0, count, 16):
                batch, tgts, _ = self.transform(images[start:start + 16], targets[start:start + 16])
                boxes, kinds = [], []
                for img, t in zip(batch, tgts):
                    gt, gl = t["boxes"].to(batch.device), t["labels"].to(batch.device)
                    props = self.proposals(img)
                    pick = rng.permutation(len(props))[:self.post_fit_negatives_per_image]
                    sampled = props[torch.from_numpy(np.sort(pick)).to(props.device)]
                    if len(gt):
                        best, idx = box_iou(props, gt).max(dim=1)
                        near = best >= self.bbox_iou
                        reg_boxes, reg_gt, reg_lab = props[near], gt[idx[near]], gl[idx[near]]
                    else:
                        reg_boxes, reg_gt, reg_lab = props[:0], props[:0], gl[:0]
                    regions = torch.cat((gt, sampled, reg_boxes))
                    overlap = torch.zeros(len(gt) + len(sampled), self.num_classes)
                    for c in range(1, self.num_classes + 1):
                        mine = gt[gl == c]
                        if len(mine):
                            overlap[:, c - 1] = box_iou(regions[:len(overlap)], mine).max(dim=1).values.cpu()
                    boxes.append(regions)
                    kinds.append((len(gt), len(sampled), len(reg_boxes)))
                    svm_l.append(torch.cat((gl.cpu(), torch.zeros(len(sampled), dtype=torch.long))))
                    svm_o.append(overlap)
                    reg_l.append(reg_lab.cpu())
                    reg_d.append(self.box_coder.encode(reg_gt, reg_boxes).cpu() if len(reg_boxes)
                                 else torch.zeros(0, 4))
                pooled, maps = self.region_features(batch, boxes)
                at = 0
                for n_gt, n_sampled, n_reg in kinds:
                    svm_f.append(pooled[at:at + n_gt + n_sampled].cpu())
                    at += n_gt + n_sampled
                    reg_f.append(maps[at:at + n_reg].cpu())
                    at += n_reg
        finally:
            self.train(was_training)
        return PostFitData(torch.cat(svm_f).numpy(), torch.cat(svm_l).numpy(), torch.cat(svm_o).numpy(),
                           torch.cat(reg_f).numpy(), torch.cat(reg_l).numpy(), torch.cat(reg_d).numpy())

    def fit_svms_and_regressors(self, data: PostFitData) -> dict[str, Any]:
        """Fit one SVM and one box regressor per class from `data` into the buffers; set
        `svm_fitted`. A class without positives (or negatives) gets w = 0 and a bias of -10, so
        it never fires; one without regression samples keeps the identity regressor."""
        rng = np.random.default_rng(self.post_fit_seed)
        norms = np.linalg.norm(data.svm_features, axis=1)
        svm_scale = self.svm_feature_norm / max(float(norms.mean()) if len(norms) else 1.0, 1e-12)
        x = data.svm_features * svm_scale
        weight, bias = np.zeros((self.num_classes, x.shape[1])), np.full(self.num_classes, -10.0)
        report: dict[str, Any] = {"svm_positives": [], "svm_negatives_used": [], "svm_negatives": [],
                                  "bbox_samples": []}
        for c in range(1, self.num_classes + 1):
            pos = x[data.svm_labels == c]
            neg = x[data.svm_overlap[:, c - 1] < self.svm_negative_iou]
            used = 0
            if len(pos) and len(neg):
                w, b, cache = train_svm_hard_negatives(
                    pos, neg, C=self.svm_C, rounds=self.svm_rounds, initial_negatives=self.svm_initial_negatives,
                    rng=rng, positive_weight=self.svm_positive_weight)
                weight[c - 1], bias[c - 1], used = w, b, int(cache.sum())
            report["svm_positives"].append(len(pos))
            report["svm_negatives"].append(len(neg))
            report["svm_negatives_used"].append(used)
        norms = np.linalg.norm(data.reg_features, axis=1)
        bbox_scale = self.svm_feature_norm / max(float(norms.mean()) if len(norms) else 1.0, 1e-12)
        reg_w = np.zeros((self.num_classes, 4, self.num_map_features))
        reg_b = np.zeros((self.num_classes, 4))
        for c in range(1, self.num_classes + 1):
            mask = data.reg_labels == c
            if mask.sum() >= 2:
                reg_w[c - 1], reg_b[c - 1] = fit_box_regressor(data.reg_features[mask] * bbox_scale,
                                                               data.reg_deltas[mask], alpha=self.bbox_alpha)
            report["bbox_samples"].append(int(mask.sum()))
        device = self.svm_weight.device
        with torch.no_grad():
            self.svm_weight.copy_(torch.as_tensor(weight, dtype=torch.float32, device=device))
            self.svm_bias.copy_(torch.as_tensor(bias, dtype=torch.float32, device=device))
            self.svm_feature_scale.fill_(svm_scale)
            self.bbox_weight.copy_(torch.as_tensor(reg_w, dtype=torch.float32, device=device))
            self.bbox_bias.copy_(torch.as_tensor(reg_b, dtype=torch.float32, device=device))
            self.bbox_feature_scale.fill_(bbox_scale)
            self.svm_fitted.fill_(True)
        return report

    def post_fit(self, images: Sequence[Tensor] | Tensor, targets: Sequence[Target]) -> dict[str, Any]:
        """Stage (b) after gradient training: SVMs with hard negative mining and box regressors,
        from features of the fine-tuned CNN. Returns counts per class (positives, negatives,
        negatives the final SVM was fit on, regression samples)."""
        return self.fit_svms_and_regressors(self.collect_post_fit_data(images, targets))


def roi_align_crops(batch: Tensor, rois: Tensor, size: int) -> Tensor:
    """Bilinear crops [R, C, size, size] of rois [R, 5] (batch index, x1, y1, x2, y2), two
    samples per output pixel and axis (`vision.ops.roi_align` with aligned pixel centres)."""
    return roi_align(batch, rois, size, sampling_ratio=2, aligned=True)


@register_detector("rcnn")
def rcnn(*, num_classes: int, backbone: str = "resnet18_small", backbone_kwargs: dict[str, Any] | None = None,
         warp_size: int = 48, max_proposals: int = 200, proposal_kwargs: dict[str, Any] | None = None,
         size: Sequence[int] | None = (96, 96), **kwargs: Any) -> RCNN:
    """R-CNN for 96 px images with objects of 12-40 px: selective search in fast mode (scales 50
    and 100, two similarity sets, sigma 0.8, min_size 10), crops warped to `warp_size` (48: half
    the image side, as the paper's 227 px warps are of its ~500 px images) with 16/227 context,
    a `resnet18_small` backbone (widths 16-32-64-128: 128 features; pass
    `backbone_kwargs={"widths": (8, 16, 32, 64)}` for a ~2.5x cheaper one), SVM C 1e-3 on
    features scaled to mean norm 20 and ridge alpha 1000 (the paper's). Other keywords go to
    `RCNN`."""
    body = RegistryBackbone(backbone, probe_size=warp_size, **(backbone_kwargs or {}))
    return RCNN(num_classes=num_classes, backbone=body, warp_size=warp_size, max_proposals=max_proposals,
                proposal_kwargs=proposal_kwargs, size=tuple(size) if size is not None else None, **kwargs)


__all__ = ["PostFitData", "RCNN", "fit_box_regressor", "fit_linear_svm", "mine_hard_negatives", "rcnn",
           "roi_align_crops", "train_svm_hard_negatives"]
