"""Optimizers by name: the right torch class and defaults; updates against hand-written rules."""

from __future__ import annotations

import pytest
import torch

from textcnn.core.errors import TextCNNError
from textcnn.core.lazy_adadelta import LazyAdadelta
from textcnn.core.optim import OPTIMIZER_DEFAULTS, create_optimizer, list_optimizers

# name -> (class, the settings the lecture gives it)
EXPECTED = {
    "sgd": (torch.optim.SGD, {"lr": 0.01, "momentum": 0, "nesterov": False}),
    "momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": False}),
    "nesterov": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.01}),
    "adadelta": (torch.optim.Adadelta, {"lr": 1.0, "rho": 0.95, "eps": 1e-6}),
    # the same rule, sparse-capable (tests/core/test_lazy_adadelta.py)
    "lazy_adadelta": (LazyAdadelta, {"lr": 1.0, "rho": 0.95, "eps": 1e-6}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3, "alpha": 0.9}),
    "adam": (torch.optim.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3}),
}


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_name_builds_the_class_with_defaults(name: str) -> None:
    cls, settings = EXPECTED[name]
    optimizer = create_optimizer(name, _params())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    for key, value in {**settings, "weight_decay": 0.0}.items():
        assert group[key] == value, key


def test_listing_and_table_agree() -> None:
    assert list_optimizers() == sorted(EXPECTED)
    assert set(OPTIMIZER_DEFAULTS) == set(EXPECTED)


def test_overrides_and_class_pass_through() -> None:
    group = create_optimizer(
        "Momentum", _params(), lr=0.1, weight_decay=1e-4, momentum=0.5
    ).param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.1, 1e-4, 0.5)
    adam = create_optimizer(torch.optim.Adam, _params(), lr=0.02, betas=(0.8, 0.9))
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["betas"] == (0.8, 0.9)


def test_bad_names_options_and_values() -> None:
    with pytest.raises(TextCNNError, match="unknown optimizer 'adm' \\(did you mean 'adam'\\?\\)"):
        create_optimizer("adm", _params())
    with pytest.raises(TextCNNError, match="optimizer 'sgd': unknown option 'beta'"):
        create_optimizer("sgd", _params(), beta=0.9)
    with pytest.raises(TextCNNError, match="optimizer 'adam': .*learning rate"):
        create_optimizer("adam", _params(), lr=-1.0)


def test_one_sgd_step_is_w_minus_lr_grad() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    optimizer = create_optimizer("sgd", [w])
    loss = (w**3).sum()
    loss.backward()
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    expected -= 0.01 * 3 * expected**2
    optimizer.step()
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)


# f(w) = 1/2 w^T A w - b^T w, so grad f = A w - b.
A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
B = torch.tensor([1.0, -1.0], dtype=torch.float64)
W0 = torch.tensor([2.0, 2.0], dtype=torch.float64)


def _grad(w: torch.Tensor) -> torch.Tensor:
    return A @ w - B


def _torch_trajectory(name: str, steps: int) -> list[torch.Tensor]:
    w = torch.nn.Parameter(W0.clone())
    optimizer = create_optimizer(name, [w], lr=0.1)
    out = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * w @ A @ w - B @ w).backward()
        optimizer.step()
        out.append(w.detach().clone())
    return out


def test_momentum_matches_lecture_recurrence() -> None:
    # CS231n: v = mu*v - lr*dx; x += v
    lr, mu, x, v, out = 0.1, 0.9, W0.clone(), torch.zeros(2, dtype=torch.float64), []
    for _ in range(6):
        v = mu * v - lr * _grad(x)
        x = x + v
        out.append(x)
    for got, expected in zip(_torch_trajectory("momentum", 6), out, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_nesterov_matches_lecture_recurrence() -> None:
    # CS231n's Nesterov in the look-ahead variable: v_prev = v; v = mu*v - lr*dx;
    # x += -mu*v_prev + (1 + mu)*v
    lr, mu, x, v, out = 0.1, 0.9, W0.clone(), torch.zeros(2, dtype=torch.float64), []
    for _ in range(6):
        v_prev = v
        v = mu * v - lr * _grad(x)
        x = x - mu * v_prev + (1 + mu) * v
        out.append(x)
    for got, expected in zip(_torch_trajectory("nesterov", 6), out, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
