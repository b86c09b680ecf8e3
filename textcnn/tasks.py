"""One dispatch for every kind of model: text classification, image classification, detection.

The top layer: the CLI and the batch runner reach the text side (`textcnn/`) and the vision side
(`vision/`) only through a `Task`. A recipe names its task (`task: text | image | detection`,
text by default) and a model directory its kind (`config.json`'s `kind`); `task_for_recipe` and
`task_for_model` read those, never anything else. A task trains, evaluates, predicts and
visualises, formats its reports, and says what a batch run's row and a batch table hold.
"""

from __future__ import annotations

import json
import re
import statistics
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.rundir import RunIdentity, TrainOutcome

# -- tables ---------------------------------------------------------------------------------------


@dataclass
class Table:
    """A batch table of one task: Markdown lines and the CSV header and rows."""

    markdown: list[str]  # table.md lines: the table, then a note on what the cells hold
    header: list[str]  # table.csv columns
    rows: list[list[Any]] = field(default_factory=list)  # table.csv rows, one per header column


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count of `values`."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _recipe_group(run: str) -> str:
    """The run name without a `/seed=N` suffix: the runs of one recipe over training seeds."""
    return re.sub(r"/seed=-?\d+$", "", run)


def _cell(stats: dict[str, float] | None, scale: float = 1.0, digits: int = 1) -> str:
    if stats is None:
        return "–"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f} (n={stats['n']})"


