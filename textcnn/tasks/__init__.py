"""One dispatch for every kind of model: text classification, image classification, detection.

The top layer: the CLI and the batch runner reach the text side (`textcnn/`) and the vision side
(`vision/`) only through a `Task`. A recipe names its task (`task: text | image | detection`,
text by default) and a model directory its kind (`config.json`'s `kind`); `task_for_recipe` and
`task_for_model` read those, never anything else. A task trains, evaluates, predicts and
visualises, formats its reports, and says what a batch run's row and a batch table hold.

The package, file by file: `base.py` (the `Task` interface and table helpers), `text.py`
(`TextTask`), `vision.py` (`ImageTask`, `DetectionTask`) and here, the dispatch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.rundir import TrainOutcome
from textcnn.tasks.base import ClassifierTask, PredictOptions, Table, Task, mean_std
from textcnn.tasks.text import TextTask, summarize
from textcnn.tasks.vision import DetectionTask, ImageTask

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


__all__ = ["ClassifierTask", "DetectionTask", "ImageTask", "PredictOptions", "TASKS", "Table", "Task",
           "TextTask", "mean_std", "summarize", "task_for_model",
           "task_for_recipe", "task_named", "train_from_recipe"]
