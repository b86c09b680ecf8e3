"""The `textcnn` CLI on an image model: train from a recipe, evaluate, predict, visualize."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from textcnn.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_image_model_through_the_cli(tmp_path):
    out = tmp_path / "lenet"
    run("train", REPO / "recipes/vision/lenet5-digits.yaml", "--out", out, "--set", "train.epochs=2",
        "--set", "train.progress=false")
    model = out / "model"
    report = run("evaluate", model)
    assert "accuracy" in report and "confusion matrix" in report
    for option, value in (("--text-column", "sentence"), ("--label-column", "y"), ("--format", "csv")):
        refused = CliRunner().invoke(main, ["evaluate", str(model), option, value])
        assert refused.exit_code == 2, refused.output
        assert f"{option}: for text models; {model} is an image model (got '{value}')" in refused.output
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray((np.eye(8) * 255).astype(np.uint8)).save(image)
    predicted = run("predict", model, image, "--top-k", "3").strip()
    assert predicted.endswith(str(image)) and predicted.count("(") == 3
    shown = run("visualize", model, "--out", tmp_path / "viz").split()
    assert {Path(p).name for p in shown} >= {"filters.png"}
    for path in shown:
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
