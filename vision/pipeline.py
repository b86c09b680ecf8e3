"""Image classification end to end: train from a recipe, save, load, evaluate, predict, visualise.

The same engine (`textcnn.core.engine.Trainer`), checkpoints and metrics as the text side. A model
directory holds `model.safetensors`, `config.json` (`"kind": "image-classifier"`: the registry name
and keywords, classes, input size, normalisation and the data split), `metrics.json` and
`recipe.yaml`; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from textcnn.core.config import check_number, dump_yaml, shown, to_dict, typed_recipe
from textcnn.core.distributed import is_main_process
from textcnn.core.engine import (
    TrainConfig,
    Trainer,
    autocast_precision,
    check_selection_metric,
    seed_everything,
)
from textcnn.core.errors import TextCNNError, check_classes, did_you_mean
from textcnn.core.io import atomic_write_json, atomic_write_text
from textcnn.core.metrics import SELECTION_METRICS, evaluation_report, selection_metrics
from textcnn.core.modeldir import ModelDir, open_model_dir, write_model_dir
from textcnn.core.rundir import (
    RunIdentity,
    TrainOutcome,
    default_run_folder,
    open_run_folder,
    run_identity,
)
from textcnn.core.splits import holdout_split
from textcnn.core.streaming import Prediction, chunked, ranked_predictions
from vision.data import ImageData, load_images, read_image, split_indices
from vision.registry import create_model, list_models
from vision.transforms import Augment, normalize, resize, to_channels

KIND = "image-classifier"
INFERENCE_BATCH = 256


@dataclass
class ImageDataSection:
    """Where the images come from and how they are split."""

    source: str = "digits"  # 'digits', an image folder, a save_to_disk folder or hf:<name>
    test: str | None = None  # separate test data (same forms); None: hold out test_fraction
    split: str = "train"  # split of a `datasets` source
    test_split: str = "test"  # split of a `datasets` test source
    image_column: str = "image"  # image column of a `datasets` source
    label_column: str = "label"  # label column of a `datasets` source
    size: int | None = None  # resize to size x size (bilinear); LeNet-5 wants 32, None keeps
    channels: int | None = None  # 1 (grey) or 3 (colour); None: as loaded
    dev_fraction: float = 0.1  # share of all examples held out for model selection (0: none)
    test_fraction: float = 0.2  # share of all examples held out for the test (without `test`)
    max_examples: int | None = None  # a seeded, stratified subset of this many (quick runs)
    split_seed: int | None = None  # seed of the subset and splits; None: train.seed

    def __post_init__(self) -> None:
        for key in ("source", "split", "test_split", "image_column", "label_column"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise TextCNNError(f"data.{key}: expected a name, got {shown(getattr(self, key))}")
        check_number("data.size", self.size, low=1, integer=True, optional=True)
        if self.channels not in (None, 1, 3) or isinstance(self.channels, bool):
            raise TextCNNError(f"data.channels: expected 1, 3 or null, got {shown(self.channels)}")
        check_number("data.dev_fraction", self.dev_fraction, low=0, high=1, high_open=True)
        check_number("data.test_fraction", self.test_fraction, low=0, high=1, high_open=True)
        if self.test is None and self.dev_fraction + self.test_fraction >= 1:
            raise TextCNNError(f"data.dev_fraction: expected dev_fraction + test_fraction < 1 (some "
                               f"examples left to train on), got {self.dev_fraction} + {self.test_fraction}")
        check_number("data.max_examples", self.max_examples, low=2, integer=True, optional=True)
        check_number("data.split_seed", self.split_seed, low=0, high=2**32 - 1, integer=True, optional=True)


@dataclass
class ImageModelSection:
    """Which registered model, and its loss."""

    name: str = "lenet5"  # a name from vision.list_models()
    kwargs: dict[str, Any] = field(default_factory=dict)  # builder keywords, e.g. {drop_rate: 0.2}
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    aux_weight: float = 0.3  # weight of GoogLeNet's auxiliary losses (kwargs.aux_logits: true)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in list_models():
            raise TextCNNError(f"model.name: expected a model from vision.list_models(), got "
                               f"{shown(self.name)}{did_you_mean(str(self.name), list_models())}")
        check_number("model.label_smoothing", self.label_smoothing, low=0, high=1, high_open=True)
        check_number("model.aux_weight", self.aux_weight, low=0)
        if self.aux_weight != type(self).aux_weight and not self.kwargs.get("aux_logits"):
            raise TextCNNError(f"model.aux_weight: used with model.kwargs.aux_logits: true only (GoogLeNet's "
                               f"auxiliary classifiers), got {shown(self.aux_weight)} without it")


@dataclass
class ImageRecipe:
    """A whole image-classification run."""

    task: Literal["image"] = "image"  # what the recipe trains
    name: str | None = None  # run name; default: the recipe file's stem
    data: ImageDataSection = field(default_factory=ImageDataSection)
    model: ImageModelSection = field(default_factory=ImageModelSection)
    augment: Augment = field(default_factory=Augment)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_selection_metric(self.train, SELECTION_METRICS)


def image_recipe(data: dict[str, Any], *, source: str | Path = "recipe") -> ImageRecipe:
    """Check plain recipe data against `ImageRecipe`; errors name the file and the key."""
    return typed_recipe(ImageRecipe, data, source=source)


# -- data -----------------------------------------------------------------------------------------


@dataclass
class ImageSplits:
    """Train, dev and test images in [0, 1] at the model's input size."""

    train: ImageData
    dev: ImageData | None
    test: ImageData | None


