"""LazyAdadelta against torch.optim.Adadelta: dense gradients, and sparse embedding gradients."""

import torch
from torch import nn

from textcnn.core.lazy_adadelta import LazyAdadelta


def test_dense_matches_torch_adadelta():
    torch.manual_seed(0)
    a = nn.Linear(6, 3)
    b = nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.Adadelta(a.parameters(), lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01)
    lazy = LazyAdadelta(b.parameters(), lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01)
    for _ in range(10):
        x = torch.randn(4, 6)
        for model, opt in ((a, ref), (b, lazy)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_sparse_rows_match_dense_adadelta_over_many_steps():
    torch.manual_seed(0)
    vocab, dim = 20, 5
    dense = nn.Embedding(vocab, dim, padding_idx=0)
    sparse = nn.Embedding(vocab, dim, padding_idx=0, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    ref = torch.optim.Adadelta(dense.parameters(), lr=1.0, rho=0.9, eps=1e-6)
    lazy = LazyAdadelta(sparse.parameters(), lr=1.0, rho=0.9, eps=1e-6)
    target = torch.randn(dim)
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        # a few rows per step, so most rows skip many steps between touches
        ids = torch.randint(0, vocab, (3, 2), generator=gen)
        for emb, opt in ((dense, ref), (sparse, lazy)):
            opt.zero_grad()
            (emb(ids) - target).pow(2).sum().backward()
            opt.step()
        assert sparse.weight.grad.is_sparse
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-5, atol=1e-6)
    sq, acc = lazy.dense_state(sparse.weight)
    torch.testing.assert_close(sq, ref.state[dense.weight]["square_avg"], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(acc, ref.state[dense.weight]["acc_delta"], rtol=1e-5, atol=1e-9)
