"""`textcnn batch` on image and detection recipes: rows, tables, resume, seeds, workers."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from textcnn.batch_runner import plan_runs, read_results, write_tables
from textcnn.cli import main
from vision import count_parameters, create_model
from vision.detection.pipeline import evaluate_detector
from vision.pipeline import evaluate_image_model

REPO = Path(__file__).resolve().parents[2]
VISION = REPO / "recipes" / "vision"
TINY_IMAGE = ["--set", "train.epochs=1", "--set", "data.max_examples=120", "--set", "train.batch_size=32"]
TINY_DETECTOR = ["--set", "data.size=48", "--set", "data.train_images=6", "--set", "data.val_images=3",
                 "--set", "data.test_images=3", "--set", "train.epochs=1", "--set", "train.batch_size=3",
                 "--set", "train.progress=false", "--set", "train.threads=1", "--set",
                 "model.kwargs={image_size: 48, backbone_kwargs: {widths: [8, 8, 16, 16]}, representation_size: 32}"]


def batch(*args: str):
    return CliRunner().invoke(main, ["batch", *map(str, args)], catch_exceptions=False)


def markdown_header(path: Path) -> list[str]:
    return [cell.strip() for cell in path.read_text().splitlines()[0].strip("|").split("|")]


def test_vision_recipes_plan_one_run_each_with_their_task():
    runs = plan_runs([VISION])
    assert {r.name: r.task for r in runs} == {
        "lenet5-digits": "image", "resnet-digits": "image", "vgg-digits": "image",
        "rcnn-shapes": "detection", "fast-rcnn-shapes": "detection", "faster-rcnn-shapes": "detection",
        "yolo-shapes": "detection", "ssd-shapes": "detection"}
    seeded = plan_runs([VISION], only=["lenet5*", "ssd*"], seeds=[0, 3])
    assert [r.name for r in seeded] == ["lenet5-digits", "lenet5-digits/seed=3", "ssd-shapes",
                                        "ssd-shapes/seed=3"]
    # an image run keeps its split when the training seed changes; shapes never depend on it
    assert seeded[1].recipe["train"]["seed"] == 3 and seeded[1].recipe["data"]["split_seed"] == 0
    assert seeded[3].recipe["train"]["seed"] == 3 and "split_seed" not in seeded[3].recipe["data"]


def test_image_batch_two_seeds_in_workers_then_resume(tmp_path):
    out = tmp_path / "batch"
    args = [VISION / "lenet5-digits.yaml", "--out", out, "--seeds", "0,1", *TINY_IMAGE]
    result = batch(*args, "--jobs", "2")
    assert result.exit_code == 0, result.output
    rows = {r["run"]: r for r in read_results(out / "results.jsonl")}
    assert sorted(rows) == ["lenet5-digits", "lenet5-digits/seed=1"]
    params = count_parameters(create_model("lenet5", num_classes=10, in_channels=1))
    for name, row in rows.items():
        assert (row["task"], row["model"], row["dataset"], row["parameters"]) == ("image", "lenet5", "digits", params)
        # the row's accuracy is what the saved model gives on its own test split again
        assert row["accuracy"] == pytest.approx(evaluate_image_model(out / "runs" / name / "model")["accuracy"])
    assert markdown_header(out / "table.md") == ["run", "model", "data", "accuracy (%)", "parameters", "train s"]
    accuracies = [100 * rows[n]["accuracy"] for n in sorted(rows)]
    expected = f"{statistics.fmean(accuracies):.1f} ± {statistics.stdev(accuracies):.1f} (n=2)"
    assert f"| lenet5-digits | lenet5 | digits | {expected} | {params:,} |" in (out / "table.md").read_text()
    [table_row] = list(csv.DictReader((out / "table.csv").open()))
    assert list(table_row) == ["run", "model", "dataset", "mean", "std", "n", "parameters", "train_seconds"]
    assert float(table_row["mean"]) == pytest.approx(statistics.fmean(accuracies), abs=0.006)
    weights = (out / "runs" / "lenet5-digits" / "model" / "model.safetensors").stat().st_mtime_ns
    again = batch(*args)
    assert again.exit_code == 0 and "2 already done, 0 to run" in again.output
    assert len(read_results(out / "results.jsonl")) == 2
    assert (out / "runs" / "lenet5-digits" / "model" / "model.safetensors").stat().st_mtime_ns == weights
    changed = batch(*args, "--set", "train.lr=0.01")
    assert changed.exit_code == 2 and "train.lr: 0.0005 -> 0.01" in changed.output
    assert batch(*args, "--only", "vgg*").exit_code == 2  # --only matching no run is an error


def test_detection_batch_one_run_then_resume(tmp_path):
    out = tmp_path / "batch"
    args = [VISION / "faster-rcnn-shapes.yaml", "--out", out, *TINY_DETECTOR]
    result = batch(*args)
    assert result.exit_code == 0, result.output
    [row] = read_results(out / "results.jsonl")
    assert (row["run"], row["task"], row["model"], row["dataset"]) == \
        ("faster-rcnn-shapes", "detection", "faster_rcnn", "shapes")
    report = evaluate_detector(out / "runs" / "faster-rcnn-shapes" / "model")  # the same test split again
    assert row["map_50"] == pytest.approx(report["map_50"]) and row["coco_map"] == pytest.approx(report["coco_map"])
    assert row["ms_per_image"] > 0 and f"mAP@0.5 {row['map_50']:.4f}" in result.output
    assert markdown_header(out / "table.md") == ["run", "detector", "data", "mAP@0.5", "COCO mAP@[.5:.95]",
                                                 "ms / image", "train s"]
    [table_row] = list(csv.DictReader((out / "table.csv").open()))
    assert list(table_row) == ["run", "model", "dataset", "map_50_mean", "map_50_std", "coco_map_mean",
                               "coco_map_std", "n", "ms_per_image", "train_seconds"]
    assert float(table_row["map_50_mean"]) == pytest.approx(report["map_50"], abs=1e-4)
    again = batch(*args)
    assert again.exit_code == 0 and "1 already done, 0 to run" in again.output
    assert len(read_results(out / "results.jsonl")) == 1


def test_a_batch_of_several_tasks_has_a_section_and_csv_rows_per_task(tmp_path):
    rows = [{"run": "mr/rand/fold=0", "model": "CNN-rand", "dataset": "mr", "accuracy": 0.75},
            {"run": "lenet5-digits", "task": "image", "model": "lenet5", "dataset": "digits",
             "accuracy": 0.98, "parameters": 61706, "train_seconds": 12.0},
            {"run": "ssd-shapes", "task": "detection", "model": "ssd", "dataset": "shapes", "map_50": 0.99,
             "coco_map": 0.8, "ms_per_image": 7.5, "train_seconds": 300.0}]
    write_tables(rows, tmp_path)
    md = (tmp_path / "table.md").read_text()
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections == ["## Text classification", "## Image classification", "## Detection"]
    assert "| lenet5-digits | lenet5 | digits | 98.0 ± 0.0 (n=1) | 61,706 | 12.0 |" in md
    assert "| ssd-shapes | ssd | shapes | 0.990 ± 0.000 (n=1) | 0.800 ± 0.000 (n=1) | 7.5 | 300.0 |" in md
    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [(r["task"], r["model"]) for r in table] == [("text", "CNN-rand"), ("image", "lenet5"),
                                                         ("detection", "ssd")]
    assert table[2]["map_50_mean"] == "0.9900" and table[1]["mean"] == "98.00" and table[1]["map_50_mean"] == ""
