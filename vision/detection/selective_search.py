"""Selective search (Uijlings et al. 2013): class-agnostic region proposals by hierarchical grouping.

1. Over-segment the image with Felzenszwalb & Huttenlocher's graph method (scikit-image).
2. Describe each region by a colour histogram, a texture histogram, its size and its box.
3. Repeatedly merge the two most similar neighbouring regions until one region is left.
4. Every region ever seen (initial and merged) gives a box: those are the proposals.

    boxes = selective_search(image)  # image: (H, W, 3) float in [0, 1] -> [K, 4] xyxy

Boxes are in pixels with exclusive ends: a region covering columns 3..7 has x1 = 3, x2 = 8.
On a 96 x 96 shapes image one run takes about 7-12 ms on one CPU thread (felzenszwalb ~5 ms of
it) and gives about 35 boxes. `selective_search_fast` diversifies as the paper's fast mode does
(two scales x two similarity sets, about 100 boxes in ~32 ms), and `SelectiveSearchProposals`
wraps it as a detector's cached proposal stage (R-CNN's and Fast R-CNN's).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from textcnn.core.errors import TextCNNError

STRATEGIES = ("colour", "texture", "size", "fill")
COLOUR_BINS = 25
TEXTURE_ORIENTATIONS = 8
TEXTURE_BINS = 10


# -- similarities ---------------------------------------------------------------------------------


def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """sum_k min(h1_k, h2_k) over the last axis: the colour and texture similarity of
    L1-normalised histograms (1 for identical histograms, 0 for disjoint ones)."""
    return np.minimum(h1, h2).sum(axis=-1)


colour_similarity = histogram_intersection
texture_similarity = histogram_intersection


def size_similarity(size1: np.ndarray | float, size2: np.ndarray | float,
                    image_size: float) -> np.ndarray | float:
    """1 - (s_i + s_j) / size(im): high for two small regions, so small regions merge first."""
    return 1.0 - (size1 + size2) / image_size


def fill_similarity(box1: np.ndarray, box2: np.ndarray, size1: np.ndarray | float,
                    size2: np.ndarray | float, image_size: float) -> np.ndarray | float:
    """1 - (size(BB_ij) - s_i - s_j) / size(im), BB_ij the tight box around both regions (xyxy,
    exclusive ends, [..., 4]): high when the two regions fill each other's gaps."""
    x1 = np.minimum(box1[..., 0], box2[..., 0])
    y1 = np.minimum(box1[..., 1], box2[..., 1])
    x2 = np.maximum(box1[..., 2], box2[..., 2])
    y2 = np.maximum(box1[..., 3], box2[..., 3])
    return 1.0 - ((x2 - x1) * (y2 - y1) - size1 - size2) / image_size


# -- initial regions and their features -------------------------------------------------------------


