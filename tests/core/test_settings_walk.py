"""Every setting takes effect: a walk over every field of every recipe section.

For every field of `TextRecipe`, `ImageRecipe` and `DetectionRecipe` (nested sections included),
`PROBES` says which non-default value to try, on which baseline run, and how its effect shows:

- `weights`: the trained weights differ from the baseline's (shapes or values);
- `results`: the named keys of results.json differ;
- `rejected`: the value is refused with a one-line `TextCNNError` (matching `match`);
- a name from `CHECKS`: a check of a recorded effect (epochs run, the epoch selected, progress
  output, threads set, a warning, where the run went), for settings whose effect is not on the
  weights (device, threads, progress) or not only on them; each says why in `why`.

A field without an entry fails `test_every_field_has_a_probe`: wire the setting into the run,
then add its probe here (a value, a baseline and an effect). Baselines are tiny (a few dozen
sentences of data/sample, LeNet-5 on 60 digits, YOLO v1 on four 32 px shapes images) and each trains
once per session; probes that need another baseline name it in `base` (`BASES`).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import re
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from textcnn.core.engine import autocast_precision, resolve_device
from textcnn.core.errors import TextCNNError
from textcnn.recipe import TextRecipe
from textcnn.tasks import train_from_recipe
from vision.detection.pipeline import DetectionRecipe
from vision.pipeline import ImageRecipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = {"text": TextRecipe, "image": ImageRecipe, "detection": DetectionRecipe}
CUDA = torch.cuda.is_available()
TINY_BACKBONE = {"widths": [4, 8, 8, 16]}
YOLO = {"image_size": 32, "grid": 4, "head_channels": 16, "backbone_kwargs": TINY_BACKBONE}


@dataclass(frozen=True)
class Probe:
    """One non-default value of a field and how its effect is observed."""

    value: Any  # the value the field gets ("{assets}" in a string: the folder of the test data)
    effect: str  # weights, results, rejected or a name in CHECKS
    base: str = "tiny"  # the baseline run (BASES[kind]) the value changes
    also: dict[str, Any] = field(default_factory=dict)  # other keys the value needs (mode with metric)
    keys: tuple[str, ...] = ()  # results: the results.json keys that must differ
    match: str = ""  # rejected: a regex the one-line message must contain (default: the field's key)
    why: str = ""  # for effects other than the weights: what shows it, and why that suffices


# -- baselines ------------------------------------------------------------------------------------
ROOTS: dict[str, dict[str, Any]] = {
    "text": {"data": {"train": "{assets}/train.csv", "test": "{assets}/test.csv"},
             "model": {"maps": 4, "embedding_dim": 8, "widths": [2, 3]},
             "train": {"epochs": 2, "progress": False}},
    "image": {"task": "image",
              "data": {"source": "digits", "max_examples": 60, "size": 16, "split_seed": 0},
              "model": {"name": "lenet5"},
              "train": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False}},
    "detection": {"task": "detection",
                  "data": {"source": "shapes", "size": 32, "train_images": 4, "val_images": 2,
                           "test_images": 2},
                  "model": {"name": "yolo_v1", "kwargs": YOLO},
                  "train": {"epochs": 2, "batch_size": 2, "progress": False}},
}

BASES: dict[str, dict[str, dict[str, Any]]] = {
    "text": {
        "tiny": {},
        "plain": {"model.fast": False},  # the reference path, for settings that touch the fast path
        "long": {"train.epochs": 6},  # room for early stopping and for epoch selection to differ
        "vectors": {"model.variant": "non-static", "embeddings.path": "{assets}/vectors.txt"},
        "pickled": {"model.variant": "non-static", "embeddings.path": "{assets}/vectors.kv"},
        "word2vec": {"model.variant": "non-static", "embeddings.path": "word2vec",
                     "embeddings.word2vec_epochs": 1},
        "cased": {"data.train": "{assets}/cased.csv"},
        "columns": {"data.train": "{assets}/columns.csv", "data.test": None},
        "hub": {"data.train": "{assets}/hub"},
        "odd_suffix": {"data.train": "{assets}/train.data"},
        "mr": {"data.dataset": "mr"},  # $TEXTCNN_DATA_DIR is {assets}/kim for the whole walk
        "sst": {"data.dataset": "sst2"},
        "sst_phrases": {"data.dataset": "sst2", "data.phrases": True},
        "documents": {"data.train": "{assets}/documents", "data.test": None},  # a Latin-1 file among them
        "capped": {"tokenizer.max_tokens": 4},  # texts cut to 4 words: which 4 is truncation's say
        # multi-label: each text's labels as a list of one, or a '|'-joined string (tagged.csv)
        "multi": {"model.multi_label": True},
        "tagged": {"model.multi_label": True, "data.train": "{assets}/tagged.csv", "data.test": None},
        "weighted": {"data.train": "{assets}/weighted.csv"},
        "kmax": {"model.pooling": "kmax"},
    },
    "image": {
        "tiny": {},
        "long": {"train.epochs": 6},
        "size32": {"data.size": 32},  # LeNet-5's paper form takes 32 x 32 inputs only
        "hub": {"data.source": "{assets}/images_hub", "data.test": "{assets}/images_hub",
                "data.max_examples": None},
        "googlenet": {"model.name": "googlenet_small",
                      "model.kwargs": {"aux_logits": True, "width_divisor": 16}},
    },
    "detection": {
        "tiny": {},
        "long": {"train.epochs": 6},
        "coco": {"data.source": "coco", "data.train": "{assets}/coco/train.json"},
    },
}


def _train_probes(kind: str) -> dict[str, tuple[Probe, ...]]:
    """The `train` section (TrainConfig) is shared by the three kinds; each wires it its own way,
    so each is probed. Text probes the settings that touch the gradients on both paths."""
    paths = ("tiny", "plain") if kind == "text" else ("tiny",)
    both = lambda value: tuple(Probe(value, "weights", base=b) for b in paths)  # noqa: E731
    metric = (Probe("accuracy", "rejected", match="train.metric: expected one of map_50") if kind == "detection"
              else Probe("loss", "selects_on_metric", base="long", also={"train.mode": "min"},
                         why="the best epoch is the one of least dev loss in the recorded history"))
    return {
        "train.epochs": (Probe(3, "epochs_run", why="epochs_run is 3 where the baseline ran 2"),),
        "train.batch_size": (Probe(3, "weights"),),
        "train.optimizer": (Probe("sgd" if kind != "text" else "adam", "weights"),),
        "train.lr": (Probe(0.3 if kind == "text" else 0.003, "weights"),),
        "train.weight_decay": both(0.5),
        "train.l1": both(0.01),
        "train.l2": both(1.0),
        "train.metric": (metric,),
        "train.mode": (Probe("min", "rejected", match="train.mode: expected 'max'",
                            why="the direction must be the metric's (min goes with metric loss)"),),
        "train.patience": (Probe(1, "patience", base="long",
                                 why="training stops after the first epoch without dev improvement"),),
        "train.seed": (Probe(1, "weights"),),
        "train.device": (Probe("cpu" if CUDA else "cuda", "device",
                               why="without CUDA, cuda is refused; with it, cpu trains other weights"),),
        "train.amp": (Probe(False, "amp", why="the precision of training's products, recorded in "
                                              "results.json (bfloat16 only where the device has it)"),),
        "train.progress": (Probe(True, "progress", why="a progress bar on stderr"),),
        "train.threads": (Probe(2, "threads", why="torch's thread count is set to it for the run"),),
        "train.max_seconds": (Probe(1e-6, "time_budget", why="the run stops after one epoch"),),
        "train.lr_schedule": both("cosine"),
        "train.warmup_steps": both(3),
        "train.grad_clip": both(0.01),
        "train.cuda_graphs": (Probe(True, "cuda_graphs", why="CUDA only: elsewhere the run says it "
                                                             "trains without them"),),
        "train.sync_batchnorm": (Probe(True, "sync_batchnorm", why=(
            "one process: the run says there is nothing to synchronise; under torchrun "
            "tests/core/test_distributed.py shows two ranks train one process's weights with it "
            "and others without it")),),
    }


PROBES: dict[str, tuple[Probe, ...]] = {
    # -- text -------------------------------------------------------------------------------------
    "text:task": (Probe("image", "rejected", match="unknown key"),),
    "text:name": (Probe("renamed", "default_out_dir", why="the run's default folder is runs/<name>"),),
    "text:data.train": (Probe("{assets}/train_b.csv", "weights"),),
    "text:data.dev": (Probe("{assets}/dev.csv", "weights"),),
    "text:data.test": (Probe(None, "results", keys=("test_accuracy",)),),
    "text:data.format": (Probe("csv", "loads", base="odd_suffix",
                               why="a CSV file named .data is refused unless the format is given"),),
    "text:data.text_column": (Probe("sentence", "weights", base="columns"),),
    "text:data.label_column": (Probe("tag", "weights", base="columns"),),
    "text:data.split": (Probe("other", "weights", base="hub"),),
    "text:data.dataset": (Probe("mr", "weights"),),
    "text:data.data_dir": (Probe("{assets}/kim_b", "weights", base="mr"),),
    "text:data.sst_dir": (Probe("{assets}/sst_b", "weights", base="sst_phrases"),),
    "text:data.fold": (Probe(1, "weights", base="mr"),),
    "text:data.folds": (Probe(5, "weights", base="mr"),),
    "text:data.split_seed": (Probe(7, "weights", base="mr"),),
    "text:data.phrases": (Probe(True, "weights", base="sst"),),
    "text:data.encoding": (Probe("latin-1", "loads", base="documents",
                                 why="a Latin-1 document does not decode as the default utf-8"),),
    "text:data.label_separator": (Probe("|", "weights", base="tagged"),),
    "text:data.weight_column": (Probe("weight", "weights", base="weighted"),),
    "text:tokenizer.min_frequency": (Probe(2, "weights"),),
    "text:tokenizer.max_size": (Probe(10, "weights"),),
    "text:tokenizer.lowercase": (Probe(False, "weights", base="cased"),),
    "text:tokenizer.max_tokens": (Probe(3, "weights"),),
    "text:tokenizer.truncation": (Probe("tail", "weights", base="capped"),),
    "text:embeddings.path": (Probe("{assets}/vectors_b.txt", "weights", base="vectors"),),
    "text:embeddings.word2vec_epochs": (Probe(2, "weights", base="word2vec"),),
    "text:embeddings.allow_pickle": (Probe(True, "loads", base="pickled",
                                           why="a gensim .kv file (a pickle) is refused unless allowed"),),
    "text:model.arch": (Probe("tfidf-logreg", "baseline_model",
                              why="a scikit-learn baseline replaces the CNN: no CNN weights"),),
    "text:model.variant": (Probe("static", "weights", base="vectors"),),
    "text:model.widths": (Probe([2], "weights"),),
    "text:model.maps": (Probe(3, "weights"),),
    "text:model.dropout": (Probe(0.0, "weights"),),
    "text:model.max_norm": (Probe(0.01, "weights"),),
    "text:model.embedding_dim": (Probe(4, "weights"),),
    "text:model.dev_fraction": (Probe(0.3, "weights"),),
    "text:model.class_weight": (Probe({"positive": 3.0}, "weights"),),
    "text:model.label_smoothing": (Probe(0.2, "weights"),),
    "text:model.activation": (Probe("tanh", "weights"), Probe("tanh", "weights", base="plain")),
    "text:model.pooling": (Probe("avg", "weights"), Probe("kmax", "weights", base="plain")),
    "text:model.k": (Probe(3, "weights", base="kmax"),
                     Probe(3, "rejected", why="k is the number of values kmax pooling keeps")),
    "text:model.batch_norm": (Probe(True, "weights"), Probe(True, "weights", base="plain")),
    "text:model.weight_norm": (Probe(True, "weights"),),
    "text:model.input_noise": (Probe(0.5, "weights", base="plain"),
                               Probe(0.5, "fast_path_fallback", why="the fast path draws no per-word noise: "
                                     "the run trains on the plain path, says so and records fast_path false")),
    "text:model.word_dropout": (Probe(0.5, "weights"), Probe(0.5, "weights", base="plain")),
    "text:model.multi_label": (Probe(True, "weights"),),
    "text:model.threshold": (Probe(0.3, "results", base="multi",
                                   keys=("dev_accuracy", "test_micro_f1", "test_subset_accuracy")),
                             Probe(0.3, "rejected", why="the threshold of each label of a multi-label model")),
    "text:model.fast": (Probe(False, "weights"),),
    **{f"text:{k}": v for k, v in _train_probes("text").items()},
    "text:train.max_batch_tokens": (Probe(40, "weights"),),
    "text:train.tune_thresholds": (Probe(True, "results", base="multi", keys=("thresholds", "test_micro_f1")),
                                   Probe(True, "rejected", why="thresholds per label: multi-label only")),
    # -- image ------------------------------------------------------------------------------------
    "image:task": (Probe("detection", "rejected", match="unknown key"),),
    "image:name": (Probe("renamed", "default_out_dir", why="the run's default folder is runs/<name>"),),
    "image:data.source": (Probe("{assets}/image_folder", "weights", also={"data.max_examples": None}),),
    "image:data.test": (Probe("{assets}/digit_folder", "results", keys=("test_examples",)),),
    "image:data.split": (Probe("other", "weights", base="hub"),),
    "image:data.test_split": (Probe("other", "results", base="hub", keys=("test_examples",)),),
    "image:data.image_column": (Probe("image2", "weights", base="hub"),),
    "image:data.label_column": (Probe("label2", "weights", base="hub"),),
    "image:data.size": (Probe(20, "weights"),),
    "image:data.channels": (Probe(3, "weights"),),
    "image:data.dev_fraction": (Probe(0.3, "weights"),),
    "image:data.test_fraction": (Probe(0.4, "weights"),),
    "image:data.max_examples": (Probe(80, "weights"),),
    "image:data.split_seed": (Probe(5, "weights"),),
    "image:model.name": (Probe("lenet5_paper", "weights", base="size32"),),
    "image:model.kwargs": (Probe({"act_layer": "tanh"}, "weights"),),
    "image:model.label_smoothing": (Probe(0.2, "weights"),),
    "image:model.aux_weight": (Probe(1.0, "weights", base="googlenet"),),
    "image:augment.crop_padding": (Probe(2, "weights"),),
    "image:augment.hflip": (Probe(0.5, "weights"),),
    "image:augment.noise_std": (Probe(0.2, "weights"),),
    **{f"image:{k}": v for k, v in _train_probes("image").items()},
    # -- detection --------------------------------------------------------------------------------
    "detection:task": (Probe("image", "rejected", match="unknown key"),),
    "detection:name": (Probe("renamed", "default_out_dir", why="the run's default folder is runs/<name>"),),
    "detection:data.source": (Probe("coco", "weights", also={"data.train": "{assets}/coco/train.json"}),),
    "detection:data.size": (Probe(40, "weights"),),
    "detection:data.train_images": (Probe(6, "weights"),),
    "detection:data.val_images": (Probe(3, "results", keys=("val_images",)),),
    "detection:data.test_images": (Probe(3, "results", keys=("test_images",)),),
    "detection:data.max_objects": (Probe(1, "weights"),),
    "detection:data.seed": (Probe(1, "weights"),),
    "detection:data.train": (Probe("{assets}/coco/train_b.json", "weights", base="coco"),),
    "detection:data.val": (Probe("{assets}/coco/val.json", "results", base="coco", keys=("val_images",)),),
    "detection:data.test": (Probe("{assets}/coco/val.json", "results", base="coco", keys=("test_images",)),),
    "detection:data.image_dir": (Probe("{assets}/coco_other", "weights", base="coco"),),
    "detection:data.val_fraction": (Probe(0.5, "results", base="coco", keys=("val_images",)),),
    "detection:model.name": (Probe("ssd", "weights", also={"model.kwargs": {
        "image_size": 32, "extra_channels": [16, 16], "backbone_kwargs": TINY_BACKBONE}}),),
    "detection:model.kwargs": (Probe({**YOLO, "head_channels": 8}, "weights"),),
    "detection:augment.hflip": (Probe(1.0, "weights"),),
    "detection:augment.scale_range": (Probe(None, "weights"),),
    **{f"detection:{k}": v for k, v in _train_probes("detection").items()},
}


# -- the fields -----------------------------------------------------------------------------------
def recipe_fields(cls: type, prefix: str = "") -> Iterator[str]:
    """Dotted names of every field of dataclass `cls`, nested sections' fields included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from recipe_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


