"""TextCNNClassifier's settings: checked before any data work with the recipe's one-line errors,
the training settings that reach the engine, the dev metric that selects the best epoch, one-class
training sets, and the CLI's exit 2 for those inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.metrics import log_loss

from textcnn import TextCNNClassifier
from textcnn.cli import main
from textcnn.core.errors import TextCNNError
from textcnn.core.metrics import selection_metrics
from textcnn.data import read_table
from textcnn.recipe import estimator_parameters, text_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = dict(maps=4, embedding_dim=8, widths=(2, 3), epochs=2, device="cpu", threads=1)


@pytest.fixture(scope="module")
def sample():
    train = read_table(REPO / "data" / "sample" / "train.csv")
    return list(train["text"])[:80], list(train["label"])[:80]


# (estimator keywords, the recipe's message for the same value)
BAD_PARAMS = [
    (dict(epochs=0), "train.epochs: expected an integer >= 1, got 0"),
    (dict(batch_size=0), "train.batch_size: expected an integer >= 1, got 0"),
    (dict(maps=0), "model.maps: expected an integer >= 1, got 0"),
    (dict(widths=()), "model.widths: expected a non-empty list of integers >= 1, got []"),
    (dict(widths=(3, -1)), "model.widths: expected a non-empty list of integers >= 1, got [3, -1]"),
    (dict(dropout=1.0), "model.dropout: expected a number in [0, 1), got 1.0"),
    (dict(lr=float("nan")), "train.lr: expected a number > 0 or null, got nan"),
    (dict(lr=-0.1), "train.lr: expected a number > 0 or null, got -0.1"),
    (dict(variant="Rand"), "model.variant: expected one of 'rand' | 'static' | 'non-static' | "
                           "'multichannel', got 'Rand' (did you mean 'rand'?)"),
    (dict(variant="static"), "embeddings.path: variant 'static' needs pretrained vectors"),
    (dict(optimizer="adm"), "train.optimizer: expected one of"),
    (dict(min_frequency=0), "tokenizer.min_frequency: expected an integer >= 1, got 0"),
    (dict(dev_fraction=1.5), "model.dev_fraction: expected a number in [0, 1), got 1.5"),
    (dict(label_smoothing=-0.1), "model.label_smoothing: expected a number in [0, 1), got -0.1"),
    (dict(patience=0), "train.patience: expected an integer >= 1 or null, got 0"),
    (dict(class_weight="even"), "model.class_weight: expected null, 'balanced' or a mapping"),
    (dict(l2=-1.0), "train.l2: expected a number >= 0, got -1.0"),
    (dict(grad_clip=0.0), "train.grad_clip: expected a number > 0 or null, got 0.0"),
    (dict(warmup_steps=-2), "train.warmup_steps: expected an integer >= 0, got -2"),
    (dict(metric="f1"), "train.metric: expected one of accuracy, macro_f1, loss, got 'f1'"),
    (dict(metric="loss"), "train.mode: expected 'min' for metric 'loss' (smaller is better), got 'max'"),
    (dict(lr_schedule="linear"), "train.lr_schedule: expected one of 'constant' | 'cosine', got 'linear'"),
    (dict(max_seconds=-5), "train.max_seconds: expected a number > 0 or null, got -5"),
    (dict(device="gpu"), "train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
]


@pytest.mark.parametrize("params, message", BAD_PARAMS, ids=[next(iter(p)) + "=" + repr(next(iter(p.values())))
                                                             for p, _ in BAD_PARAMS])
def test_fit_checks_the_parameters_before_any_data_work(params, message):
    # X is a single string, which the data work would reject: the parameter error comes first
    with pytest.raises(TextCNNError) as caught:
        TextCNNClassifier(**params).fit("not a list of texts", ["a"])
    assert str(caught.value).startswith(message), str(caught.value)


def test_fit_and_the_recipe_give_the_same_message():
    recipe = {"data": {"train": "x.csv"}, "model": {"maps": 0}}
    with pytest.raises(TextCNNError) as from_recipe:
        text_recipe(recipe, source="r.yaml")
    with pytest.raises(TextCNNError) as from_fit:
        TextCNNClassifier(maps=0).fit(["a b"], ["x"])
    assert str(from_recipe.value) == f"r.yaml: {from_fit.value}"


def test_every_parameter_maps_to_a_recipe_key():
    params = set(TextCNNClassifier().get_params())
    # out_dir: where the run is written, not how it trains
    assert params - {p.name for p in estimator_parameters()} == {"out_dir"}


def test_new_training_parameters_are_scikit_learn_parameters(sample):
    X, y = sample
    clf = TextCNNClassifier(**TINY, l2=0.01, grad_clip=1.0, lr_schedule="cosine", warmup_steps=2,
                            metric="loss", mode="min", max_seconds=600.0, weight_decay=0.001, l1=0.001)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    fitted = copy.fit(X, y)
    assert fitted.fit_result_.epochs_run == 2


def test_one_class_is_an_error_like_scikit_learns():
    with pytest.raises(TextCNNError, match=r"^y: expected at least 2 classes in the training labels, "
                                           r"got 1 class: 'pos'$"):
        TextCNNClassifier(**TINY).fit(["good", "fine film", "great"], ["pos", "pos", "pos"])


def test_multi_label_needs_label_lists():
    with pytest.raises(TextCNNError, match=r"^y\[0\]: expected a list of labels \(multi_label\), "
                                           r"got 'positive'$"):
        TextCNNClassifier(**TINY, multi_label=True).fit(["good", "bad"], ["positive", "negative"])


def test_dev_loss_is_the_cross_entropy_of_the_true_classes():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=20).astype(np.float32)
    truth = rng.integers(0, 3, size=20)
    got = selection_metrics(truth, probs.argmax(1), probs)["loss"]
    assert got == pytest.approx(log_loss(truth, probs, labels=[0, 1, 2]), rel=1e-6)
    tags = rng.integers(0, 2, size=(20, 3))
    sigmoid = rng.uniform(0.01, 0.99, size=(20, 3))
    multi = selection_metrics(tags, (sigmoid >= 0.5).astype(int), sigmoid)["loss"]
    expected = np.mean([log_loss(tags[:, j], sigmoid[:, j], labels=[0, 1]) for j in range(3)])
    assert multi == pytest.approx(expected, rel=1e-6)


def test_metric_loss_keeps_the_epoch_of_least_dev_loss(sample):
    X, y = sample
    by_loss = TextCNNClassifier(**{**TINY, "epochs": 5}, metric="loss", mode="min", seed=1).fit(X, y)
    by_accuracy = TextCNNClassifier(**{**TINY, "epochs": 5}, seed=1).fit(X, y)
    history = by_loss.fit_result_.history
    assert [r["dev_accuracy"] for r in history] == [r["dev_accuracy"] for r in by_accuracy.fit_result_.history]
    losses = [r["dev_loss"] for r in history]
    accuracies = [r["dev_accuracy"] for r in history]
    assert by_loss.fit_result_.best_epoch == 1 + int(np.argmin(losses))  # first of equals
    assert by_accuracy.fit_result_.best_epoch == 1 + int(np.argmax(accuracies))
    assert by_loss.fit_result_.best_epoch != by_accuracy.fit_result_.best_epoch  # this run tells them apart
    assert not torch.equal(by_loss.model_.fc.weight, by_accuracy.model_.fc.weight)


@pytest.mark.parametrize("name, value", [("l2", 0.1), ("weight_decay", 0.1), ("grad_clip", 1.0),
                                         ("lr_schedule", "cosine"), ("metric", "macro_f1"),
                                         ("max_seconds", 100.0)])
def test_fold_batched_training_rejects_what_it_does_not_do(name, value):
    from textcnn.fold_batched import fit_fold_classifiers

    texts, labels = ["good film", "bad film"] * 5, ["pos", "neg"] * 5
    with pytest.raises(TextCNNError, match=f"fold-batched training: expected {name}=.*got {value!r}"):
        fit_fold_classifiers(dict(device="cpu", **{name: value}), [(texts, labels, None, None)])


# -- the CLI --------------------------------------------------------------------------------------
def _train(*args: str):
    return CliRunner().invoke(main, ["train", str(REPO / "recipes" / "quickstart.yaml"), *args],
                              catch_exceptions=False)


def test_cli_rejects_zero_epochs_before_writing_anything(tmp_path):
    result = _train("--out", str(tmp_path / "run"), "--set", "train.epochs=0")
    assert result.exit_code == 2
    assert result.output == (f"Error: {REPO / 'recipes' / 'quickstart.yaml'}: train.epochs: expected an "
                             f"integer >= 1, got 0\n")
    assert not (tmp_path / "run").exists()


def test_cli_one_class_training_set_exits_2(tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("text,label\ngood film,pos\ngreat film,pos\nfine,pos\n")
    result = _train("--out", str(tmp_path / "run"), "--set", f"data.train={data}", "--set", "data.test=null")
    assert result.exit_code == 2
    assert result.output == (f"Error: {data}: expected at least 2 classes in the training labels, "
                             f"got 1 class: 'pos'\n")


def test_cli_nan_loss_exits_2_naming_the_epoch_and_the_learning_rate(tmp_path):
    out = tmp_path / "run"
    result = _train("--out", str(out), "--set", "model.maps=4", "--set", "model.embedding_dim=8",
                    "--set", "train.epochs=2", "--set", "train.optimizer=sgd", "--set", "train.lr=1.0e+30")
    assert result.exit_code == 2
    assert result.output == ("Error: epoch 1: the training loss became nan; try a lower learning rate "
                             "(train.lr, now 1e+30)\n")
    assert not (out / "model").exists()  # nothing that a later load would take for a trained model
