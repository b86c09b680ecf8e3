"""Pooling against brute-force Python loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from textcnn.core.errors import TextCNNError
from textcnn.core.pooling import (
    GlobalPool,
    KMaxPool1d,
    L2Pool,
    create_pool,
    kmax_pool,
    max_over_time,
    pool_over_time,
)

WINDOW_REDUCERS = {
    # (value outside the input, reduction of one window)
    "max": (-math.inf, max),
    "avg": (0.0, lambda values: sum(values) / len(values)),
    "l2": (0.0, lambda values: math.sqrt(sum(v * v for v in values))),
}


def _brute_pool(x: np.ndarray, kind: str, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Pool the trailing `x.ndim - 2` axes of `[N, C, ...]` with square windows, one at a time."""
    fill, reduce = WINDOW_REDUCERS[kind]
    spatial = x.shape[2:]
    padded = np.full(x.shape[:2] + tuple(s + 2 * padding for s in spatial), fill)
    padded[(slice(None), slice(None), *(slice(padding, padding + s) for s in spatial))] = x
    out_sizes = [(s + 2 * padding - kernel) // stride + 1 for s in spatial]
    out = np.zeros(x.shape[:2] + tuple(out_sizes))
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for corner in itertools.product(*(range(o) for o in out_sizes)):
            window = [
                padded[
                    (
                        n,
                        c,
                        *(
                            start * stride + offset
                            for start, offset in zip(corner, offsets, strict=True)
                        ),
                    )
                ]
                for offsets in itertools.product(range(kernel), repeat=len(spatial))
            ]
            out[(n, c, *corner)] = reduce(window)
    return out


@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
@pytest.mark.parametrize(
    ("dims", "kernel", "stride", "padding"),
    [(1, 3, None, 0), (1, 2, 1, 1), (2, 2, None, 0), (2, 3, 2, 1)],
)
def test_windowed_pooling_matches_brute_force(
    kind: str, dims: int, kernel: int, stride, padding: int
) -> None:
    x = torch.randn(
        (2, 3) + (7,) * dims,
        generator=torch.Generator().manual_seed(dims * 10 + kernel),
        dtype=torch.float64,
    )
    pool = create_pool(kind, kernel, stride=stride, padding=padding, dims=dims)
    expected = _brute_pool(x.numpy(), kind, kernel, stride or kernel, padding)
    np.testing.assert_allclose(pool(x).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_pool_classes_and_l2_agrees_with_lppool() -> None:
    assert isinstance(create_pool("max", 2, dims=1), nn.MaxPool1d)
    assert isinstance(create_pool("AVG", 2), nn.AvgPool2d)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(create_pool("l2", 2)(x), nn.LPPool2d(2, 2)(x))


def test_l2_pool_gradient_is_finite_on_zero_windows() -> None:
    x = torch.zeros(1, 1, 4, requires_grad=True)
    with torch.no_grad():
        x[0, 0, 2] = 3.0
    L2Pool(2, dims=1)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]))


def test_pool_errors() -> None:
    with pytest.raises(TextCNNError, match="did you mean 'max'"):
        create_pool("mx", 2)
    with pytest.raises(TextCNNError, match="dims"):
        create_pool("avg", 2, dims=3)


def test_max_over_time_with_mask_matches_loops() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 6, generator=gen) - 10  # all negative: a wrong fill of 0 would show
    lengths = [6, 3, 1, 0]
    mask = torch.arange(6)[None, :] >= torch.tensor(lengths)[:, None]
    out = max_over_time(x, mask)
    for n, c in itertools.product(range(4), range(5)):
        kept = [x[n, c, t].item() for t in range(6) if not mask[n, t]]
        assert out[n, c].item() == (max(kept) if kept else 0.0)
    torch.testing.assert_close(max_over_time(x), x.max(dim=-1).values)


def test_max_over_time_all_masked_row_has_clean_gradient() -> None:
    x = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[False, False, True, True], [True, True, True, True]])
    out = max_over_time(x, mask)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert x.grad[1].abs().sum() == 0 and x.grad[0, :, 2:].abs().sum() == 0


def test_max_over_time_rejects_bad_masks() -> None:
    with pytest.raises(TextCNNError, match="bool mask of shape"):
        max_over_time(torch.zeros(2, 3, 4), torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(TextCNNError, match=r"\[N, C, L\]"):
        max_over_time(torch.zeros(2, 3))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5)])
