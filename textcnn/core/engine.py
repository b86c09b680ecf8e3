"""One training engine for text and images.

The engine owns the loop: epochs and mini-batches, the device, mixed precision and (optionally)
CUDA graphs of the step on CUDA, the optimizer, L1/L2 penalties, per-epoch dev evaluation,
selection of the best epoch by a named dev metric, early stopping, seeding, a tqdm progress bar,
per-epoch JSONL metrics and resumable checkpoints. The model side supplies three callables: the
batches of an epoch, the loss of a batch, and the dev metrics of the model.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from textcnn.core import distributed
from textcnn.core.checkpoint import load_checkpoint, save_checkpoint
from textcnn.core.config import check_literals, check_number, shown
from textcnn.core.cuda_graphs import StepGraphs
from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.io import append_jsonl, atomic_write_text
from textcnn.core.optim import OPTIMIZER_DEFAULTS, create_optimizer
from textcnn.core.regularization import EarlyStopping, clip_grad_norm_, l1_penalty, l2_penalty

Batch = Any
Metrics = dict[str, float]
StopReason = Literal["epochs", "patience", "time"]


@dataclass
class TrainConfig:
    """How to train; defaults follow Kim (2014)."""

    epochs: int = 25  # passes over the training data
    batch_size: int = 50  # examples per mini-batch
    optimizer: str = "adadelta"  # a name from textcnn.core.optim.list_optimizers()
    lr: float | None = None  # learning rate; None keeps the optimizer's default (Adadelta: 1.0)
    weight_decay: float = 0.0  # the optimizer's own L2 weight decay
    l1: float = 0.0  # coefficient of sum |w| added to the loss
    l2: float = 0.0  # coefficient of sum w^2 added to the loss
    metric: str = "accuracy"  # dev metric that picks the best epoch (accuracy, macro_f1, loss; map_50)
    mode: Literal["max", "min"] = "max"  # the metric's better direction: max, or min for loss
    patience: int | None = None  # epochs without dev improvement before stopping; None: run all
    seed: int = 0  # seeds Python, NumPy and torch; the same seed on CPU repeats a run exactly
    device: str = "auto"  # auto (CUDA when present, else CPU), cpu, cuda or cuda:N
    amp: bool = True  # bfloat16 autocast on CUDA (and bfloat16 products where a model's CPU path has them)
    progress: bool = True  # show a tqdm progress bar
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    max_seconds: float | None = None  # time budget: an epoch starts only if it should end within it
    lr_schedule: Literal["constant", "cosine"] = "constant"  # constant, or cosine: decay to 0 over the planned steps
    warmup_steps: int = 0  # linear learning-rate warm-up over the first steps
    grad_clip: float | None = None  # clip the gradients' global L2 norm to this value
    cuda_graphs: bool = False  # CUDA: replay each batch shape's training step as a CUDA graph
    sync_batchnorm: bool = False  # under torchrun: batch-norm statistics over all ranks' shares of a batch

    def __post_init__(self) -> None:
        check_literals(self, "train")
        check_number("train.epochs", self.epochs, low=1, integer=True)
        check_number("train.batch_size", self.batch_size, low=1, integer=True)
        if not isinstance(self.optimizer, str) or \
                self.optimizer.lower().replace("-", "_") not in OPTIMIZER_DEFAULTS:
            raise TextCNNError(f"train.optimizer: expected one of {', '.join(sorted(OPTIMIZER_DEFAULTS))}, "
                               f"got {shown(self.optimizer)}{did_you_mean(str(self.optimizer), OPTIMIZER_DEFAULTS)}")
        check_number("train.lr", self.lr, low=0, low_open=True, optional=True)
        for key in ("weight_decay", "l1", "l2"):
            check_number(f"train.{key}", getattr(self, key), low=0)
        if not isinstance(self.metric, str) or not self.metric:
            raise TextCNNError(f"train.metric: expected the name of a dev metric, got {shown(self.metric)}")
        check_number("train.patience", self.patience, low=1, integer=True, optional=True)
        check_number("train.seed", self.seed, low=0, high=2**32 - 1, integer=True)
        check_device(self.device)
        check_number("train.threads", self.threads, low=1, integer=True, optional=True)
        check_number("train.max_seconds", self.max_seconds, low=0, low_open=True, optional=True)
        check_number("train.warmup_steps", self.warmup_steps, low=0, integer=True)
        check_number("train.grad_clip", self.grad_clip, low=0, low_open=True, optional=True)


def check_selection_metric(config: TrainConfig, available: dict[str, str]) -> None:
    """`config.metric` must be one of the dev metrics a task computes, `available` (name -> the
    direction that is better), and `config.mode` that direction: a recipe never means to select
    its worst epoch."""
    metric, mode = config.metric, config.mode
    if metric not in available:
        raise TextCNNError(f"train.metric: expected one of {', '.join(available)}, got {shown(metric)}"
                           f"{did_you_mean(str(metric), available)}")
    if mode != available[metric]:
        better = "larger" if available[metric] == "max" else "smaller"
        raise TextCNNError(f"train.mode: expected '{available[metric]}' for metric '{metric}' "
                           f"({better} is better), got {shown(mode)}")


def check_device(device: Any, key: str = "train.device") -> None:
    """`device` must be auto, cpu, cuda or cuda:N (whether CUDA is present is checked when
    training starts, by `resolve_device`)."""
    ok = isinstance(device, str)
    if ok and device != "auto":
        try:
            ok = torch.device(device).type in ("cpu", "cuda")
        except (RuntimeError, ValueError):
            ok = False
    if not ok:
        raise TextCNNError(f"{key}: expected auto, cpu, cuda or cuda:N, got {shown(device)}")


@dataclass
class FitResult:
    """What a training run produced."""

    best_epoch: int  # 1-based epoch whose weights the model holds now (0: none finished)
    best_metrics: Metrics  # dev metrics of that epoch
    epochs_run: int  # epochs completed, including those before a resume
    seconds: float  # wall time of the training loop, summed over resumed parts
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    stopped_by: StopReason = "epochs"  # epochs: all ran; patience: early stopping; time: max_seconds


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` means CUDA when present, else CPU; under a launcher (torchrun), `cuda` is the
    rank's own GPU, `cuda:LOCAL_RANK`."""
    if device == "auto":
        return distributed.local_cuda_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TextCNNError(f"device: expected an available device, got '{device}' (no CUDA here)")
    return distributed.local_cuda_device(dev)