# -- the interface ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    """What `textcnn predict` was asked for; a classifier reads the first three, a detector the
    next two (the CLI refuses those of the other role)."""

    top_k: int | None = None  # classifier: the K most probable labels [1]
    threshold: float | None = None  # classifier: abstain where the top probability is below it
    abstain: Any = None  # classifier, with threshold: the label given instead of None
    score_threshold: float | None = None  # detector: keep detections scoring at least this [0.5]
    out_dir: str | None = None  # detector: write each image with its boxes and detections.json here
    out_format: str = "text"  # 'text' (tab-separated lines) or 'jsonl'


class Task:
    """What one kind of model does; subclasses fill in each step for their side."""

    name: ClassVar[str]  # the recipe's `task`
    model_kind: ClassVar[str]  # config.json's `kind` in its model directories
    role: ClassVar[str]  # 'classifier' or 'detector': which `textcnn predict` options apply
    title: ClassVar[str]  # its section heading in the table of a batch of several tasks

    # recipes and training
    def check(self, data: Mapping[str, Any], *, source: str | Path) -> Any:
        """The typed recipe of plain recipe data; a bad key or value is a one-line `TextCNNError`."""
        raise NotImplementedError

    def train(self, data: dict[str, Any], *, source: str | Path, out_dir: str | Path | None = None,
              overwrite: bool = False) -> TrainOutcome:
        """Train the recipe `data` (after `--set` overrides) into `out_dir` (default
        `runs/<name>`); the same run there resumes, another is refused unless `overwrite`."""
        raise NotImplementedError

    # saved models
    def evaluate(self, model: str | Path, data_file: str | None, *, data_format: str | None = None,
                 text_column: str = "text", label_column: str = "label") -> dict[str, Any]:
        """The report of a saved model on labelled data (None: the model's own test split,
        where the task has one)."""
        raise NotImplementedError

    def format_report(self, report: dict[str, Any]) -> str:
        """`evaluate`'s report as readable text."""
        raise NotImplementedError

    def prediction_lines(self, model: str | Path, inputs: Iterable[str], options: PredictOptions
                         ) -> Iterator[str]:
        """`textcnn predict`'s output, a line per input as it is predicted."""
        raise NotImplementedError

    def visualize(self, model: str | Path, out_dir: str | Path, *, data_file: str | None,
                  maps: tuple[int, ...], samples: int, top: int) -> list[Path]:
        """Pictures of what the model's filters respond to (Zeiler & Fergus)."""
        raise NotImplementedError

    # batch runs
    def runs(self, data: dict[str, Any], checked: Any, *, name: str, folds: int | None
             ) -> list[tuple[str, dict[str, Any]]]:
        """The (run name, recipe data) runs of one expanded recipe; `folds` limits the folds of
        a cross-validated one."""
        return [(name, dict(data, name=name))]

    def reseeded(self, data: dict[str, Any], checked: Any, seed: int) -> dict[str, Any]:
        """A run's recipe data trained with another seed, on the same data."""
        return {**data, "train": {**data.get("train", {}), "seed": seed}}

    def group_key(self, checked: Any, run: str) -> str | None:
        """Runs with the same key train together with `--fold-batched`; None: alone."""
        return None

    def identity(self, checked: Any, *, digests: dict[str, str | None] | None = None) -> RunIdentity:
        """A run's identity (its fingerprint): the resolved recipe and its data's content."""
        raise NotImplementedError

    def train_runs(self, runs: Sequence[tuple[dict[str, Any], str]], out_dirs: Sequence[Path], *,
                   overwrite: bool = False) -> list[TrainOutcome]:
        """Train (recipe data, source) runs, each into its folder; several only as a group
        made by `group_key`."""
        if len(runs) != 1:
            raise TextCNNError(f"{self.name} runs train one at a time, got a group of {len(runs)}")
        (data, source), = runs
        return [self.train(data, source=source, out_dir=out_dir, overwrite=overwrite)
                for out_dir in out_dirs]

    def batch_row(self, checked: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        """A finished run's fields in results.jsonl (beside run, task, machine and source)."""
        raise NotImplementedError

    def row_summary(self, row: dict[str, Any]) -> str:
        """A finished run's figure for the batch's progress line, e.g. 'accuracy 0.9100'."""
        if row.get("accuracy") is not None:
            return f"accuracy {row['accuracy']:.4f}"
        dev = row.get("dev_accuracy")
        return "no test split" + (f" (dev accuracy {dev:.4f})" if dev is not None else "")

    def table(self, rows: Sequence[dict[str, Any]]) -> Table:
        """The task's table.md and table.csv from its results.jsonl rows."""
        raise NotImplementedError


def _common_row(checked: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """The fields every task's row has, after its own figures."""
    m = metrics
    return {"epochs_run": m.get("epochs_run"), "stopped_by": m.get("stopped_by"),
            "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
            "wall_seconds": m.get("wall_seconds"), "precision": m.get("precision")}


def _pin_split_seed(data: dict[str, Any], checked: Any, seed: int) -> dict[str, Any]:
    """Recipe data with training seed `seed` and the split seed the recipe had (the split seed
    defaults to the training seed, so it is written out: the data stays split the same way)."""
    split_seed = checked.train.seed if checked.data.split_seed is None else checked.data.split_seed
    return {**data, "train": {**data.get("train", {}), "seed": seed},
            "data": {**data.get("data", {}), "split_seed": split_seed}}


class ClassifierTask(Task):
    """A classifier: predictions are ranked labels with probabilities, and a decision."""

    role = "classifier"

    def predict(self, model: str | Path, inputs: Iterable[str], *, top_k: int = 1,
                threshold: float | None = None, abstain: Any = None) -> Iterator[Any]:
        """`textcnn.core.streaming.Prediction`s of `inputs`, a chunk at a time."""
        raise NotImplementedError

    def prediction_lines(self, model: str | Path, inputs: Iterable[str], options: PredictOptions
                         ) -> Iterator[str]:
        decided = options.threshold is not None
        for p in self.predict(model, inputs, top_k=options.top_k or 1, threshold=options.threshold,
                              abstain=options.abstain):
            if options.out_format == "jsonl":
                yield json.dumps({"text": p.input, "label": p.label, "labels": [
                    {"label": label, "probability": round(prob, 6)} for label, prob in p.ranked]})
                continue
            shown = "  ".join(f"{label} ({prob:.3f})" for label, prob in p.ranked)
            if decided:
                label = (",".join(map(str, p.label)) or "(none)") if isinstance(p.label, list) \
                    else "(abstain)" if p.label is None else p.label
                shown = f"{label}\t{shown}"
            yield f"{shown}\t{p.input}"

    def format_report(self, report: dict[str, Any]) -> str:
        from textcnn.core.metrics import format_report

        return format_report(report)

    def plot_report(self, report: dict[str, Any], path: str | Path) -> Path:
        """The confusion matrix of `evaluate`'s report as PNG."""
        from textcnn.core.metrics import plot_confusion_matrix

        return plot_confusion_matrix(report, path)


# -- text -------------------------------------------------------------------------------------------


class TextTask(ClassifierTask):
    """Kim's sentence CNN and the scikit-learn baselines (`textcnn/`)."""

    name = "text"
    model_kind = "text-classifier"
    title = "Text classification"

    def check(self, data, *, source):
        from textcnn.recipe import text_recipe

        return text_recipe(dict(data), source=source)

    def train(self, data, *, source, out_dir=None, overwrite=False):
        from textcnn.pipeline import train_text_recipe

        return train_text_recipe(data, source=source, out_dir=out_dir, overwrite=overwrite)

    def evaluate(self, model, data_file, *, data_format=None, text_column="text", label_column="label"):
        from textcnn.pipeline import evaluate_model

        return evaluate_model(model, data_file, data_format=data_format, text_column=text_column,
                              label_column=label_column)

    def predict(self, model, inputs, *, top_k=1, threshold=None, abstain=None):
        from textcnn.pipeline import predict_stream

        return predict_stream(model, inputs, top_k=top_k, threshold=threshold, abstain=abstain)

    def visualize(self, model, out_dir, *, data_file, maps, samples, top):
        from textcnn.pipeline import visualize_model

        return visualize_model(model, out_dir, data_file=data_file, maps=maps, top=top)

    def runs(self, data, checked, *, name, folds):
        """One run per fold (the first `folds`) of a cross-validated benchmark, else one."""
        if not self._cv(checked):
            return super().runs(data, checked, name=name, folds=folds)
        n_folds = checked.data.folds if folds is None else min(folds, checked.data.folds)
        spec = dict(data, name=name)
        return [(f"{name}/fold={fold}", {**spec, "data": {**spec.get("data", {}), "fold": fold}})
                for fold in range(n_folds)]

    def reseeded(self, data, checked, seed):
        return _pin_split_seed(data, checked, seed)  # on the same CV folds

    def group_key(self, checked, run):
        """The Kim CNN folds of one cross-validation recipe (and seed) train as one model."""
        if checked.model.arch != "kim-cnn" or not self._cv(checked):
            return None
        return re.sub(r"/fold=\d+", "", run)

    def identity(self, checked, *, digests=None):
        from textcnn.pipeline import text_run_identity

        return text_run_identity(checked, digests=digests)

    def train_runs(self, runs, out_dirs, *, overwrite=False):
        if len(runs) == 1:
            return super().train_runs(runs, out_dirs, overwrite=overwrite)
        from textcnn.pipeline import train_fold_recipes

        return train_fold_recipes([self.check(data, source=source) for data, source in runs],
                                  list(out_dirs), overwrite=overwrite)

    def batch_row(self, checked, metrics):
        from textcnn.benchmarks import model_label

        recipe, m = checked, metrics
        return {"dataset": recipe.data.dataset or recipe.data.train,
                "model": model_label(recipe), "variant": recipe.model.variant,
                "vectors": recipe.embeddings.path if recipe.model.arch == "kim-cnn" and
                recipe.model.variant != "rand" else None,
                "fold": recipe.data.fold if self._cv(recipe) else None,
                "seed": recipe.train.seed, "phrases": recipe.data.phrases,
                "fingerprint": m.get("fingerprint"),
                "accuracy": m.get("test_accuracy"), "macro_f1": m.get("test_macro_f1"),
                "dev_accuracy": m.get("dev_accuracy"), "epochs_run": m.get("epochs_run"),
                "stopped_by": m.get("stopped_by"),
                "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
                "wall_seconds": m.get("wall_seconds"), "fold_batched": m.get("fold_batched"),
                "precision": m.get("precision"), "cuda_graphs": m.get("cuda_graphs")}

    def table(self, rows):
        """Rows are models, columns are datasets in the paper's order; a cell is the mean ± std
        accuracy over folds and seeds, with Kim (2014)'s figure where the paper has the row.
        Runs without a test split have no accuracy: their cell says so, with how many there are."""
        from textcnn.benchmarks import BENCHMARKS, paper_figure

        stats = summarize(rows)
        untested: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["model"], row["dataset"])
            if row.get("accuracy") is None and key not in stats:
                untested[key] = untested.get(key, 0) + 1
        keys = [*stats, *untested]
        datasets = [d for d in BENCHMARKS if any(k[1] == d for k in keys)]
        datasets += sorted({k[1] for k in keys} - set(datasets))
        models = sorted({k[0] for k in keys}, key=_text_row_order)
        titles = [BENCHMARKS[d].title if d in BENCHMARKS else d for d in datasets]
        md = ["| model | " + " | ".join(titles) + " |", "|---" * (len(datasets) + 1) + "|"]
        table = Table(md, ["model", "dataset", "mean", "std", "n", "paper"])
        for model in models:
            cells = []
            for d in datasets:
                s, paper = stats.get((model, d)), paper_figure(model, d)
                if (model, d) in untested:
                    cells.append(f"no test split (n={untested[model, d]})")
                    table.rows.append([model, d, "", "", untested[model, d], "" if paper is None else paper])
                    continue
                if s is None:
                    cells.append("–")
                    continue
                cells.append(_cell(s) + (f" [paper {paper:.1f}]" if paper is not None else ""))
                table.rows.append([model, d, f"{s['mean']:.2f}", f"{s['std']:.2f}", s["n"],
                                   "" if paper is None else paper])
            md.append(f"| {model} | " + " | ".join(cells) + " |")
        md += ["", "Accuracy (%) on the test folds / test split: mean ± std over folds and seeds, n runs; "
               "[paper X] is Kim (2014) Table 2 where it has the row."]
        return table

    @staticmethod
    def _cv(checked) -> bool:
        from textcnn.benchmarks import get_benchmark

        return bool(checked.data.dataset) and get_benchmark(checked.data.dataset).cv


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean and standard deviation of accuracy (%) per (model, dataset) over folds and seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.get("accuracy") is not None:
            groups.setdefault((row["model"], row["dataset"]), []).append(100 * row["accuracy"])
    return {key: mean_std(v) for key, v in groups.items()}


def _text_row_order(model: str) -> tuple:
    """The paper's row order: rand, static, non-static, multichannel, then the baselines."""
    order = ["CNN-rand", "CNN-static", "CNN-non-static", "CNN-multichannel", "NBSVM", "TF-IDF+LR"]
    base = model.split(" ")[0]
    return (order.index(base) if base in order else len(order), "[sentences only]" in model, model)


# -- vision -----------------------------------------------------------------------------------------


def _grouped(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by their recipe's run name (its seeds together), in the order they first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_recipe_group(row["run"]), []).append(row)
    return groups


def _stats(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return mean_std(values) if values else None


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.fmean(values) if values else None


def _shown(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


class ImageTask(ClassifierTask):
    """Image classifiers from the vision registry (`vision/`)."""

    name = "image"
    model_kind = "image-classifier"
    title = "Image classification"

    def check(self, data, *, source):
        from vision.pipeline import image_recipe

        return image_recipe(dict(data), source=source)

    def train(self, data, *, source, out_dir=None, overwrite=False):
        from vision.pipeline import train_image_recipe

        return train_image_recipe(data, source=str(source), out_dir=out_dir, overwrite=overwrite)

    def evaluate(self, model, data_file, *, data_format=None, text_column="text", label_column="label"):
        from vision.pipeline import evaluate_image_model

        return evaluate_image_model(model, None if data_file is None else str(data_file))

    def predict(self, model, inputs, *, top_k=1, threshold=None, abstain=None):
        from vision.pipeline import predict_image_stream

        return predict_image_stream(model, inputs, top_k=top_k, threshold=threshold, abstain=abstain)

    def visualize(self, model, out_dir, *, data_file, maps, samples, top):
        from vision.pipeline import visualize

        return visualize(model, out_dir, data_spec=None if data_file is None else str(data_file),
                         filters=maps, samples=samples)

    def reseeded(self, data, checked, seed):
        return _pin_split_seed(data, checked, seed)  # the same train, dev and test images

    def identity(self, checked, *, digests=None):
        from vision.pipeline import image_run_identity

        return image_run_identity(checked, digests=digests)

    def batch_row(self, checked, metrics):
        m = metrics
        return {"dataset": checked.data.source, "model": checked.model.name, "seed": checked.train.seed,
                "fingerprint": m.get("fingerprint"), "accuracy": m.get("test_accuracy"),
                "macro_f1": m.get("test_macro_f1"), "dev_accuracy": m.get("dev_accuracy"),
                "parameters": m.get("parameters"), **_common_row(checked, m)}

    def table(self, rows):
        """A row per recipe: test accuracy (mean ± std over seeds), parameters, training time."""
        md = ["| run | model | data | accuracy (%) | parameters | train s |", "|---|---|---|---|---|---|"]
        table = Table(md, ["run", "model", "dataset", "mean", "std", "n", "parameters", "train_seconds"])
        for run, group in _grouped(rows).items():
            first, acc = group[0], _stats(group, "accuracy")
            params, seconds = _mean(group, "parameters"), _mean(group, "train_seconds")
            cell = _cell(acc, 100) if acc else f"no test split (n={len(group)})"
            md.append(f"| {run} | {first['model']} | {first['dataset']} | {cell} | "
                      f"{_shown(params, ',.0f')} | {_shown(seconds, '.1f')} |")
            table.rows.append([run, first["model"], first["dataset"],
                               "" if acc is None else f"{100 * acc['mean']:.2f}",
                               "" if acc is None else f"{100 * acc['std']:.2f}",
                               acc["n"] if acc else len(group), "" if params is None else int(params),
                               "" if seconds is None else f"{seconds:.2f}"])
        md += ["", "Accuracy (%) on the test split: mean ± std over training seeds, n runs; parameters: "
               "trainable; train s: the training loop's seconds, mean over the runs."]
        return table


class DetectionTask(Task):
    """Object detectors from the detection registry (`vision/detection/`)."""

    name = "detection"
    model_kind = "detector"
    role = "detector"
    title = "Detection"

    def check(self, data, *, source):
        from vision.detection.pipeline import detection_recipe

        return detection_recipe(dict(data), source=source)

    def train(self, data, *, source, out_dir=None, overwrite=False):
        from vision.detection.pipeline import train_detection_recipe

        return train_detection_recipe(data, source=str(source), out_dir=out_dir, overwrite=overwrite)

    def evaluate(self, model, data_file, *, data_format=None, text_column="text", label_column="label"):
        from vision.detection.pipeline import evaluate_detector

        return evaluate_detector(model, None if data_file is None else str(data_file))

    def format_report(self, report):
        from vision.detection.pipeline import format_detection_report

        return format_detection_report(report)

    def prediction_lines(self, model, inputs, options):
        from vision.detection.pipeline import DEFAULT_SCORE_THRESHOLD, iter_detections

        threshold = DEFAULT_SCORE_THRESHOLD if options.score_threshold is None else options.score_threshold
        for result in iter_detections(model, inputs, out_dir=options.out_dir, score_threshold=threshold):
            if options.out_format == "jsonl":
                yield json.dumps(result)
            else:
                found = "  ".join(f"{d['label']} ({d['score']:.3f}) {d['box']}" for d in result["detections"])
                yield f"{result['image']}\t{found or '(nothing found)'}"

    def visualize(self, model, out_dir, *, data_file, maps, samples, top):
        raise TextCNNError(f"visualize: {model} is a detector; draw its detections with "
                           "`textcnn predict MODEL IMAGE --out DIR`")

    def identity(self, checked, *, digests=None):
        from vision.detection.pipeline import detection_run_identity

        return detection_run_identity(checked, digests=digests)

    def batch_row(self, checked, metrics):
        m = metrics
        return {"dataset": checked.data.source, "model": checked.model.name, "seed": checked.train.seed,
                "fingerprint": m.get("fingerprint"), "map_50": m.get("test_map_50"),
                "coco_map": m.get("test_coco_map"), "ms_per_image": m.get("test_ms_per_image"),
                "val_map_50": m.get("val_map_50"), "parameters": m.get("parameters"),
                **_common_row(checked, m)}

    def row_summary(self, row):
        if row.get("map_50") is not None:
            return f"mAP@0.5 {row['map_50']:.4f}"
        val = row.get("val_map_50")
        return "no test split" + (f" (val mAP@0.5 {val:.4f})" if val is not None else "")

    def table(self, rows):
        """A row per recipe: test mAP@0.5 and COCO mAP@[.5:.95] (mean ± std over seeds), the
        test split's inference time per image and the training time."""
        md = ["| run | detector | data | mAP@0.5 | COCO mAP@[.5:.95] | ms / image | train s |",
              "|---|---|---|---|---|---|---|"]
        table = Table(md, ["run", "model", "dataset", "map_50_mean", "map_50_std", "coco_map_mean",
                           "coco_map_std", "n", "ms_per_image", "train_seconds"])
        for run, group in _grouped(rows).items():
            first = group[0]
            voc, coco = _stats(group, "map_50"), _stats(group, "coco_map")
            ms, seconds = _mean(group, "ms_per_image"), _mean(group, "train_seconds")
            tested = voc is not None
            md.append(f"| {run} | {first['model']} | {first['dataset']} | "
                      f"{_cell(voc, digits=3) if tested else f'no test split (n={len(group)})'} | "
                      f"{_cell(coco, digits=3) if coco else '–'} | {_shown(ms, '.1f')} | "
                      f"{_shown(seconds, '.1f')} |")
            table.rows.append([run, first["model"], first["dataset"],
                               *(("", "") if voc is None else (f"{voc['mean']:.4f}", f"{voc['std']:.4f}")),
                               *(("", "") if coco is None else (f"{coco['mean']:.4f}", f"{coco['std']:.4f}")),
                               voc["n"] if voc else len(group), "" if ms is None else f"{ms:.2f}",
                               "" if seconds is None else f"{seconds:.2f}"])
        md += ["", "Test split: VOC mAP@0.5 and COCO mAP@[.5:.95], mean ± std over training seeds, n runs; "
               "ms / image: inference on the test split (batches of 32, mAP computation excluded), "
               "mean over the runs; train s: the training loop's seconds plus any post-fit stage "
               "(R-CNN's SVMs), mean over the runs."]
        return table


# -- dispatch ---------------------------------------------------------------------------------------

TASKS: dict[str, Task] = {task.name: task for task in (TextTask(), ImageTask(), DetectionTask())}
"""Every task by the name recipes give it (`task:`), in table order."""


def task_named(name: Any, *, source: str | Path = "recipe") -> Task:
    """The task a recipe's `task` names (a missing one is text); another value is a one-line
    `TextCNNError` naming `source`."""
    if name is None:
        return TASKS["text"]
    if not isinstance(name, str) or name not in TASKS:
        raise TextCNNError(f"{source}: task: expected one of {', '.join(map(repr, TASKS))}, got "
                           f"{name!r}{did_you_mean(str(name), TASKS)}")
    return TASKS[name]


def task_for_recipe(data: Mapping[str, Any], *, source: str | Path = "recipe") -> Task:
    """The task of plain recipe data, by its `task` key."""
    return task_named(data.get("task"), source=source)


def task_for_model(path: str | Path) -> Task:
    """The task of a saved model directory, by `kind` in its config.json (invalid JSON, a
    missing or unknown kind: one line naming the file)."""
    from textcnn.core.modeldir import open_model_dir

    kinds = {task.model_kind: task for task in TASKS.values()}
    with warnings.catch_warnings():  # a directory without checksums is warned about when loaded
        warnings.simplefilter("ignore")
        return kinds[open_model_dir(path, kind=tuple(kinds)).config["kind"]]


def train_from_recipe(path: str | Path, overrides: Sequence[str] = (), *, out_dir: str | Path | None = None,
                      overwrite: bool = False) -> TrainOutcome:
    """Read a recipe file, apply `--set` overrides and train it with its task. Without
    `out_dir`, the run goes to `runs/<recipe name>`."""
    from textcnn.core.config import load_recipe_dict

    data = load_recipe_dict(path, list(overrides))
    return task_for_recipe(data, source=path).train(data, source=path, out_dir=out_dir, overwrite=overwrite)


__all__ = ["PredictOptions", "TASKS", "Table", "Task", "mean_std", "summarize", "task_for_model",
           "task_for_recipe", "task_named", "train_from_recipe"]
