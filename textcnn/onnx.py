"""Exported models for text and images: `textcnn export` and `OnnxClassifier`.

    textcnn export runs/mr/model --format onnx --out deploy/mr --quantize int8

    from textcnn.onnx import OnnxClassifier
    clf = OnnxClassifier("deploy/mr")              # onnxruntime; int8=True for model.int8.onnx
    clf.predict_proba(["a gripping , funny film"])   # an image model takes files, bytes or arrays

A top-layer module (it knows both sides): the text side exports Kim's CNN and tokenizes
(`textcnn.deploy`), the vision side exports image CNNs and prepares pixels (`vision.deploy`); the
exported directory's format is `textcnn.core.onnx`'s. Detectors are not exported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from textcnn.core.decisions import predicted_labels
from textcnn.core.errors import TextCNNError
from textcnn.core.onnx import OPSET, open_onnx_dir, require_onnx

FORMATS = ("onnx",)  # what `textcnn export --format` takes


def export_model(model_dir: str | os.PathLike, out: str | os.PathLike, *, format: str = "onnx",
                 quantize: str | None = None, opset: int = OPSET) -> Path:
    """Export a saved text or image classifier as an ONNX directory `out` (see
    `textcnn.core.onnx`); `quantize='int8'` adds model.int8.onnx. Returns `out`."""
    from textcnn.tasks import task_for_model

    if format not in FORMATS:
        raise TextCNNError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if not 17 <= opset:
        raise TextCNNError(f"--opset: expected 17 or newer, got {opset}")
    task = task_for_model(model_dir)
    require_onnx("export")
    if task.name == "text":
        from textcnn.deploy import export_text_model

        return export_text_model(model_dir, out, quantize=quantize, opset=opset)
    if task.name == "image":
        from vision.deploy import export_image_model

        return export_image_model(model_dir, out, quantize=quantize, opset=opset)
    raise TextCNNError(f"{model_dir}: expected a text or image classifier, got a detector; "
                       "detectors are not exported (see docs/deploy.md)")


class OnnxClassifier:
    """A text or image classifier exported by `export_model`, run by onnxruntime: the same
    `predict_proba` and `predict` as the torch model (`TextCNNClassifier`, or the image
    pipeline's probabilities), equal to its probabilities to float tolerance.

    Text models take raw texts; image models take image files, their bytes, or arrays [H, W] /
    [H, W, C] (uint8, or floats in [0, 1]). `int8` runs model.int8.onnx (export with
    `--quantize int8`); `threads` sets onnxruntime's threads (default: its own choice)."""

    def __init__(self, path: str | os.PathLike, *, int8: bool = False, threads: int | None = None) -> None:
        require_onnx(str(path))
        model_dir = open_onnx_dir(path)
        self.path = Path(path)
        self.task = model_dir.get("task", str)
        self.int8 = int8
        if self.task == "text":
            from textcnn.deploy import OnnxTextScorer

            self._scorer: Any = OnnxTextScorer(model_dir, int8=int8, threads=threads)
        elif self.task == "image":
            from vision.deploy import OnnxImageScorer

            self._scorer = OnnxImageScorer(model_dir, int8=int8, threads=threads)
        else:
            raise TextCNNError(f"{model_dir.config_file}: expected task 'text' or 'image', got {self.task!r}")
        self.classes_ = self._scorer.classes
        self.multi_label = self._scorer.multi_label
        self.threshold = self._scorer.threshold
        self.config = model_dir.config

    def predict_proba(self, X: Iterable[Any]) -> np.ndarray:
        """Class probabilities [n_inputs, n_classes], columns in the order of `classes_`."""
        if isinstance(X, (str, bytes)):
            raise TextCNNError("X: expected a list of inputs, got a single one")
        return self._scorer.predict_proba(list(X))

    def predict(self, X: Iterable[Any], *, threshold: float | None = None, abstain: Any = None) -> np.ndarray:
        """Labels, as `TextCNNClassifier.predict` gives them: below `threshold` a single-label
        model gives `abstain`; a multi-label model gives a 0/1 matrix over `classes_`."""
        return predicted_labels(self.predict_proba(X), self.classes_, threshold=threshold,
                                abstain=abstain, multi_label=self.multi_label,
                                model_threshold=self.threshold)


__all__ = ["FORMATS", "OnnxClassifier", "export_model"]
