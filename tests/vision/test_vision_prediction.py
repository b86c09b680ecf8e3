"""`textcnn predict` on image models: a confidence threshold for image classifiers, the
detector's own options, and drawings of inputs that share a file name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from textcnn.cli import main
from vision.detection.data import make_shapes
from vision.detection.draw import save_png
from vision.detection.pipeline import predict_detections
from vision.detection.registry import create_detector
from vision.pipeline import image_probabilities, load_image_model, save_image_model
from vision.registry import create_model

CLASSES = ["circle", "square", "triangle"]
DETECTOR_KWARGS = {"image_size": 48, "backbone_kwargs": {"widths": [8, 8, 16, 16]}, "representation_size": 32}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained LeNet-5 model directory (the threshold is checked against its own
    probabilities) and eight grey images."""
    root = tmp_path_factory.mktemp("lenet")
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=3, in_channels=1)
    meta = {"format": 1, "kind": "image-classifier", "model": "lenet5", "kwargs": {}, "num_classes": 3,
            "in_channels": 1, "classes": CLASSES, "input_size": [1, 32, 32],
            "normalize": {"mean": [0.5], "std": [0.25]}, "data": {}}
    model_dir = save_image_model(model, root / "model", meta=meta)
    rng = np.random.default_rng(0)
    images = []
    for i in range(8):
        path = root / f"digit{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
        images.append(str(path))
    return model_dir, images


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """An untrained tiny Faster R-CNN model directory."""
    torch.manual_seed(0)
    model = create_detector("faster_rcnn", num_classes=3, **DETECTOR_KWARGS)
    meta = {"format": 1, "kind": "detector", "model": "faster_rcnn", "kwargs": DETECTOR_KWARGS,
            "num_classes": 3, "classes": CLASSES, "data": {"source": "shapes"}}
    return save_image_model(model, tmp_path_factory.mktemp("det") / "model", meta=meta)


def test_image_classifier_threshold_follows_the_probabilities(classifier):
    model_dir, images = classifier
    model, meta = load_image_model(model_dir)
    probs = image_probabilities(model, meta, images).numpy()
    cut = float(np.median(probs.max(axis=1)))
    expected = [CLASSES[row.argmax()] if row.max() >= cut else None for row in probs]
    assert None in expected and any(e is not None for e in expected)
    result = cli("predict", model_dir, *images, "--threshold", cut, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in rows] == images and [r["label"] for r in rows] == expected
    np.testing.assert_allclose([r["labels"][0]["probability"] for r in rows], probs.max(axis=1), atol=2e-6)
    lines = cli("predict", model_dir, *images, "--threshold", cut, "--abstain", "other").output.splitlines()
    assert [line.split("\t")[0] for line in lines] == [e if e is not None else "other" for e in expected]
    message = one_line_error(cli("predict", model_dir, images[0], "--score-threshold", "0.2"))
    assert "--score-threshold: is for detectors" in message


def test_image_classifier_streams_its_inputs_in_chunks(classifier, monkeypatch, stream_and_count):
    from vision import pipeline

    model_dir, images = classifier
    monkeypatch.setattr(pipeline, "CHUNK_IMAGES", 3)
    predictions, read_at_first = stream_and_count(pipeline.predict_image_stream, model_dir, images, top_k=2)
    assert read_at_first == 3 < len(images)
    model, meta = load_image_model(model_dir)
    probs = image_probabilities(model, meta, images).numpy()
    assert [p.input for p in predictions] == images
    for p, row in zip(predictions, probs):
        top = np.argsort(-row, kind="stable")[:2]
        assert [label for label, _ in p.ranked] == [CLASSES[j] for j in top]
        np.testing.assert_allclose([prob for _, prob in p.ranked], row[top], rtol=1e-6)


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


def test_classifier_options_on_a_detector_are_one_line_errors(detector, tmp_path):
    image = tmp_path / "x.png"
    save_png(np.zeros((48, 48, 3), dtype=np.uint8), image)
    for option in (["--threshold", "0.5"], ["--abstain", "none"], ["--top-k", "2"]):
        message = one_line_error(cli("predict", detector, image, *option))
        assert f"{option[0]}: is for classifiers" in message and "detector" in message
