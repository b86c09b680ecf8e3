"""The image pipeline end to end: a short real LeNet-5 training through train_image_recipe, the
model directory, reloading, evaluation, prediction and the visualisations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from torch.nn import functional as F

from textcnn.core.config import apply_overrides, read_yaml
from textcnn.core.errors import TextCNNError
from textcnn.core.rundir import TrainOutcome
from vision.data import load_digits, split_indices
from vision.pipeline import (
    evaluate_image_model,
    load_image_model,
    predict_images,
    prepare,
    train_image_recipe,
    visualize,
)
from vision.visualize import CELL, GAP, filter_panels, first_block, top_patches

from .conftest import torch_threads

REPO = Path(__file__).resolve().parents[2]
QUICK = ["data.max_examples=400", "train.epochs=4", "train.lr=0.003", "train.threads=1",
         "augment.noise_std=0.05"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainOutcome:
    data = apply_overrides(read_yaml(REPO / "recipes" / "vision" / "lenet5-digits.yaml"), QUICK)
    with torch_threads(1):
        return train_image_recipe(data, source="recipes/vision/lenet5-digits.yaml",
                                  out_dir=tmp_path_factory.mktemp("run") / "lenet")


def test_training_writes_a_complete_run(trained: TrainOutcome) -> None:
    out, model_dir = trained.out_dir, trained.model_dir
    assert model_dir == out / "model"
    for name in ("run.json", "recipe.yaml", "results.json", "train/metrics.jsonl",
                 "train/checkpoint/last.safetensors", "model/model.safetensors",
                 "model/config.json", "model/metrics.json", "model/recipe.yaml"):
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin")]
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["task"] == "image" and recipe["train"]["epochs"] == 4
    assert recipe["name"] == "lenet5-digits" and recipe["data"]["max_examples"] == 400
    config = json.loads((model_dir / "config.json").read_text())
    assert config["kind"] == "image-classifier" and config["model"] == "lenet5"
    assert config["classes"] == [str(d) for d in range(10)] and config["input_size"] == [1, 32, 32]
    assert len(config["normalize"]["mean"]) == len(config["normalize"]["std"]) == 1
    log = [json.loads(line) for line in (out / "train/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert set(load_file(str(model_dir / "model.safetensors"))) >= {"c1.conv.weight", "fc.weight"}
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by"] == "epochs"
    assert results["fingerprint"] == json.loads((out / "run.json").read_text())["fingerprint"]


def test_metrics_are_sane(trained: TrainOutcome) -> None:
    m = trained.metrics
    assert m["parameters"] == 61_706 and m["epochs_run"] == 4 and 1 <= m["best_epoch"] <= 4
    # 400 examples: 20 % test, 10 % dev of the subset, as split_indices computes it.
    assert (m["test_examples"], m["dev_examples"], m["train_examples"]) == (80, 40, 280)
    assert 0.5 < m["test_accuracy"] <= 1 and 0.5 < m["dev_accuracy"] <= 1
    assert 0 <= m["test_macro_f1"] <= 1
    report = m["test_report"]
    assert np.trace(report["confusion_matrix"]) == round(m["test_accuracy"] * 80)
    saved = json.loads((trained.out_dir / "results.json").read_text())
    assert saved["test_accuracy"] == m["test_accuracy"] and "test_report" not in saved
    assert "test_accuracy" in trained.summary()


def test_reloaded_model_predicts_the_same(trained: TrainOutcome) -> None:
    report = evaluate_image_model(trained.model_dir, None)
    assert report["accuracy"] == trained.metrics["test_accuracy"]
    assert report["confusion_matrix"] == trained.metrics["test_report"]["confusion_matrix"]
    assert report == evaluate_image_model(trained.model_dir, "digits")
    model, meta = load_image_model(trained.model_dir)
    assert not model.training and meta["num_classes"] == 10


def test_predict_images_from_png_files(trained: TrainOutcome, tmp_path) -> None:
    digits = load_digits()
    paths, pixels = [], []
    for i in range(5):
        array = np.round(digits.images[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
        pixels.append(array)
    ranked = predict_images(trained.model_dir, paths, top_k=3)
    assert len(ranked) == 5 and all(len(r) == 3 for r in ranked)
    for row in ranked:
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(label in [str(d) for d in range(10)] for label, _ in row)
    # Independently: the same pixels straight through the reloaded model.
    model, meta = load_image_model(trained.model_dir)
    x = torch.from_numpy(np.stack(pixels)).float()[:, None] / 255
    with torch.no_grad():
        probs = torch.softmax(model(prepare(x, meta)), dim=1)
    assert [r[0][0] for r in ranked] == [str(int(i)) for i in probs.argmax(1)]
    assert [r[0][1] for r in ranked] == pytest.approx(probs.max(1).values.tolist(), abs=1e-6)
    assert len(predict_images(trained.model_dir, paths[:1], top_k=50)[0]) == 10
    with pytest.raises(TextCNNError, match="nope.png: expected an image file"):
        predict_images(trained.model_dir, [str(tmp_path / "nope.png")], top_k=1)


def test_evaluate_on_an_image_folder(trained: TrainOutcome, tmp_path) -> None:
    digits = load_digits()
    for i in range(30):
        folder = tmp_path / "imgs" / digits.classes[int(digits.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        array = np.round(digits.images[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i}.png")
    report = evaluate_image_model(trained.model_dir, str(tmp_path / "imgs"))
    assert report["examples"] == 30 and report["labels"] == [str(d) for d in range(10)]
    assert sum(map(sum, report["confusion_matrix"])) == 30
    (tmp_path / "imgs" / "dog").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / "dog" / "x.png")
    with pytest.raises(TextCNNError, match="class 'dog' is not one the model knows"):
        evaluate_image_model(trained.model_dir, str(tmp_path / "imgs"))


def test_visualize_writes_pngs_of_the_expected_size(trained: TrainOutcome, tmp_path) -> None:
    filters, samples = (0, 2, 5), 3
    paths = visualize(trained.model_dir, tmp_path / "viz", filters=filters, samples=samples)
    assert [p.name for p in paths] == ["filters.png", "activations.png", "patches.png"]
    sizes = {p.name: Image.open(p).size for p in paths}  # (width, height)

    def side(cells: int, cell: int) -> int:
        return cells * cell + (cells + 1) * GAP

    kernel_cell = 5 * math.ceil(CELL / 5)  # LeNet's C1 filters are 5x5
    image_cell = 32 * math.ceil(CELL / 32)  # its inputs are 32x32
    # the six 5x5 filters side by side, each weight a square of 30 px at least (a readable picture)
    width, height = sizes["filters.png"]
    assert width >= 6 * 5 * 30 and height >= 5 * 30
    assert sizes["activations.png"] == (side(1 + len(filters), image_cell), side(samples, image_cell))
    assert sizes["patches.png"] == (side(samples, kernel_cell), side(len(filters), kernel_cell))
    # what the panels show: the one-channel weights, on one scale of max |w|
    model, _ = load_image_model(trained.model_dir)
    w = model.c1.conv.weight.detach()
    panels, limit = filter_panels(w)
    np.testing.assert_allclose(panels, w[:, 0].numpy())
    assert limit == pytest.approx(float(w.abs().max()))
    with pytest.raises(TextCNNError, match="maps: expected first-layer filter indices in 0..5"):
        visualize(trained.model_dir, tmp_path / "bad", filters=(6,))


@pytest.mark.parametrize("maps", ["999", "-1", "0,6"])
def test_visualize_maps_out_of_range_through_the_cli(trained: TrainOutcome, tmp_path, maps) -> None:
    from click.testing import CliRunner

    from textcnn.cli import main

    result = CliRunner().invoke(main, ["visualize", str(trained.model_dir), "--out",
                                       str(tmp_path / "viz"), "--maps", maps])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "in 0..5 (the first layer has 6 filters)" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "viz").exists()


def test_top_patches_are_the_receptive_fields_of_the_peaks() -> None:
    # ResNet-18's stem: 7x7 kernels at stride 2 with padding 3, so crops can leave the image.
    from vision import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2).eval()
    block = first_block(model)
    images = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        maps = block(images)
        for f in (0, 7):
            patches = top_patches(images, maps, block.conv, f, 3)
            best = maps[:, f].flatten(1).max(1).values.sort(descending=True).values[:3]
            # The kernel applied to the crop alone (7x7 -> 1x1, no padding) gives the peak.
            got = torch.stack([
                block.act(block.norm(F.conv2d(p[None], block.conv.weight)))[0, f, 0, 0]
                for p in patches])
            torch.testing.assert_close(got, best, rtol=1e-4, atol=1e-5)


def test_recipe_errors_name_the_source_and_key(tmp_path) -> None:
    with pytest.raises(TextCNNError, match=r"my.yaml: unknown key 'modle' \(did you mean 'model'"):
        train_image_recipe({"task": "image", "modle": {}}, source="my.yaml", out_dir=tmp_path)
    with pytest.raises(TextCNNError, match="unknown key 'augment.flip'.*did you mean 'hflip'"):
        train_image_recipe({"augment": {"flip": 0.5}}, source="r.yaml", out_dir=tmp_path)
    with pytest.raises(TextCNNError, match=r"r.yaml: model.name: .*got 'lenet6' \(did you mean 'lenet5'"):
        train_image_recipe({"model": {"name": "lenet6"}, "data": {"max_examples": 100},
                            "train": {"epochs": 1, "progress": False}},
                           source="r.yaml", out_dir=tmp_path / "r")


def test_load_image_model_rejects_other_directories(tmp_path) -> None:
    with pytest.raises(TextCNNError, match="expected a model directory with config.json"):
        load_image_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "text-classifier"}))
    with pytest.raises(TextCNNError, match="expected kind 'image-classifier', got 'text-classifier'"):
        load_image_model(tmp_path)


def test_bundled_recipes_are_valid() -> None:
    from vision.pipeline import image_recipe

    for path in sorted((REPO / "recipes" / "vision").glob("*-digits.yaml")):  # *-shapes: detection
        recipe = image_recipe(read_yaml(path), source=path)
        assert recipe.task == "image" and recipe.data.source == "digits", path
        labels = load_digits().labels
        split = split_indices(labels, dev_fraction=recipe.data.dev_fraction,
                              test_fraction=recipe.data.test_fraction, seed=0)
        assert len(split[2]) == 360


def test_one_class_image_folder_is_an_error_like_scikit_learns(tmp_path) -> None:
    folder = tmp_path / "shapes"
    (folder / "round").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / "round" / f"{i}.png")
    with pytest.raises(TextCNNError, match=f"^{folder}: expected at least 2 classes in the training "
                                           f"labels, got 1 class: 'round'$"):
        train_image_recipe({"task": "image", "data": {"source": str(folder)},
                            "train": {"epochs": 1, "progress": False}}, source="r.yaml",
                           out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()
