"""Data-parallel training over `torch.distributed`: the ranks, their share of each batch, and
what they exchange.

`torchrun --nproc-per-node N -m textcnn train RECIPE` (or `textcnn train RECIPE --nproc N`)
starts N processes with `RANK`, `WORLD_SIZE` and `LOCAL_RANK` set; the engine joins them into one
process group (gloo on CPU, nccl on CUDA) when it starts training. Each epoch's plan, a list of
index batches, is drawn from the same seeded generator on every rank; each batch of the plan is
cut into one contiguous share per rank (`shard`). The global batch is the plan's batch, so a
recipe trains the same number of steps on the same examples as in one process, and averaged
gradients (DistributedDataParallel, or `all_reduce_gradients` for a loss that calls the model's
parts) equal the one-process gradient once each rank's loss is weighted by its share's size.

Only rank 0 reads and writes the run folder; the others get a resumed state from it
(`broadcast_state`, no pickle: tensors and a JSON skeleton as in `textcnn.core.checkpoint`).
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from textcnn.core.checkpoint import join_state, split_state
from textcnn.core.errors import TextCNNError

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_world_size() -> int:
    """How many processes a launcher (torchrun) started for this job: WORLD_SIZE, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise TextCNNError(f"WORLD_SIZE: expected a whole number of processes, got "
                           f"{os.environ['WORLD_SIZE']!r}") from None


def active() -> bool:
    """Whether this process trains as one rank of several (a process group is up)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) in one process. Before the process
    group is up, a launcher's RANK and WORLD_SIZE tell."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0") or 0), launched_world_size()


def is_main_process() -> bool:
    """Rank 0, the one process that writes a run's files (also true in one process)."""
    return rank_and_size()[0] == 0


