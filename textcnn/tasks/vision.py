"""The vision tasks: image classifiers (`vision/`) and detectors (`vision/detection/`)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

from textcnn.core.errors import TextCNNError
from textcnn.tasks.base import (
    ChartPoint,
    ClassifierTask,
    Table,
    Task,
    common_row,
    mean_std,
    pin_split_seed,
    recipe_group,
    reject_multi_label_option,
    reject_text_option,
    stats_cell,
)


def _grouped(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by their recipe's run name (its seeds together), in the order they first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(recipe_group(row["run"]), []).append(row)
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

    def evaluate(self, model, data_file, *, data_format=None, text_column=None, label_column=None,
                 label_separator=None):
        from vision.pipeline import evaluate_image_model

        reject_multi_label_option("--label-separator", label_separator, model)
        reject_text_option("--format", data_format, model)
        reject_text_option("--text-column", text_column, model)
        reject_text_option("--label-column", label_column, model)

        return evaluate_image_model(model, None if data_file is None else str(data_file))

    def predict(self, model, inputs, *, top_k=1, threshold=None, abstain=None, thresholds=None,
                label_top_k=False):
        from vision.pipeline import predict_image_stream

        reject_multi_label_option("--thresholds", thresholds, model)  # an image has one label

        return predict_image_stream(model, inputs, top_k=top_k, threshold=threshold, abstain=abstain)

    def visualize(self, model, out_dir, *, data_file, maps, samples, top):
        from vision.pipeline import visualize

        return visualize(model, out_dir, data_spec=None if data_file is None else str(data_file),
                         filters=maps, samples=samples)

    def reseeded(self, data, checked, seed):
        return pin_split_seed(data, checked, seed)  # the same train, dev and test images

    def identity(self, checked, *, digests=None):
        from vision.pipeline import image_run_identity

        return image_run_identity(checked, digests=digests)

    def batch_row(self, checked, metrics):
        m = metrics
        return {"dataset": checked.data.source, "model": checked.model.name, "seed": checked.train.seed,
                "fingerprint": m.get("fingerprint"), "accuracy": m.get("test_accuracy"),
                "macro_f1": m.get("test_macro_f1"), "dev_accuracy": m.get("dev_accuracy"),
                "parameters": m.get("parameters"), **common_row(checked, m)}

    def table(self, rows):
        """A row per recipe: test accuracy (mean ± std over seeds), parameters, training time."""
        md = ["| run | model | data | accuracy (%) | parameters | train s |", "|---|---|---|---|---|---|"]
        table = Table(md, ["run", "model", "dataset", "mean", "std", "n", "parameters", "train_seconds"])
        for run, group in _grouped(rows).items():
            first, acc = group[0], _stats(group, "accuracy")
            params, seconds = _mean(group, "parameters"), _mean(group, "train_seconds")
            cell = stats_cell(acc, 100) if acc else f"no test split (n={len(group)})"
            md.append(f"| {run} | {first['model']} | {first['dataset']} | {cell} | "
                      f"{_shown(params, ',.0f')} | {_shown(seconds, '.1f')} |")
            if acc is not None:
                table.chart.append(ChartPoint(run, str(first["dataset"]), 100 * acc["mean"], 100 * acc["std"],
                                              acc["n"]))
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

    def evaluate(self, model, data_file, *, data_format=None, text_column=None, label_column=None,
                 label_separator=None):
        from vision.detection.pipeline import evaluate_detector

        reject_multi_label_option("--label-separator", label_separator, model)
        reject_text_option("--format", data_format, model)
        reject_text_option("--text-column", text_column, model)
        reject_text_option("--label-column", label_column, model)

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
                **common_row(checked, m)}

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
                           "coco_map_std", "n", "ms_per_image", "train_seconds"], chart_metric="mAP@0.5")
        for run, group in _grouped(rows).items():
            first = group[0]
            voc, coco = _stats(group, "map_50"), _stats(group, "coco_map")
            ms, seconds = _mean(group, "ms_per_image"), _mean(group, "train_seconds")
            tested = voc is not None
            if tested:
                table.chart.append(ChartPoint(run, str(first["dataset"]), voc["mean"], voc["std"], voc["n"]))
            md.append(f"| {run} | {first['model']} | {first['dataset']} | "
                      f"{stats_cell(voc, digits=3) if tested else f'no test split (n={len(group)})'} | "
                      f"{stats_cell(coco, digits=3) if coco else '–'} | {_shown(ms, '.1f')} | "
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
