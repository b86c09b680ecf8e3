"""Vision test fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Use `count` torch threads inside the block, then restore the setting (training changes it
    globally through TrainConfig.threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Vision tests run on one torch thread: the tensors are tiny, so a second thread gains
    nothing, and on a loaded machine OpenMP's waiting between threads made single forward passes
    30-100x slower."""
    with torch_threads(1):
        yield