ALL_FIELDS = [f"{kind}:{name}" for kind, cls in RECIPES.items() for name in recipe_fields(cls)]


def test_every_field_has_a_probe():
    missing = [name for name in ALL_FIELDS if name not in PROBES]
    assert not missing, (
        f"no probe for {', '.join(missing)}: every setting must change the run or be rejected. Wire "
        "it into training, then add a probe to PROBES in tests/core/test_settings_walk.py (the value "
        "to try, the baseline, and how its effect shows)")
    stale = sorted(set(PROBES) - set(ALL_FIELDS))
    assert not stale, f"probes for fields that no longer exist: {', '.join(stale)}"


# -- running --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one training run left behind (or the error that stopped it)."""

    error: TextCNNError | None = None
    out_dir: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # train/metrics.jsonl
    stderr: str = ""
    warnings: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)  # every torch.set_num_threads during the run


def _fill(value: Any, assets: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{assets}", str(assets))
    if isinstance(value, dict):
        return {k: _fill(v, assets) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, assets) for v in value]
    return value


def _set(recipe: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = recipe
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value


class Walk:
    """Runs recipes into fresh folders and remembers the outcomes, so each baseline trains once."""

    def __init__(self, root: Path, assets: Path) -> None:
        self.root, self.assets = root, assets
        self.cache: dict[str, Outcome] = {}

    def run(self, kind: str, base: str, changes: dict[str, Any] | None = None, *,
            context: str = "") -> Outcome:
        """The run of baseline `base` with `changes` ({dotted key: value}); `context` names a
        variation of the environment (`default_out_dir`: no --out, from an empty folder;
        `native_bf16`: the CPU reports bfloat16 products)."""
        changes = changes or {}
        recipe = copy.deepcopy(ROOTS[kind])
        for key, value in {**BASES[kind][base], **changes}.items():
            _set(recipe, key, value)
        recipe = _fill(recipe, self.assets)
        tag = json.dumps([kind, recipe, context], sort_keys=True, default=str)
        if tag not in self.cache:
            self.cache[tag] = self._train(recipe, context, len(self.cache))
        return self.cache[tag]

    def _train(self, recipe: dict[str, Any], context: str, number: int) -> Outcome:
        folder = self.root / f"run{number}"
        folder.mkdir()
        path = folder / "walk.yaml"
        path.write_text(yaml.safe_dump(recipe))
        out = Outcome()
        stderr = io.StringIO()
        real_set_threads = torch.set_num_threads
        threads_before = torch.get_num_threads()

        def spy(count: int) -> None:
            out.threads.append(count)
            real_set_threads(count)

        with contextlib.ExitStack() as stack:
            mp = stack.enter_context(pytest.MonkeyPatch.context())
            mp.setattr(torch, "set_num_threads", spy)
            if context == "native_bf16":
                mp.setattr("textcnn.estimator.classifier.native_bf16", lambda device: True)
            if context == "default_out_dir":
                mp.chdir(folder)
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            stack.enter_context(contextlib.redirect_stderr(stderr))
            try:
                outcome = train_from_recipe(path, (), out_dir=None if context == "default_out_dir"
                                            else folder / "out")
            except TextCNNError as err:
                out.error = err
            else:
                out.out_dir = outcome.out_dir
                out.results = json.loads((outcome.out_dir / "results.json").read_text())
                weights = outcome.out_dir / "model" / "model.safetensors"
                out.weights = load_file(str(weights)) if weights.is_file() else None
                log = outcome.out_dir / "train" / "metrics.jsonl"
                out.history = [json.loads(line) for line in log.read_text().splitlines()] \
                    if log.is_file() else []
            finally:
                real_set_threads(threads_before)
            out.warnings = [str(w.message) for w in caught]
        out.stderr = stderr.getvalue()
        return out


def _ok(outcome: Outcome, what: str) -> Outcome:
    assert outcome.error is None, f"{what} failed: {outcome.error}"
    return outcome


def weights_differ(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor] | None) -> bool:
    """Different names, shapes or values (None: no weights file at all)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    return a.keys() != b.keys() or any(a[k].shape != b[k].shape or not torch.equal(a[k], b[k]) for k in a)


# -- the checks of recorded effects ---------------------------------------------------------------
Check = Callable[[Walk, str, str, Probe, Outcome, Outcome], None]


def _selected(history: list[dict[str, Any]], metric: str, mode: str) -> int:
    """The epoch the engine must keep: the first best value (a tie never improves)."""
    values = [r[f"dev_{metric}"] for r in history]
    best = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return history[best]["epoch"]


def check_selects_on_metric(walk, kind, key, probe, base, probed):
    metric, mode = probe.value, probe.also.get("train.mode", "max")
    default_metric = "map_50" if kind == "detection" else "accuracy"
    assert probed.results["best_epoch"] == _selected(probed.history, metric, mode)
    assert base.results["best_epoch"] == _selected(base.history, default_metric, "max")
    # the recorded histories are the same run; only the selection differs
    assert [r[f"dev_{default_metric}"] for r in probed.history] == \
        [r[f"dev_{default_metric}"] for r in base.history]
    assert probed.results["best_epoch"] != base.results["best_epoch"], "choose a baseline where they differ"
    assert weights_differ(base.weights, probed.weights)


def check_patience(walk, kind, key, probe, base, probed):
    metric = "map_50" if kind == "detection" else "accuracy"
    values = [r[f"dev_{metric}"] for r in base.history]
    # with patience 1 the run ends after the first epoch that does not beat the best before it
    first_miss = next(i + 1 for i in range(1, len(values)) if not values[i] > max(values[:i]))
    assert probed.results["epochs_run"] == first_miss < base.results["epochs_run"]


def check_epochs_run(walk, kind, key, probe, base, probed):
    assert (probed.results["epochs_run"], base.results["epochs_run"]) == (probe.value, ROOTS[kind]["train"]["epochs"])
    assert [r["epoch"] for r in probed.history] == list(range(1, probe.value + 1))


def check_time_budget(walk, kind, key, probe, base, probed):
    assert probed.results["epochs_run"] == 1 < base.results["epochs_run"]


def check_progress(walk, kind, key, probe, base, probed):
    assert "epoch 1/2" in probed.stderr and "epoch 1/2" not in base.stderr


def check_threads(walk, kind, key, probe, base, probed):
    assert probed.threads[:1] == [probe.value] and probe.value not in base.threads


def check_device(walk, kind, key, probe, base, probed):
    if CUDA:
        assert weights_differ(_ok(base, "baseline").weights, _ok(probed, "cpu run").weights)
    else:
        assert probed.error is not None and "no CUDA here" in str(probed.error)


def check_amp(walk, kind, key, probe, base, probed):
    device = resolve_device("auto")
    if kind == "text":  # the CPU fast path multiplies in bfloat16 where the CPU has it natively
        base, probed = walk.run(kind, probe.base, context="native_bf16"), \
            walk.run(kind, probe.base, {key: probe.value}, context="native_bf16")
        assert (base.results["precision"], probed.results["precision"]) == ("bfloat16", "float32")
        assert weights_differ(base.weights, probed.weights)
        return
    assert base.results["precision"] == autocast_precision(True, device)
    assert probed.results["precision"] == autocast_precision(False, device) == "float32"
    if device.type == "cuda":
        assert weights_differ(base.weights, probed.weights)


def check_cuda_graphs(walk, kind, key, probe, base, probed):
    said = [w for w in probed.warnings if "train.cuda_graphs" in w]
    if CUDA:
        assert not said and (kind != "text" or probed.results["cuda_graphs"] > 0)
    else:
        assert said and not [w for w in base.warnings if "train.cuda_graphs" in w]


def check_sync_batchnorm(walk, kind, key, probe, base, probed):
    said = [w for w in probed.warnings if w.startswith("train.sync_batchnorm: one process")]
    assert said and not [w for w in base.warnings if "train.sync_batchnorm" in w]
    assert not weights_differ(base.weights, probed.weights)  # one process: the batch is whole


def check_default_out_dir(walk, kind, key, probe, base, probed):
    probed = walk.run(kind, probe.base, {key: probe.value}, context="default_out_dir")
    assert _ok(probed, "run without --out").out_dir == Path("runs") / probe.value
    assert probed.weights is not None


def check_loads(walk, kind, key, probe, base, probed):
    assert base.error is not None and probed.error is None and probed.weights is not None


def check_fast_path_fallback(walk, kind, key, probe, base, probed):
    assert (base.results["fast_path"], probed.results["fast_path"]) == (True, False)
    assert [w for w in probed.warnings if "trains on the plain path" in w]
    assert weights_differ(base.weights, probed.weights)


def check_baseline_model(walk, kind, key, probe, base, probed):
    assert probed.weights is None and base.weights is not None
    assert probed.results["arch"] == probe.value and "test_accuracy" in probed.results


CHECKS: dict[str, Check] = {
    "selects_on_metric": check_selects_on_metric, "patience": check_patience,
    "epochs_run": check_epochs_run, "time_budget": check_time_budget, "progress": check_progress,
    "threads": check_threads, "device": check_device, "amp": check_amp,
    "cuda_graphs": check_cuda_graphs, "sync_batchnorm": check_sync_batchnorm, "default_out_dir": check_default_out_dir, "loads": check_loads,
    "baseline_model": check_baseline_model, "fast_path_fallback": check_fast_path_fallback,
}
MAY_FAIL = {"device", "loads"}  # checks that expect an error from the baseline or the probe


def test_every_probe_names_a_known_effect():
    for name, probes in PROBES.items():
        for probe in probes:
            assert probe.effect in {"weights", "results", "rejected", *CHECKS}, (name, probe.effect)
            kind = name.split(":")[0]
            assert probe.base in BASES[kind], (name, probe.base)
            assert probe.effect != "results" or probe.keys, f"{name}: name the results keys that change"
            assert probe.effect not in CHECKS or probe.why, \
                f"{name}: say why the recorded effect {probe.effect!r} shows the setting at work"


# -- the test data --------------------------------------------------------------------------------
def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _sst_tree(label: int, words: list[str]) -> str:
    """A right-branching PTB tree whose every node has the sentence's 0-4 label."""
    tree = f"({label} {words[-1]})"
    for word in reversed(words[:-1]):
        tree = f"({label} ({label} {word}) {tree})"
    return tree


