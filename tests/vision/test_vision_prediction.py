"""`textcnn predict` on a detector: drawings of inputs that share a file name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from textcnn.cli import main
from vision.detection.data import make_shapes
from vision.detection.draw import save_png
from vision.detection.pipeline import predict_detections
from vision.detection.registry import create_detector
from vision.pipeline import save_image_model

CLASSES = ["circle", "square", "triangle"]
DETECTOR_KWARGS = {"image_size": 48, "backbone_kwargs": {"widths": [8, 8, 16, 16]}, "representation_size": 32}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """An untrained tiny Faster R-CNN model directory."""
    torch.manual_seed(0)
    model = create_detector("faster_rcnn", num_classes=3, **DETECTOR_KWARGS)
    meta = {"format": 1, "kind": "detector", "model": "faster_rcnn", "kwargs": DETECTOR_KWARGS,
            "num_classes": 3, "classes": CLASSES, "data": {"source": "shapes"}}
    return save_image_model(model, tmp_path_factory.mktemp("det") / "model", meta=meta)


def test_detector_keeps_both_drawings_of_inputs_with_the_same_name(detector, tmp_path):
    data = make_shapes(2, seed=7, size=48)
    inputs = []
    for folder, image in zip("ab", data.images):
        path = tmp_path / folder / "x.png"
        save_png((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"), path)
        inputs.append(str(path))
    out = tmp_path / "drawn"
    result = cli("predict", detector, *inputs, "--out", out, "--score-threshold", "0", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    listed = json.loads((out / "detections.json").read_text())
    assert listed == rows and [r["image"] for r in rows] == inputs
    names = [r["drawn"] for r in rows]
    assert len(set(names)) == 2 and {p.name for p in out.iterdir()} == {*names, "detections.json"}
    for path, row in zip(inputs, rows):
        # the reference: the same input predicted alone, into a folder of its own
        alone = tmp_path / ("alone-" + Path(path).parent.name)
        [single] = predict_detections(detector, [path], out_dir=alone, score_threshold=0.0)
        assert single["detections"] == row["detections"]
        assert (out / row["drawn"]).read_bytes() == (alone / single["drawn"]).read_bytes()
