"""A text classifier's model directory: `model.safetensors` (weights), `tokenizer.json`,
`labels.json`, `config.json` (model shape, estimator parameters and, when tuned on dev data, a
multi-label model's `thresholds` per label), `recipe.yaml` (the resolved recipe, when trained
from one) and `metrics.json`. Loading needs no training data and no pickle."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textcnn.core.errors import TextCNNError
from textcnn.core.modeldir import ModelDir, open_model_dir, write_model_dir
from textcnn.data import LabelMap
from textcnn.model import KimCNN, KimCNNConfig
from textcnn.tokenizer import WordTokenizer

if TYPE_CHECKING:
    from textcnn.estimator.classifier import TextCNNClassifier

KIND = "text-classifier"  # config.json's kind of a saved text model
TOKENIZER, LABELS = "tokenizer.json", "labels.json"


def save_classifier(clf: TextCNNClassifier, path: str | Path, *, recipe: str | None = None,
                    metrics: dict | None = None) -> Path:
    """Write `clf`'s model directory (see the package docstring) as a whole, replacing an
    older model there; returns its path."""
    history = getattr(clf, "fit_result_", None)
    all_metrics = {"best_epoch": history.best_epoch, "dev": history.best_metrics,
                   "epochs_run": history.epochs_run, "stopped_by": history.stopped_by,
                   "train_seconds": round(history.seconds, 2),
                   "history": history.history} if history is not None else {}
    all_metrics.update(metrics or {})
    files = {TOKENIZER: lambda tmp: clf.tokenizer_.save(tmp),
             LABELS: json.dumps(clf.label_map_.to_json(), indent=2) + "\n",
             "metrics.json": json.dumps(all_metrics, indent=2) + "\n"}
    if recipe is not None:
        files["recipe.yaml"] = recipe
    # without out_dir: a loaded model must not write into, or resume, this training's folder
    config = {"kind": KIND, "model": asdict(clf.model_config_),
              "params": jsonable_params({k: v for k, v in clf.get_params().items() if k != "out_dir"})}
    if getattr(clf, "thresholds_", None) is not None:  # tuned on dev data, by class id
        config["thresholds"] = [float(t) for t in clf.thresholds_]
    return write_model_dir(path, config=config, state=clf.model_.state_dict(), files=files)


def load_classifier(cls: type[TextCNNClassifier], path: str | Path) -> TextCNNClassifier:
    """Load a model directory written by `save_classifier` as a `cls`; every file is checked
    first (checksums, keys, shapes, labels) and a bad one is a `TextCNNError` naming it. The
    model's `allow_pickle` is always False: a model directory never makes a refit unpickle
    vectors."""
    model_dir = open_model_dir(path, kind=KIND, keys=("model", "params"))
    params = dict(model_dir.get("params", dict))
    params.pop("out_dir", None)  # saved by older versions; never resume another run's folder
    if isinstance(params.get("widths"), list):
        params["widths"] = tuple(params["widths"])
    params["allow_pickle"] = False
    clf = model_dir.build(lambda: cls(**params))
    shape = model_dir.get("model", dict)
    cfg = model_dir.build(lambda: KimCNNConfig(**shape))
    state = model_dir.weights()
    table = state.get("embeddings.0.weight")
    if table is not None and tuple(table.shape) != (cfg.vocab_size, cfg.embedding_dim):
        raise TextCNNError(f"{model_dir.config_file}: expected model.vocab_size and "
                           f"embedding_dim to match the embedding table of model.safetensors "
                           f"{list(table.shape)}, got {cfg.vocab_size} and {cfg.embedding_dim}")
    tokenizer, label_map = read_tokenizer_and_labels(model_dir, cfg)
    model = model_dir.build(lambda: KimCNN(cfg, vectors=torch.zeros(cfg.vocab_size, cfg.embedding_dim)))
    clf.model_config_, clf.model_ = cfg, model_dir.load_into(model, state).eval()
    clf.projected_ = None
    clf.tokenizer_, clf.label_map_ = tokenizer, label_map
    clf.classes_ = label_map.as_array()
    clf.thresholds_ = read_thresholds(model_dir, labels=len(label_map))
    return clf


def read_thresholds(model_dir: ModelDir, *, labels: int) -> np.ndarray | None:
    """A multi-label model's thresholds tuned on dev data (config.json's `thresholds`, one per
    label), or None where it has none; a bad list is a `TextCNNError` naming the file."""
    if "thresholds" not in model_dir.config:
        return None
    tuned = model_dir.get("thresholds", list)
    if len(tuned) != labels or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in tuned):
        raise TextCNNError(f"{model_dir.config_file}: expected 'thresholds' to be {labels} "
                           f"probabilities (one per label), got {str(tuned)[:80]}")
    return np.asarray(tuned, dtype=np.float64)


def read_tokenizer_and_labels(model_dir: ModelDir, cfg: KimCNNConfig) -> tuple[WordTokenizer, LabelMap]:
    """The tokenizer.json and labels.json of a text model directory (or of its export), checked
    against the model's shape in config.json; a bad one is a `TextCNNError` naming it."""
    labels = model_dir.read_json(LABELS)
    try:
        label_map = LabelMap.from_json(labels)
    except TextCNNError as err:
        raise TextCNNError(f"{model_dir.path / LABELS}: {err}") from None
    if len(label_map) != cfg.num_classes:
        raise TextCNNError(f"{model_dir.path / LABELS}: expected {cfg.num_classes} classes "
                           f"(model.num_classes in config.json), got {len(label_map)}")
    tokenizer = WordTokenizer.from_file(model_dir.file(TOKENIZER))
    if tokenizer.vocab_size != cfg.vocab_size:
        raise TextCNNError(f"{model_dir.path / TOKENIZER}: expected {cfg.vocab_size} entries "
                           f"(model.vocab_size in config.json), got {tokenizer.vocab_size}")
    return tokenizer, label_map


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters as JSON holds them (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