def _write_text_assets(root: Path) -> None:
    import datasets

    with open(REPO / "data" / "sample" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    with open(REPO / "data" / "sample" / "test.csv", newline="", encoding="utf-8") as f:
        held = list(csv.reader(f))[1:]
    first, second = rows[:60], rows[60:120]
    _write_csv(root / "train.csv", ["text", "label"], first)
    _write_csv(root / "train_b.csv", ["text", "label"], second)
    _write_csv(root / "test.csv", ["text", "label"], held[:20])
    _write_csv(root / "dev.csv", ["text", "label"], held[20:32])
    _write_csv(root / "tagged.csv", ["text", "label"],  # a second tag on every third text
               [[t, f"{y}|{'long' if len(t) > 60 else 'short'}" if i % 3 == 0 else y]
                for i, (t, y) in enumerate(first)])
    _write_csv(root / "weighted.csv", ["text", "label", "weight"],
               [[t, y, 5.0 if i % 4 == 0 else 1.0] for i, (t, y) in enumerate(first)])
    _write_csv(root / "cased.csv", ["text", "label"],
               [[t.title() if i % 2 else t, y] for i, (t, y) in enumerate(first)])
    (root / "train.data").write_text((root / "train.csv").read_text())  # a suffix no reader knows
    flipped = {"positive": "negative", "negative": "positive"}
    _write_csv(root / "columns.csv", ["text", "label", "sentence", "tag"],
               [[t, y, t2, flipped[y]] for (t, y), (t2, _) in zip(first, second)])
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": [t for t, _ in first], "label": [y for _, y in first]}),
        "other": datasets.Dataset.from_dict({"text": [t for t, _ in second], "label": [y for _, y in second]}),
    }).save_to_disk(str(root / "hub"))
    binary = {"positive": 1, "negative": 0}
    for name, part in (("kim", first), ("kim_b", second)):
        (root / name).mkdir()
        lines = [f"{binary[y]} {t}" for t, y in part]
        (root / name / "rt-polarity.all").write_text("\n".join(lines) + "\n")
        for split, chunk in (("train", lines[:40]), ("dev", lines[40:50]), ("test", lines[50:])):
            (root / name / f"stsa.binary.{split}").write_text("\n".join(chunk) + "\n")
    for name, part in (("sst", first), ("sst_b", second)):  # the trees beside kim/: the default sst dir
        (root / name).mkdir()
        for split, chunk in (("train", part[:40]), ("dev", part[40:50]), ("test", part[50:])):
            trees = [_sst_tree(4 if y == "positive" else 0, t.split()) for t, y in chunk]
            (root / name / f"{split}.txt").write_text("\n".join(trees) + "\n")
    for i, (text, label) in enumerate(first):  # a folder per class, a file per document
        (root / "documents" / label).mkdir(parents=True, exist_ok=True)
        (root / "documents" / label / f"{i}.txt").write_bytes(text.encode("latin-1", "replace") + b"\n")
    (root / "documents" / first[0][1] / "0.txt").write_bytes(b"caf\xe9 " + first[0][0].encode("latin-1", "replace"))
    words = sorted({w for t, _ in rows[:120] for w in t.lower().split()})
    for name, seed in (("vectors.txt", 0), ("vectors_b.txt", 1)):
        table = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(len(words), 8))
        lines = [f"{len(words)} 8", *(f"{w} " + " ".join(f"{v:.4f}" for v in row) for w, row in zip(words, table))]
        (root / name).write_text("\n".join(lines) + "\n")
    from gensim.models import KeyedVectors

    KeyedVectors.load_word2vec_format(str(root / "vectors.txt")).save(str(root / "vectors.kv"))


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _write_image_assets(root: Path) -> None:
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 255 / 16).round().astype(np.uint8)
    for i in range(12):  # two classes unlike digits' own, for data.source
        _write_png(root / "image_folder" / ("dark" if i % 2 else "light") / f"{i}.png",
                   np.full((8, 8), 40 if i % 2 else 200, dtype=np.uint8) + np.uint8(i))
    for label in (0, 1):  # five of each of two digits as a folder, for data.test
        for i in np.flatnonzero(digits.target == label)[-5:]:
            _write_png(root / "digit_folder" / str(label) / f"{i}.png", images[i])

    def part(start: int, count: int) -> datasets.Dataset:
        idx = range(start, start + count)
        return datasets.Dataset.from_dict({
            "image": [images[i].tolist() for i in idx], "image2": [images[i + 500].tolist() for i in idx],
            "label": [int(digits.target[i]) % 3 for i in idx],
            "label2": [int(digits.target[i + 500]) % 3 for i in idx]})

    datasets.DatasetDict({"train": part(0, 40), "other": part(40, 40), "test": part(80, 12)}
                         ).save_to_disk(str(root / "images_hub"))


