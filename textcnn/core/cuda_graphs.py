"""Whole training steps replayed as CUDA graphs, one graph per batch shape.

A small model at a small batch (Kim's CNN at batch 50) spends most of a CUDA step launching a few
hundred tiny kernels from Python, not running them. A CUDA graph records those launches once and
replays them with one call. A graph holds fixed tensor shapes and addresses, so `StepGraphs`
keeps one graph per batch shape, with static input buffers that each batch is copied into; the
data side keeps the number of shapes small (e.g. sentence lengths padded to a multiple of 8).

What a recorded step must satisfy (the engine's Kim step does): no host synchronisation and no
data-dependent shapes inside it, a constant learning rate (a Python float is recorded as a
constant), and an optimizer that can run under capture (`capturable=True` where torch asks for
it). Dropout inside a graph draws fresh random numbers at every replay.

The first `warmup` batches of each shape run eagerly, on the capture stream, as ordinary training
steps (lazy initialisation, such as optimizer state and library workspaces, must happen before a
capture). When a capture fails (an operation that synchronises, as some kernels do only above a
size), that shape trains eagerly from then on; the others keep their graphs. The first failure
warns.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

Batch = Any


class Replayable(Protocol):
    """A recorded step: `replay()` runs it again on the tensors it was recorded with."""

    def replay(self) -> None: ...


def batch_tensors(batch: Batch) -> list[torch.Tensor]:
    """The tensors inside a (nested) batch, in a fixed order."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, dict):
        return [t for key in sorted(batch) for t in batch_tensors(batch[key])]
    if isinstance(batch, (list, tuple)):
        return [t for item in batch for t in batch_tensors(item)]
    return []


def batch_signature(batch: Batch) -> tuple[Any, ...]:
    """What a graph of `batch` depends on: every tensor's shape, dtype and device."""
    return tuple((tuple(t.shape), t.dtype, t.device) for t in batch_tensors(batch))


def clone_batch(batch: Batch) -> Batch:
    """A copy of `batch` with every tensor cloned (the static buffers of a graph)."""
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, dict):
        return {k: clone_batch(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(clone_batch(v) for v in batch)
    return batch


def capture_cuda_graph(step: Callable[[Batch], torch.Tensor], static_batch: Batch,
                       stream: torch.cuda.Stream) -> tuple[Replayable, torch.Tensor]:
    """Record `step(static_batch)` into a CUDA graph on `stream`; returns it and its output."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        output = step(static_batch)
    return graph, output


class StepGraphs:
    """Run `step(batch) -> loss` through one recorded graph per batch signature.

    `step` must start by dropping the gradients (`zero_grad(set_to_none=True)`), so that a
    recorded backward writes fresh gradients rather than adding to old ones. `on_capture_failure`
    runs after a failed capture (e.g. to drop gradients the partial capture left behind).
    `capture` is injectable so the bookkeeping can be tested without a GPU.
    """

    def __init__(self, step: Callable[[Batch], torch.Tensor], *, warmup: int = 1,
                 on_capture_failure: Callable[[], None] | None = None,
                 capture: Callable[..., tuple[Replayable, torch.Tensor]] = capture_cuda_graph,
                 stream: torch.cuda.Stream | None = None) -> None:
        self.step = step
        self.warmup = warmup
        self.on_capture_failure = on_capture_failure
        self.capture = capture
        if stream is None and torch.cuda.is_available():
            stream = torch.cuda.Stream()
        self.stream = stream  # None: run on the current stream (tests without a GPU)
        self.graphs: dict[tuple[Any, ...], tuple[Batch, Replayable, torch.Tensor]] = {}
        self.eager_runs: Counter[tuple[Any, ...]] = Counter()
        self.failed: dict[tuple[Any, ...], BaseException] = {}  # shapes whose capture failed

    @property
    def captured(self) -> int:
        """How many batch shapes have a graph."""
        return len(self.graphs)

    def __call__(self, batch: Batch) -> torch.Tensor:
        """Train on `batch`; returns its loss (a fresh tensor, safe to keep)."""
        key = batch_signature(batch)
        recorded = self.graphs.get(key)
        if recorded is None and key not in self.failed and self.eager_runs[key] >= self.warmup:
            recorded = self._record(key, batch)
        if recorded is None:
            self.eager_runs[key] += 1
            return self._eager(batch)
        static_batch, graph, static_loss = recorded
        for target, source in zip(batch_tensors(static_batch), batch_tensors(batch)):
            target.copy_(source, non_blocking=True)
        graph.replay()
        return static_loss.clone()

    def _on_stream(self, fn: Callable[[], torch.Tensor], tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Run `fn` on the capture stream, ordered after (and before) the current stream's work."""
        if self.stream is None:
            return fn()
        current = torch.cuda.current_stream(self.stream.device)
        self.stream.wait_stream(current)
        for tensor in tensors:  # their memory must not be reused before the side stream is done
            tensor.record_stream(self.stream)
        with torch.cuda.stream(self.stream):
            result = fn()
        current.wait_stream(self.stream)
        result.record_stream(current)  # made on the side stream, read on the current one
        return result

    def _eager(self, batch: Batch) -> torch.Tensor:
        return self._on_stream(lambda: self.step(batch), batch_tensors(batch))

    def _record(self, key: tuple[Any, ...], batch: Batch) -> tuple[Batch, Replayable, torch.Tensor] | None:
        static_batch = clone_batch(batch)
        try:
            graph, static_loss = self.capture(self.step, static_batch, self.stream)
        except Exception as error:  # noqa: BLE001 - any capture failure falls back to eager steps
            if not self.failed:
                warnings.warn(f"CUDA graph capture failed ({type(error).__name__}: {error}); batches "
                              f"of shape {[s for s, _, _ in key]} train without a graph",
                              RuntimeWarning, stacklevel=3)
            self.failed[key] = error
            if self.on_capture_failure is not None:
                self.on_capture_failure()
            return None
        self.graphs[key] = (static_batch, graph, static_loss)
        return self.graphs[key]
