"""The lecture's menu on Kim's CNN (activation, pooling, batch and weight norm, input noise, word
dropout): each option against a reference computed by hand (tests/text/test_projection.py checks
the projection path against the plain model under every choice)."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from textcnn import TextCNNClassifier
from textcnn.core.activations import ACTIVATIONS
from textcnn.core.errors import TextCNNError
from textcnn.model import KimCNN, KimCNNConfig

BASE = KimCNNConfig(vocab_size=30, num_classes=3, embedding_dim=5, widths=[1, 2, 4], maps=3, dropout=0.0)
# distinct words: equal windows would tie, and k-max's choice among ties is arbitrary
IDS = torch.tensor([[3, 4, 5, 6, 7, 0, 0], [8, 9, 0, 0, 0, 0, 0], [0] * 7, [10, 11, 12, 13, 14, 15, 29]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def model(**settings) -> KimCNN:
    torch.manual_seed(0)
    return KimCNN(replace(BASE, **settings)).double()


def windows_by_hand(m: KimCNN, ids: torch.Tensor, row: int, width_index: int) -> np.ndarray:
    """[T, maps] convolution outputs (with bias) of one sentence alone: its words zero-padded by
    width - 1 on both sides, each window's sum over taps written out."""
    width = m.config.widths[width_index]
    conv = m.convs[width_index].conv
    words = [int(t) for t in ids[row] if t != m.config.pad_id]
    vectors = torch.cat([emb.weight for emb in m.embeddings], dim=-1).detach().numpy()
    zeros = np.zeros(vectors.shape[1])
    padded = [zeros] * (width - 1) + [vectors[w] for w in words] + [zeros] * (width - 1)
    weight = conv.weight.detach().numpy()  # [maps, C*D, width]
    bias = np.zeros(weight.shape[0]) if conv.bias is None else conv.bias.detach().numpy()
    return np.array([bias + sum(weight[:, :, k] @ padded[t + k] for k in range(width))
                     for t in range(len(words) + width - 1)])


def features_by_hand(m: KimCNN, ids: torch.Tensor, pool) -> np.ndarray:
    """Every sentence's features: `pool(activated windows [T, maps])` per width, concatenated
    (an empty sentence: zeros)."""
    act = m.convs[0].act
    out = []
    for row in range(ids.shape[0]):
        parts = []
        for i in range(len(m.config.widths)):
            w = windows_by_hand(m, ids, row, i)
            if len(w) == 0 or not (ids[row] != m.config.pad_id).any():
                parts.append(np.zeros(m.config.maps * m.config.pooled_per_map))
                continue
            parts.append(pool(act(torch.as_tensor(w)).detach().numpy()))
        out.append(np.concatenate(parts))
    return np.array(out)


def kmax_by_hand(values: np.ndarray, k: int) -> np.ndarray:
    """Per map: the k-subset of windows with the largest sum, in window order (zeros where there
    are fewer windows than k); maps one after the other."""
    out = []
    for column in values.T:
        best = max(itertools.combinations(range(len(column)), min(k, len(column))),
                   key=lambda idx: sum(column[i] for i in idx))
        out.extend([column[i] for i in best] + [0.0] * (k - len(best)))
    return np.array(out)


POOLS = {
    "max": lambda w: w.max(axis=0),
    "avg": lambda w: w.mean(axis=0),
    "l2": lambda w: np.sqrt((w ** 2).sum(axis=0)),
    "kmax": lambda w: kmax_by_hand(w, 3),
}


@pytest.mark.parametrize("pooling", list(POOLS))
@pytest.mark.parametrize("activation", ["relu", "tanh", "selu", "softmax"])
def test_pooling_and_activation_against_windows_computed_by_hand(pooling, activation):
    """Each pooling over the activated windows of the sentence alone (so the batch's padding
    plays no part); a softmax spreads over a window's maps."""
    if (pooling, activation) == ("kmax", "relu"):
        pytest.skip("ReLU's zeros tie: which of them k-max keeps (and so their order) is arbitrary")
    m = model(pooling=pooling, activation=activation, k=3 if pooling == "kmax" else 2).eval()
    got = m.features(IDS).detach().numpy()
    np.testing.assert_allclose(got, features_by_hand(m, IDS, POOLS[pooling]), rtol=1e-10, atol=1e-12)
    assert got.shape == (4, m.config.num_features) and m.fc.in_features == m.config.num_features


def test_every_activation_of_the_core_is_a_choice():
    for name in ACTIVATIONS:
        m = model(activation=name)
        assert type(m.convs[0].act) is type(ACTIVATIONS[name]())
    with pytest.raises(TextCNNError, match="model.activation: expected one of .*got 'relux'"):
        replace(BASE, activation="relux")


