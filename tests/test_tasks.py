"""The task dispatch: a recipe's `task` and a model directory's `kind` choose the task, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from textcnn.batch_runner import plan_runs
from textcnn.cli import main
from textcnn.core.errors import TextCNNError
from textcnn.core.modeldir import write_model_dir
from textcnn.tasks import TASKS, task_for_model, task_for_recipe

REPO = Path(__file__).resolve().parents[1]


def test_a_model_directory_s_kind_chooses_its_task_whatever_its_metrics_hold(tmp_path):
    # every directory carries the figures of every kind: dispatch must read `kind` alone
    metrics = json.dumps({"map_50": 0.5, "accuracy": 0.9, "coco_map": 0.4})
    for kind, task in [("text-classifier", "text"), ("image-classifier", "image"), ("detector", "detection")]:
        write_model_dir(tmp_path / kind, config={"kind": kind}, state={}, files={"metrics.json": metrics})
        assert task_for_model(tmp_path / kind) is TASKS[task] and TASKS[task].model_kind == kind
    write_model_dir(tmp_path / "other", config={"kind": "regressor"}, state={})
    with pytest.raises(TextCNNError, match="config.json: expected kind text-classifier, "
                                           "image-classifier or detector, got 'regressor'"):
        task_for_model(tmp_path / "other")


def test_a_recipe_s_task_key_chooses_its_task():
    assert task_for_recipe({}) is TASKS["text"]  # recipes without `task` are text recipes
    assert task_for_recipe({"task": "detection"}).role == "detector"
    with pytest.raises(TextCNNError, match=r"^r.yaml: task: expected one of 'text', 'image', 'detection', "
                                           r"got 'imag' \(did you mean 'image'\?\)$"):
        task_for_recipe({"task": "imag"}, source="r.yaml")
    # every recipe the project ships plans under the task it names
    planned = {r.source: r.task for r in plan_runs([REPO / "recipes"], folds=1)}
    assert planned[str(REPO / "recipes" / "quickstart.yaml")] == "text"
    assert planned[str(REPO / "recipes" / "vision" / "vgg-digits.yaml")] == "image"
    assert planned[str(REPO / "recipes" / "vision" / "yolo-shapes.yaml")] == "detection"


@pytest.mark.parametrize("command", ["train", "batch"])
def test_an_unknown_task_is_a_one_line_error(tmp_path, command):
    recipe = tmp_path / "odd.yaml"
    recipe.write_text("task: segmentation\nname: odd\n")
    extra = ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [command, str(recipe), *extra])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {recipe}: task: expected one of 'text', 'image', 'detection', got 'segmentation'"]
    assert not (tmp_path / "out").exists()
