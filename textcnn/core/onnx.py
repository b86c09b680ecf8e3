"""ONNX export and inference shared by the text and image classifiers.

An exported directory is a model directory (`textcnn.core.modeldir`: written as a whole, every
file's SHA-256 in config.json, checked when read) of kind `onnx-classifier`. It holds
`model.onnx` (float32; `model.int8.onnx` beside it when quantized) instead of
`model.safetensors`, and whatever its side needs to turn raw inputs into the graph's input (a
text model's `tokenizer.json` and `labels.json`; an image model's classes, input size and
normalisation in config.json). config.json's `onnx` section names the graph's input and output,
the opset and the files; `task` says which side reads the inputs.

onnx and onnxruntime are an optional extra (`pip install 'textcnn[onnx]'`); without them,
export and loading are a one-line error that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textcnn.core.errors import TextCNNError
from textcnn.core.modeldir import CONFIG, ModelDir, open_model_dir, write_model_dir

KIND = "onnx-classifier"  # config.json's kind of an exported model
ONNX_FILE = "model.onnx"  # the float32 graph
INT8_FILE = "model.int8.onnx"  # the dynamically quantized graph (--quantize int8)
OPSET = 18  # ONNX opset of the exported graphs (17 or newer is asked of them)
QUANTIZE = ("int8",)  # what --quantize takes
INSTALL = "pip install 'textcnn[onnx]'"


def require_onnx(what: str) -> None:
    """Check that onnx and onnxruntime import; else a one-line `TextCNNError` naming `what` and
    how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise TextCNNError(f"{what}: needs the onnx and onnxruntime packages ({err.name} is "
                           f"missing); install them with {INSTALL}") from None


def export_graph(module: Any, example: Any, path: str | os.PathLike, *, input_name: str,
                 dynamic_axes: Mapping[int, str], opset: int = OPSET) -> Path:
    """Write `module` (a torch module, switched to eval mode) as an ONNX graph at `path`: one
    input `input_name` shaped like `example`, whose `dynamic_axes` (axis -> name) take any size,
    and one output `logits` whose first axis follows the input's.

    The TorchScript exporter is used: it writes one self-contained file in about a second,
    where the torch.export-based one takes about ten and splits large weights into a second
    file. Models whose Python code checks shapes (`max_over_time`) trace to the same graph."""
    import torch

    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # the exporter's deprecation notice and the tracer's remarks on shape checks
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[input_name],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={input_name: dict(dynamic_axes), "logits": {0: dynamic_axes[0]}})
    return Path(path)


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike, *,
                  op_types: Sequence[str]) -> Path:
    """onnxruntime's dynamic int8 quantization of the graph at `source` into `target`: the
    weights of `op_types` nodes (e.g. Gather, the embedding lookup, and Gemm) are stored as int8
    with a float scale per tensor; activations are quantized on the fly where an op runs in
    int8."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime logs a suggestion to pre-process every time; the graphs are already simple
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(op_types))
    finally:
        logger.setLevel(level)
    return Path(target)


def write_onnx_dir(path: str | os.PathLike, *, config: Mapping[str, Any], export: Callable[[Path], object],
                   quantize: str | None, int8_ops: Sequence[str], opset: int,
                   input_name: str, input_dtype: str,
                   files: Mapping[str, str | Callable[[Path], object]] | None = None) -> Path:
    """Write an exported directory as a whole (see the module docstring): `export(path)` writes
    the float32 graph, `quantize` ('int8' or None) adds its quantized copy, `files` the side's
    own files; `config` (its side's config.json fields, with `task`) gets kind, the onnx section
    and the checksums. An existing model directory there is replaced, anything else refused."""
    if quantize is not None and quantize not in QUANTIZE:
        raise TextCNNError(f"--quantize: expected one of {', '.join(QUANTIZE)}, got {quantize!r}")
    _check_not_a_model(Path(path))
    onnx_files: dict[str, str | Callable[[Path], object]] = {ONNX_FILE: export}
    if quantize == "int8":
        # written after model.onnx, from it (write_model_dir writes files in order)
        onnx_files[INT8_FILE] = lambda target: quantize_int8(target.with_name(ONNX_FILE), target,
                                                             op_types=int8_ops)
    section = {"opset": opset, "input": input_name, "input_dtype": input_dtype, "output": "logits",
               "files": {"float32": ONNX_FILE, **({"int8": INT8_FILE} if quantize else {})}}
    full = {**config, "kind": KIND, "onnx": section}
    return write_model_dir(path, config=full, state=None, files={**onnx_files, **(files or {})})


def _check_not_a_model(target: Path) -> None:
    """Refuse to write an export over a model directory that is not an export (the model being
    exported, say): only an older export is replaced."""
    try:
        kind = json.loads((target / CONFIG).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return  # no model directory there (write_model_dir refuses any other non-empty folder)
    if kind != KIND:
        raise TextCNNError(f"{target}: expected an empty folder or an older export to replace, got "
                           f"a model directory of kind {kind!r}; choose another --out")


def copier(model_dir: ModelDir, name: str) -> Callable[[Path], object]:
    """A `files` entry that copies file `name` of `model_dir` (checked against its checksum)."""
    source = model_dir.file(name)
    return lambda target: shutil.copyfile(source, target)


def open_onnx_dir(path: str | os.PathLike) -> ModelDir:
    """Read and check the config.json of an exported directory (its kind, the onnx section and
    the checksum of model.onnx); errors are one line naming the file."""
    model_dir = open_model_dir(path, kind=KIND, keys=("task", "onnx"), weights=ONNX_FILE)
    section = model_dir.get("onnx", dict)
    for key in ("input", "output", "files"):
        if key not in section:
            raise TextCNNError(f"{model_dir.config_file}: expected onnx.{key}, found none")
    return model_dir


class OnnxGraph:
    """An onnxruntime session over one graph of an exported directory, its checksum checked."""

    def __init__(self, model_dir: ModelDir, *, int8: bool = False, threads: int | None = None) -> None:
        require_onnx(str(model_dir.path))
        import onnxruntime as ort

        section = model_dir.get("onnx", dict)
        name = section["files"].get("int8" if int8 else "float32")
        if name is None:
            raise TextCNNError(f"{model_dir.path}: expected an int8 graph ({INT8_FILE}), found "
                               "none; export with --quantize int8")
        path = model_dir.file(name)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad graph
            raise TextCNNError(f"{path}: expected an ONNX graph onnxruntime can run, got: "
                               f"{' '.join(str(err).split())[:300]}") from None
        self.input_name, self.output_name = section["input"], section["output"]
        self.path = path

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """The graph's logits for one batch of inputs."""
        return self.session.run([self.output_name], {self.input_name: inputs})[0]


__all__ = ["INT8_FILE", "KIND", "ONNX_FILE", "OPSET", "QUANTIZE", "OnnxGraph", "copier",
           "export_graph", "open_onnx_dir", "quantize_int8", "require_onnx",
           "write_onnx_dir"]
