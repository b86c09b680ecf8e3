"""The fast CPU text path (sparse embedding gradients, LazyAdadelta, projected forward) under
every training setting that touches the gradients or the step: it must train the same weights as
the plain path (dense gradients, torch's Adadelta, `KimCNN.forward`) on the same batches."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from textcnn.core.engine import TrainConfig, Trainer
from textcnn.model import KimCNN, KimCNNConfig
from textcnn.projection import projected_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


CONFIG = KimCNNConfig(vocab_size=40, num_classes=3, embedding_dim=6, widths=[2, 3], maps=4, dropout=0.0)


def _batches():
    gen = torch.Generator().manual_seed(3)
    out = []
    for _ in range(5):
        lengths = torch.randint(1, 7, (8,), generator=gen)
        ids = torch.zeros(8, int(lengths.max()), dtype=torch.long)
        for row, n in enumerate(lengths.tolist()):
            ids[row, :n] = torch.randint(2, 30, (n,), generator=gen)  # rows 30..39 never appear
        out.append((ids, torch.randint(0, 3, (8,), generator=gen)))
    return out


def _train(sparse: bool, settings: dict, menu: dict | None = None) -> KimCNN:
    torch.manual_seed(0)
    model = KimCNN(replace(CONFIG, sparse=sparse, **(menu or {})))
    forward = projected_logits if sparse else KimCNN.__call__
    batches = _batches()
    config = TrainConfig(epochs=3, optimizer="lazy_adadelta" if sparse else "adadelta", progress=False,
                         device="cpu", **settings)
    torch.manual_seed(1)  # word dropout draws from here, in the same order on both paths
    Trainer(model, config=config, batches=lambda epoch, generator: batches,
            loss_fn=lambda m, b: F.cross_entropy(forward(m, b[0]), b[1]),
            after_step=KimCNN.apply_max_norm, steps_per_epoch=len(batches)).fit()
    return model


@pytest.fixture(scope="module")
def untouched() -> KimCNN:
    """The plain path without any of the settings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(False, {})
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("settings", [
    dict(l1=0.01), dict(l2=0.05), dict(weight_decay=0.1), dict(grad_clip=0.05),
    dict(lr_schedule="cosine", warmup_steps=4), dict(l2=0.05, weight_decay=0.1, grad_clip=0.05),
], ids=["l1", "l2", "weight_decay", "grad_clip", "schedule", "all"])
def test_fast_path_trains_the_plain_paths_weights(settings, untouched):
    fast, plain = _train(True, settings), _train(False, settings)
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    # and the setting did something
    assert any(not torch.allclose(b, c) for b, c in zip(plain.state_dict().values(),
                                                         untouched.state_dict().values()))
    if "l1" in settings or "l2" in settings or "weight_decay" in settings:
        # rows no batch holds move only through the penalty or decay, on both paths
        assert not torch.equal(fast.embeddings[0].weight[30:], untouched.embeddings[0].weight[30:])


@pytest.mark.parametrize("menu", [dict(activation="tanh", pooling="avg"), dict(pooling="kmax", k=2, batch_norm=True),
                                  dict(activation="selu", pooling="l2", weight_norm=True, word_dropout=0.3)],
                         ids=["tanh-avg", "kmax-batch_norm", "selu-l2-weight_norm-word_dropout"])
def test_fast_path_trains_the_plain_paths_weights_under_the_models_menu(menu):
    fast, plain = _train(True, {}, menu), _train(False, {}, menu)
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
