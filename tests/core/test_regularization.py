"""Regularisation against numpy brute force, formulas and autograd."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from textcnn.core.errors import TextCNNError
from textcnn.core.regularization import (
    EarlyStopping,
    GaussianNoise,
    MaxNorm,
    WordDropout,
    apply_weight_norm,
    clip_grad_norm_,
    l1_penalty,
    l2_penalty,
    max_norm_,
)


def _brute_max_norm(rows: np.ndarray, cap: float) -> np.ndarray:
    out = rows.copy()
    for i, row in enumerate(rows):
        norm = np.sqrt(np.sum(row**2))
        if norm > cap:
            out[i] = row * (cap / norm)
    return out


def test_max_norm_rescales_long_rows_only() -> None:
    linear = nn.Linear(20, 6)
    with torch.no_grad():
        linear.weight.mul_(torch.tensor([0.1, 10, 0.5, 20, 1, 30])[:, None])
    before = linear.weight.detach().clone()
    norms = before.norm(dim=1)
    long_rows = norms > 3
    assert 0 < long_rows.sum() < 6
    out = max_norm_(linear.weight, 3.0)
    assert out.data_ptr() == linear.weight.data_ptr() and linear.weight.grad is None
    np.testing.assert_allclose(
        linear.weight.detach().numpy(), _brute_max_norm(before.numpy(), 3.0), rtol=1e-6
    )
    torch.testing.assert_close(
        linear.weight[long_rows].norm(dim=1), torch.full((int(long_rows.sum()),), 3.0)
    )
    assert torch.equal(linear.weight[~long_rows], before[~long_rows])


def test_max_norm_over_conv_filters_and_helper() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50)
    max_norm_(model[0].weight, 1.0, dim=(1, 2))
    torch.testing.assert_close(model[0].weight.flatten(1).norm(dim=1), torch.ones(4))
    MaxNorm(model, ["2"], 3.0)()
    assert model[2].weight.norm(dim=1).max() <= 3.0 + 1e-5
    with pytest.raises(TextCNNError, match="no submodule '3'"):
        MaxNorm(model, ["3"], 3.0)
    with pytest.raises(TextCNNError, match="positive norm cap"):
        max_norm_(model[2].weight, 0.0)


def test_penalties_match_formulas_and_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    params = [
        torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True),
    ]
    flat = np.concatenate([p.detach().numpy().ravel() for p in params])
    l1 = l1_penalty(params)
    l2 = l2_penalty(params)
    assert l1.item() == pytest.approx(np.abs(flat).sum())
    assert l2.item() == pytest.approx((flat**2).sum())
    l1_grads = torch.autograd.grad(l1, params)
    l2_grads = torch.autograd.grad(l2, params)
    for p, g1, g2 in zip(params, l1_grads, l2_grads, strict=True):
        torch.testing.assert_close(g1, torch.sign(p.detach()))
        torch.testing.assert_close(g2, 2 * p.detach())
    assert l1_penalty([]).item() == 0.0


def test_weight_norm_keeps_output_at_init_and_adds_g_v() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(7, 4)
    x = torch.randn(5, 7)
    before = linear(x).detach()
    original = linear.weight.detach().clone()
    apply_weight_norm(linear)
    torch.testing.assert_close(linear(x), before)
    g = linear.parametrizations.weight.original0
    v = linear.parametrizations.weight.original1
    assert g.shape == (4, 1) and v.shape == (4, 7)
    torch.testing.assert_close(g.detach(), original.norm(dim=1, keepdim=True))
    torch.testing.assert_close((g * v / v.norm(dim=1, keepdim=True)).detach(), original)
    linear(x).sum().backward()
    assert g.grad is not None and v.grad is not None
    with pytest.raises(TextCNNError, match="no tensor 'kernel'"):
        apply_weight_norm(nn.Linear(2, 2), name="kernel")


def test_gaussian_noise_train_and_eval() -> None:
    torch.manual_seed(0)
    noise = GaussianNoise(0.5)
    x = torch.full((200_000,), 2.0)
    diff = noise(x) - x
    assert abs(diff.mean().item()) < 0.01
    assert diff.std().item() == pytest.approx(0.5, rel=0.02)
    noise.eval()
    assert noise(x) is x
    with pytest.raises(TextCNNError, match="std >= 0"):
        GaussianNoise(-1.0)


def test_word_dropout_never_touches_padding_and_rate_is_p() -> None:
    torch.manual_seed(0)
    pad, unk = 0, 1
    ids = torch.randint(2, 1000, (400, 50))
    ids[:, 30:] = pad
    dropout = WordDropout(0.25, replacement_id=unk, pad_id=pad)
    out = dropout(ids)
    assert torch.equal(out[:, 30:], ids[:, 30:])
    changed = out != ids
    assert torch.all(out[changed] == unk)
    assert changed[:, :30].float().mean().item() == pytest.approx(0.25, abs=0.01)
    dropout.eval()
    assert torch.equal(dropout(ids), ids)
    with pytest.raises(TextCNNError, match="integer token ids"):
        dropout.train()(ids.float())
    with pytest.raises(TextCNNError, match="0 <= p < 1"):
        WordDropout(1.0, replacement_id=unk)


def test_early_stopping_max_mode_with_patience() -> None:
    stopper = EarlyStopping("dev_acc", patience=2, min_delta=0.01)
    history = [
        (0.50, True),
        (0.60, True),
        (0.605, False),
        (0.70, True),
        (0.69, False),
        (0.70, False),
    ]
    for epoch, (acc, improved) in enumerate(history, start=1):
        assert stopper.step({"dev_acc": acc, "loss": 1.0}) is improved, epoch
        assert stopper.should_stop is (epoch == len(history))
    assert stopper.best == 0.70 and stopper.best_epoch == 4


def test_early_stopping_min_mode_nan_and_explicit_epochs() -> None:
    stopper = EarlyStopping("dev_loss", mode="min", patience=1)
    assert stopper.step({"dev_loss": 2.0}, epoch=0)
    assert stopper.step({"dev_loss": torch.tensor(1.5)}, epoch=1)
    assert not stopper.step({"dev_loss": float("nan")}, epoch=2)
    assert stopper.should_stop and stopper.best == 1.5 and stopper.best_epoch == 1


def test_early_stopping_resume_from_state_dict() -> None:
    values = [0.3, 0.5, 0.4, 0.45, 0.6, 0.2, 0.1, 0.1]
    straight = EarlyStopping("f1", patience=3)
    outcomes = [straight.step({"f1": v}) for v in values]
    first = EarlyStopping("f1", patience=3)
    for v in values[:4]:
        first.step({"f1": v})
    resumed = EarlyStopping("f1", patience=3)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert [resumed.step({"f1": v}) for v in values[4:]] == outcomes[4:]
    assert resumed.state_dict() == straight.state_dict()
    assert resumed.should_stop and resumed.best_epoch == 5
    with pytest.raises(TextCNNError, match="expected metric 'acc', got 'f1'"):
        EarlyStopping("acc", patience=3).load_state_dict(first.state_dict())


def test_early_stopping_bad_input() -> None:
    stopper = EarlyStopping("dev_acc", patience=1)
    with pytest.raises(
        TextCNNError, match=r"'dev_acc'.*did you mean 'dev_ac'.*available: dev_ac, loss"
    ):
        stopper.step({"loss": 1.0, "dev_ac": 0.5})
    with pytest.raises(TextCNNError, match="did you mean 'max'"):
        EarlyStopping("x", mode="maxx", patience=1)
    with pytest.raises(TextCNNError, match="patience"):
        EarlyStopping("x", patience=-1)


@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipped, and left alone
def test_clip_grad_norm_takes_sparse_gradients_as_the_dense_ones_they_stand_for(max_norm):
    torch.manual_seed(0)
    sparse = nn.Embedding(12, 4, sparse=True)
    dense = nn.Embedding(12, 4)
    dense.load_state_dict(sparse.state_dict())
    ids = torch.tensor([[1, 2, 2, 5], [5, 5, 7, 1]])  # repeated rows: an uncoalesced gradient
    target = torch.randn(4)
    for emb in (sparse, dense):
        (emb(ids) - target).square().sum().backward()
    other, ref_other = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3))
    other.grad, ref_other.grad = torch.tensor([3.0, -1.0, 2.0]), torch.tensor([3.0, -1.0, 2.0])
    assert sparse.weight.grad.is_sparse and not sparse.weight.grad.is_coalesced()
    total = clip_grad_norm_([sparse.weight, other], max_norm)
    expected = torch.nn.utils.clip_grad_norm_([dense.weight, ref_other], max_norm)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)
    torch.testing.assert_close(other.grad, ref_other.grad)
