"""Image classification end to end: train from a recipe, save, load, evaluate, predict, visualise.

The same engine (`textcnn.core.engine.Trainer`), checkpoints and metrics as the text side. A model
directory holds `model.safetensors`, `config.json` (`"kind": "image-classifier"`: the registry name
and keywords, classes, input size, normalisation and the data split), `metrics.json` and
`recipe.yaml`; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from textcnn.core.config import dump_yaml, to_dict, typed_recipe
from textcnn.core.engine import TrainConfig, Trainer, seed_everything
from textcnn.core.rundir import RunIdentity, default_run_folder, open_run_folder, run_identity
from textcnn.data import holdout_split
from textcnn.errors import TextCNNError
from textcnn.io import atomic_write, atomic_write_json, atomic_write_text
from textcnn.metrics import evaluation_report, selection_metrics
from textcnn.pipeline import TrainOutcome
from vision.data import ImageData, load_images, read_image, split_indices
from vision.registry import create_model
from vision.transforms import Augment, normalize, resize, to_channels

ARTIFACT_FORMAT = 1
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


@dataclass
class ImageModelSection:
    """Which registered model, and its loss."""

    name: str = "lenet5"  # a name from vision.list_models()
    kwargs: dict[str, Any] = field(default_factory=dict)  # builder keywords, e.g. {drop_rate: 0.2}
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    aux_weight: float = 0.3  # weight of GoogLeNet's auxiliary losses (kwargs.aux_logits: true)


@dataclass
class ImageRecipe:
    """A whole image-classification run."""

    task: Literal["image"] = "image"  # what the recipe trains
    name: str | None = None  # run name; default: the recipe file's stem
    data: ImageDataSection = field(default_factory=ImageDataSection)
    model: ImageModelSection = field(default_factory=ImageModelSection)
    augment: Augment = field(default_factory=Augment)
    train: TrainConfig = field(default_factory=TrainConfig)


def image_recipe(data: dict[str, Any], *, source: str | Path = "recipe") -> ImageRecipe:
    """Check plain recipe data against `ImageRecipe`; errors name the file and the key."""
    return typed_recipe(ImageRecipe, data, source=source)


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Splits:
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


def load_splits(spec: dict[str, Any]) -> Splits:
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
    return Splits(full.subset(train), full.subset(dev) if len(dev) else None, test_data)


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
    identity = run_identity(to_dict(recipe), files=image_data_files(recipe.data))
    with open_run_folder(out, identity, overwrite=overwrite) as run:
        cfg = recipe.train
        seed = recipe.data.split_seed if recipe.data.split_seed is not None else cfg.seed
        split_spec = _split_spec(recipe.data, seed)
        splits = load_splits(split_spec)
        run.begin()
        resolved = dump_yaml(to_dict(recipe))
        atomic_write_text(out / "recipe.yaml", resolved)
        return _train_image(recipe, splits, split_spec, out, resolved, identity)


def _train_image(recipe: ImageRecipe, splits: Splits, split_spec: dict[str, Any], out: Path,
                 resolved: str, identity: RunIdentity) -> TrainOutcome:
    """Train, test and save an image run in its claimed folder `out`."""
    cfg, aug = recipe.train, recipe.augment
    train = splits.train
    mean, std = channel_stats(train.images)
    channels, height, width = train.images.shape[1:]
    meta = {"format": ARTIFACT_FORMAT, "kind": KIND, "model": recipe.model.name,
            "kwargs": recipe.model.kwargs, "num_classes": len(train.classes),
            "in_channels": channels, "classes": train.classes,
            "input_size": [channels, height, width], "normalize": {"mean": mean, "std": std},
            "data": split_spec}
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = create_model(recipe.model.name, num_classes=len(train.classes), in_channels=channels,
                         **recipe.model.kwargs)
    dev_x = normalize(splits.dev.images, mean, std) if splits.dev is not None else None
    use_aux = bool(getattr(model, "aux_logits", False))

    def batches(epoch: int, generator: torch.Generator):
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            images = train.images[idx]
            if aug.active:
                images = aug(images, generator=generator)
            yield normalize(images, mean, std), train.labels[idx]

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
        truth = splits.dev.labels
        # Dev cross-entropy: a smoother selection signal than accuracy on a small dev split.
        loss = -probs[torch.arange(len(truth)), truth].clamp_min(1e-12).log().mean()
        return {**selection_metrics(truth.numpy(), probs.argmax(1).numpy()), "loss": float(loss)}

    trainer = Trainer(model, config=cfg, loss_fn=loss_fn, batches=batches,
                      evaluate=evaluate if dev_x is not None else None, out_dir=out / "train",
                      steps_per_epoch=math.ceil(len(train) / cfg.batch_size))
    start = time.perf_counter()
    fit = trainer.fit()
    model.cpu().eval()
    metrics: dict[str, Any] = {
        "dataset": recipe.data.source, "model": recipe.model.name,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "seed": cfg.seed, "train_examples": len(train),
        "dev_examples": len(splits.dev) if splits.dev is not None else 0,
        "fingerprint": identity.fingerprint,
        "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stopped_by": fit.stopped_by,
        **{f"dev_{k}": v for k, v in fit.best_metrics.items()},
        # the engine's loop time, summed over every resumed part of the run
        "train_seconds": round(fit.seconds, 2), "wall_seconds": round(time.perf_counter() - start, 2)}
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
    """Write a model directory: model.safetensors, config.json, metrics.json, recipe.yaml."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    atomic_write_json(path / "config.json", meta)
    atomic_write_json(path / "metrics.json", metrics or {})
    if recipe is not None:
        atomic_write_text(path / "recipe.yaml", recipe)
    return path