def region_adjacency(labels: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of labels that touch horizontally or vertically (4-connectivity),
    [E, 2] int64 sorted lexicographically. The pixel grid is 4-connected, so this graph is
    connected and grouping always ends with one region."""
    right = np.stack((labels[:, :-1].ravel(), labels[:, 1:].ravel()), axis=1)
    down = np.stack((labels[:-1, :].ravel(), labels[1:, :].ravel()), axis=1)
    pairs = np.concatenate((right, down)).astype(np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.sort(pairs, axis=1)
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0)


def _region_histograms(values: np.ndarray, labels: np.ndarray, count: int, bins: int) -> np.ndarray:
    """Per-region histograms, L1-normalised: `values` is (H, W, D) int bin indices in
    [0, bins), D of them per pixel (each block of bins already offset); result [count, bins]."""
    flat = (labels[..., None].astype(np.int64) * bins + values).ravel()
    hist = np.bincount(flat, minlength=count * bins).reshape(count, bins).astype(np.float64)
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1e-12)


def colour_histograms(image: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """[count, 3 * 25]: a 25-bin histogram of each channel's values in [0, 1], L1-normalised
    over the whole vector (as in the paper)."""
    channels = image.shape[-1]
    idx = np.clip((image * COLOUR_BINS).astype(np.int64), 0, COLOUR_BINS - 1)
    idx = idx + np.arange(channels) * COLOUR_BINS
    return _region_histograms(idx, labels, count, channels * COLOUR_BINS)


def texture_histograms(image: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """[count, 3 * 8 * 10]: per channel, Gaussian derivatives (sigma 1) in 8 orientations, each
    binned into 10 bins, L1-normalised over the whole vector.

    The paper filters with 8 oriented Gaussian derivatives; the first Gaussian derivative is
    steerable, so we compute the two axis-aligned ones and take cos(t) gx + sin(t) gy for
    t = k pi / 4 (exact, and 4x cheaper). Opposite orientations keep their sign through the
    positive part: each orientation bins max(response, 0) over [0, that channel's largest
    response in the image].
    """
    from scipy import ndimage  # scipy comes with scikit-learn and scikit-image

    height, width, channels = image.shape
    angles = np.arange(TEXTURE_ORIENTATIONS) * (np.pi / 4)
    blocks = []
    for c in range(channels):
        plane = image[..., c].astype(np.float64)
        gx = ndimage.gaussian_filter(plane, 1.0, order=(0, 1))
        gy = ndimage.gaussian_filter(plane, 1.0, order=(1, 0))
        resp = np.maximum(gx[..., None] * np.cos(angles) + gy[..., None] * np.sin(angles), 0.0)
        top = resp.max()
        scaled = resp / top if top > 0 else resp
        blocks.append(np.clip((scaled * TEXTURE_BINS).astype(np.int64), 0, TEXTURE_BINS - 1))
    idx = np.concatenate(blocks, axis=-1)  # (H, W, channels * 8)
    idx = idx + np.arange(channels * TEXTURE_ORIENTATIONS) * TEXTURE_BINS
    return _region_histograms(idx, labels, count, channels * TEXTURE_ORIENTATIONS * TEXTURE_BINS)


def region_boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """[count, 4] xyxy boxes (exclusive ends) of each label 0..count-1."""
    from scipy import ndimage

    boxes = np.zeros((count, 4), dtype=np.int64)
    for i, sl in enumerate(ndimage.find_objects(labels + 1, max_label=count)):
        if sl is not None:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return boxes


def _segment(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    try:
        from skimage.segmentation import felzenszwalb
    except ImportError as err:
        raise TextCNNError("selective_search needs scikit-image (pip install scikit-image), "
                           "which is not installed") from err
    labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1)
    _, labels = np.unique(labels, return_inverse=True)  # contiguous 0..N-1
    return labels.reshape(image.shape[:2]).astype(np.int64)


# -- grouping -------------------------------------------------------------------------------------


class _Regions:
    """Growing arrays of region features; merged regions are appended after the initial ones."""

    def __init__(self, colour: np.ndarray, texture: np.ndarray, sizes: np.ndarray,
                 boxes: np.ndarray, capacity: int) -> None:
        n = len(sizes)
        self.colour = np.zeros((capacity, colour.shape[1]))
        self.texture = np.zeros((capacity, texture.shape[1]))
        self.sizes = np.zeros(capacity)
        self.boxes = np.zeros((capacity, 4))
        self.colour[:n], self.texture[:n], self.sizes[:n], self.boxes[:n] = colour, texture, sizes, boxes
        self.count = n

    def merge(self, i: int, j: int) -> int:
        """Append the union of regions i and j (size-weighted histograms); return its index."""
        k = self.count
        si, sj = self.sizes[i], self.sizes[j]
        self.colour[k] = (si * self.colour[i] + sj * self.colour[j]) / (si + sj)
        self.texture[k] = (si * self.texture[i] + sj * self.texture[j]) / (si + sj)
        self.sizes[k] = si + sj
        bi, bj = self.boxes[i], self.boxes[j]
        self.boxes[k] = (min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3]))
        self.count += 1
        return k


def similarity(regions: _Regions, i: np.ndarray | int, j: np.ndarray | int, image_size: float,
               strategies: Sequence[str]) -> np.ndarray | float:
    """Sum of the enabled similarity measures between regions i and j (arrays: elementwise)."""
    total = 0.0
    if "colour" in strategies:
        total = total + colour_similarity(regions.colour[i], regions.colour[j])
    if "texture" in strategies:
        total = total + texture_similarity(regions.texture[i], regions.texture[j])
    if "size" in strategies:
        total = total + size_similarity(regions.sizes[i], regions.sizes[j], image_size)
    if "fill" in strategies:
        total = total + fill_similarity(regions.boxes[i], regions.boxes[j], regions.sizes[i],
                                        regions.sizes[j], image_size)
    return total


def hierarchical_grouping(regions: _Regions, edges: np.ndarray, image_size: float,
                          strategies: Sequence[str]) -> list[tuple[int, int]]:
    """Merge the most similar neighbouring pair until no pair is left; returns the merges
    (i, j) in order, merge m creating region `initial + m`. Ties go to the smaller (i, j), so
    the result is deterministic. A heap with lazy deletion keeps each step O(log E)."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(regions.count)}
    for a, b in edges.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    sims = similarity(regions, edges[:, 0], edges[:, 1], image_size, strategies)
    heap = [(-float(s), a, b) for s, (a, b) in zip(np.atleast_1d(sims), edges.tolist())]
    heapq.heapify(heap)
    alive = [True] * regions.count
    merges = []
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # a stale pair: one side was merged already
        k = regions.merge(i, j)
        alive[i] = alive[j] = False
        alive.append(True)
        merges.append((i, j))
        around = sorted((neighbours.pop(i) | neighbours.pop(j)) - {i, j})
        for n in around:
            neighbours[n] -= {i, j}
            neighbours[n].add(k)
        neighbours[k] = set(around)
        if around:
            idx = np.array(around)
            sims = similarity(regions, np.full(len(idx), k), idx, image_size, strategies)
            for s, n in zip(np.atleast_1d(sims).tolist(), around):
                heapq.heappush(heap, (-s, n, k))  # n < k always
    return merges


def hierarchy_order(initial: int, merges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Region indices ordered by level in the hierarchy: the root(s) first, then their
    children, and so on; within a level the most recently merged (larger) region first.

    The paper ranks by level times a random number and samples; this deterministic version
    keeps its spirit: large regions of every branch come before the small ones.
    """
    total = initial + len(merges)
    parent = np.full(total, -1)
    for m, (i, j) in enumerate(merges):
        parent[i] = parent[j] = initial + m
    depth = np.zeros(total, dtype=np.int64)
    for r in range(total - 1, -1, -1):  # a parent always has a larger index than its children
        if parent[r] >= 0:
            depth[r] = depth[parent[r]] + 1
    return np.lexsort((-np.arange(total), depth))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise TextCNNError(f"selective_search: expected an image (H, W, 3), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TextCNNError(f"selective_search: expected float values in [0, 1], got dtype {image.dtype}")
    return np.clip(image, 0.0, 1.0)


def selective_search(image: np.ndarray, *, scale: float = 100, sigma: float = 0.8, min_size: int = 10,
                     strategies: Sequence[str] = STRATEGIES, max_proposals: int | None = None
                     ) -> np.ndarray:
    """Region proposals of one image (H, W, 3) float in [0, 1]: [K, 4] float32 xyxy pixel boxes
    (exclusive ends), deduplicated, ordered by `hierarchy_order` (whole image first), at most
    `max_proposals` of them.

    `scale`, `sigma` and `min_size` go to `skimage.segmentation.felzenszwalb` (scale in the
    reference implementation's 0-255 units: larger gives fewer, larger initial regions);
    `strategies` picks the similarity measures summed (any of colour, texture, size, fill).
    Deterministic: the same image and arguments give the same boxes.
    """
    image = _check_image(image)
    strategies = tuple(strategies)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if not strategies or unknown:
        raise TextCNNError(f"selective_search strategies: expected a non-empty subset of "
                           f"{STRATEGIES}, got {strategies}")
    if max_proposals is not None and max_proposals < 1:
        raise TextCNNError(f"selective_search max_proposals: expected >= 1 or None, got {max_proposals}")
    labels = _segment(image, scale, sigma, min_size)
    count = int(labels.max()) + 1
    image_size = float(labels.size)
    sizes = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
    zero = np.zeros((count, 1))
    colour = colour_histograms(image, labels, count) if "colour" in strategies else zero
    texture = texture_histograms(image, labels, count) if "texture" in strategies else zero
    regions = _Regions(colour, texture, sizes, region_boxes(labels, count), capacity=2 * count)
    merges = hierarchical_grouping(regions, region_adjacency(labels), image_size, strategies)
    boxes = regions.boxes[hierarchy_order(count, merges)]
    _, first = np.unique(boxes, axis=0, return_index=True)  # dedupe, keeping the first of each
    boxes = boxes[np.sort(first)]
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return boxes.astype(np.float32)


FAST_MODE_SCALES = (50.0, 100.0)
FAST_MODE_STRATEGIES = (STRATEGIES, ("texture", "size", "fill"))


def selective_search_fast(image: np.ndarray, *, scales: Sequence[float] = FAST_MODE_SCALES,
                          strategy_sets: Sequence[Sequence[str]] = FAST_MODE_STRATEGIES,
                          sigma: float = 0.8, min_size: int = 10, max_proposals: int | None = None
                          ) -> np.ndarray:
    """Selective search diversified as in the paper's "fast mode" (Uijlings et al. 2013, used by
    R-CNN): one hierarchical grouping per (Felzenszwalb scale, similarity set), boxes merged.

    The paper's fast mode also varies the colour space (HSV and Lab); here every run is RGB. The
    ranked lists are interleaved (first box of each run, then the second, ...) and deduplicated
    keeping the first occurrence, so the whole image still comes first and `max_proposals`
    keeps a prefix. [K, 4] float32 xyxy pixel boxes, deterministic.
    """
    runs = [selective_search(image, scale=scale, sigma=sigma, min_size=min_size, strategies=strategies)
            for scale in scales for strategies in strategy_sets]
    if not runs:
        raise TextCNNError("selective_search_fast: expected at least one scale and one strategy set, got none")
    longest = max(len(r) for r in runs)
    interleaved = [r[i] for i in range(longest) for r in runs if i < len(r)]
    boxes = np.stack(interleaved) if interleaved else np.zeros((0, 4), dtype=np.float32)
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    return (boxes[:max_proposals] if max_proposals is not None else boxes).astype(np.float32)


class SelectiveSearchProposals(nn.Module):
    """Selective search as a proposal stage: `(batch, features, targets) -> (boxes per image, {})`.

    The normalised batch is mapped back to [0, 1] with `mean` / `std` (the detector's transform),
    each image goes through `vision.detection.selective_search.selective_search_fast(scales,
    sigma, min_size)` (the paper's fast mode: several scales and similarity sets), boxes
    thinner than `min_box_size` px are dropped and the first `max_proposals` (selective
    search's own ranking, whole regions first) are kept. Results are cached per image,
    keyed by a hash of its pixels and the settings, in an LRU of at most `cache_size` images
    (0: no cache); `clear_cache()` empties it, e.g. before timing inference.
    """

    def __init__(self, *, max_proposals: int = 300, scales: Sequence[float] = (50.0, 100.0), sigma: float = 0.8,
                 min_size: int = 10, min_box_size: float = 2.0,
                 mean: Sequence[float] | Tensor = (0.5, 0.5, 0.5),
                 std: Sequence[float] | Tensor = (0.25, 0.25, 0.25), cache_size: int = 50_000) -> None:
        super().__init__()
        if max_proposals < 1 or cache_size < 0:
            raise TextCNNError(f"SelectiveSearchProposals: expected max_proposals >= 1 and "
                               f"cache_size >= 0, got {max_proposals} and {cache_size}")
        self.max_proposals = max_proposals
        self.scales, self.sigma, self.min_size = tuple(float(k) for k in scales), sigma, min_size
        self.min_box_size = min_box_size
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1).clone(),
                             persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1).clone(),
                             persistent=False)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def proposals(self, image: np.ndarray) -> Tensor:
        """Boxes [K, 4] (CPU float32) of one (H, W, 3) image in [0, 1], from the cache if seen."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        key = hashlib.sha1(image.tobytes()).hexdigest() + f"|{image.shape}|{self.scales}|{self.sigma}|{self.min_size}"
        boxes = self._cache.get(key)
        if boxes is not None:
            self._cache.move_to_end(key)
        else:
            boxes = torch.as_tensor(selective_search_fast(image, scales=self.scales, sigma=self.sigma,
                                                          min_size=self.min_size), dtype=torch.float32).reshape(-1, 4)
            if self.cache_size:
                self._cache[key] = boxes
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        wide = (boxes[:, 2] - boxes[:, 0] >= self.min_box_size) & (boxes[:, 3] - boxes[:, 1] >= self.min_box_size)
        return boxes[wide][: self.max_proposals]

    def clear_cache(self) -> None:
        """Forget every cached image (e.g. before timing inference on images seen before)."""
        self._cache.clear()

    def forward(self, batch: Tensor, features: Tensor | None = None, targets: list[dict] | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        images = (batch.detach() * self.std + self.mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        boxes = [self.proposals(image).to(device=batch.device, dtype=batch.dtype) for image in images]
        return boxes, {}


__all__ = ["FAST_MODE_SCALES", "FAST_MODE_STRATEGIES", "SelectiveSearchProposals", "colour_histograms", "colour_similarity", "fill_similarity", "hierarchical_grouping",
           "hierarchy_order", "histogram_intersection", "region_adjacency", "region_boxes",
           "selective_search", "selective_search_fast", "size_similarity", "texture_histograms", "texture_similarity"]
