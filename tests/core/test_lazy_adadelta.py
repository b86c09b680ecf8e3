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


def train_both(steps: int, *, weight_decay: float = 0.0, penalty_every: int = 0):
    """One embedding trained by torch's Adadelta (dense gradients) and a copy trained by
    LazyAdadelta (sparse gradients) on the same few rows per step, so most rows skip many steps
    between touches; with `penalty_every`, every such step also adds an L2 penalty on every row
    (a dense gradient). Checks both against each other and returns them."""
    torch.manual_seed(0)
    vocab, dim = 20, 5
    dense = nn.Embedding(vocab, dim, padding_idx=0)
    sparse = nn.Embedding(vocab, dim, padding_idx=0, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    ref = torch.optim.Adadelta(dense.parameters(), lr=1.0, rho=0.9, eps=1e-6, weight_decay=weight_decay)
    lazy = LazyAdadelta(sparse.parameters(), lr=1.0, rho=0.9, eps=1e-6, weight_decay=weight_decay)
    target = torch.randn(dim)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        ids = torch.randint(0, vocab, (3, 2), generator=gen)
        penalised = bool(penalty_every) and step % penalty_every == penalty_every - 1
        for emb, opt in ((dense, ref), (sparse, lazy)):
            opt.zero_grad()
            loss = (emb(ids) - target).pow(2).sum()
            if penalised:
                loss = loss + 0.01 * emb.weight.pow(2).sum()
            loss.backward()
            opt.step()
        assert sparse.weight.grad.is_sparse == (not penalised)
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-5, atol=1e-6)
    sq, acc = lazy.dense_state(sparse.weight)
    torch.testing.assert_close(sq, ref.state[dense.weight]["square_avg"], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(acc, ref.state[dense.weight]["acc_delta"], rtol=1e-5, atol=1e-9)


def test_sparse_rows_match_dense_adadelta_over_many_steps():
    train_both(40)


def test_weight_decay_with_sparse_gradients_is_dense_adadelta():
    # weight decay moves every row each step, so LazyAdadelta takes those steps densely
    train_both(30, weight_decay=0.1)


def test_a_dense_step_after_sparse_ones_catches_the_skipped_rows_up():
    # sparse steps leave untouched rows' averages stale; a dense gradient (here an L2 penalty on
    # every row, every tenth step) must first bring them up to date
    train_both(30, penalty_every=10)