def read_model_dir(model_dir: str | Path, kind: str) -> tuple[dict[str, Any], Path]:
    """config.json of a model directory of `kind`, and the path of its model.safetensors."""
    path = Path(model_dir)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise TextCNNError(f"{path}: expected a model directory with config.json, found none")
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TextCNNError(f"{config_file}: expected JSON, got an error: {err}") from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        got = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise TextCNNError(f"{config_file}: expected kind '{kind}', got {got!r}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise TextCNNError(f"{path}: expected model.safetensors beside config.json, found none")
    return meta, weights


def load_image_model(model_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a directory written by `train_image_recipe` (in eval mode, on the CPU) and
    its config.json."""
    meta, weights = read_model_dir(model_dir, KIND)
    model = create_model(meta["model"], num_classes=meta["num_classes"],
                         in_channels=meta["in_channels"], **meta["kwargs"])
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), meta


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
    """Accuracy, macro-F1, per-class report and confusion matrix (`textcnn.metrics` format) of a
    saved model on `data_spec` (see `eval_data`)."""
    model, meta = load_image_model(model_dir)
    return _report(model, eval_data(meta, data_spec), meta)


def predict_images(model_dir: str | Path, paths: Sequence[str], *,
                   top_k: int = 1) -> list[list[tuple[str, float]]]:
    """For each image file, its `top_k` (label, probability) pairs, most probable first."""
    if top_k < 1:
        raise TextCNNError(f"top_k: expected an integer >= 1, got {top_k!r}")
    model, meta = load_image_model(model_dir)
    batch = []
    for p in paths:
        if not Path(p).is_file():
            raise TextCNNError(f"{p}: expected an image file, found none")
        array = torch.from_numpy(read_image(p))
        image = array[None, None] if array.dim() == 2 else array.permute(2, 0, 1)[None]
        batch.append(prepare(image, meta))
    if not batch:
        return []
    probs = class_probabilities(model, torch.cat(batch))
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    classes = meta["classes"]
    return [[(classes[j], float(v)) for v, j in zip(vals.tolist(), idx.tolist())]
            for vals, idx in zip(top.values, top.indices)]


def visualize(model_dir: str | Path, out_dir: str | Path, *, data_spec: str | None = None,
              filters: Sequence[int] = (0, 1, 2, 3), samples: int = 4) -> list[Path]:
    """Zeiler & Fergus style pictures of a saved model's first layer, as PNGs in `out_dir`:
    `filters.png` (every filter), `activations.png` (`samples` inputs and the maps of `filters`)
    and `patches.png` (for each of `filters`, the `samples` input patches that excite it most).
    Inputs come from `data_spec` (see `eval_data`)."""
    from vision import visualize as viz

    model, meta = load_image_model(model_dir)
    data = eval_data(meta, data_spec)
    raw = resize(to_channels(data.images, meta["input_size"][0]), tuple(meta["input_size"][1:]))
    return viz.write_all(model, raw, prepare(data.images, meta), Path(out_dir),
                         filters=list(filters), samples=samples)


__all__ = ["ImageDataSection", "ImageModelSection", "ImageRecipe", "Splits", "channel_stats",
           "class_probabilities", "eval_data", "evaluate_image_model", "image_data_files", "image_recipe",
           "load_image_model", "load_splits", "read_model_dir", "predict_images", "prepare", "save_image_model",
           "train_image_recipe", "visualize"]
