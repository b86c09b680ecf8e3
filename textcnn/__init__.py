"""textcnn: Kim (2014) sentence CNNs on a shared CNN core.

    from textcnn import TextCNNClassifier
    clf = TextCNNClassifier(epochs=10).fit(texts, labels)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["TextCNNClassifier", "TextCNNError", "load", "__version__"]

if TYPE_CHECKING:
    from textcnn.core.errors import TextCNNError
    from textcnn.estimator import TextCNNClassifier


def __getattr__(name: str) -> Any:
    # Lazy, so that `textcnn --help` and the core do not pay for torch/datasets at import time.
    if name == "TextCNNClassifier":
        from textcnn.estimator import TextCNNClassifier

        return TextCNNClassifier
    if name == "TextCNNError":  # its home is textcnn.core.errors
        from textcnn.core.errors import TextCNNError

        return TextCNNError
    raise AttributeError(f"module 'textcnn' has no attribute '{name}'")


def load(path: str) -> TextCNNClassifier:
    """Load a saved model directory, e.g. `textcnn.load("runs/quickstart/model")`."""
    from textcnn.pipeline import load_model

    return load_model(path)
