"""Assigning ground-truth boxes to predictions (anchors, proposals) and sampling a balanced
training subset of them, as in Faster R-CNN."""

from __future__ import annotations

import torch
from torch import Tensor

from textcnn.core.errors import TextCNNError


class Matcher:
    """Match each prediction to the ground truth it overlaps most.

    Called with a quality matrix [G, P] (e.g. `box_iou(gt_boxes, anchors)`), it returns a
    LongTensor [P]: the index of the best ground truth where its quality is >= `high_threshold`,
    BELOW_LOW_THRESHOLD (-1) where it is < `low_threshold`, and BETWEEN_THRESHOLDS (-2) in
    between. Equal qualities go to the lower ground-truth index.

    With `allow_low_quality_matches`, every prediction that reaches some ground truth's highest
    quality (all ties) is matched to its best ground truth even below the thresholds, so that
    each ground truth gets at least one prediction. Unlike torchvision, a ground truth whose
    highest quality is 0 adds no matches: otherwise it would match every prediction.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, *,
                 allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise TextCNNError(f"Matcher: low_threshold ({low_threshold}) must not exceed "
                               f"high_threshold ({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """Per-prediction match, [P] (see the class docstring)."""
        if match_quality_matrix.dim() != 2:
            raise TextCNNError(f"Matcher: expected a [G, P] quality matrix, "
                               f"got shape {tuple(match_quality_matrix.shape)}")
        num_gt, num_pred = match_quality_matrix.shape
        device = match_quality_matrix.device
        if num_gt == 0 or num_pred == 0:
            return torch.full((num_pred,), self.BELOW_LOW_THRESHOLD, dtype=torch.long,
                              device=device)
        quality = match_quality_matrix
        best_quality = quality.max(dim=0).values
        # argmax documents first-index ties; `max(dim)` does not promise it on every device
        best_gt = quality.argmax(dim=0)
        matches = best_gt.clone()
        matches[best_quality < self.high_threshold] = self.BETWEEN_THRESHOLDS
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        if self.allow_low_quality_matches:
            gt_best = quality.max(dim=1, keepdim=True).values
            hits = ((quality == gt_best) & (gt_best > 0)).any(dim=0)
            matches[hits] = best_gt[hits]
        return matches


class BalancedPositiveNegativeSampler:
    """Draw up to `batch_size_per_image` labelled examples per image, at most
    `positive_fraction` of them positive.

    Labels per image: >= 1 positive, 0 negative, -1 ignored. It keeps
    num_pos = min(int(batch_size_per_image * positive_fraction), #positives) positives and
    num_neg = min(batch_size_per_image - num_pos, #negatives) negatives, uniformly at random.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if batch_size_per_image < 0 or not 0.0 <= positive_fraction <= 1.0:
            raise TextCNNError(f"BalancedPositiveNegativeSampler: expected batch_size_per_image "
                               f">= 0 and positive_fraction in [0, 1], got "
                               f"{batch_size_per_image} and {positive_fraction}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: list[Tensor], *, generator: torch.Generator | None = None
                 ) -> tuple[list[Tensor], list[Tensor]]:
        """Boolean (positive, negative) masks, one pair per image, on each label's device.
        The same `generator` seed gives the same draw."""
        pos_masks, neg_masks = [], []
        for image_labels in labels:
            positive = torch.nonzero(image_labels >= 1).flatten()
            negative = torch.nonzero(image_labels == 0).flatten()
            num_pos = min(int(self.batch_size_per_image * self.positive_fraction),
                          positive.numel())
            num_neg = min(self.batch_size_per_image - num_pos, negative.numel())
            pos_masks.append(self._mask(image_labels, positive, num_pos, generator))
            neg_masks.append(self._mask(image_labels, negative, num_neg, generator))
        return pos_masks, neg_masks

    @staticmethod
    def _mask(labels: Tensor, candidates: Tensor, count: int,
              generator: torch.Generator | None) -> Tensor:
        # the permutation is drawn on the generator's device, then moved to the labels'
        perm_device = generator.device if generator is not None else candidates.device
        perm = torch.randperm(candidates.numel(), generator=generator, device=perm_device)
        chosen = candidates[perm[:count].to(candidates.device)]
        mask = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
        mask[chosen] = True
        return mask
