"""Object detection end to end: train from a recipe, save, load, evaluate, predict with drawings.

The same engine (`textcnn.core.engine.Trainer`) as the classifiers: the detector's summed losses
are the training loss and VOC mAP@0.5 on the val split chooses the best epoch. A model directory
holds `model.safetensors` (every parameter and buffer, R-CNN's SVMs included), `config.json`
(`"kind": "detector"`: the registry name and keywords, classes and the data the model was trained
on), `metrics.json` and `recipe.yaml`; nothing is pickled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from textcnn.core.config import (
    check_literals,
    check_number,
    dump_yaml,
    is_number,
    shown,
    to_dict,
    typed_recipe,
)
from textcnn.core.distributed import is_main_process
from textcnn.core.engine import (
    TrainConfig,
    Trainer,
    autocast_precision,
    check_selection_metric,
    seed_everything,
)
from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.io import atomic_write_json, atomic_write_text
from textcnn.core.modeldir import open_model_dir
from textcnn.core.rundir import (
    RunIdentity,
    TrainOutcome,
    default_run_folder,
    open_run_folder,
    run_identity,
)
from vision.data import read_image
from vision.detection.data import (
    DetectionAugment,
    DetectionData,
    load_coco,
    load_voc,
    shapes_splits,
)
from vision.detection.metrics import coco_map, voc_map
from vision.detection.registry import create_detector, list_detectors
from vision.pipeline import save_image_model, saved_classes

KIND = "detector"
INFERENCE_BATCH = 32
DEFAULT_SCORE_THRESHOLD = 0.5  # detections scoring below this are left out of predictions


@dataclass
class DetectionDataSection:
    """Where the annotated images come from."""

    source: Literal["shapes", "coco", "voc"] = "shapes"  # synthetic shapes, or real annotations
    size: int = 96  # shapes: image side in pixels
    train_images: int = 2000  # shapes: training images
    val_images: int = 200  # shapes: val images (model selection)
    test_images: int = 300  # shapes: test images (evaluated once, at the end)
    max_objects: int = 4  # shapes: at most this many objects per image
    seed: int = 0  # shapes: generator seed; fixed, so train.seed never changes the data
    train: str | None = None  # coco: annotation JSON; voc: a VOC root or a folder of XML files
    val: str | None = None  # like train; None: hold out val_fraction of train
    test: str | None = None  # like train; None: no test evaluation
    image_dir: str | None = None  # coco: folder the file names are relative to; None: the JSON's
    val_fraction: float = 0.1  # share of train held out for selection when val is not given

    def __post_init__(self) -> None:
        check_literals(self, "data")
        check_number("data.size", self.size, low=8, integer=True)
        for key, low in (("train_images", 1), ("val_images", 1), ("test_images", 0), ("max_objects", 1)):
            check_number(f"data.{key}", getattr(self, key), low=low, integer=True)
        check_number("data.seed", self.seed, low=0, high=2**32 - 1, integer=True)
        check_number("data.val_fraction", self.val_fraction, low=0, high=1, low_open=True, high_open=True)


@dataclass
class DetectorSection:
    """Which registered detector, and its builder keywords."""

    name: str = "faster_rcnn"  # a name from vision.detection.list_detectors()
    kwargs: dict[str, Any] = field(default_factory=dict)  # builder keywords, e.g. {image_size: 96}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in list_detectors():
            raise TextCNNError(f"model.name: expected a detector from vision.detection.list_detectors(), "
                               f"got {shown(self.name)}{did_you_mean(str(self.name), list_detectors())}")


@dataclass
class DetectionAugmentSection:
    """Augmentation of the training images; boxes move with the pixels."""

    hflip: float = 0.5  # probability of a horizontal flip
    scale_range: list[float] | None = field(default_factory=lambda: [0.8, 1.2])  # scale jitter; null: off

    def __post_init__(self) -> None:
        check_number("augment.hflip", self.hflip, low=0, high=1)
        scales = self.scale_range
        if scales is not None and not (isinstance(scales, (list, tuple)) and len(scales) == 2 and all(
                is_number(v) for v in scales) and 0 < scales[0] <= scales[1]):
            raise TextCNNError(f"augment.scale_range: expected [low, high] with 0 < low <= high, or null, "
                               f"got {shown(scales)}")


@dataclass
class DetectionRecipe:
    """A whole detection run."""

    task: Literal["detection"] = "detection"  # what the recipe trains
    name: str | None = None  # run name; default: the recipe file's stem
    data: DetectionDataSection = field(default_factory=DetectionDataSection)
    model: DetectorSection = field(default_factory=DetectorSection)
    augment: DetectionAugmentSection = field(default_factory=DetectionAugmentSection)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))

    def __post_init__(self) -> None:
        check_selection_metric(self.train, DETECTION_METRICS)


# The dev metric a detection run selects on (VOC mAP@0.5 on val) and the direction that is better.
DETECTION_METRICS: dict[str, str] = {"map_50": "max"}

# A detector's training defaults where TrainConfig's are Kim's text settings.
TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
                                  "metric": "map_50", "mode": "max"}


def detection_recipe(data: dict[str, Any], *, source: str | Path = "recipe") -> DetectionRecipe:
    """Check plain recipe data against `DetectionRecipe`; errors name the file and the key.

    Keys the `train` section leaves out take `TRAIN_DEFAULTS` (then TrainConfig's own)."""
    train = data.get("train")
    if isinstance(train, dict):
        data = {**data, "train": {**TRAIN_DEFAULTS, **train}}
    return typed_recipe(DetectionRecipe, data, source=source)


# -- data -----------------------------------------------------------------------------------------


def _load_annotations(source: str, spec: str, image_dir: str | None) -> DetectionData:
    if source == "coco":
        return load_coco(spec, image_dir if image_dir is not None else Path(spec).parent)
    return load_voc(spec)


def load_detection_splits(data: DetectionDataSection
                          ) -> tuple[DetectionData, DetectionData, DetectionData | None]:
    """Train, val and test data of a recipe's data section."""
    if data.source == "shapes":
        return shapes_splits(seed=data.seed, size=data.size, train=data.train_images,
                             val=data.val_images, test=data.test_images, max_objects=data.max_objects)
    if not data.train:
        raise TextCNNError(f"data.train: expected a {data.source} annotation file or folder, got none")
    train = _load_annotations(data.source, data.train, data.image_dir)
    if data.val:
        val = _load_annotations(data.source, data.val, data.image_dir)
    else:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(data.seed)).tolist()
        cut = max(1, round(len(train) * data.val_fraction))
        train, val = train.subset(order[cut:]), train.subset(order[:cut])
    test = _load_annotations(data.source, data.test, data.image_dir) if data.test else None
    return train, val, test