def _split_spec(data: ImageDataSection, seed: int) -> dict[str, Any]:
    """What reproduces the split exactly (stored in config.json, used by evaluate)."""
    return {"source": data.source, "test": data.test, "split": data.split,
            "test_split": data.test_split, "image_column": data.image_column,
            "label_column": data.label_column, "size": data.size, "channels": data.channels,
            "dev_fraction": data.dev_fraction, "test_fraction": data.test_fraction,
            "max_examples": data.max_examples, "split_seed": seed}


def load_splits(spec: dict[str, Any]) -> ImageSplits:
    """Load and split the data a `_split_spec` describes (seeded and stratified)."""
    columns = dict(image_column=spec["image_column"], label_column=spec["label_column"],
                   size=spec["size"], channels=spec["channels"])
    full = load_images(spec["source"], split=spec["split"], **columns)
    seed = spec["split_seed"]
    limit = spec["max_examples"]
    if limit is not None and limit < len(full):
        full = full.subset(holdout_split(full.labels.numpy(), fraction=limit / len(full),
                                         seed=seed)[1])
    test_fraction = 0.0 if spec["test"] is not None else spec["test_fraction"]
    train, dev, test = split_indices(full.labels, dev_fraction=spec["dev_fraction"],
                                     test_fraction=test_fraction, seed=seed)
    if spec["test"] is not None:
        test_data = load_images(spec["test"], split=spec["test_split"], **columns)
        test_data = test_data.prepared(size=None, channels=full.images.shape[1])
        test_data = test_data.relabelled(full.classes)
    else:
        test_data = full.subset(test) if len(test) else None
    return ImageSplits(full.subset(train), full.subset(dev) if len(dev) else None, test_data)


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (floored at 1e-6) of `[N, C, H, W]` images."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def prepare(images: Tensor, meta: dict[str, Any]) -> Tensor:
    """Images in [0, 1] -> the model's channels, input size and normalisation."""
    channels, height, width = meta["input_size"]
    images = resize(to_channels(images, channels), (height, width))
    return normalize(images, meta["normalize"]["mean"], meta["normalize"]["std"])


