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
