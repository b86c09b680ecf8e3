"""The text recipe: YAML sections mapped onto typed configs, and how a recipe becomes a model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from textcnn.core.config import apply_overrides, read_yaml, typed_recipe
from textcnn.core.engine import TrainConfig


@dataclass
class DataSection:
    """Where the examples come from."""

    train: str | None = None  # training data: a file or a hub dataset name (or use `dataset`)
    dev: str | None = None  # dev data for model selection; None holds out model.dev_fraction of train
    test: str | None = None  # test data, evaluated once after training, never used for selection
    format: str | None = None  # kim, sst, csv, tsv, json, jsonl, parquet or hub; None: guessed
    text_column: str = "text"  # text column of table formats
    label_column: str = "label"  # label column of table formats
    split: str = "train"  # split of a hub dataset used for `train`
    dataset: str | None = None  # a Kim (2014) benchmark: mr, subj, trec, sst1, sst2, cr, mpqa
    data_dir: str | None = None  # benchmark files; default $TEXTCNN_DATA_DIR, else data/kim2014
    sst_dir: str | None = None  # SST trees; default $TEXTCNN_SST_DIR, else <data_dir>/../sst
    fold: int = 0  # which fold of a cross-validated benchmark is the test fold
    folds: int = 10  # folds of a cross-validated benchmark
    split_seed: int | None = None  # seed of the stratified CV folds; None: train.seed
    phrases: bool = False  # SST: also train on every labelled phrase of the training trees


@dataclass
class TokenizerSection:
    """The word-level vocabulary."""

    min_frequency: int = 1  # words seen fewer times in training become [UNK]
    max_size: int | None = None  # keep at most this many words (most frequent first)
    lowercase: bool = True  # Kim lowercases every dataset but TREC


@dataclass
class EmbeddingsSection:
    """Pretrained vectors for the static, non-static and multichannel variants."""

    path: str | None = None  # vectors file, HF checkpoint dir, 'minilm' or 'word2vec' (in-domain)
    word2vec_epochs: int = 25  # epochs of in-domain word2vec training
    allow_pickle: bool = False  # read a gensim .kv file (a pickle, which can run code): only if trusted


@dataclass
class ModelSection:
    """Kim's CNN and its loss (or a scikit-learn baseline in its place)."""

    arch: Literal["kim-cnn", "tfidf-logreg", "nbsvm"] = "kim-cnn"  # the CNN, or a baseline
    variant: Literal["rand", "static", "non-static", "multichannel"] = "rand"  # Kim's variants
    widths: list[int] = field(default_factory=lambda: [3, 4, 5])  # filter widths in words
    maps: int = 100  # feature maps per width
    dropout: float = 0.5  # dropout on the pooled features
    max_norm: float | None = 3.0  # l2 max-norm of output weight rows; null turns it off
    embedding_dim: int = 300  # vector size for rand and in-domain word2vec
    dev_fraction: float = 0.1  # share of train held out for selection when there is no dev data
    class_weight: str | dict[str, float] | None = None  # null, 'balanced' or {label: weight}
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    multi_label: bool = False  # sigmoid outputs with binary cross-entropy
    threshold: float = 0.5  # multi-label decision threshold
    fast: bool = True  # bucketing, sparse updates, projection tables; false: the plain reference path


@dataclass
class TextRecipe:
    """A whole text-classification run."""

    task: Literal["text"] = "text"  # what the recipe trains
    name: str | None = None  # run name; default: the recipe file's stem
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    embeddings: EmbeddingsSection = field(default_factory=EmbeddingsSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)

    def estimator_params(self) -> dict[str, Any]:
        """The `TextCNNClassifier` keyword arguments this recipe describes."""
        m, t = self.model, self.train
        return dict(
            variant=m.variant, widths=tuple(m.widths), maps=m.maps, dropout=m.dropout,
            max_norm=m.max_norm, embedding_dim=m.embedding_dim, vectors=self.embeddings.path,
            allow_pickle=self.embeddings.allow_pickle,
            min_frequency=self.tokenizer.min_frequency, max_vocab=self.tokenizer.max_size,
            lowercase=self.tokenizer.lowercase, epochs=t.epochs, batch_size=t.batch_size,
            optimizer=t.optimizer, lr=t.lr, dev_fraction=m.dev_fraction, patience=t.patience,
            class_weight=m.class_weight, label_smoothing=m.label_smoothing,
            multi_label=m.multi_label, threshold=m.threshold,
            word2vec_epochs=self.embeddings.word2vec_epochs, fast=m.fast, amp=t.amp,
            cuda_graphs=t.cuda_graphs, seed=t.seed,
            device=t.device, threads=t.threads, verbose=t.progress)


def load_recipe_dict(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and apply `--set` overrides; the result is still plain data."""
    return apply_overrides(read_yaml(path), overrides)


def text_recipe(data: dict[str, Any], *, source: str | Path = "recipe") -> TextRecipe:
    """Check plain recipe data against `TextRecipe`; errors name the file and the key."""
    return typed_recipe(TextRecipe, data, source=source)


def default_data_dir(configured: str | None = None) -> Path:
    """`data_dir` of a recipe, else $TEXTCNN_DATA_DIR, else data/kim2014."""
    return Path(configured or os.environ.get("TEXTCNN_DATA_DIR") or "data/kim2014")