def uses_autocast(amp: bool, device: torch.device) -> bool:
    """The engine's mixed-precision rule: bfloat16 autocast with `amp` on CUDA, never on CPU."""
    return amp and device.type == "cuda"


def autocast_precision(amp: bool, device: torch.device) -> str:
    """The precision of training's matrix products under `uses_autocast`, as results record it."""
    return "bfloat16" if uses_autocast(amp, device) else "float32"


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively: CUDA, or a CPU with AVX-512 BF16
    or AMX (elsewhere bf16 products are emulated and slower than float32)."""
    if device.type == "cuda":
        return True
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(getattr(cpu, name, lambda: False)() for name in checks)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor inside a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_pos": random.getstate()[2], "numpy": torch.from_numpy(np.random.get_state()[1].copy()),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy(), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


GradSync = Literal["ddp", "allreduce"]


class Trainer:
    """Train `model` with `loss_fn` over `batches`, select on `evaluate`, checkpoint to `out_dir`.

    - `batches(epoch, generator)` yields the mini-batches of one epoch; shuffle with `generator`,
      which is seeded from the config seed and the epoch, so a resumed run repeats the same order.
      Or, instead, `plan(epoch, generator)` lists the epoch's batches as example indices and
      `collate(indices, generator)` makes one batch of them: the form data-parallel training
      needs, where each rank takes its share of every batch (`textcnn.core.distributed.shard`).
    - `loss_fn(model, batch)` returns the scalar training loss of a batch (already on the device).
    - `evaluate(model, device)` returns dev metrics; it must contain `config.metric`. Without it,
      the last epoch is kept.
    - `after_step(model)` runs after every optimizer step (Kim's max-norm constraint goes here).
    - `penalized` are the parameters the L1/L2 penalties apply to (default: all weights of
      dimension > 1, i.e. not biases).
    - `grad_sync` says how the ranks of a distributed run (torchrun) average their gradients:
      `ddp`, DistributedDataParallel, when `loss_fn` calls the model (`model(...)`; it then gets
      the DDP wrapper) and every parameter takes part in each step; `allreduce`, after backward,
      when `loss_fn` calls the model's parts or some parameters sit out a step.

    Under torchrun every rank runs the same loop; rank 0 alone reads and writes `out_dir`
    (resumed state reaches the others by broadcast), evaluates on the dev data and decides when
    to stop, and its decisions are broadcast, so every rank stops at the same epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        config: TrainConfig,
        loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
        batches: Callable[[int, torch.Generator], Iterable[Batch]] | None = None,
        evaluate: Callable[[nn.Module, torch.device], Metrics] | None = None,
        after_step: Callable[[nn.Module], None] | None = None,
        out_dir: str | Path | None = None,
        param_groups: list[dict[str, Any]] | None = None,
        penalized: list[nn.Parameter] | None = None,
        steps_per_epoch: int | None = None,
        plan: Callable[[int, torch.Generator], Sequence[Sequence[int]]] | None = None,
        collate: Callable[[Sequence[int], torch.Generator], Batch] | None = None,
        grad_sync: GradSync = "ddp",
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        if (batches is None) == (plan is None) or (plan is None) != (collate is None):
            raise ValueError("Trainer: expected either batches, or plan and collate")
        if grad_sync not in ("ddp", "allreduce"):
            raise ValueError(f"Trainer: grad_sync expected 'ddp' or 'allreduce', got {grad_sync!r}")
        self.distributed = distributed.join_process_group(self.device)
        self.rank, self.world = distributed.rank_and_size() if self.distributed else (0, 1)
        if self.distributed:
            self._check_distributable(model, plan, config)
            if config.sync_batchnorm:
                model = distributed.convert_sync_batchnorm(model, self.device)
        elif config.sync_batchnorm:
            warnings.warn("train.sync_batchnorm: one process trains on the whole batch, so there is "
                          "nothing to synchronise; it acts under torchrun or --nproc", stacklevel=2)
        self.grad_sync = grad_sync
        self.ddp: nn.Module | None = None  # the DistributedDataParallel wrapper, made by `fit`
        self.model = model.to(self.device)
        self.loss_fn, self.batches, self.evaluate, self.after_step = loss_fn, batches, evaluate, after_step
        self.plan, self.collate = plan, collate
        # only rank 0 touches the run folder: the other ranks may not even see it (other nodes)
        self.out_dir = Path(out_dir) if out_dir is not None and self.rank == 0 else None
        params = param_groups or [p for p in model.parameters() if p.requires_grad]
        self.graphed = config.cuda_graphs and self.device.type == "cuda"
        if config.cuda_graphs and self.distributed:
            raise TextCNNError("train.cuda_graphs: expected false under torchrun (a recorded step "
                               "cannot hold the ranks' gradient exchange), got true")
        if config.cuda_graphs and not self.graphed:
            warnings.warn(f"train.cuda_graphs: CUDA graphs need a CUDA device; training on "
                          f"{self.device} runs without them", stacklevel=2)
        self.optimizer = create_optimizer(config.optimizer, params, lr=config.lr,
                                          weight_decay=config.weight_decay, capturable=self.graphed)
        self.penalized = penalized if penalized is not None else [
            p for p in model.parameters() if p.requires_grad and p.dim() > 1]
        self.steps_per_epoch = steps_per_epoch
        self.step_graphs: StepGraphs | None = None  # made on the first epoch when `graphed`
        self.stopper = EarlyStopping(config.metric, mode=config.mode,
                                     patience=config.patience if config.patience is not None else 10**9)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        if (config.lr_schedule != "constant" or config.warmup_steps) and not steps_per_epoch:
            raise TextCNNError("train.lr_schedule / train.warmup_steps: a schedule needs the steps "
                               "per epoch, which this training loop does not give; use constant, 0")
        if self.graphed and (config.lr_schedule != "constant" or config.warmup_steps):
            # a recorded step holds the learning rate it was recorded with
            raise TextCNNError(f"train.cuda_graphs: expected a constant learning rate (lr_schedule "
                               f"constant, warmup_steps 0), got lr_schedule {config.lr_schedule}, "
                               f"warmup_steps {config.warmup_steps}")

    def _check_distributable(self, model: nn.Module, plan: Any, config: TrainConfig) -> None:
        """The one-line refusals of a distributed run this loop cannot serve."""
        if plan is None:
            raise TextCNNError("distributed training: this training loop gives whole batches, not "
                               "a plan of example indices the ranks can share; run it in one process")
        if config.sync_batchnorm and not distributed.count_batchnorms(model):
            warnings.warn("train.sync_batchnorm: the model has no batch norm, so there is nothing "
                          "to synchronise", stacklevel=3)

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at global step `step` (0-based): warm-up, then the schedule.

        A pure function of the step, so a resumed run continues the schedule exactly.
        """
        cfg = self.config
        factor = 1.0
        if cfg.lr_schedule == "cosine":
            total = max(1, cfg.epochs * (self.steps_per_epoch or 1))
            factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if cfg.warmup_steps and step < cfg.warmup_steps:
            factor *= (step + 1) / cfg.warmup_steps
        return factor

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self, epoch: int, history: list[dict[str, Any]], seconds: float,
               best_state: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        return {"epoch": epoch, "history": history, "seconds": seconds,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "stopper": self.stopper.state_dict(), "rng": _rng_state(),
                "best_model": best_state}

    def _resume(self) -> dict[str, Any] | None:
        state = load_checkpoint(self.out_dir / "checkpoint" / "last") if self.out_dir is not None else None
        if self.distributed:  # rank 0's checkpoint, on every rank
            state = distributed.broadcast_state(state, device=self.device)
        if state is None:
            return None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stopper.load_state_dict(state["stopper"])
        _set_rng_state(state["rng"])
        return state

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Run the epochs (resuming from `out_dir/checkpoint/last.safetensors` when present).

        The result says what ended the run (`stopped_by`): all epochs, early stopping
        (`patience`) or the time budget (`max_seconds`)."""
        cfg = self.config
        threads_before = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads_before)

    def _fit(self) -> FitResult:
        cfg = self.config
        seed_everything(cfg.seed)
        history: list[dict[str, Any]] = []
        seconds, start_epoch, best_state = 0.0, 1, None
        resumed = self._resume()
        if resumed is not None:
            history, seconds = resumed["history"], resumed["seconds"]
            start_epoch, best_state = resumed["epoch"] + 1, resumed["best_model"]
        if self.out_dir is not None:
            self._rewrite_log(history)
        if self.distributed and self.grad_sync == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        use_amp = uses_autocast(cfg.amp, self.device)
        stopped_by: StopReason = "epochs"
        for epoch in range(start_epoch, cfg.epochs + 1):
            if self.stopper.should_stop:
                stopped_by = "patience"
                break
            if cfg.max_seconds is not None and history:
                # judged by the mean epoch so far, so the budget is kept, not overrun by an epoch;
                # rank 0's clock decides for every rank
                if distributed.broadcast_flag(seconds + seconds / len(history) > cfg.max_seconds,
                                              device=self.device):
                    stopped_by = "time"
                    break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(epoch, use_amp)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            if self.evaluate is not None:
                metrics = None
                if self.rank == 0:  # the other ranks take rank 0's figures: the same decisions
                    self.model.eval()
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                        metrics = self.evaluate(self.model, self.device)
                metrics = distributed.broadcast_json(metrics) if self.distributed else metrics
                record.update({f"dev_{k}": v for k, v in metrics.items()})
                improved = self.stopper.step(metrics, epoch=epoch)
            else:
                improved = True
            if improved:
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            seconds += time.perf_counter() - t0
            record["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(record)
            if self.out_dir is not None:
                append_jsonl(self.out_dir / "metrics.jsonl", record)
                save_checkpoint(self.out_dir / "checkpoint" / "last",
                                self._state(epoch, history, seconds, best_state))
        if best_state is not None:
            self.model.load_state_dict(best_state)
        best_epoch = self.stopper.best_epoch if self.evaluate is not None else len(history)
        best_metrics = next((
            {k[4:]: v for k, v in r.items() if k.startswith("dev_")}
            for r in history if r["epoch"] == best_epoch), {})
        return FitResult(best_epoch=best_epoch or 0, best_metrics=best_metrics,
                         epochs_run=len(history), seconds=seconds, history=history,
                         stopped_by=stopped_by)

    def _epoch_batches(self, epoch: int, generator: torch.Generator) -> Iterable[tuple[Batch, float]]:
        """The epoch's batches with the weight of their loss: all of each batch in one process,
        this rank's share under torchrun (the plan is the same on every rank: the same seed)."""
        if self.plan is None:
            return ((batch, 1.0) for batch in self.batches(epoch, generator))
        if self.distributed:
            # dropout and augmentation draw differently on each rank, yet a resumed run repeats them
            seed_everything(self.config.seed * 100_003 + epoch + 7_919 * self.rank)
        plan = self.plan(epoch, generator)
        shares = (distributed.shard(indices, rank=self.rank, world=self.world) for indices in plan)
        return ((self.collate(part, generator), weight) for part, weight in shares)

    def _train_epoch(self, epoch: int, use_amp: bool) -> float:
        cfg = self.config
        self.model.train()
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        total, count = torch.zeros((), device=self.device), 0
        bar = tqdm(self._epoch_batches(epoch, generator), total=self.steps_per_epoch,
                   desc=f"epoch {epoch}/{cfg.epochs}", disable=not cfg.progress or self.rank != 0,
                   leave=False, unit="batch")
        scheduled = self.config.lr_schedule != "constant" or self.config.warmup_steps > 0
        step = (epoch - 1) * (self.steps_per_epoch or 0)
        if self.graphed and self.step_graphs is None:
            self.step_graphs = StepGraphs(
                functools.partial(self._step, use_amp=use_amp, autocast_cache=False),
                on_capture_failure=lambda: self.optimizer.zero_grad(set_to_none=True),
                stream=torch.cuda.Stream(device=self.device))
        for batch, weight in bar:
            if scheduled:
                factor = self.lr_factor(step + count)
                for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                    group["lr"] = base * factor
            batch = to_device(batch, self.device)
            if self.step_graphs is not None:
                total += self.step_graphs(batch)
            else:  # summed on the device: no host sync
                total += self._step(batch, use_amp=use_amp, weight=weight)
            count += 1
            if self.distributed and count == 1 and epoch == 1:
                distributed.check_ranks_agree(self.model)  # a path whose gradients escape DDP fails at once
            if cfg.progress and count % 20 == 0 and self.rank == 0:
                bar.set_postfix(loss=f"{float(total) / count:.4f}")
        if self.distributed:  # the weighted shares' losses add up to the batches' mean losses
            total = distributed.all_reduce_sum(total) / self.world
            distributed.check_ranks_agree(self.model)
        mean = float(total) / count if count else math.nan
        if count and not math.isfinite(mean):
            kept = (f"; the checkpoint after epoch {epoch - 1} is kept in {self.out_dir / 'checkpoint'}"
                    if epoch > 1 and self.out_dir is not None else "")
            raise TextCNNError(f"epoch {epoch}: the training loss became {mean}{kept}; try a lower "
                               f"learning rate (train.lr, now {self.base_lrs[0]:g})")
        return mean

    def _step(self, batch: Batch, *, use_amp: bool, autocast_cache: bool = True,
              weight: float = 1.0) -> torch.Tensor:
        """One optimizer step on a batch already on the device; returns the detached loss
        (times `weight`, this rank's share of the batch under torchrun: see `_epoch_batches`).

        Gradients are dropped first, so a step recorded into a CUDA graph writes them afresh.
        """
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp, cache_enabled=autocast_cache):
            loss = self.loss_fn(self.ddp if self.ddp is not None else self.model, batch)
        if cfg.l1:
            loss = loss + cfg.l1 * l1_penalty(self.penalized)
        if cfg.l2:
            loss = loss + cfg.l2 * l2_penalty(self.penalized)
        if weight != 1.0:
            loss = loss * weight
        loss.backward()
        if self.distributed and self.grad_sync == "allreduce":
            distributed.all_reduce_gradients(self.model.parameters())
        if cfg.grad_clip is not None:
            clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step(self.model)
        return loss.detach()

    def _rewrite_log(self, history: list[dict[str, Any]]) -> None:
        """Make metrics.jsonl agree with the checkpoint (epochs after it were never saved)."""
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write_text(self.out_dir / "metrics.jsonl", text)
