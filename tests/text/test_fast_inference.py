"""The projected (table) inference path agrees with the plain Kim CNN to float tolerance."""

import pytest
import torch

from textcnn.fast_inference import ProjectedKimCNN
from textcnn.model import VARIANTS, KimCNN, KimCNNConfig


@pytest.mark.parametrize("variant", VARIANTS)
def test_projected_logits_equal_plain_logits(variant):
    torch.manual_seed(0)
    cfg = KimCNNConfig(vocab_size=50, num_classes=4, embedding_dim=12, widths=[1, 3, 5], maps=7,
                       variant=variant)
    vectors = None if variant == "rand" else torch.randn(50, 12)
    model = KimCNN(cfg, vectors=vectors)
    with torch.no_grad():  # make the fine-tuned channel differ from the frozen one
        model.embeddings[-1].weight[1:].add_(0.1 * torch.randn(49, 12))
    model.eval()
    fast = ProjectedKimCNN(model)
    gen = torch.Generator().manual_seed(1)
    lengths = [0, 1, 2, 4, 9, 13]
    ids = torch.zeros(len(lengths), 13, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 50, (n,), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), model(ids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.features(ids), model.features(ids), rtol=1e-5, atol=1e-5)


def test_table_size_and_non_relu_refused():
    cfg = KimCNNConfig(vocab_size=10, num_classes=2, embedding_dim=4, widths=[2, 3], maps=5)
    model = KimCNN(cfg)
    fast = ProjectedKimCNN(model)
    assert ProjectedKimCNN.table_bytes(model) == 4 * sum(b.numel() for n, b in fast.named_buffers()
                                                         if n.startswith("table"))
    with pytest.raises(ValueError, match="monotone ReLU"):
        ProjectedKimCNN(KimCNN(KimCNNConfig(vocab_size=10, num_classes=2, embedding_dim=4,
                                            act_layer="tanh")))
