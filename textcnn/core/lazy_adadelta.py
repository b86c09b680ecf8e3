"""Adadelta (Zeiler 2012) that also takes sparse gradients, updating only the rows they touch.

For a parameter row whose gradient is zero, dense Adadelta changes nothing but its two running
averages, which both shrink by `rho`:

    E[g^2] <- rho E[g^2] + (1 - rho) 0^2        update = -lr sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * 0 = 0
    E[dx^2] <- rho E[dx^2] + (1 - rho) 0^2

So a row untouched for k steps needs only its averages multiplied by rho^k, which can wait until
the row is touched again. With a sparse embedding gradient (a mini-batch touches a few hundred of
tens of thousands of words) this is the same optimizer as dense Adadelta, as Kim used it, at a
fraction of the cost. `tests/core/test_lazy_adadelta.py` checks it against `torch.optim.Adadelta`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class LazyAdadelta(torch.optim.Optimizer):
    """Adadelta for dense and sparse gradients; identical to `torch.optim.Adadelta` on dense ones."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0,
                 rho: float = 0.95, eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        if lr < 0 or not 0.0 <= rho <= 1.0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"invalid Adadelta settings: lr={lr}, rho={rho}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps, wd = group["lr"], group["rho"], group["eps"], group["weight_decay"]
            dense: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["acc_delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                if p.grad.is_sparse and not wd:
                    self._sparse_step(p, state, lr, rho, eps)
                else:
                    # Weight decay moves every row, so that step is dense Adadelta, exactly.
                    self._catch_up(p, state, rho)
                    grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
                    grad = grad if not wd else grad.add(p, alpha=wd)
                    dense.append((p, grad, state["square_avg"], state["acc_delta"]))
            if dense:  # every dense parameter of the group in one multi-tensor update
                _adadelta_rows(*(list(column) for column in zip(*dense)), lr, rho, eps)
        return loss

    @staticmethod
    def _catch_up(p: Tensor, state: dict[str, Any], rho: float) -> None:
        """Before a dense step: bring the averages of rows that earlier sparse steps skipped up to
        date (each shrinks by rho per skipped step), so dense and sparse steps can mix."""
        last = state.pop("last_step", None)
        if last is None:
            return
        missed = (state["step"] - 1 - last).to(p.dtype)
        decay = torch.pow(torch.as_tensor(rho, dtype=p.dtype, device=p.device), missed)
        decay = decay.view(-1, *([1] * (p.dim() - 1)))
        state["square_avg"].mul_(decay)
        state["acc_delta"].mul_(decay)

    @staticmethod
    def _sparse_step(p: Tensor, state: dict[str, Any], lr: float, rho: float, eps: float) -> None:
        grad = p.grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        if "last_step" not in state:
            # the step at which each row's averages were last brought up to date: every row was,
            # by the previous step (a dense one, or none yet)
            state["last_step"] = torch.full((p.shape[0],), state["step"] - 1, dtype=torch.long,
                                            device=p.device)
        last = state["last_step"]
        # index_select / index_copy_ rather than p[rows]: the same rows, several times faster on CPU
        missed = (state["step"] - 1 - last.index_select(0, rows)).to(p.dtype)
        decay = torch.pow(torch.as_tensor(rho, dtype=p.dtype, device=p.device), missed)
        decay = decay.view(-1, *([1] * (p.dim() - 1)))
        sq = state["square_avg"].index_select(0, rows).mul_(decay)
        acc = state["acc_delta"].index_select(0, rows).mul_(decay)
        param = p.index_select(0, rows)
        _adadelta_rows(param, values, sq, acc, lr, rho, eps)
        p.index_copy_(0, rows, param)
        state["square_avg"].index_copy_(0, rows, sq)
        state["acc_delta"].index_copy_(0, rows, acc)
        last.index_fill_(0, rows, state["step"])

    def dense_state(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """The running averages of `p` as dense Adadelta would hold them now (for tests)."""
        state = self.state[p]
        if "last_step" not in state:
            return state["square_avg"], state["acc_delta"]
        missed = (state["step"] - state["last_step"]).to(p.dtype)
        decay = torch.pow(torch.as_tensor(state_rho(self, p), dtype=p.dtype), missed)
        decay = decay.view(-1, *([1] * (p.dim() - 1)))
        return state["square_avg"] * decay, state["acc_delta"] * decay


def state_rho(optimizer: torch.optim.Optimizer, p: Tensor) -> float:
    """The `rho` of the parameter group holding `p`."""
    return next(g["rho"] for g in optimizer.param_groups if any(q is p for q in g["params"]))


def _adadelta_rows(param: Tensor | list[Tensor], grad: Tensor | list[Tensor],
                   square_avg: Tensor | list[Tensor], acc_delta: Tensor | list[Tensor], lr: float,
                   rho: float, eps: float) -> None:
    """One Adadelta update, in place, in the same order of operations as torch's; on one tensor
    each, or on lists of tensors at once (torch's multi-tensor `_foreach` kernels)."""
    if isinstance(param, Tensor):
        param, grad, square_avg, acc_delta = [param], [grad], [square_avg], [acc_delta]
    torch._foreach_mul_(square_avg, rho)
    torch._foreach_addcmul_(square_avg, grad, grad, value=1 - rho)
    std = torch._foreach_add(square_avg, eps)
    torch._foreach_sqrt_(std)
    delta = torch._foreach_add(acc_delta, eps)
    torch._foreach_sqrt_(delta)
    torch._foreach_div_(delta, std)
    torch._foreach_mul_(delta, grad)
    torch._foreach_mul_(acc_delta, rho)
    torch._foreach_addcmul_(acc_delta, delta, delta, value=1 - rho)
    torch._foreach_add_(param, delta, alpha=-lr)
