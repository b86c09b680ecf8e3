"""An image classifier outside this package's torch process: its ONNX export and the scoring of
images with the exported graph.

The graph takes normalised pixels: float32 [batch, channels, height, width] at the model's input
size, after `vision.pipeline.prepare` (channels, resize, the training set's mean and std), and
returns float32 logits [batch, classes]; the batch size is free. Detectors are not exported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textcnn.core.decisions import probabilities
from textcnn.core.errors import TextCNNError
from textcnn.core.modeldir import ModelDir, open_model_dir
from textcnn.core.onnx import (
    OPSET,
    OnnxGraph,
    copier,
    export_graph,
    require_onnx,
    write_onnx_dir,
)
from vision.pipeline import (
    INFERENCE_BATCH,
    KIND,
    image_tensor,
    load_image_model,
    prepare,
    saved_classes,
)

# What `--quantize int8` stores as int8: every convolution and linear layer's weights.
INT8_OPS = ("Conv", "Gemm", "MatMul")
_CONFIG_KEYS = ("model", "kwargs", "num_classes", "in_channels", "classes", "input_size", "normalize", "data")


def export_image_model(model_dir: str | os.PathLike, out: str | os.PathLike, *,
                       quantize: str | None = None, opset: int = OPSET) -> Path:
    """Export the image classifier of model directory `model_dir` as an ONNX directory `out`
    (model.onnx, and model.int8.onnx with `quantize='int8'`, with the classes, input size and
    normalisation in config.json). Returns `out`."""
    require_onnx("export")
    source = open_model_dir(model_dir, kind=KIND, keys=("model", "kwargs", "in_channels"))
    model, meta = load_image_model(model_dir)  # checks every file of the model
    example = torch.zeros(2, *meta["input_size"])
    files = {name: copier(source, name) for name in ("metrics.json", "recipe.yaml")
             if name in source.config.get("sha256", {})}
    config = {"task": "image", "source_kind": KIND, **{k: meta[k] for k in _CONFIG_KEYS if k in meta}}
    return write_onnx_dir(out, config=config, quantize=quantize, int8_ops=INT8_OPS, opset=opset,
                          export=lambda path: export_graph(model, example, path, input_name="pixels",
                                                           dynamic_axes={0: "batch"}, opset=opset),
                          input_name="pixels", input_dtype="float32", files=files)


class OnnxImageScorer:
    """Class probabilities of images from an exported image model (see `textcnn.onnx`)."""

    def __init__(self, model_dir: ModelDir, *, int8: bool = False, threads: int | None = None) -> None:
        self.meta = model_dir.config
        self.classes = np.asarray(saved_classes(model_dir), dtype=object)
        size, norm = model_dir.get("input_size", list), model_dir.get("normalize", dict)
        if len(size) != 3 or not all(isinstance(norm.get(k), list) and len(norm[k]) == size[0]
                                     for k in ("mean", "std")):
            raise TextCNNError(f"{model_dir.config_file}: expected 'input_size' [channels, height, "
                               f"width] and 'normalize' with a mean and std per channel, got "
                               f"{size} and {str(norm)[:80]}")
        self.multi_label, self.threshold = False, 0.5
        self.graph = OnnxGraph(model_dir, int8=int8, threads=threads)

    def pixels(self, images: Sequence[Any]) -> np.ndarray:
        """Images (files, their bytes, or arrays; see `vision.pipeline.image_tensor`) as the
        graph's input: normalised float32 [N, C, H, W]."""
        if not images:
            return np.zeros((0, *self.meta["input_size"]), dtype=np.float32)
        return torch.cat([prepare(image_tensor(image), self.meta) for image in images]).numpy()

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """Softmax probabilities [n_images, n_classes], INFERENCE_BATCH images at a time."""
        images = list(images)
        out = np.zeros((len(images), len(self.classes)), dtype=np.float32)
        for start in range(0, len(images), INFERENCE_BATCH):
            chunk = images[start:start + INFERENCE_BATCH]
            out[start:start + len(chunk)] = probabilities(self.graph(self.pixels(chunk)))
        return out


__all__ = ["INT8_OPS", "OnnxImageScorer", "export_image_model"]