def local_cuda_device(device: torch.device) -> torch.device:
    """The GPU of this rank: `cuda` (no index) under a launcher is `cuda:LOCAL_RANK`."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def join_process_group(device: torch.device) -> bool:
    """Join the launcher's process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA, or
    $TEXTCNN_DIST_BACKEND: gloo lets ranks share one GPU, which nccl refuses); returns whether
    this process trains as one rank of several."""
    if launched_world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
        if missing:
            raise TextCNNError(f"WORLD_SIZE={os.environ['WORLD_SIZE']}: expected a launcher's "
                               f"{', '.join(missing)} as well (start with torchrun or "
                               "`textcnn train --nproc N`)")
        backend = os.environ.get("TEXTCNN_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")
        if backend not in ("gloo", "nccl") or (backend == "nccl" and device.type != "cuda"):
            raise TextCNNError(f"TEXTCNN_DIST_BACKEND: expected gloo, or nccl on CUDA, got {backend!r} "
                               f"on {device}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        # A process that exits with its group still open can abort in the backend's threads
        # ("terminate called without an active exception"): a Python caller under torchrun that
        # never calls leave_process_group gets it closed at exit, as the CLI closes it.
        atexit.register(leave_process_group)
    return active()


def leave_process_group() -> None:
    """Close this process's process group, if it joined one (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: Sequence[int] | np.ndarray, *, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This rank's share of one batch of the epoch's plan, and the weight of its loss.

    Shares are contiguous and differ in size by one at most. The weight, share size x ranks /
    batch size, makes the ranks' averaged gradient the gradient of the batch's mean loss. A rank
    left without an example (a batch smaller than the ranks) repeats the batch's first with weight
    0: every rank still takes the step, as the collectives need."""
    indices = np.asarray(batch)
    part = np.array_split(indices, world)[rank]
    if len(part) == 0:
        return indices[:1], 0.0
    return part, len(part) * world / len(indices)


def broadcast_json(value: Any, *, src: int = 0) -> Any:
    """`value` (plain JSON data) as rank `src` has it, on every rank."""
    if not active():
        return value
    data = json.dumps(value).encode("utf-8") if dist.get_rank() == src else b""
    size = torch.tensor([len(data)], dtype=torch.long)
    dist.broadcast(size, src)
    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
        torch.empty(int(size), dtype=torch.uint8)
    if int(size):
        dist.broadcast(buffer, src)
    return json.loads(bytes(buffer.tolist()).decode("utf-8")) if int(size) else None


def broadcast_state(state: dict[str, Any] | None, *, device: torch.device, src: int = 0
                    ) -> dict[str, Any] | None:
    """A nested state (model, optimizer, counters; None for none) as rank `src` has it, on every
    rank: the JSON skeleton, then each tensor, moved through `device` (nccl needs CUDA tensors)."""
    if not active():
        return state
    mine = dist.get_rank() == src
    skeleton, tensors = split_state(state) if mine else (None, {})
    header = broadcast_json({"skeleton": skeleton, "tensors": [
        [name, list(t.shape), str(t.dtype).removeprefix("torch.")] for name, t in tensors.items()]}
        if mine else None, src=src)
    received = {}
    for name, shape, dtype in header["tensors"]:
        kind = getattr(torch, dtype)
        # as bytes: the backends move few dtypes (gloo has no uint32, as in NumPy's RNG state)
        if mine:
            buffer = tensors[name].reshape(-1).view(torch.uint8).to(device)
        else:
            size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=kind).element_size()
            buffer = torch.empty(size, dtype=torch.uint8, device=device)
        if buffer.numel():
            dist.broadcast(buffer, src)
        received[name] = buffer.cpu().view(kind).reshape(shape)
    return join_state(header["skeleton"], received)


def broadcast_flag(flag: bool, *, src: int = 0, device: torch.device | None = None) -> bool:
    """Rank `src`'s decision (stop now?) on every rank."""
    if not active():
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(value, src)
    return bool(value.item())


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` over the ranks (in place; the value itself in one process)."""
    if active():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients over the ranks, as DistributedDataParallel would, for a loss that
    calls the model's parts instead of its forward (DDP's hooks would not see those steps).

    Dense and sparse (embedding) gradients alike; a sparse one stays sparse, so an optimizer of
    sparse rows (LazyAdadelta) still updates only the rows some rank touched. A parameter with
    no gradient on this rank takes part with zeros, so every rank calls the same collectives."""
    if not active():
        return
    world = dist.get_world_size()
    dense: list[torch.Tensor] = []
    for p in parameters:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse:
            # gloo sums sparse tensors (nccl has no sparse all-reduce: dense there)
            if dist.get_backend() == "nccl":
                p.grad = p.grad.to_dense()
                dense.append(p.grad)
                continue
            grad = p.grad.coalesce()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            p.grad = (grad / world).coalesce()
        else:
            dense.append(p.grad)
    if dense:  # one flat buffer: a collective per parameter costs more than the copies
        flat = torch.cat([g.reshape(-1) for g in dense])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for g in dense:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def check_ranks_agree(model: nn.Module, *, tolerance: float = 1e-5) -> None:
    """Raise a one-line error when the ranks' weights differ: a gradient that bypassed the
    averaging (e.g. a loss that calls a model's parts under DistributedDataParallel)."""
    if not active():
        return
    with torch.no_grad():
        total = sum((p.double().sum() for p in model.parameters()), torch.zeros((), dtype=torch.float64))
        total = total.reshape(1).to(next(model.parameters()).device)
        low, high = total.clone(), total.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if float(high - low) > tolerance * max(1.0, float(high.abs())):
        raise TextCNNError("distributed training: the ranks' weights differ after a step (sum "
                           f"{float(low):.6g} vs {float(high):.6g}): this training path's "
                           "gradients are not averaged over the ranks")


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover every rank's share of the batch, for the
    gloo backend on CPU (torch's `nn.SyncBatchNorm` runs on GPUs only).

    Mean and variance are sums all-reduced through `torch.distributed.nn`, whose backward
    all-reduces the gradients in turn, so the result and its gradients are those of one batch
    norm over the global batch. In eval mode, or in one process, it is a plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {input.dim()}-d")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not (self.training and active()):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, input.dim())]
        shape = [1, -1, *[1] * (input.dim() - 2)]
        count = all_reduce(torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype,
                                        device=input.device))
        mean = all_reduce(input.sum(dims)) / count
        centred = input - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count  # two passes: stabler than E[x^2] - E[x]^2
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased, momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with each batch norm synchronised over the ranks: `nn.SyncBatchNorm` on CUDA,
    `AllReduceBatchNorm` on CPU; the same parameter and buffer objects and state-dict keys."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        out = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
            out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats, device=device)
            # the same parameter and buffer objects (as torch's conversion): an optimizer or a
            # parameter group made before the conversion still trains them
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                setattr(out, name, tensor)
            out.train(module.training)
        for name, child in module.named_children():
            out.add_module(name, convert(child))
        return out

    return convert(model)


def count_batchnorms(model: nn.Module) -> int:
    """How many batch-norm layers `model` has."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


__all__ = ["AllReduceBatchNorm", "active", "all_reduce_gradients", "all_reduce_sum", "broadcast_flag",
           "broadcast_json", "broadcast_state", "check_ranks_agree", "convert_sync_batchnorm",
           "count_batchnorms", "is_main_process", "join_process_group", "launched_world_size", "leave_process_group",
           "local_cuda_device", "rank_and_size", "shard"]