def test_batch_norm_normalises_over_the_valid_windows_only():
    """Training mode: each map's mean and (biased) variance over the windows of the batch's
    sentences, not over the batch's padding; the convolution has no bias of its own then."""
    m = model(batch_norm=True, activation="linear", pooling="avg")
    norm = m.convs[1].norm
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    assert m.convs[1].conv.bias is None
    m.train()
    got = m.features(IDS).detach().numpy()
    windows = [windows_by_hand(m, IDS, row, 1) for row in (0, 1, 3)]  # row 2 is empty
    stacked = np.concatenate(windows)
    mean, var = stacked.mean(axis=0), stacked.var(axis=0)
    scaled = [norm.weight.detach().numpy() * (w - mean) / np.sqrt(var + norm.eps) + norm.bias.detach().numpy()
              for w in windows]
    expected = np.array([s.mean(axis=0) for s in scaled])
    np.testing.assert_allclose(got[[0, 1, 3], 3:6], expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got[2], 0.0)
    # the running statistics moved towards those of the valid windows (momentum 0.1)
    np.testing.assert_allclose(norm.running_mean.numpy(), 0.1 * mean, rtol=1e-9)


def test_weight_norm_is_g_times_direction_and_starts_at_the_plain_weights():
    plain, normed = model(), model(weight_norm=True)
    torch.testing.assert_close(normed.features(IDS), plain.features(IDS))  # same draw, same weights
    conv = normed.convs[2].conv
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(2.0)
    expected = g * v / v.norm(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(conv.weight, expected)
    assert "convs.0.conv.parametrizations.weight.original0" in normed.state_dict()


def test_word_dropout_replaces_words_by_unk_in_training_only():
    p, unk = 0.5, BASE.unk_id
    dropping, reference = model(word_dropout=p), model()
    dropping.eval()
    torch.testing.assert_close(dropping.features(IDS), reference.features(IDS))  # off at eval time
    dropping.train()
    torch.manual_seed(7)
    got = dropping.features(IDS)
    torch.manual_seed(7)
    drop = (torch.rand(IDS.shape) < p) & (IDS != BASE.pad_id)  # the draw WordDropout makes
    assert drop.any() and not drop.all()
    torch.testing.assert_close(got, reference.features(IDS.masked_fill(drop, unk)))


def test_input_noise_is_gaussian_on_the_words_in_training_only():
    std = 0.3
    noisy, reference = model(input_noise=std), model()
    noisy.eval()
    torch.testing.assert_close(noisy.features(IDS), reference.features(IDS))
    noisy.train()
    torch.manual_seed(3)
    got = noisy.features(IDS)
    torch.manual_seed(3)
    x = reference.embed(IDS)
    x = x + torch.randn_like(x) * std * (IDS != BASE.pad_id)[:, None, :]  # padding stays zero
    lengths = (IDS != BASE.pad_id).sum(dim=1)
    expected = []
    for width, block in zip(BASE.widths, reference.convs):
        h = block.act(block.conv(x))
        valid = (torch.arange(h.shape[-1])[None, :] < lengths[:, None] + width - 1) & (lengths[:, None] > 0)
        expected.append(h.masked_fill(~valid[:, None, :], -math.inf).amax(dim=-1).clamp(min=0))  # empty: 0
    torch.testing.assert_close(got, torch.cat(expected, dim=1))


@pytest.mark.parametrize("settings, message", [
    (dict(pooling="mean"), "model.pooling: expected one of 'max' | 'avg' | 'l2' | 'kmax'"),
    (dict(k=0, pooling="kmax"), "model.k: expected an integer >= 1"),
    (dict(k=3), "model.k: used with model.pooling kmax only"),
    (dict(batch_norm="yes"), "model.batch_norm: expected true or false"),
    (dict(input_noise=-0.1), "model.input_noise: expected a number >= 0"),
    (dict(word_dropout=1.0), r"model.word_dropout: expected a number in \[0, 1\)"),
])
def test_bad_menu_settings_are_one_line_errors(settings, message):
    with pytest.raises(TextCNNError, match=message):
        replace(BASE, **settings)
    with pytest.raises(TextCNNError, match=message):
        TextCNNClassifier(**settings).fit(["a b", "c d"], [0, 1])


def test_estimator_falls_back_to_the_plain_path_for_input_noise_with_one_warning():
    texts = ["good film", "bad film", "great fun", "awful mess"] * 5
    labels = [1, 0, 1, 0] * 5
    small = dict(maps=3, embedding_dim=4, widths=(2,), epochs=1, device="cpu", threads=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noisy = TextCNNClassifier(**small, input_noise=0.2).fit(texts, labels)
    assert noisy.fast_path_ is False and not noisy.model_.embeddings[0].sparse
    assert len([w for w in caught if "trains on the plain path" in str(w.message)]) == 1
    assert TextCNNClassifier(**small).fit(texts, labels).fast_path_ is True
