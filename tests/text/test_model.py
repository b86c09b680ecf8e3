"""Kim's CNN against a brute-force reference, in all four variants."""

import pytest
import torch

from textcnn.model import VARIANTS, KimCNN, KimCNNConfig

V, D = 30, 6


def config(**kw):
    return KimCNNConfig(vocab_size=V, num_classes=3, embedding_dim=D, widths=[2, 3, 5], maps=4,
                        dropout=0.0, **kw)


def vectors():
    return torch.randn(V, D, generator=torch.Generator().manual_seed(1))


def brute_force_features(model: KimCNN, sentence: list[int]) -> torch.Tensor:
    """Kim's recipe written out: pad (h-1) zero vectors each side, every window, ReLU, max."""
    cfg = model.config
    rows = [torch.cat([emb.weight[t] for emb in model.embeddings]) for t in sentence]
    feats = []
    for width, block in zip(cfg.widths, model.convs):
        conv = block[0]
        zero = torch.zeros(cfg.embedding_dim * cfg.channels)
        padded = [zero] * (width - 1) + rows + [zero] * (width - 1)
        best = None
        for start in range(len(padded) - width + 1):
            if not any(width - 1 <= i < width - 1 + len(rows) for i in range(start, start + width)):
                continue  # a window of padding alone (only an empty sentence has one)
            window = torch.stack(padded[start:start + width], dim=1)  # [C*D, width]
            value = torch.relu((conv.weight * window).sum(dim=(1, 2)) + conv.bias)
            best = value if best is None else torch.maximum(best, value)
        feats.append(best if best is not None else torch.zeros(cfg.maps))
    return torch.cat(feats)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_brute_force_and_batch_composition(variant):
    torch.manual_seed(0)
    model = KimCNN(config(variant=variant), vectors=None if variant == "rand" else vectors()).eval()
    sentences = [[5, 6, 7, 8, 9, 10, 11], [3], [4, 9], [12, 13, 14, 2, 2, 17, 18, 19, 20, 21, 22]]
    width = max(len(s) for s in sentences)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in sentences])
    with torch.no_grad():
        batch_feats = model.features(ids)
        for row, sentence in enumerate(sentences):
            expected = brute_force_features(model, sentence)
            torch.testing.assert_close(batch_feats[row], expected, atol=1e-5, rtol=1e-5)
            alone = model.features(torch.tensor([sentence]))
            torch.testing.assert_close(alone[0], batch_feats[row], atol=1e-5, rtol=1e-5)


def test_empty_and_short_inputs():
    model = KimCNN(config()).eval()
    ids = torch.tensor([[0, 0, 0], [7, 0, 0]])  # an empty sentence and one shorter than width 5
    with torch.no_grad():
        logits = model(ids)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert torch.equal(model.features(ids)[0], torch.zeros(12))  # no windows: features are 0
    torch.testing.assert_close(logits[0], model.fc.bias.detach())


def test_variants_freeze_the_right_tables():
    vec = vectors()
    trainable = {v: [e.weight.requires_grad for e in KimCNN(config(variant=v), vectors=vec).embeddings]
                 for v in VARIANTS if v != "rand"}
    assert trainable == {"static": [False], "non-static": [True], "multichannel": [False, True]}
    assert KimCNN(config()).embeddings[0].weight.requires_grad
    for v in ("static", "non-static", "multichannel"):
        model = KimCNN(config(variant=v), vectors=vec)
        for emb in model.embeddings:
            assert torch.equal(emb.weight[1:], vec[1:]) and not emb.weight[0].any()


def test_rand_init_and_errors():
    model = KimCNN(config())
    w = model.embeddings[0].weight[1:]
    assert w.abs().max() <= 0.25 and w.std() > 0.1  # U[-0.25, 0.25] as Kim's code
    with pytest.raises(ValueError, match="needs pretrained vectors"):
        KimCNN(config(variant="static"))
    with pytest.raises(ValueError, match="expected shape"):
        KimCNN(config(variant="static"), vectors=torch.zeros(V, D + 1))
    with pytest.raises(ValueError, match="variant"):
        config(variant="dynamic")


def test_training_step_keeps_pad_zero_and_static_frozen_and_max_norm():
    vec = vectors()
    model = KimCNN(config(variant="multichannel", max_norm=0.1), vectors=vec)
    opt = torch.optim.Adadelta([p for p in model.parameters() if p.requires_grad], rho=0.95, eps=1e-6)
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 2]))
    loss.backward()
    opt.step()
    model.apply_max_norm()
    static, tuned = model.embeddings
    assert torch.equal(static.weight, torch.cat([torch.zeros(1, D), vec[1:]]))
    assert not torch.equal(tuned.weight[3], vec[3]) and not tuned.weight[0].any()
    norms = model.fc.weight.norm(dim=1)
    assert torch.all(norms <= 0.1 + 1e-6)
