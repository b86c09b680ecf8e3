"""Config validation when a recipe loads: every obviously invalid value of a text, image or
detection recipe is one `TextCNNError` line that names the key, what was expected and what came.

The checks live in the config dataclasses' `__post_init__`; the text estimator's `fit` gets the
same messages (tests/text/test_estimator_settings.py)."""

from __future__ import annotations

import pytest

from textcnn.core.config import apply_overrides, check_number, from_dict
from textcnn.core.engine import TrainConfig
from textcnn.core.errors import TextCNNError
from textcnn.recipe import text_recipe
from vision.detection.pipeline import detection_recipe
from vision.pipeline import image_recipe

TEXT = {"data": {"train": "data/sample/train.csv"}}
LOADERS = {"text": (text_recipe, TEXT), "image": (image_recipe, {"task": "image"}),
           "detection": (detection_recipe, {"task": "detection", "train": {}})}

# (kind, --set override, the exact error after the source prefix)
CASES = [
    ("text", "train.epochs=0", "train.epochs: expected an integer >= 1, got 0"),
    ("text", "train.epochs=-3", "train.epochs: expected an integer >= 1, got -3"),
    ("text", "train.batch_size=0", "train.batch_size: expected an integer >= 1, got 0"),
    ("text", "model.maps=0", "model.maps: expected an integer >= 1, got 0"),
    ("text", "model.widths=[]", "model.widths: expected a non-empty list of integers >= 1, got []"),
    ("text", "model.widths=[3,0]", "model.widths: expected a non-empty list of integers >= 1, got [3, 0]"),
    ("text", "model.dropout=1.0", "model.dropout: expected a number in [0, 1), got 1.0"),
    ("text", "model.dropout=-0.1", "model.dropout: expected a number in [0, 1), got -0.1"),
    ("text", "train.lr=.nan", "train.lr: expected a number > 0 or null, got nan"),
    ("text", "train.lr=.inf", "train.lr: expected a number > 0 or null, got inf"),
    ("text", "train.lr=-1", "train.lr: expected a number > 0 or null, got -1.0"),
    ("text", "train.lr=0", "train.lr: expected a number > 0 or null, got 0.0"),
    ("text", "train.optimizer=adm", "train.optimizer: expected one of adadelta, adagrad, adam, adamw, "
                                    "lazy_adadelta, momentum, nesterov, rmsprop, sgd, got 'adm' "
                                    "(did you mean 'adam'?)"),
    ("text", "tokenizer.min_frequency=0", "tokenizer.min_frequency: expected an integer >= 1, got 0"),
    ("text", "tokenizer.max_size=0", "tokenizer.max_size: expected an integer >= 1 or null, got 0"),
    ("text", "model.dev_fraction=1", "model.dev_fraction: expected a number in [0, 1), got 1.0"),
    ("text", "model.dev_fraction=-0.1", "model.dev_fraction: expected a number in [0, 1), got -0.1"),
    ("text", "model.label_smoothing=1", "model.label_smoothing: expected a number in [0, 1), got 1.0"),
    ("text", "model.max_norm=0", "model.max_norm: expected a number > 0 or null, got 0.0"),
    ("text", "model.embedding_dim=0", "model.embedding_dim: expected an integer >= 1, got 0"),
    ("text", "model.class_weight={positive: -1}",
     "model.class_weight.positive: expected a number > 0, got -1.0"),
    ("text", "model.class_weight=even", "model.class_weight: expected null, 'balanced' or a mapping "
                                        "{label: weight}, got 'even'"),
    ("text", "model.threshold=0.3", "model.threshold: used with model.multi_label only (each label's "
                                    "decision threshold), got 0.3 without it"),
    ("text", "model.k=3", "model.k: used with model.pooling kmax only (the values kept per feature map), "
                          "got 3 with pooling 'max'"),
    ("text", "model.activation=relux", "model.activation: expected one of linear, identity, none, sigmoid, "
                                       "softmax, relu, leaky_relu, prelu, selu, tanh, got 'relux'"),
    ("text", "model.word_dropout=1", "model.word_dropout: expected a number in [0, 1), got 1.0"),
    ("text", "train.tune_thresholds=true", "train.tune_thresholds: used with model.multi_label only"),
    ("text", "data.label_separator=;", "data.label_separator: used with model.multi_label only"),
    ("text", "model.variant=static", "embeddings.path: variant 'static' needs pretrained vectors"),
    ("text", "embeddings.word2vec_epochs=0", "embeddings.word2vec_epochs: expected an integer >= 1, got 0"),
    ("text", "train.patience=0", "train.patience: expected an integer >= 1 or null, got 0"),
    ("text", "train.l1=-1", "train.l1: expected a number >= 0, got -1.0"),
    ("text", "train.l2=-0.5", "train.l2: expected a number >= 0, got -0.5"),
    ("text", "train.weight_decay=-1", "train.weight_decay: expected a number >= 0, got -1.0"),
    ("text", "train.grad_clip=0", "train.grad_clip: expected a number > 0 or null, got 0.0"),
    ("text", "train.warmup_steps=-1", "train.warmup_steps: expected an integer >= 0, got -1"),
    ("text", "train.max_seconds=0", "train.max_seconds: expected a number > 0 or null, got 0.0"),
    ("text", "train.threads=0", "train.threads: expected an integer >= 1 or null, got 0"),
    ("text", "train.seed=-1", "train.seed: expected an integer in [0, 4294967295], got -1"),
    ("text", "train.device=gpu", "train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("text", "train.metric=acc", "train.metric: expected one of accuracy, macro_f1, loss, got 'acc'"),
    ("text", "train.metric=map_50", "train.metric: expected one of accuracy, macro_f1, loss, got 'map_50'"),
    ("text", "train.mode=min", "train.mode: expected 'max' for metric 'accuracy' (larger is better), "
                               "got 'min'"),
    ("text", "train.metric=loss", "train.mode: expected 'min' for metric 'loss' (smaller is better), "
                                  "got 'max'"),
    ("text", "data.folds=1", "data.folds: expected an integer >= 2, got 1"),
    ("text", "data.fold=-1", "data.fold: expected an integer >= 0, got -1"),
    ("image", "train.epochs=0", "train.epochs: expected an integer >= 1, got 0"),
    ("image", "train.lr=.nan", "train.lr: expected a number > 0 or null, got nan"),
    ("image", "data.dev_fraction=1", "data.dev_fraction: expected a number in [0, 1), got 1.0"),
    ("image", "data.test_fraction=-0.2", "data.test_fraction: expected a number in [0, 1), got -0.2"),
    ("image", "data.dev_fraction=0.8", "data.dev_fraction: expected dev_fraction + test_fraction < 1"),
    ("image", "data.size=0", "data.size: expected an integer >= 1 or null, got 0"),
    ("image", "data.channels=2", "data.channels: expected 1, 3 or null, got 2"),
    ("image", "data.max_examples=1", "data.max_examples: expected an integer >= 2 or null, got 1"),
    ("image", "model.name=lenet6", "model.name: expected a model from vision.list_models(), got 'lenet6' "
                                   "(did you mean 'lenet5'?)"),
    ("image", "model.label_smoothing=1", "model.label_smoothing: expected a number in [0, 1), got 1.0"),
    ("image", "model.aux_weight=-1", "model.aux_weight: expected a number >= 0, got -1.0"),
    ("image", "model.aux_weight=0.5", "model.aux_weight: used with model.kwargs.aux_logits: true only"),
    ("image", "train.metric=map_50", "train.metric: expected one of accuracy, macro_f1, loss, got 'map_50'"),
    ("detection", "train.batch_size=0", "train.batch_size: expected an integer >= 1, got 0"),
    ("detection", "train.metric=accuracy", "train.metric: expected one of map_50, got 'accuracy'"),
    ("detection", "data.size=4", "data.size: expected an integer >= 8, got 4"),
    ("detection", "data.train_images=0", "data.train_images: expected an integer >= 1, got 0"),
    ("detection", "data.val_images=0", "data.val_images: expected an integer >= 1, got 0"),
    ("detection", "data.max_objects=0", "data.max_objects: expected an integer >= 1, got 0"),
    ("detection", "data.val_fraction=1", "data.val_fraction: expected a number in (0, 1), got 1.0"),
    ("detection", "model.name=yolo", "model.name: expected a detector from "
                                     "vision.detection.list_detectors(), got 'yolo' (did you mean 'yolo_v1'?)"),
    ("detection", "augment.hflip=2", "augment.hflip: expected a number in [0, 1], got 2.0"),
    ("detection", "augment.scale_range=[1.2,0.8]", "augment.scale_range: expected [low, high] with "
                                                   "0 < low <= high, or null, got [1.2, 0.8]"),
    ("detection", "augment.scale_range=[0.8]", "augment.scale_range: expected [low, high] with "
                                               "0 < low <= high, or null, got [0.8]"),
]


@pytest.mark.parametrize("kind, override, message", CASES, ids=[f"{k}:{o}" for k, o, _ in CASES])
def test_invalid_value_is_one_line_naming_the_key(kind, override, message):
    load, base = LOADERS[kind]
    with pytest.raises(TextCNNError) as caught:
        load(apply_overrides(base, [override]), source="r.yaml")
    text = str(caught.value)
    assert text.startswith(f"r.yaml: {message}"), text
    assert "\n" not in text


def test_valid_recipes_still_load():
    assert text_recipe(apply_overrides(TEXT, ["train.metric=loss", "train.mode=min"])).train.mode == "min"
    assert image_recipe({"task": "image", "model": {"name": "googlenet_small", "aux_weight": 0.5,
                                                    "kwargs": {"aux_logits": True}}}).model.aux_weight == 0.5
    assert detection_recipe({"task": "detection", "augment": {"scale_range": None}}).augment.scale_range is None


def test_exponent_without_a_dot_reads_as_a_number():
    # YAML 1.1 (safe_load) reads `1e-3` as a string; a float key takes it as the number it spells
    assert from_dict(TrainConfig, {"lr": "1e-3", "weight_decay": "5E-4"}).lr == 0.001
    with pytest.raises(TextCNNError, match=r"lr: expected float \| null, got 'fast'"):
        from_dict(TrainConfig, {"lr": "fast"}, prefix="train")


def test_train_config_built_in_python_is_checked_too():
    with pytest.raises(TextCNNError, match=r"^train.lr_schedule: expected one of 'constant' \| 'cosine', "
                                           r"got 'cosin' \(did you mean 'cosine'\?\)$"):
        TrainConfig(lr_schedule="cosin")
    with pytest.raises(TextCNNError, match=r"^train.epochs: expected an integer >= 1, got 2.5$"):
        TrainConfig(epochs=2.5)


def test_check_number_spells_each_bound():
    import numpy as np

    check_number("k", np.int64(3), low=1, integer=True)  # NumPy integers are integers
    for kwargs, value, expected in [
        (dict(low=0, high=1, high_open=True), 1, "a number in [0, 1)"),
        (dict(low=0, high=1, low_open=True, high_open=True), 0, "a number in (0, 1)"),
        (dict(low=0, low_open=True), np.float64(-2.0), "a number > 0"),
        (dict(high=5), 6, "a number <= 5"),
        (dict(), float("nan"), "a finite number"),
        (dict(integer=True, low=1, optional=True), True, "an integer >= 1 or null"),
    ]:
        with pytest.raises(TextCNNError) as caught:
            check_number("k", value, **kwargs)
        assert str(caught.value) == f"k: expected {expected}, got {value.item() if hasattr(value, 'item') else value!r}"