def _write_detection_assets(root: Path) -> None:
    from vision.detection.data import SHAPE_CLASSES, make_shapes

    def coco(name: str, *, seed: int, count: int, prefix: str = "", folder: str = "coco") -> None:
        """COCO annotations coco/<name> of `count` shapes images written as <folder>/<prefix>img<i>.png."""
        data = make_shapes(count, seed=seed, size=32)
        images, annotations = [], []
        for i, (image, target) in enumerate(zip(data.images, data.targets)):
            file_name = f"{prefix}img{i}.png"
            _write_png(root / folder / file_name, (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            images.append({"id": i, "file_name": file_name})
            for (x0, y0, x1, y1), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
                annotations.append({"id": len(annotations), "image_id": i, "category_id": label,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0]})
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(SHAPE_CLASSES)]
        (root / "coco" / name).write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": categories}))

    (root / "coco").mkdir()
    coco("train.json", seed=11, count=6)
    coco("val.json", seed=12, count=3, prefix="val_")
    coco("train_b.json", seed=13, count=6, prefix="b_")
    coco("other.json", seed=14, count=6, folder="coco_other")  # train.json's file names, other pictures


# -- the walk -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Iterator[Walk]:
    assets = tmp_path_factory.mktemp("assets")
    _write_text_assets(assets)
    _write_image_assets(assets)
    _write_detection_assets(assets)
    with pytest.MonkeyPatch.context() as mp:
        # named benchmarks come from the fake Kim folder; SST trees from its sibling sst/
        mp.setenv("TEXTCNN_DATA_DIR", str(assets / "kim"))
        mp.delenv("TEXTCNN_SST_DIR", raising=False)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: a second thread only adds waiting
        try:
            yield Walk(tmp_path_factory.mktemp("runs"), assets)
        finally:
            torch.set_num_threads(threads)