def _images(data: DetectionData, indices: Sequence[int]) -> list[Tensor]:
    return [data.images[i] for i in indices]


# -- inference and metrics ------------------------------------------------------------------------


@torch.no_grad()
def detect(model: nn.Module, images: Sequence[Tensor], *, batch_size: int = INFERENCE_BATCH,
           device: torch.device | None = None) -> list[dict[str, Tensor]]:
    """Detections (on the CPU) of `images` ([3, H, W] in [0, 1]) in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out: list[dict[str, Tensor]] = []
    try:
        for i in range(0, len(images), batch_size):
            chunk = [img.to(device) if device is not None else img for img in images[i:i + batch_size]]
            out += [{k: v.cpu() for k, v in det.items()} for det in model(chunk)]
    finally:
        model.train(was_training)
    return out


def detection_report(model: nn.Module, data: DetectionData, *, coco: bool = True,
                     device: torch.device | None = None) -> dict[str, Any]:
    """VOC mAP@0.5 with per-class AP and, with `coco`, COCO mAP@[.5:.95] of `model` on `data`."""
    return score_detections(detect(model, _images(data, range(len(data))), device=device), data,
                            coco=coco)


def score_detections(detections: list[dict[str, Tensor]], data: DetectionData, *,
                     coco: bool = True) -> dict[str, Any]:
    """`detection_report` of given detections, one per image of `data`."""
    voc = voc_map(detections, data.targets, num_classes=len(data.classes))
    report: dict[str, Any] = {
        "images": len(data), "objects": int(sum(len(t["labels"]) for t in data.targets)),
        "map_50": float(voc["map"]),
        "ap_50": {data.classes[c - 1]: float(ap) for c, ap in voc["ap"].items()}}
    if coco:
        report.update({f"coco_{k}": float(v) for k, v in
                       coco_map(detections, data.targets, num_classes=len(data.classes)).items()})
    return report


def format_detection_report(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    lines = [f"images {report['images']}, objects {report['objects']}",
             f"mAP@0.5 (VOC, all-point) {report['map_50']:.4f}"]
    if "coco_map" in report:
        lines.append(f"mAP@[.5:.95] (COCO) {report['coco_map']:.4f}   mAP@0.75 {report['coco_map_75']:.4f}")
    lines += [f"  AP@0.5 {name:<12} {ap:.4f}" for name, ap in report["ap_50"].items()]
    return "\n".join(lines)


# -- training -------------------------------------------------------------------------------------


def detection_data_files(section: DetectionDataSection) -> dict[str, Path | None]:
    """The annotation files and image folders a detection recipe reads, by role, for its run
    fingerprint (synthetic shapes are drawn from `data.seed` and the other shape keys)."""
    if section.source == "shapes":
        return {}
    files: dict[str, Path | None] = {f"data.{role}": Path(spec) for role in ("train", "val", "test")
                                     if (spec := getattr(section, role))}
    if section.source == "coco":  # the images: data.image_dir, else each JSON's own folder
        folders = [section.image_dir] if section.image_dir else \
            sorted({str(Path(p).parent) for p in files.values()})
        files.update({f"images:{folder}": Path(folder) for folder in folders})
    return files


def detection_run_identity(recipe: DetectionRecipe, *, digests: dict[str, str | None] | None = None
                           ) -> RunIdentity:
    """A detection run's identity: its resolved recipe and the content of the data it reads
    (`digests` caches file digests across calls, see `textcnn.core.rundir.run_identity`)."""
    return run_identity(to_dict(recipe), files=detection_data_files(recipe.data), digests=digests)


def train_detection_recipe(data: dict[str, Any], *, source: str, out_dir: str | Path | None,
                           overwrite: bool = False) -> TrainOutcome:
    """Train the detector a recipe describes (`data`: the recipe after `--set` overrides).

    Writes `run.json`, `recipe.yaml` (resolved), `train/` (metrics.jsonl, checkpoint), `model/`
    and `results.json` into `out_dir` (default `runs/<name>`). A folder holding the same run
    resumes it; another run there is refused, or replaced with `overwrite` (see
    `textcnn.core.rundir`). The best epoch is chosen by VOC mAP@0.5 on the val split; the test
    split is evaluated once, at the end. Detectors with a stage outside gradient descent
    (R-CNN's SVMs) fit it afterwards in `post_fit`.
    """
    recipe = detection_recipe(data, source=source)
    out = Path(out_dir) if out_dir is not None else default_run_folder(str(recipe.name), source=source)
    identity = detection_run_identity(recipe)
    with open_run_folder(out, identity, overwrite=overwrite) as run:
        splits = load_detection_splits(recipe.data)
        run.begin()
        resolved = dump_yaml(to_dict(recipe))
        if run.writes:
            atomic_write_text(out / "recipe.yaml", resolved)
        return _train_detector(recipe, *splits, out, resolved, identity)


def _train_detector(recipe: DetectionRecipe, train: DetectionData, val: DetectionData,
                    test: DetectionData | None, out: Path, resolved: str,
                    identity: RunIdentity) -> TrainOutcome:
    """Train, test and save a detection run in its claimed folder `out`."""
    cfg = recipe.train
    meta = {"kind": KIND, "model": recipe.model.name,
            "kwargs": recipe.model.kwargs, "num_classes": len(train.classes),
            "classes": list(train.classes), "data": to_dict(recipe.data)}
    seed_everything(cfg.seed)  # the initial weights depend on the seed too
    model = create_detector(recipe.model.name, num_classes=len(train.classes), **recipe.model.kwargs)
    aug = recipe.augment
    augment = DetectionAugment(hflip=aug.hflip, scale_range=tuple(aug.scale_range) if aug.scale_range else None)

    def plan(epoch: int, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(train), generator=generator).tolist()
        return [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]

    def collate(idx: Sequence[int], generator: torch.Generator):
        idx = [int(j) for j in idx]
        return augment(_images(train, idx), [train.targets[j] for j in idx], generator)

    def loss_fn(model: nn.Module, batch: tuple[list[Tensor], list[dict[str, Tensor]]]) -> Tensor:
        images, targets = batch
        return sum(model(images, targets).values())

    def evaluate(model: nn.Module, device: torch.device) -> dict[str, float]:
        return {"map_50": detection_report(model, val, coco=False, device=device)["map_50"]}

    # allreduce: a detector's losses may leave a head out of a step (no positive anchors)
    trainer = Trainer(model, config=cfg, loss_fn=loss_fn, plan=plan, collate=collate, evaluate=evaluate,
                      out_dir=out / "train", steps_per_epoch=math.ceil(len(train) / cfg.batch_size),
                      grad_sync="allreduce")
    start = time.perf_counter()
    fit = trainer.fit()
    model.cpu().eval()
    if not is_main_process():  # under torchrun rank 0 fits the rest, tests and saves; the others stop here
        return TrainOutcome(out_dir=out, model_dir=out / "model", metrics={
            "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stopped_by": fit.stopped_by})
    post_seconds = 0.0
    if hasattr(model, "post_fit"):
        t0 = time.perf_counter()
        model.post_fit(_images(train, range(len(train))), train.targets)
        post_seconds = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "dataset": recipe.data.source, "model": recipe.model.name,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "seed": cfg.seed, "train_images": len(train), "val_images": len(val),
        "precision": autocast_precision(cfg.amp, trainer.device),  # of training's matrix products
        "fingerprint": identity.fingerprint,
        "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stopped_by": fit.stopped_by,
        **{f"val_{k}": v for k, v in fit.best_metrics.items()},
        # the engine's loop time (with the per-epoch val evaluation) plus any post-fit stage
        "train_seconds": round(fit.seconds + post_seconds, 2), "post_fit_seconds": round(post_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 2)}
    if hasattr(model, "post_fit"):
        metrics["val_map_50_after_post_fit"] = detection_report(model, val, coco=False)["map_50"]
    if test is not None:
        t0 = time.perf_counter()
        detections = detect(model, _images(test, range(len(test))))
        # inference alone (batches of INFERENCE_BATCH on the CPU), without the mAP computation
        metrics["test_ms_per_image"] = round(1000 * (time.perf_counter() - t0) / max(1, len(test)), 2)
        metrics.update({f"test_{k}": v for k, v in score_detections(detections, test).items()})
    model_dir = save_image_model(model, out / "model", meta=meta, metrics=metrics, recipe=resolved)
    atomic_write_json(out / "results.json", metrics)
    return TrainOutcome(out_dir=out, model_dir=model_dir, metrics=metrics)


# -- saved models ---------------------------------------------------------------------------------


def load_detector(model_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of a directory written by `train_detection_recipe` (eval mode, CPU) and its
    config.json; every file is checked first (see `textcnn.core.modeldir`)."""
    folder = open_model_dir(model_dir, kind=KIND, keys=("model", "kwargs", "data"))
    saved_classes(folder)
    name, kwargs = folder.get("model", str), folder.get("kwargs", dict)
    model = folder.build(lambda: create_detector(name, num_classes=folder.config["num_classes"],
                                                 **kwargs))
    return folder.load_into(model).eval(), folder.config


def evaluation_data(meta: dict[str, Any], data_spec: str | None) -> DetectionData:
    """Annotated images for a saved detector: None gives the test split of its own data; a
    `.json` file is read as COCO (images beside it), anything else as Pascal VOC."""
    if data_spec is None:
        section = typed_recipe(DetectionDataSection, meta["data"], source="config.json data")
        test = load_detection_splits(section)[2]
        if test is None:
            raise TextCNNError("evaluate: the model's data has no test split; give --data")
        return test
    data = _load_annotations("coco" if data_spec.endswith(".json") else "voc", data_spec, None)
    if list(data.classes) != list(meta["classes"]):
        raise TextCNNError(f"{data_spec}: expected the model's classes {meta['classes']}, got {list(data.classes)}")
    return data


def evaluate_detector(model_dir: str | Path, data_spec: str | None = None) -> dict[str, Any]:
    """VOC and COCO mAP of a saved detector on `data_spec` (see `evaluation_data`)."""
    model, meta = load_detector(model_dir)
    return detection_report(model, evaluation_data(meta, data_spec))


def predict_detections(model_dir: str | Path, paths: Iterable[str], *, out_dir: str | Path | None = None,
                       score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[dict[str, Any]]:
    """Detections of each image file with a score >= `score_threshold` (see `iter_detections`)."""
    return list(iter_detections(model_dir, paths, out_dir=out_dir, score_threshold=score_threshold))


def iter_detections(model_dir: str | Path, paths: Iterable[str], *, out_dir: str | Path | None = None,
                    score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> Iterator[dict[str, Any]]:
    """For each image file, as it is read: `{"image": path, "detections": [{label, score, box}]}`
    with the detections scoring >= `score_threshold`.

    With `out_dir`, each image is also drawn with its boxes into `out_dir`, under its file's stem
    (`x.png`; a stem met again gets `x-2.png`, `x-3.png`, ... in input order, so two inputs
    `a/x.png` and `b/x.png` both keep their drawing), named in the entry's `"drawn"`; and
    `detections.json` lists every entry. It is written at the end, or when an input fails, with
    the entries of the images before it."""
    from vision.detection.draw import draw_detections, readable_scale, save_png

    model, meta = load_detector(model_dir)
    results: list[dict[str, Any]] = []
    used: set[str] = set()
    try:
        for p in paths:
            if not Path(p).is_file():
                raise TextCNNError(f"{p}: expected an image file, found none")
            array = torch.from_numpy(read_image(p)).float()
            image = (array[None].expand(3, -1, -1) if array.dim() == 2 else array.permute(2, 0, 1)[:3]).contiguous()
            det = detect(model, [image])[0]
            keep = det["scores"] >= score_threshold
            det = {k: v[keep] for k, v in det.items()}
            result: dict[str, Any] = {"image": str(p), "detections": [
                {"label": meta["classes"][int(label) - 1], "score": round(float(score), 4),
                 "box": [round(float(v), 1) for v in box]}
                for box, label, score in zip(det["boxes"], det["labels"], det["scores"])]}
            if out_dir is not None:
                name = _drawing_name(Path(p).stem, used)
                drawn = draw_detections(image, det, meta["classes"], score_threshold=score_threshold,
                                        scale=readable_scale(*image.shape[-2:]))
                save_png(drawn, Path(out_dir) / name)
                result["drawn"] = name
            results.append(result)
            yield result
    finally:
        if out_dir is not None and results:
            atomic_write_json(Path(out_dir) / "detections.json", results)


def _drawing_name(stem: str, used: set[str]) -> str:
    """`<stem>.png`, or `<stem>-2.png`, `-3`, ... when an earlier input took it (compared without
    case, as on case-insensitive file systems)."""
    name, n = f"{stem or 'image'}.png", 1
    while name.lower() in used:
        n += 1
        name = f"{stem or 'image'}-{n}.png"
    used.add(name.lower())
    return name


__all__ = ["DetectionDataSection", "DetectionRecipe", "DetectorSection", "detect", "detection_data_files",
           "detection_run_identity", "score_detections",
           "detection_recipe", "detection_report", "evaluate_detector", "evaluation_data",
           "format_detection_report", "iter_detections",
           "load_detection_splits", "load_detector", "predict_detections",
           "train_detection_recipe"]
