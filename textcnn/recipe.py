"""The text recipe: YAML sections mapped onto typed configs, and how a recipe becomes a model."""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from textcnn.core.config import (
    check_encoding,
    check_literals,
    check_number,
    field_comments,
    settings_of,
    shown,
    typed_recipe,
    with_settings_of,
)
from textcnn.core.engine import TrainConfig, check_selection_metric
from textcnn.core.errors import TextCNNError
from textcnn.core.metrics import SELECTION_METRICS
from textcnn.model import KimCNNConfig
from textcnn.tokenizer import DEFAULT_MAX_TOKENS, DEFAULT_TRUNCATION, Truncation

# Padded tokens per training batch: a budget, not a tuning. Kim's 50 sentences are far below it; 50
# documents of up to DEFAULT_MAX_TOKENS fit it, and a batch of longer ones (truncation none) holds
# fewer, so its memory stays near 150 MB (2-3 KB per padded token on the fast CPU path: one batch
# of 32,000 tokens raised the peak RSS by 96 MB, one of 64,000 by 131 MB; tests/text/test_document_memory.py).
DEFAULT_BATCH_TOKENS = 50_000


@dataclass
class DataSection:
    """Where the examples come from."""

    train: str | None = None  # training data: a file or a hub dataset name (or use `dataset`)
    dev: str | None = None  # dev data for model selection; None holds out model.dev_fraction of train
    test: str | None = None  # test data, evaluated once after training, never used for selection
    format: str | None = None  # kim, sst, csv, tsv, json, jsonl, parquet, hub or folders; None: guessed
    text_column: str = "text"  # text column of table formats
    label_column: str = "label"  # label column of table formats
    split: str = "train"  # split of a hub dataset used for `train`
    dataset: str | None = None  # a Kim (2014) benchmark (mr, subj, trec, sst1, sst2, cr, mpqa) or 20ng
    data_dir: str | None = None  # benchmark files; default $TEXTCNN_DATA_DIR, else data/kim2014 (20ng: $TEXTCNN_20NG_DIR, else data/20ng)
    sst_dir: str | None = None  # SST trees; default $TEXTCNN_SST_DIR, else <data_dir>/../sst
    fold: int = 0  # which fold of a cross-validated benchmark is the test fold
    folds: int = 10  # folds of a cross-validated benchmark
    split_seed: int | None = None  # seed of the stratified CV folds; None: train.seed
    phrases: bool = False  # SST: also train on every labelled phrase of the training trees
    encoding: str | None = None  # text encoding of document files (folders, 20ng); None: utf-8 (20ng: latin-1)
    label_separator: str | None = None  # multi-label CSV/TSV: the labels of a text joined by this, e.g. '|'
    weight_column: str | None = None  # table formats: a column of per-text loss weights in train (sample_weight)

    def __post_init__(self) -> None:
        for key in ("text_column", "label_column", "split"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise TextCNNError(f"data.{key}: expected a name, got {shown(getattr(self, key))}")
        check_number("data.fold", self.fold, low=0, integer=True)
        check_number("data.folds", self.folds, low=2, integer=True)
        check_number("data.split_seed", self.split_seed, low=0, high=2**32 - 1, integer=True, optional=True)
        if self.encoding is not None:
            check_encoding("data.encoding", self.encoding)
        for key in ("label_separator", "weight_column"):
            if getattr(self, key) is not None and (not isinstance(getattr(self, key), str) or not getattr(self, key)):
                raise TextCNNError(f"data.{key}: expected a non-empty string or null, got {shown(getattr(self, key))}")
        if self.weight_column is not None and self.dataset:
            raise TextCNNError(f"data.weight_column: expected null with data.dataset (a benchmark's files have "
                               f"no columns), got {shown(self.weight_column)}")


@dataclass
class TokenizerSection:
    """The word-level vocabulary."""

    min_frequency: int = 1  # words seen fewer times in training become [UNK]
    max_size: int | None = None  # keep at most this many words (most frequent first)
    lowercase: bool = True  # Kim lowercases every dataset but TREC
    max_tokens: int | None = DEFAULT_MAX_TOKENS  # longer texts are cut to this many tokens (training and prediction); None (null): no cap
    truncation: Truncation = DEFAULT_TRUNCATION  # which tokens a longer text keeps: head, tail, head+tail; none with max_tokens null

    def __post_init__(self) -> None:
        check_literals(self, "tokenizer")
        check_number("tokenizer.min_frequency", self.min_frequency, low=1, integer=True)
        check_number("tokenizer.max_size", self.max_size, low=1, integer=True, optional=True)
        check_number("tokenizer.max_tokens", self.max_tokens, low=1, integer=True, optional=True)
        # a cap needs a side to keep and keeping every token needs no cap: neither key is ever ignored
        if self.max_tokens is None and self.truncation != "none":
            raise TextCNNError(f"tokenizer.truncation: expected none with tokenizer.max_tokens null (every "
                               f"token kept), got {shown(self.truncation)}")
        if self.max_tokens is not None and self.truncation == "none":
            raise TextCNNError(f"tokenizer.max_tokens: expected null with tokenizer.truncation none (every "
                               f"token kept), got {shown(self.max_tokens)}")


@dataclass
class EmbeddingsSection:
    """Pretrained vectors for the static, non-static and multichannel variants."""

    path: str | None = None  # vectors file, HF checkpoint dir, 'minilm' or 'word2vec' (in-domain)
    word2vec_epochs: int = 25  # epochs of in-domain word2vec training
    allow_pickle: bool = False  # read a gensim .kv file (a pickle, which can run code): only if trusted

    def __post_init__(self) -> None:
        check_number("embeddings.word2vec_epochs", self.word2vec_epochs, low=1, integer=True)


@dataclass
@with_settings_of(KimCNNConfig, after="arch")
class ModelSection:
    """Kim's CNN and its loss (or a scikit-learn baseline in its place). The CNN's shape (variant,
    widths, maps, dropout, max_norm, embedding_dim) is `KimCNNConfig`'s settings, declared there."""

    arch: Literal["kim-cnn", "tfidf-logreg", "nbsvm", "fasttext"] = "kim-cnn"  # the CNN, or a baseline (fasttext: if installed)
    dev_fraction: float = 0.1  # share of train held out for selection when there is no dev data
    class_weight: str | dict[str | int, float] | None = None  # None (null), 'balanced' or {label: weight}
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    multi_label: bool = False  # sigmoid outputs with binary cross-entropy
    threshold: float = 0.5  # multi-label decision threshold
    fast: bool = True  # bucketing, sparse updates, projection tables; false: the plain reference path

    def __post_init__(self) -> None:
        check_literals(self, "model")
        KimCNNConfig.check_settings(self)
        check_number("model.dev_fraction", self.dev_fraction, low=0, high=1, high_open=True)
        check_number("model.label_smoothing", self.label_smoothing, low=0, high=1, high_open=True)
        check_number("model.threshold", self.threshold, low=0, high=1)
        weights = self.class_weight
        if isinstance(weights, dict):
            for label, weight in weights.items():
                check_number(f"model.class_weight.{label}", weight, low=0, low_open=True)
        elif weights not in (None, "balanced"):
            raise TextCNNError(f"model.class_weight: expected null, 'balanced' or a mapping "
                               f"{{label: weight}}, got {shown(weights)}")
        if not self.multi_label and self.threshold != type(self).threshold:
            raise TextCNNError(f"model.threshold: used with model.multi_label only (each label's "
                               f"decision threshold), got {shown(self.threshold)} without it")
        if self.multi_label:
            # binary cross-entropy per label: neither option has a meaning there
            for key, plain in (("label_smoothing", 0.0), ("class_weight", None)):
                if getattr(self, key) != plain:
                    raise TextCNNError(f"model.{key}: expected {plain!r} with model.multi_label (binary "
                                       f"cross-entropy per label), got {shown(getattr(self, key))}")

    def kim_config(self, **internal: Any) -> KimCNNConfig:
        """`KimCNNConfig` with this section's settings and the fields `internal` gives (vocab_size,
        num_classes, pad_id, sparse; embedding_dim where pretrained vectors bring theirs)."""
        return KimCNNConfig(**{**{f.name: getattr(self, f.name) for f in settings_of(KimCNNConfig)},
                               **internal})


@dataclass
class TextTrainConfig(TrainConfig):
    """How a text model trains: the engine's settings (`TrainConfig`), the batches' token budget
    and the settings of the text model alone."""

    max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS  # padded tokens (texts x longest) per training batch at most; None (null): train.batch_size alone
    tune_thresholds: bool = False  # multi-label: each label's threshold chosen on dev data (best F1), kept with the model

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("train.max_batch_tokens", self.max_batch_tokens, low=1, integer=True, optional=True)
        if not isinstance(self.tune_thresholds, bool):
            raise TextCNNError(f"train.tune_thresholds: expected true or false, got {shown(self.tune_thresholds)}")


@dataclass
class TextRecipe:
    """A whole text-classification run."""

    task: Literal["text"] = "text"  # what the recipe trains
    name: str | None = None  # run name; default: the recipe file's stem
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    embeddings: EmbeddingsSection = field(default_factory=EmbeddingsSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TextTrainConfig = field(default_factory=TextTrainConfig)

    def __post_init__(self) -> None:
        check_selection_metric(self.train, SELECTION_METRICS)
        if self.train.tune_thresholds and not self.model.multi_label:
            raise TextCNNError("train.tune_thresholds: used with model.multi_label only (a threshold per "
                               "label), got true without it")
        if self.data.label_separator is not None and not self.model.multi_label:
            raise TextCNNError(f"data.label_separator: used with model.multi_label only (several labels "
                               f"per text), got {shown(self.data.label_separator)} without it")
        if self.model.arch == "kim-cnn" and self.model.variant != "rand" and self.embeddings.path is None:
            raise TextCNNError(f"embeddings.path: variant '{self.model.variant}' needs pretrained vectors: "
                               "a vectors file, a checkpoint directory, 'minilm' or 'word2vec'; got none")

    def estimator_params(self) -> dict[str, Any]:
        """The `TextCNNClassifier` keyword arguments this recipe describes."""
        return {p.name: _as_param(getattr(getattr(self, p.section), p.key)) for p in estimator_parameters()}


# -- the estimator's parameters: the settings of these sections -------------------------------------

ESTIMATOR_SECTIONS: dict[str, type] = {"model": ModelSection, "tokenizer": TokenizerSection,
                                       "embeddings": EmbeddingsSection, "train": TextTrainConfig}
"""The recipe sections whose settings are `TextCNNClassifier`'s parameters, in this order."""
RECIPE_ONLY = ("model.arch",)  # the estimator is the CNN; a recipe may train a baseline instead
# The estimator's names where scikit-learn's usual ones differ from the recipe key, and its one
# other default: an estimator is quiet unless asked (recipes show a progress bar).
ESTIMATOR_NAMES = {"embeddings.path": "vectors", "tokenizer.max_size": "max_vocab",
                   "train.progress": "verbose"}
ESTIMATOR_DEFAULTS = {"verbose": False}


@dataclass(frozen=True)
class EstimatorParameter:
    """One `TextCNNClassifier` parameter and the recipe setting it stands for."""

    name: str  # the keyword argument
    section: str | None  # the recipe section of its setting (ESTIMATOR_SECTIONS); None: the estimator's own
    key: str | None  # the setting's field in that section
    default: Any  # the setting's default (a list as a tuple: estimator defaults are immutable)
    annotation: Any  # the setting's type (a list's as a sequence)
    comment: str  # the setting's one-line comment


@functools.cache
def estimator_parameters() -> tuple[EstimatorParameter, ...]:
    """Every `TextCNNClassifier` parameter but `out_dir`, derived from the sections' fields:
    a setting added to a section (or to `KimCNNConfig`) is a parameter at once."""
    params = []
    for section, cls in ESTIMATOR_SECTIONS.items():
        hints, comments = typing.get_type_hints(cls), field_comments(cls)
        for f in settings_of(cls):
            key = f"{section}.{f.name}"
            if key in RECIPE_ONLY:
                continue
            name = ESTIMATOR_NAMES.get(key, f.name)
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            annotation = hints[f.name]
            if typing.get_origin(annotation) is list:
                annotation = Sequence[typing.get_args(annotation)]
            params.append(EstimatorParameter(name, section, f.name, ESTIMATOR_DEFAULTS.get(name, _as_param(default)),
                                             annotation, comments[f.name]))
    return tuple(params)


def _as_param(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def recipe_from_estimator_params(params: dict[str, Any]) -> TextRecipe:
    """The recipe `TextCNNClassifier(**params)` stands for (default data section), built and so
    checked by the sections' `__post_init__`: a bad parameter raises the recipe's one-line error."""
    values: dict[str, dict[str, Any]] = {section: {} for section in ESTIMATOR_SECTIONS}
    for p in estimator_parameters():
        if p.name in params:
            value = params[p.name]
            if isinstance(p.default, tuple) and not isinstance(value, (str, bytes)):
                try:
                    value = list(value)  # a recipe holds a list
                except TypeError:
                    pass  # not a sequence: the section names it
            values[p.section][p.key] = value
    return TextRecipe(**{section: cls(**values[section]) for section, cls in ESTIMATOR_SECTIONS.items()})


def text_recipe(data: dict[str, Any], *, source: str | Path = "recipe") -> TextRecipe:
    """Check plain recipe data against `TextRecipe`; errors name the file and the key."""
    return typed_recipe(TextRecipe, data, source=source)


def default_data_dir(configured: str | None = None) -> Path:
    """`data_dir` of a recipe, else $TEXTCNN_DATA_DIR, else data/kim2014."""
    return Path(configured or os.environ.get("TEXTCNN_DATA_DIR") or "data/kim2014")
