"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Benchmark data root (holding kim2014/ and sst/): $TEXTCNN_SHARED_DATA, else <repo>/../shared/data."""
    env = os.environ.get("TEXTCNN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data root (holding kim2014/ and sst/); skips the test when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(
            f"benchmark data not found at {root} "
            "(set TEXTCNN_SHARED_DATA to the folder holding kim2014/ and sst/)"
        )
    return root


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: a second torch thread only adds OpenMP waiting (slow on a loaded machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def stream_and_count():
    """A function that runs a prediction stream `predict(model, items, **options)` (e.g.
    `textcnn.pipeline.predict_stream`) and returns all its predictions and how many of `items` it
    had read when it yielded the first."""

    def run(predict_stream, model, items, **options):
        read = []

        def reader():
            for item in items:
                read.append(item)
                yield item

        stream = predict_stream(model, reader(), **options)
        first = next(stream)
        read_at_first = len(read)
        return [first, *stream], read_at_first

    return run
