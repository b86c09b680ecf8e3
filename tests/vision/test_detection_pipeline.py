"""Detection end to end: a recipe trains a detector through the engine, the model directory
loads without the training data, and the CLI evaluates it and draws its detections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from textcnn.cli import main
from vision.detection.data import make_shapes
from vision.detection.draw import save_png
from vision.detection.pipeline import evaluate_detector, load_detector, train_detection_recipe

TINY = {
    "task": "detection", "name": "tiny",
    "data": {"source": "shapes", "size": 48, "train_images": 6, "val_images": 3, "test_images": 3},
    "model": {"name": "faster_rcnn", "kwargs": {"image_size": 48, "backbone_kwargs": {"widths": [8, 8, 16, 16]},
                                                "representation_size": 32}},
    "train": {"epochs": 1, "batch_size": 3, "optimizer": "adam", "lr": 0.001, "progress": False},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "run"
    return train_detection_recipe(TINY, source="tiny.yaml", out_dir=out)


def test_training_writes_a_self_contained_model(trained):
    model_dir = trained.model_dir
    assert {p.name for p in model_dir.iterdir()} == {"model.safetensors", "config.json", "metrics.json", "recipe.yaml"}
    config = json.loads((model_dir / "config.json").read_text())
    assert config["kind"] == "detector" and config["classes"] == ["circle", "square", "triangle"]
    m = trained.metrics
    assert m["epochs_run"] == 1 and 0.0 <= m["test_map_50"] <= 1.0
    assert set(m["test_ap_50"]) <= {"circle", "square", "triangle"}
    # the loaded model regenerates the same test split and gives the same detections, hence mAP
    assert evaluate_detector(model_dir)["map_50"] == pytest.approx(m["test_map_50"])
    model, meta = load_detector(model_dir)
    assert not model.training and meta["model"] == "faster_rcnn"


def test_a_changed_recipe_is_refused_in_the_run_folder(trained):
    """Detection runs start through the same run folders: another recipe in the folder of a
    finished run is refused with one line naming the first difference, before any training."""
    from textcnn.core.errors import TextCNNError

    assert trained.metrics["stopped_by"] == "epochs" and len(trained.metrics["fingerprint"]) == 64
    changed = {**TINY, "train": {**TINY["train"], "lr": 0.002}}
    before = (trained.model_dir / "model.safetensors").read_bytes()
    with pytest.raises(TextCNNError, match=r"holds a different run \(train.lr: 0.001 -> 0.002\)"):
        train_detection_recipe(changed, source="tiny.yaml", out_dir=trained.out_dir)
    assert (trained.model_dir / "model.safetensors").read_bytes() == before


def test_cli_evaluate_and_predict_draws_boxes(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(trained.model_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["map_50"] == pytest.approx(trained.metrics["test_map_50"])
    image = make_shapes(1, seed=5, size=48).images[0]
    png = tmp_path / "shapes.png"
    save_png((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"), png)
    out = tmp_path / "drawn"
    result = runner.invoke(main, ["predict", str(trained.model_dir), str(png), "--out", str(out),
                                  "--score-threshold", "0", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.splitlines()[0])
    assert row["image"] == str(png)
    assert all(d["label"] in ("circle", "square", "triangle") and 0 <= d["score"] <= 1 for d in row["detections"])
    assert json.loads((out / "detections.json").read_text()) == [row]
    assert (out / "shapes.png").is_file()


def test_cli_errors_are_one_line_exit_2(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(trained.model_dir), "--plot", str(tmp_path / "cm.png")])
    assert result.exit_code == 2 and "no confusion matrix" in result.output
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: detection\nmodel:\n  nam: ssd\n")
    result = runner.invoke(main, ["train", str(recipe), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nam" in result.output and "Traceback" not in result.output
    recipe.write_text("task: detection\ndata:\n  source: coco\n")
    result = runner.invoke(main, ["train", str(recipe), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "data.train" in result.output


def test_detection_recipes_are_valid_and_stop_by_epochs():
    """A shipped recipe's result must not depend on how busy the machine is: no time budget, and
    the epochs its documented run (docs/results/detection.json) trained."""
    from textcnn.core.config import read_yaml
    from vision.detection import list_detectors
    from vision.detection.pipeline import detection_recipe

    repo = Path(__file__).resolve().parents[2]
    documented = {r["recipe"]: r for r in json.loads(
        (repo / "docs" / "results" / "detection.json").read_text())["detectors"].values()}
    recipes = sorted(repo.joinpath("recipes", "vision").glob("*-shapes.yaml"))
    assert len(recipes) == len(documented) == 5
    for path in recipes:
        recipe = detection_recipe(read_yaml(path), source=path)
        assert recipe.model.name in list_detectors()
        assert recipe.train.max_seconds is None
        assert recipe.train.epochs == documented[f"recipes/vision/{path.name}"]["epochs_run"]