PROBE_CASES = [(name, i) for name in ALL_FIELDS for i in range(len(PROBES.get(name, ())))]


@pytest.mark.parametrize("name, index", PROBE_CASES,
                         ids=[f"{n}#{i}" if len(PROBES[n]) > 1 else n for n, i in PROBE_CASES])
def test_setting_takes_effect(walk, name, index):
    kind, key = name.split(":")
    probe = PROBES[name][index]
    base = walk.run(kind, probe.base)
    probed = walk.run(kind, probe.base, {key: probe.value, **probe.also})
    if probe.effect == "rejected":
        assert probed.error is not None, f"{name}={probe.value!r} was accepted"
        message = str(probed.error)
        assert "\n" not in message and re.search(probe.match or re.escape(key), message), message
        return
    if probe.effect not in MAY_FAIL:
        _ok(base, f"{kind} baseline '{probe.base}'")
        _ok(probed, f"{name}={probe.value!r}")
    if probe.effect == "weights":
        assert weights_differ(base.weights, probed.weights), f"{name}={probe.value!r} left the weights as they were"
    elif probe.effect == "results":
        before = {k: base.results.get(k) for k in probe.keys}
        after = {k: probed.results.get(k) for k in probe.keys}
        assert before != after, f"{name}={probe.value!r} left {before} as it was"
    else:
        CHECKS[probe.effect](walk, kind, key, probe, base, probed)


def test_probed_values_differ_from_the_defaults():
    """A probe must try a value other than the field's default (else it proves nothing)."""
    for kind, cls in RECIPES.items():
        defaults = _defaults(cls)
        for name in recipe_fields(cls):
            for probe in PROBES.get(f"{kind}:{name}", ()):
                base = {**BASES[kind][probe.base]}
                root = _flatten(ROOTS[kind])
                current = base.get(name, root.get(name, defaults.get(name)))
                assert probe.value != current, f"{kind}:{name}: the probe value {probe.value!r} is the baseline's"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k in ("data", "model", "train", "tokenizer", "embeddings", "augment") \
                and not prefix:
            out.update(_flatten(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _defaults(cls: type) -> dict[str, Any]:
    return _flatten(dataclasses.asdict(cls()))