@torch.no_grad()
def class_probabilities(model: nn.Module, images: Tensor, *,
                        device: torch.device | None = None) -> Tensor:
    """Softmax probabilities `[N, classes]` of prepared images, in eval mode, in batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [torch.softmax(model(images[i:i + INFERENCE_BATCH].to(device)).float(), dim=-1)
                 for i in range(0, len(images), INFERENCE_BATCH)]
    finally:
        model.train(was_training)
    return torch.cat(parts).cpu()


# -- training -------------------------------------------------------------------------------------


def image_data_files(section: ImageDataSection) -> dict[str, Path | None]:
    """The folders an image recipe reads, by role, for its run fingerprint ('digits' is
    scikit-learn's bundled set and a hub name no local path: both are identified by name)."""
    def local(spec: str | None) -> Path | None:
        if spec is None or spec == "digits":
            return None
        return Path(spec[3:] if spec.startswith("hf:") else spec)

    return {"data.source": local(section.source), "data.test": local(section.test)}


def image_run_identity(recipe: ImageRecipe, *, digests: dict[str, str | None] | None = None
                       ) -> RunIdentity:
    """An image run's identity: its resolved recipe and the content of the data it reads
    (`digests` caches file digests across calls, see `textcnn.core.rundir.run_identity`)."""
    return run_identity(to_dict(recipe), files=image_data_files(recipe.data), digests=digests)


def train_image_recipe(data: dict[str, Any], *, source: str, out_dir: str | Path | None,
                       overwrite: bool = False) -> TrainOutcome:
    """Train the image model a recipe describes (`data`: the recipe after `--set` overrides).

    Writes `run.json`, `recipe.yaml` (resolved), `train/` (metrics.jsonl, checkpoint), `model/`
    and `results.json` into `out_dir` (default `runs/<name>`). A folder holding the same run
    resumes it; another run there is refused, or replaced with `overwrite` (see
    `textcnn.core.rundir`). The best epoch is chosen on the dev split; the test split is
    evaluated once, at the end.
    """
    recipe = image_recipe(data, source=source)
    out = Path(out_dir) if out_dir is not None else default_run_folder(str(recipe.name), source=source)
    identity = image_run_identity(recipe)
    with open_run_folder(out, identity, overwrite=overwrite) as run:
        cfg = recipe.train
        seed = recipe.data.split_seed if recipe.data.split_seed is not None else cfg.seed
        split_spec = _split_spec(recipe.data, seed)
        splits = load_splits(split_spec)
        check_classes(splits.train.classes, source=recipe.data.source)
        run.begin()
        resolved = dump_yaml(to_dict(recipe))
        if run.writes:
            atomic_write_text(out / "recipe.yaml", resolved)
        return _train_image(recipe, splits, split_spec, out, resolved, identity)


def _train_image(recipe: ImageRecipe, splits: ImageSplits, split_spec: dict[str, Any], out: Path,
                 resolved: str, identity: RunIdentity) -> TrainOutcome:
    """Train, test and save an image run in its claimed folder `out`."""
    cfg, aug = recipe.train, recipe.augment
    train = splits.train
    mean, std = channel_stats(train.images)
    channels, height, width = train.images.shape[1:]
    meta = {"kind": KIND, "model": recipe.model.name,
            "kwargs": recipe.model.kwargs, "num_classes": len(train.classes),
            "in_channels": channels, "classes": train.classes,
            "input_size": [channels, height, width], "normalize": {"mean": mean, "std": std},
            "data": split_spec}
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = create_model(recipe.model.name, num_classes=len(train.classes), in_channels=channels,
                         **recipe.model.kwargs)
    dev_x = normalize(splits.dev.images, mean, std) if splits.dev is not None else None
    use_aux = bool(getattr(model, "aux_logits", False))

    def plan(epoch: int, generator: torch.Generator) -> list[Tensor]:
        return list(torch.randperm(len(train), generator=generator).split(cfg.batch_size))

    def collate(idx: Sequence[int], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(idx)
        images = train.images[idx]
        if aug.active:
            images = aug(images, generator=generator)
        return normalize(images, mean, std), train.labels[idx]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        smoothing = recipe.model.label_smoothing
        if use_aux:
            logits, aux = model.forward_with_aux(x)
            extra = sum(F.cross_entropy(a.float(), y, label_smoothing=smoothing) for a in aux)
            return F.cross_entropy(logits.float(), y, label_smoothing=smoothing) \
                + recipe.model.aux_weight * extra
        return F.cross_entropy(model(x).float(), y, label_smoothing=smoothing)

    def evaluate(model: nn.Module, device: torch.device) -> dict[str, float]:
        probs = class_probabilities(model, dev_x, device=device)
        # with the dev cross-entropy: a smoother selection signal than accuracy on a small dev split
        return selection_metrics(splits.dev.labels.numpy(), probs.argmax(1).numpy(), probs.numpy())

    # GoogLeNet's auxiliary heads are reached past forward, where DDP's hooks do not look
    trainer = Trainer(model, config=cfg, loss_fn=loss_fn, plan=plan, collate=collate,
                      evaluate=evaluate if dev_x is not None else None, out_dir=out / "train",
                      steps_per_epoch=math.ceil(len(train) / cfg.batch_size),
                      grad_sync="allreduce" if use_aux else "ddp")
    start = time.perf_counter()
    fit = trainer.fit()
    model.cpu().eval()
    metrics: dict[str, Any] = {
        "dataset": recipe.data.source, "model": recipe.model.name,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "seed": cfg.seed, "train_examples": len(train),
        "dev_examples": len(splits.dev) if splits.dev is not None else 0,
        "precision": autocast_precision(cfg.amp, trainer.device),  # of training's matrix products
        "fingerprint": identity.fingerprint,
        "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stopped_by": fit.stopped_by,
        **{f"dev_{k}": v for k, v in fit.best_metrics.items()},
        # the engine's loop time, summed over every resumed part of the run
        "train_seconds": round(fit.seconds, 2), "wall_seconds": round(time.perf_counter() - start, 2)}
    if not is_main_process():  # under torchrun rank 0 tests and saves the model, the others stop here
        return TrainOutcome(out_dir=out, model_dir=out / "model", metrics=metrics)
    if splits.test is not None:
        report = _report(model, splits.test, meta)
        metrics.update({f"test_{k}": report[k] for k in ("accuracy", "macro_f1", "examples")})
        metrics["test_report"] = report
    model_dir = save_image_model(model, out / "model", meta=meta, metrics=metrics, recipe=resolved)
    atomic_write_json(out / "results.json",
                      {k: v for k, v in metrics.items() if k != "test_report"})
    return TrainOutcome(out_dir=out, model_dir=model_dir, metrics=metrics)


def _report(model: nn.Module, data: ImageData, meta: dict[str, Any]) -> dict[str, Any]:
    predicted = class_probabilities(model, prepare(data.images, meta)).argmax(1)
    return evaluation_report(data.labels.numpy(), predicted.numpy(), meta["classes"])


# -- saved models ---------------------------------------------------------------------------------


def save_image_model(model: nn.Module, path: str | Path, *, meta: dict[str, Any],
                     metrics: dict[str, Any] | None = None, recipe: str | None = None) -> Path:
    """Write a model directory as a whole (model.safetensors, config.json from `meta` with the
    files' SHA-256, metrics.json, recipe.yaml), replacing an older model there."""
    files = {"metrics.json": json.dumps(metrics or {}, indent=2) + "\n"}
    if recipe is not None:
        files["recipe.yaml"] = recipe
    return write_model_dir(path, config=meta, state=model.state_dict(), files=files)


def saved_classes(model_dir: ModelDir) -> list[str]:
    """config.json's `classes`: `num_classes` names (strings)."""
    classes = model_dir.get("classes", list)
    count = model_dir.get("num_classes", int)
    if len(classes) != count or not all(isinstance(c, str) for c in classes):
        raise TextCNNError(f"{model_dir.config_file}: expected 'classes' to hold num_classes "
                           f"({count}) names, got {str(classes)[:80]}")
    return classes


def load_image_model(model_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a directory written by `train_image_recipe` (in eval mode, on the CPU) and
    its config.json; every file is checked first (see `textcnn.core.modeldir`)."""
    folder = open_model_dir(model_dir, kind=KIND, keys=("model", "kwargs", "in_channels"))
    meta = folder.config
    saved_classes(folder)
    size = folder.get("input_size", list)
    norm = folder.get("normalize", dict)
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size) \
            or size[0] != meta["in_channels"]:
        raise TextCNNError(f"{folder.config_file}: expected 'input_size' [in_channels, height, "
                           f"width] of positive integers, got {size}")
    if not all(isinstance(norm.get(k), list) and len(norm[k]) == size[0] for k in ("mean", "std")):
        raise TextCNNError(f"{folder.config_file}: expected 'normalize' with a mean and a std per "
                           f"channel ({size[0]}), got {str(norm)[:80]}")
    name, kwargs = folder.get("model", str), folder.get("kwargs", dict)
    model = folder.build(lambda: create_model(name, num_classes=meta["num_classes"],
                                              in_channels=meta["in_channels"], **kwargs))
    return folder.load_into(model).eval(), meta


def eval_data(meta: dict[str, Any], data_spec: str | None) -> ImageData:
    """Labelled images in [0, 1] for a saved model, with the model's class ids.

    None or 'digits': the test split of digits (the one training used, when the model was
    trained on digits). A folder or hf:<name> (its 'test' split): every example in it.
    """
    recorded = meta.get("data", {})
    if data_spec in (None, "digits"):
        spec = dict(recorded) if recorded.get("source") == "digits" and recorded.get("test") is None \
            else {**_split_spec(ImageDataSection(), 0), "size": None, "channels": None}
        test = load_splits(spec).test
        assert test is not None  # test_fraction > 0 in both specs
        data = test
    else:
        _, height, width = meta["input_size"]
        data = load_images(data_spec, split=recorded.get("test_split", "test"),
                           image_column=recorded.get("image_column", "image"),
                           label_column=recorded.get("label_column", "label"),
                           size=height if height == width else None)
    return data.relabelled(meta["classes"])


def evaluate_image_model(model_dir: str | Path, data_spec: str | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class report and confusion matrix (`textcnn.core.metrics` format) of a
    saved model on `data_spec` (see `eval_data`)."""
    model, meta = load_image_model(model_dir)
    return _report(model, eval_data(meta, data_spec), meta)


def image_tensor(image: str | os.PathLike | bytes | np.ndarray, *, name: str | None = None) -> Tensor:
    """One image as a `[1, C, H, W]` float tensor in [0, 1]: an image file, the bytes of one
    (errors name `name`), or an array `[H, W]` / `[H, W, C]` (uint8 0..255, or floats in [0, 1])."""
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[-1] not in (1, 3, 4):
            raise TextCNNError(f"{name or 'image'}: expected an array [H, W] or [H, W, C] with C "
                               f"1, 3 or 4, got shape {list(image.shape)}")
        array = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        array = array[..., :3] if array.ndim == 3 and array.shape[-1] == 4 else array  # drop alpha
    else:
        if not isinstance(image, bytes) and not Path(image).is_file():
            raise TextCNNError(f"{image}: expected an image file, found none")
        array = read_image(image, name=name)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor[None, None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)[None]


def image_probabilities(model: nn.Module, meta: dict[str, Any], paths: Sequence[str]) -> Tensor:
    """Softmax probabilities `[N, classes]` of image files, for a model and config.json from
    `load_image_model`."""
    batch = [prepare(image_tensor(p), meta) for p in paths]
    if not batch:
        return torch.zeros(0, len(meta["classes"]))
    return class_probabilities(model, torch.cat(batch))


# Image files read and predicted at a time by `predict_image_stream` (each is decoded into memory).
CHUNK_IMAGES = 256


def predict_image_stream(model_dir: str | Path, paths: Iterable[str], *, top_k: int = 1,
                         threshold: float | None = None, abstain: Any = None) -> Iterator[Prediction]:
    """Predictions for image files, read, predicted and yielded CHUNK_IMAGES at a time, so an
    input of any length takes bounded memory and the first results come at once (see
    `textcnn.core.streaming`). `label` is the top class, or `abstain` where its probability is
    below `threshold`; an input that fails to read stops the stream after the ones before it."""
    model, meta = load_image_model(model_dir)
    yield from ranked_predictions(
        chunked(paths, max_items=CHUNK_IMAGES),
        lambda chunk: image_probabilities(model, meta, chunk).numpy(), list(meta["classes"]),
        top_k=top_k, threshold=threshold, abstain=abstain)


def predict_images(model_dir: str | Path, paths: Sequence[str], *,
                   top_k: int = 1) -> list[list[tuple[str, float]]]:
    """For each image file, its `top_k` (label, probability) pairs, most probable first."""
    return [p.ranked for p in predict_image_stream(model_dir, paths, top_k=top_k)]


def visualize(model_dir: str | Path, out_dir: str | Path, *, data_spec: str | None = None,
              filters: Sequence[int] = (0, 1, 2, 3), samples: int = 4) -> list[Path]:
    """Zeiler & Fergus style pictures of a saved model's first layer, as PNGs in `out_dir`:
    `filters.png` (every filter), `activations.png` (`samples` inputs and the maps of `filters`)
    and `patches.png` (for each of `filters`, the `samples` input patches that excite it most).
    Inputs come from `data_spec` (see `eval_data`)."""
    from vision import visualize as viz

    model, meta = load_image_model(model_dir)
    viz.check_filters(model, filters)  # before the data is read
    data = eval_data(meta, data_spec)
    raw = resize(to_channels(data.images, meta["input_size"][0]), tuple(meta["input_size"][1:]))
    return viz.write_all(model, raw, prepare(data.images, meta), Path(out_dir),
                         filters=list(filters), samples=samples)


__all__ = ["ImageDataSection", "ImageModelSection", "ImageRecipe", "ImageSplits", "channel_stats",
           "class_probabilities", "eval_data", "evaluate_image_model", "image_data_files",
           "image_run_identity", "image_tensor",
           "image_probabilities", "image_recipe", "load_image_model", "load_splits",
           "predict_image_stream", "predict_images",
           "prepare", "save_image_model", "saved_classes",
           "train_image_recipe", "visualize"]
