"""A text classifier outside this package's torch process: its ONNX export and the scoring of
raw texts with the exported graph.

The graph is Kim's CNN as `KimCNN.forward` computes it: int64 token ids [batch, length] (any
batch, any length >= 1, right-padded with the pad id) -> float32 logits [batch, classes]; texts
are tokenized by the saved `tokenizer.json` (Hugging Face `tokenizers`) and padded to at least
one token, as `TextCNNClassifier.predict_proba` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from textcnn.batching import pad_batch, token_budget_batches
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
from textcnn.estimator.classifier import TextCNNClassifier, _as_texts
from textcnn.estimator.inference import INFERENCE_BATCH, INFERENCE_TOKENS
from textcnn.estimator.saving import (
    KIND,
    LABELS,
    TOKENIZER,
    read_thresholds,
    read_tokenizer_and_labels,
)
from textcnn.model import KimCNNConfig

# What `--quantize int8` stores as int8: the embedding tables (Gather), almost all of the file.
# The convolutions stay float32: onnxruntime's dynamic int8 convolution (ConvInteger) runs about
# three times slower than the float one on a CPU (docs/deploy.md).
INT8_OPS = ("Gather",)
# k-max pooling keeps the first of tied values, which ReLU's zeros make common, and ONNX's TopK
# need not choose the same ones; it also pads a text shorter than k by a test the trace would fix
EXPORTED_POOLINGS = ("max", "avg", "l2")


def export_text_model(model_dir: str | os.PathLike, out: str | os.PathLike, *,
                      quantize: str | None = None, opset: int = OPSET) -> Path:
    """Export the Kim CNN of text model directory `model_dir` as an ONNX directory `out`
    (model.onnx, and model.int8.onnx with `quantize='int8'`, beside tokenizer.json, labels.json
    and the model's configuration). Returns `out`."""
    require_onnx("export")
    import torch

    source = open_model_dir(model_dir, kind=KIND, keys=("model", "params"))
    clf = TextCNNClassifier.load(model_dir)  # checks every file of the model
    cfg = clf.model_config_
    if cfg.pooling not in EXPORTED_POOLINGS:
        raise TextCNNError(f"{model_dir}: pooling {cfg.pooling!r} is not exported to ONNX (only "
                           f"{', '.join(EXPORTED_POOLINGS)} pooling are); serve the torch model instead")
    # any id but padding, in a batch of two texts longer than the widest filter
    token = (cfg.pad_id + 1) % cfg.vocab_size
    example = torch.full((2, max(cfg.widths) + 2), token, dtype=torch.long)
    files = {TOKENIZER: copier(source, TOKENIZER), LABELS: copier(source, LABELS)}
    for extra in ("metrics.json", "recipe.yaml"):
        if extra in source.config.get("sha256", {}):
            files[extra] = copier(source, extra)
    config = {"task": "text", "source_kind": KIND, "model": source.config["model"],
              "params": source.config["params"]}
    if clf.thresholds_ is not None:  # a multi-label model's thresholds tuned on dev data
        config["thresholds"] = [float(t) for t in clf.thresholds_]
    return write_onnx_dir(out, config=config, quantize=quantize, int8_ops=INT8_OPS, opset=opset,
                          export=lambda path: export_graph(clf.model_, example, path, input_name="ids",
                                                           dynamic_axes={0: "batch", 1: "length"},
                                                           opset=opset),
                          input_name="ids", input_dtype="int64", files=files)


class OnnxTextScorer:
    """Class probabilities of raw texts from an exported text model (see `textcnn.onnx`)."""

    def __init__(self, model_dir: ModelDir, *, int8: bool = False, threads: int | None = None) -> None:
        cfg = model_dir.build(lambda: KimCNNConfig(**model_dir.get("model", dict)))
        params = model_dir.get("params", dict)
        self.tokenizer, self.label_map = read_tokenizer_and_labels(model_dir, cfg)
        self.classes = self.label_map.as_array()
        self.multi_label = bool(params.get("multi_label", False))
        # a multi-label model's decision threshold: one per label where they were tuned on dev data
        tuned = read_thresholds(model_dir, labels=len(self.classes))
        self.threshold: float | np.ndarray = float(params.get("threshold", 0.5)) if tuned is None else tuned
        # the length policy the model was trained with (absent in models from before it: no cut)
        self.max_tokens, self.truncation = params.get("max_tokens"), params.get("truncation", "none")
        self.pad_id = cfg.pad_id
        self.graph = OnnxGraph(model_dir, int8=int8, threads=threads)

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Probabilities [n_texts, n_classes] (softmax, or sigmoid for multi-label), in batches of
        at most INFERENCE_TOKENS padded tokens, as the torch model predicts them."""
        ids = self.tokenizer.encode_batch(_as_texts(texts, "X"), max_tokens=self.max_tokens,
                                          truncation=self.truncation)
        out = np.zeros((len(ids), len(self.classes)), dtype=np.float32)
        for idx in token_budget_batches([len(s) for s in ids], max_tokens=INFERENCE_TOKENS,
                                        max_count=INFERENCE_BATCH):
            batch = pad_batch([ids[i] for i in idx], pad_id=self.pad_id).numpy()
            out[idx] = probabilities(self.graph(batch), multi_label=self.multi_label)
        return out


__all__ = ["EXPORTED_POOLINGS", "INT8_OPS", "OnnxTextScorer", "export_text_model"]
