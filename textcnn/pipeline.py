"""Text models end to end, as library functions: read a recipe's data, train from a recipe (one
run, or the folds of a cross-validation recipe as one batched model), evaluate, predict a stream,
visualise."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from textcnn.core.config import dump_yaml, to_dict
from textcnn.core.distributed import is_main_process
from textcnn.core.errors import TextCNNError, check_classes
from textcnn.core.io import atomic_write_json, atomic_write_text
from textcnn.core.metrics import MULTI_LABEL_FIGURES, evaluation_report, multi_label_report
from textcnn.core.rundir import (
    RunIdentity,
    TrainOutcome,
    default_run_folder,
    open_run_folder,
    run_identity,
)
from textcnn.core.streaming import Prediction, chunked, ranked_predictions
from textcnn.data import LabelMap, detect_format, label_sets, load_data, single_labels
from textcnn.data.splits import Examples, TextSplits, examples
from textcnn.documents import (
    folder_splits,
    is_document_dataset,
    newsgroups_files,
    newsgroups_splits,
)
from textcnn.estimator import TextCNNClassifier
from textcnn.estimator.classifier import check_sample_weight
from textcnn.kim2014 import benchmark_files, benchmark_splits, get_benchmark
from textcnn.recipe import DataSection, TextRecipe, text_recipe
from textcnn.vectors import vectors_path

# -- a recipe's data ------------------------------------------------------------------------------


def recipe_splits(section: DataSection, *, seed: int) -> TextSplits:
    """Splits of a recipe's data section: a named benchmark (Kim's, or the document benchmark
    20ng), folders of documents (a folder per class), or train/dev/test files."""
    if section.encoding is not None and not (is_document_dataset(section.dataset)
                                             or recipe_data_format(section) == "folders"):
        raise TextCNNError(f"data.encoding: used with document files only (data.format folders, "
                           f"data.dataset 20ng), got {section.encoding!r} for "
                           f"{section.dataset or recipe_data_format(section)} data")
    if is_document_dataset(section.dataset):
        return newsgroups_splits(section)
    if section.dataset:
        return benchmark_splits(section, seed=seed)
    if recipe_data_format(section) == "folders":
        return folder_splits(section, seed=seed)
    columns = dict(text_column=section.text_column, label_column=section.label_column,
                   format=section.format)
    train = load_data(section.train, split=section.split, weight_column=section.weight_column, **columns)

    def load(spec: str | None, split: str) -> Examples | None:
        return examples(load_data(spec, split=split, **columns)) if spec else None

    return TextSplits(examples(train), load(section.dev, "validation"), load(section.test, "test"),
                      train_weights=list(train["weight"]) if section.weight_column else None)


def recipe_labels(recipe: TextRecipe, splits: TextSplits) -> TextSplits:
    """`splits` with the labels the model takes: for a multi-label model, each text's list of
    labels (a list as read, or a string split on `data.label_separator`); otherwise one label
    per text, a list being an error naming the file and row."""
    section = recipe.data

    def convert(part: Examples | None, role: str) -> Examples | None:
        if part is None:
            return None
        source = getattr(section, role) or section.dataset or role
        texts, labels = part
        if recipe.model.multi_label:
            return texts, label_sets(labels, separator=section.label_separator, source=source)
        return texts, single_labels(labels, source=source)

    return replace(splits, train=convert(splits.train, "train"), dev=convert(splits.dev, "dev"),
                   test=convert(splits.test, "test"))


def recipe_data_format(section: DataSection) -> str | None:
    """The format of a recipe's own data files: `data.format`, or folders when `data.train` is a
    folder with a sub-folder per class (None: a file's format is told when it is read)."""
    if not section.train:
        raise TextCNNError("data.train: expected a training file or hub dataset name (or data.dataset), "
                           "got none")
    if section.format is not None or not Path(section.train).is_dir():
        return section.format
    return detect_format(section.train)


def cross_validated(section: DataSection) -> bool:
    """Whether a recipe's test split is a fold of its data: a cross-validated benchmark of Kim's,
    or one folder of documents without a test folder."""
    if section.dataset:
        return not is_document_dataset(section.dataset) and get_benchmark(section.dataset).cv
    return section.test is None and recipe_data_format(section) == "folders"


def recipe_data_files(recipe: TextRecipe) -> dict[str, Path | None]:
    """Every file or folder a text recipe's run reads, by role (for its run fingerprint): a
    benchmark's files, or `data.train`/`dev`/`test` (a file, or a local dataset folder; a hub
    dataset name is no local path and is identified by its name alone), and the vectors of the
    pretrained variants."""
    section = recipe.data
    if is_document_dataset(section.dataset):
        files: dict[str, Path | None] = {f"data.dataset/{p.name}": p for p in newsgroups_files(section)}
    elif section.dataset:
        files = {f"data.dataset/{p.name}": p for p in benchmark_files(section)}
    else:
        files = {f"data.{role}": Path(spec) for role in ("train", "dev", "test")
                 if (spec := getattr(section, role))}
    if recipe.model.arch == "kim-cnn":
        files["embeddings.path"] = vectors_path(recipe.model.variant, recipe.embeddings.path)
    return files


def text_run_identity(recipe: TextRecipe, *, digests: dict[str, str | None] | None = None) -> RunIdentity:
    """A text run's identity: its resolved recipe and the content of the data it reads."""
    return run_identity(to_dict(recipe), files=recipe_data_files(recipe), digests=digests)


@contextlib.contextmanager
def _start_run(recipe: TextRecipe, out_dir: Path, *, overwrite: bool = False
               ) -> Iterator[tuple[str, TextSplits, RunIdentity]]:
    """Claim a run's output folder (locked for the block; resume, fresh start or refusal, see
    `textcnn.core.rundir`), read its splits, then record run.json and the resolved recipe.yaml;
    yields that YAML text, the splits and the run's identity."""
    identity = text_run_identity(recipe)
    with open_run_folder(out_dir, identity, overwrite=overwrite) as run:
        splits = recipe_labels(recipe, recipe_splits(recipe.data, seed=recipe.train.seed))
        run.begin()
        resolved = dump_yaml(to_dict(recipe))
        if run.writes:
            atomic_write_text(out_dir / "recipe.yaml", resolved)
        yield resolved, splits, identity


def train_recipe(recipe: TextRecipe, out_dir: str | Path, *, overwrite: bool = False) -> TrainOutcome:
    """Train the model `recipe` describes into `out_dir`; evaluate on its test split if any.

    A folder holding the same run (same fingerprint) resumes it; one holding another run is
    refused, or replaced with `overwrite` (see `textcnn.core.rundir.open_run_folder`)."""
    out_dir = Path(out_dir)
    with _start_run(recipe, out_dir, overwrite=overwrite) as (resolved, splits, identity):
        if not recipe.model.multi_label:  # named by its data here; the estimator would say `y`
            check_classes(LabelMap.fit(splits.train[1]).classes,
                          source=recipe.data.train or recipe.data.dataset)
        if recipe.model.arch != "kim-cnn":
            return _train_baseline(recipe, splits, out_dir, identity)
        clf = TextCNNClassifier(**recipe.estimator_params())
        weights = None
        if splits.train_weights is not None:
            try:
                weights = check_sample_weight(splits.train_weights, len(splits.train[0]))
            except TextCNNError as exc:
                raise TextCNNError(f"{recipe.data.train}: column '{recipe.data.weight_column}' "
                                   f"(data.weight_column): {exc}") from None
        start = time.perf_counter()
        dev_texts, dev_labels = splits.dev if splits.dev is not None else (None, None)
        clf.fit_into(out_dir / "train", *splits.train, sample_weight=weights, X_dev=dev_texts, y_dev=dev_labels)
        return _report_and_save(recipe, clf, splits, out_dir, resolved, identity,
                                time.perf_counter() - start)


def train_fold_recipes(recipes: list[TextRecipe], out_dirs: list[Path], *,
                       overwrite: bool = False) -> list[TrainOutcome]:
    """Train the folds of one cross-validation recipe as one batched model (on a GPU: one
    forward and backward pass serves every fold; see `textcnn.fold_batched`).

    `recipes` differ only in `data.fold`; each fold gets the splits, tokenizer, vectors, outputs
    and figures `train_recipe` would give it, with `fold_batched` (the number of folds trained
    together) in its metrics and `train_seconds` the shared training time divided among them."""
    from textcnn.fold_batched import fit_fold_classifiers

    if not recipes or len(recipes) != len(out_dirs):
        raise TextCNNError(f"train_fold_recipes: expected one output directory per recipe, got "
                           f"{len(recipes)} recipes and {len(out_dirs)} directories")
    params = recipes[0].estimator_params()
    for recipe in recipes:
        if recipe.model.arch != "kim-cnn" or recipe.estimator_params() != params:
            raise TextCNNError(f"train_fold_recipes: expected Kim CNN recipes that differ only in "
                               f"data.fold, got {recipe.name!r} fold {recipe.data.fold}")
    with contextlib.ExitStack() as stack:  # every fold's folder stays locked until all are saved
        resolved, splits, identities = zip(*(
            stack.enter_context(_start_run(recipe, out_dir, overwrite=overwrite))
            for recipe, out_dir in zip(recipes, out_dirs)))
        start = time.perf_counter()
        clfs = fit_fold_classifiers(params, [(*s.train, *(s.dev if s.dev is not None else (None, None)))
                                             for s in splits])
        wall = (time.perf_counter() - start) / len(recipes)
        return [_report_and_save(recipe, clf, split, out_dir, text, identity, wall,
                                 fold_batched=len(recipes))
                for recipe, clf, split, out_dir, text, identity
                in zip(recipes, clfs, splits, out_dirs, resolved, identities)]


def _report_and_save(recipe: TextRecipe, clf: TextCNNClassifier, splits, out_dir: Path, resolved: str,
                     identity: RunIdentity, wall_seconds: float, *,
                     fold_batched: int | None = None) -> TrainOutcome:
    """A fitted run's figures (dev, test, timings), its saved model and results.json."""
    fit = clf.fit_result_
    metrics: dict[str, Any] = {
        "dataset": recipe.data.dataset or recipe.data.train, "variant": recipe.model.variant,
        "seed": recipe.train.seed, "train_examples": len(splits.train[0]),
        "fingerprint": identity.fingerprint,
        "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stopped_by": fit.stopped_by,
        **{f"dev_{k}": v for k, v in fit.best_metrics.items()},
        # the engine's loop time, summed over every resumed part of the run
        "train_seconds": round(fit.seconds, 2),
        "wall_seconds": round(wall_seconds, 2)}
    metrics["precision"] = getattr(clf, "precision_", None)  # of the training's matrix products
    metrics["cuda_graphs"] = getattr(clf, "cuda_graphs_", None)  # batch shapes replayed as graphs
    metrics["fast_path"] = getattr(clf, "fast_path_", None)  # trained through the projection path
    if fold_batched is not None:
        metrics["fold_batched"] = fold_batched
    if getattr(clf, "coverage_", None) is not None:
        metrics["vector_coverage"] = round(float(clf.coverage_), 4)
    if clf.multi_label:
        metrics["multi_label"] = True
        if getattr(clf, "thresholds_", None) is not None:  # tuned on dev data
            metrics["thresholds"] = {str(c): round(float(t), 6) for c, t in zip(clf.classes_, clf.thresholds_)}
    if not is_main_process():  # under torchrun rank 0 tests and saves the model, the others stop here
        return TrainOutcome(out_dir=out_dir, model_dir=out_dir / "model", metrics=metrics)
    if splits.test is not None:
        report = classifier_report(clf, *splits.test, source=recipe.data.test or recipe.data.dataset or "test")
        keys = [k for k, _ in MULTI_LABEL_FIGURES] if clf.multi_label else ["accuracy", "macro_f1"]
        metrics.update({f"test_{k}": report[k] for k in (*keys, "examples")})
        metrics["test_report"] = report
    model_dir = clf.save(out_dir / "model", recipe=resolved, metrics=metrics)
    atomic_write_json(out_dir / "results.json", {k: v for k, v in metrics.items() if k != "test_report"})
    return TrainOutcome(out_dir=out_dir, model_dir=model_dir, metrics=metrics)


def _train_baseline(recipe: TextRecipe, splits, out_dir: Path, identity: RunIdentity) -> TrainOutcome:
    """A scikit-learn baseline on the same splits; it has fixed settings, so dev data is unused.
    It has no epochs, so `epochs_run`, `best_epoch` and `stopped_by` are None."""
    from textcnn.baselines import make_baseline

    clf = make_baseline(recipe.model.arch, seed=recipe.train.seed)
    start = time.perf_counter()
    clf.fit(*splits.train)
    metrics: dict[str, Any] = {"dataset": recipe.data.dataset or recipe.data.train,
                               "arch": recipe.model.arch, "seed": recipe.train.seed,
                               "train_examples": len(splits.train[0]),
                               "fingerprint": identity.fingerprint, "epochs_run": None,
                               "best_epoch": None, "stopped_by": None,
                               "train_seconds": round(time.perf_counter() - start, 2)}
    if splits.test is not None:
        labels = LabelMap.fit(splits.train[1])  # an unseen test label is a clear error, as for the CNN
        report = evaluation_report(labels.encode(splits.test[1]), labels.encode(clf.predict(splits.test[0])),
                                   [str(c) for c in labels.classes])
        metrics.update({f"test_{k}": report[k] for k in ("accuracy", "macro_f1", "examples")})
    atomic_write_json(out_dir / "results.json", metrics)
    return TrainOutcome(out_dir=out_dir, model_dir=out_dir, metrics=metrics)


def train_text_recipe(data: dict[str, Any], *, source: str | Path, out_dir: str | Path | None = None,
                      overwrite: bool = False) -> TrainOutcome:
    """Check a text recipe's plain data (after `--set` overrides) and train it (`train_recipe`);
    without `out_dir`, the run goes to `runs/<recipe name>`."""
    recipe = text_recipe(data, source=source)
    folder = out_dir or default_run_folder(recipe.name or Path(source).stem, source=source)
    return train_recipe(recipe, folder, overwrite=overwrite)


def load_model(path: str | Path) -> TextCNNClassifier:
    """Load a saved text model directory (`textcnn.load`)."""
    return TextCNNClassifier.load(path)


def classifier_report(clf: TextCNNClassifier, texts: list[str], labels: list[Any], *,
                      source: str = "labels") -> dict[str, Any]:
    """`clf`'s figures on labelled texts: accuracy, macro-F1, per-class report and confusion
    matrix; for a multi-label model (labels: a list per text) micro-, macro- and samples-F1,
    subset accuracy, Hamming loss and the per-label report. A label the model never saw is a
    `TextCNNError` naming `source`."""
    names = [str(c) for c in clf.classes_]
    try:
        if clf.multi_label:
            truth = np.zeros((len(labels), len(names)), dtype=np.int64)
            for row, items in enumerate(labels):
                truth[row, clf.label_map_.encode(list(items))] = 1
            return multi_label_report(truth, clf.predict(texts), names)
        truth = clf.label_map_.encode(labels)
    except TextCNNError as exc:
        raise TextCNNError(f"{source}: {exc}") from None
    return evaluation_report(truth, clf.label_map_.encode(clf.predict(texts)), names)


def evaluate_model(model: str | Path, data_file: str | Path | None, *, data_format: str | None = None,
                   text_column: str | None = None, label_column: str | None = None,
                   label_separator: str | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class report and confusion matrix of a saved text model on the
    labelled texts of `data_file` (for a multi-label model, `classifier_report`'s figures; its
    labels are lists, or strings split on `label_separator`). The columns and the separator
    default to the training recipe's `data.text_column`, `data.label_column` and
    `data.label_separator` ("text" and "label" without a recipe)."""
    if data_file is None:
        raise TextCNNError("evaluate: a text model needs --data FILE with labelled texts")
    clf = load_model(model)
    trained_on = _recipe_data(model)
    ds = load_data(data_file, format=data_format,
                   text_column=text_column or trained_on.get("text_column") or "text",
                   label_column=label_column or trained_on.get("label_column") or "label")
    texts, labels = list(ds["text"]), list(ds["label"])
    if clf.multi_label:
        separator = label_separator if label_separator is not None else trained_on.get("label_separator")
        labels = label_sets(labels, separator=separator, source=str(data_file))
    elif label_separator is not None:
        raise TextCNNError(f"--label-separator: for multi-label models; {model} predicts one label per "
                           f"text (got {label_separator!r})")
    else:
        labels = single_labels(labels, source=str(data_file))
    return classifier_report(clf, texts, labels, source=str(data_file))


def _recipe_data(model: str | Path) -> dict[str, Any]:
    """The `data` section of the recipe a model directory was trained from (empty without one)."""
    path = Path(model) / "recipe.yaml"
    if not path.is_file():
        return {}
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data = recipe.get("data") if isinstance(recipe, dict) else None
    return data if isinstance(data, dict) else {}


# Texts read and predicted at a time by `predict_stream`: enough for full inference batches,
# few enough that the first results come at once and memory does not grow with the input.
CHUNK_TEXTS = 4096  # texts per chunk
CHUNK_CHARS = 1 << 20  # characters per chunk (long texts make smaller chunks)


def predict_stream(model: str | Path | TextCNNClassifier, inputs: Iterable[str], *, top_k: int = 1,
                   threshold: float | None = None, abstain: Any = None,
                   thresholds: Mapping[Any, float] | None = None,
                   label_top_k: bool = False) -> Iterator[Prediction]:
    """Predictions for texts, read, predicted and yielded a chunk at a time (CHUNK_TEXTS texts
    or CHUNK_CHARS characters), so an input of any length takes bounded memory and the first
    results come at once (see `textcnn.core.streaming`).

    `threshold` and `abstain` decide `label` as `TextCNNClassifier.predict` does: a single-label
    model abstains below the threshold; for a multi-label model `label` lists the labels whose
    probability reaches its threshold: `threshold` for all, else the model's (tuned per label, or
    its `threshold`), with `thresholds` {label: threshold} over them; with `label_top_k`, the
    `top_k` most probable labels (of those, the ones reaching `threshold` or `thresholds` when
    given; a single-label model's decision is its top label either way). When reading `inputs` raises a `TextCNNError` (a line that does not decode), the
    inputs before it are still predicted and yielded, then the error is raised."""
    clf = model if isinstance(model, TextCNNClassifier) else load_model(model)
    per_label = None
    if clf.multi_label:
        per_label = clf.decision_thresholds(threshold=threshold, thresholds=thresholds)
        if label_top_k and threshold is None and thresholds is None:
            per_label = None  # the top k, whatever their probabilities
    elif thresholds is not None:
        raise TextCNNError(f"thresholds: for multi-label models; this one predicts one label per text "
                           f"(got {dict(thresholds)!r})")
    yield from ranked_predictions(chunked(inputs, max_items=CHUNK_TEXTS, max_chars=CHUNK_CHARS),
                                  clf.predict_proba, [_plain(c) for c in clf.classes_], top_k=top_k,
                                  threshold=threshold, abstain=abstain, multi_label=clf.multi_label,
                                  model_threshold=per_label, label_top_k=label_top_k)


def predict_texts(model: str | Path | TextCNNClassifier, texts: list[str], *,
                  top_k: int = 1) -> list[list[tuple[Any, float]]]:
    """For each text, its `top_k` (label, probability) pairs, most probable first (see
    `predict_stream`)."""
    return [p.ranked for p in predict_stream(model, texts, top_k=top_k)]


def visualize_model(model: str | Path, out_dir: str | Path, *, data_file: str | Path | None = None,
                    maps: tuple[int, ...] = (0, 1, 2, 3), top: int = 5, data_format: str | None = None,
                    text_column: str = "text") -> list[Path]:
    """Pictures of what a text model's filters respond to (Zeiler & Fergus): the top-scoring
    n-grams per feature map (read from `data_file`) and the training curve."""
    if data_file is None:
        raise TextCNNError("visualize: a text model needs --data FILE (texts to read n-grams from)")
    from textcnn.visualize_text import visualize_text_model

    ds = load_data(data_file, format=data_format, text_column=text_column)
    return visualize_text_model(model, out_dir, texts=list(ds["text"]), maps=maps, top=top)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