def test_global_pool_matches_loops_and_adaptive_pool(kind: str, shape: tuple) -> None:
    x = torch.randn(*shape, dtype=torch.float64)
    out = GlobalPool(kind)(x)
    reduce = max if kind == "max" else (lambda v: sum(v) / len(v))
    for n, c in itertools.product(range(2), range(3)):
        assert out[n, c].item() == pytest.approx(reduce(x[n, c].flatten().tolist()), abs=1e-12)
    adaptive = {
        ("max", 3): nn.AdaptiveMaxPool1d,
        ("max", 4): nn.AdaptiveMaxPool2d,
        ("avg", 3): nn.AdaptiveAvgPool1d,
        ("avg", 4): nn.AdaptiveAvgPool2d,
    }[kind, len(shape)]
    torch.testing.assert_close(out, adaptive(1)(x).flatten(1))


def test_kmax_pool_keeps_order_of_k_largest() -> None:
    gen = torch.Generator().manual_seed(5)
    # distinct values, so the k largest are unambiguous
    x = torch.stack([torch.randperm(9, generator=gen).float() for _ in range(6)]).view(2, 3, 9)
    for k in (1, 3, 9):
        out = KMaxPool1d(k)(x)
        for n, c in itertools.product(range(2), range(3)):
            row = x[n, c].tolist()
            threshold = sorted(row, reverse=True)[k - 1]
            assert out[n, c].tolist() == [v for v in row if v >= threshold]


def test_kmax_pool_other_dim_and_errors() -> None:
    x = torch.tensor([[1.0, 5.0], [4.0, 2.0], [3.0, 6.0]])
    assert kmax_pool(x, 2, dim=0).tolist() == [[4.0, 5.0], [3.0, 6.0]]
    with pytest.raises(TextCNNError, match=r"k in 1\.\.3"):
        kmax_pool(x, 4, dim=0)


# -- pooling over time with a padding mask (Kim's CNN and its menu) -----------------------------------
def _brute_time_pool(x: np.ndarray, keep: np.ndarray, kind: str, k: int) -> np.ndarray:
    """Each (row, channel)'s kept values pooled one at a time; k-max by trying every k-subset."""
    rows = []
    for n in range(x.shape[0]):
        row = []
        for c in range(x.shape[1]):
            values = [float(v) for v, kept in zip(x[n, c], keep[n]) if kept]
            if kind == "avg":
                row.append(sum(values) / len(values) if values else 0.0)
            elif kind == "l2":
                row.append(math.sqrt(sum(v * v for v in values)))
            else:  # kmax: the k-subset of largest sum, in position order; zeros where fewer kept
                best = max(itertools.combinations(range(len(values)), min(k, len(values))),
                           key=lambda idx: sum(values[i] for i in idx))
                row.extend([values[i] for i in best] + [0.0] * (k - len(best)))
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("kind, k", [("avg", 1), ("l2", 1), ("kmax", 1), ("kmax", 3), ("kmax", 6)])
def test_pool_over_time_matches_brute_force_with_padding(kind, k):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    got = pool_over_time(x, ~keep, kind=kind, k=k)
    expected = _brute_time_pool(x.numpy(), keep.numpy(), kind, k)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert got.shape == (4, 3 * (k if kind == "kmax" else 1))


def test_pool_over_time_max_is_max_over_time_and_gradients_stay_finite():
    x = torch.randn(3, 2, 4, requires_grad=True)
    mask = torch.tensor([[False] * 4, [True] * 4, [False, False, True, True]])
    torch.testing.assert_close(pool_over_time(x, mask, kind="max"), max_over_time(x, mask))
    for kind in ("avg", "l2", "kmax"):
        zeros = torch.zeros(3, 2, 4, requires_grad=True)  # all-zero maps: L2's sqrt at 0
        pool_over_time(zeros, mask, kind=kind, k=3).sum().backward()
        assert torch.isfinite(zeros.grad).all(), kind
        x.grad = None
        pool_over_time(x, mask, kind=kind, k=3).sum().backward()
        # a padded position never gets a gradient
        assert (x.grad[1] == 0).all() and (x.grad[2, :, 2:] == 0).all(), kind


def test_pool_over_time_rejects_bad_input():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(TextCNNError, match="kind in max, avg, l2, kmax"):
        pool_over_time(x, kind="median")
    with pytest.raises(TextCNNError, match="k as an integer"):
        pool_over_time(x, kind="kmax", k=0)
    with pytest.raises(TextCNNError, match="bool mask of shape"):
        pool_over_time(x, torch.zeros(2, 5, dtype=torch.bool), kind="avg")
