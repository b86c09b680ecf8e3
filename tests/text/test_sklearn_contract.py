"""`TextCNNClassifier` under scikit-learn's contract, checked by hand (parameters, fitting afresh,
errors of scikit-learn's kind, probabilities, sample weights, pickling, model selection) and
through the upstream checks that apply once a Pipeline turns their numbers into text; and the
loss weights: `sample_weight` and `class_weight` with integer labels."""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from textcnn import TextCNNClassifier
from textcnn.cli import main
from textcnn.core.errors import TextCNNError
from textcnn.data import read_table
from textcnn.tokenizer import WordTokenizer

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(maps=4, embedding_dim=8, widths=(2, 3), epochs=2, batch_size=25, seed=0, threads=1)


@pytest.fixture(scope="module")
def sample():
    train = read_table(REPO / "data" / "sample" / "train.csv")
    return list(train["text"])[:200], list(train["label"])[:200]


@pytest.fixture(scope="module")
def fitted(sample):
    return TextCNNClassifier(**SMALL).fit(*sample)


# -- parameters ------------------------------------------------------------------------------------
def test_clone_get_params_and_set_params_round_trip():
    est = TextCNNClassifier(**SMALL, pooling="kmax", k=3, class_weight={1: 2.0})
    params = est.get_params()
    assert params["pooling"] == "kmax" and params["k"] == 3 and params["class_weight"] == {1: 2.0}
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    assert copy.set_params(**params).get_params() == params
    assert est.set_params(dropout=0.3, activation="tanh") is est
    assert est.get_params()["dropout"] == 0.3 and est.get_params()["activation"] == "tanh"
    with pytest.raises(ValueError, match="Invalid parameter 'dropuot'"):
        est.set_params(dropuot=0.1)
    # nested: through a Pipeline, as GridSearchCV addresses it
    pipe = make_pipeline(FunctionTransformer(), TextCNNClassifier(**SMALL))
    pipe.set_params(textcnnclassifier__maps=6)
    assert pipe.get_params()["textcnnclassifier__maps"] == 6


def test_fit_returns_self_and_a_second_fit_starts_afresh(sample):
    X, y = sample
    est = TextCNNClassifier(**SMALL)
    assert est.fit(X, y) is est
    first = est.predict_proba(X)
    # fitting other data in between leaves nothing behind: the next fit equals a fresh one
    est.fit([x.upper() for x in X[:50]], ["a", "b"] * 25)
    assert list(est.classes_) == ["a", "b"]
    est.fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X), first)
    np.testing.assert_array_equal(TextCNNClassifier(**SMALL).fit(X, y).predict_proba(X), first)


def test_not_fitted_error_before_fit():
    est = TextCNNClassifier(**SMALL)
    for call in (lambda: est.predict(["a"]), lambda: est.predict_proba(["a"]), lambda: est.save("x")):
        with pytest.raises(NotFittedError):
            call()


def test_classes_are_sorted_and_probability_columns_follow_them(fitted, sample):
    X, y = sample
    assert list(fitted.classes_) == sorted(set(y)) == ["negative", "positive"]
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(axis=1)])
    # integer labels: classes_ are integers, in order, whatever order they come in
    ints = TextCNNClassifier(**SMALL).fit(X, [{"negative": 7, "positive": -2}[label] for label in y])
    assert ints.classes_.tolist() == [-2, 7] and ints.classes_.dtype.kind == "i"
    assert set(ints.predict(X[:20]).tolist()) <= {-2, 7}


def test_bad_targets_give_scikit_learns_kind_of_error(sample):
    X, _ = sample
    cases = [(None, "requires y to be passed, but the target y is None"),
             (np.linspace(0.1, 0.9, len(X)), "Unknown label type: continuous"),
             (["only"] * len(X), "expected at least 2 classes")]
    for y, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):  # TextCNNError is a ValueError
            TextCNNClassifier(**SMALL).fit(X, y)


# -- sample weights --------------------------------------------------------------------------------
def _vectors_file(path: Path, texts: list[str]) -> Path:
    """A vector for every word the tokenizer makes of `texts` (none is drawn at random)."""
    tokenizer, _ = WordTokenizer.train_encode(texts)
    words = sorted(set(tokenizer.vocab()) - {"[PAD]", "[UNK]"})
    table = np.random.default_rng(1).uniform(-0.5, 0.5, size=(len(words), 6))
    path.write_text(f"{len(words)} 6\n" + "".join(f"{w} " + " ".join(f"{v:.5f}" for v in row) + "\n"
                                                   for w, row in zip(words, table)))
    return path


def test_integer_sample_weights_equal_repeating_the_examples(sample, tmp_path):
    """The reference: the same texts repeated as often as their weight. One batch holds every
    example (a batch's loss is the weighted mean of its texts' losses), the word vectors are
    fixed (static: the vocabulary order a repetition may change plays no part) and dropout is 0,
    so both fits take the same steps up to float rounding. (Every weight is at least 1: a text
    of weight 0 would leave its words out of the repeated data's vocabulary.)"""
    X, y = sample[0][:40], sample[1][:40]
    weights = 1 + np.arange(40) % 3  # once, twice, three times: the same words either way
    vectors = _vectors_file(tmp_path / "v.txt", X)
    params = dict(SMALL, variant="static", vectors=str(vectors), dropout=0.0, batch_size=200, epochs=3, amp=False,
                  dev_fraction=0)
    weighted = TextCNNClassifier(**params).fit(X, y, sample_weight=weights)
    repeated_X = [t for t, w in zip(X, weights) for _ in range(w)]
    repeated_y = [label for label, w in zip(y, weights) for _ in range(w)]
    repeated = TextCNNClassifier(**params).fit(repeated_X, repeated_y)
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-5, atol=1e-6)
    unweighted = TextCNNClassifier(**params).fit(X, y)
    assert not np.allclose(weighted.predict_proba(X), unweighted.predict_proba(X), atol=1e-4)  # it changes the fit
    np.testing.assert_array_equal(  # weights of one and no weights are the same fit
        TextCNNClassifier(**params).fit(X, y, sample_weight=np.ones(40)).predict_proba(X),
        unweighted.predict_proba(X))
    np.testing.assert_allclose(  # scaling every weight changes nothing
        TextCNNClassifier(**params).fit(X, y, sample_weight=5 * weights).predict_proba(X),
        weighted.predict_proba(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weights, message", [
    ([1.0, 2.0], "expected one weight per text (4), got shape (2,)"),
    ([1.0, -1.0, 1.0, 1.0], "expected finite weights >= 0, got -1.0 at index 1"),
    ([1.0, float("nan"), 1.0, 1.0], "expected finite weights >= 0, got nan at index 1"),
    ([0, 0, 0, 0], "expected a positive (finite) total weight, got 0.0"),
    (["a", "b", "c", "d"], "sample_weight: expected numbers"),
])
def test_sample_weight_is_checked(weights, message):
    with pytest.raises(TextCNNError, match=re.escape(message)):
        TextCNNClassifier(**SMALL).fit(["a b", "c d", "a d", "c b"], [0, 1, 0, 1], sample_weight=weights)


def test_sample_weight_in_model_selection(sample):
    X, y = np.array(sample[0], dtype=object), np.array(sample[1], dtype=object)
    weights = np.where(y == "positive", 3.0, 1.0)
    est = TextCNNClassifier(**SMALL)
    weighted = cross_val_predict(est, X, y, cv=2, method="predict_proba", params={"sample_weight": weights})
    plain = cross_val_predict(est, X, y, cv=2, method="predict_proba")
    assert weighted.shape == plain.shape == (len(X), 2)
    # the weights reach each fold's fit: positive texts weigh 3x, so they are more probable
    assert weighted[:, 1].mean() > plain[:, 1].mean()


def test_weight_column_of_a_recipe_is_the_sample_weight(tmp_path):
    rows = read_table(REPO / "data" / "sample" / "train.csv")
    texts, labels = list(rows["text"])[:60], list(rows["label"])[:60]
    weights = [4.0 if i % 3 == 0 else 1.0 for i in range(60)]
    with open(tmp_path / "w.csv", "w", encoding="utf-8") as f:
        f.write("text,label,importance\n" + "".join(f'"{t}",{lab},{w}\n' for t, lab, w in zip(texts, labels, weights)))
    args = ["train", str(REPO / "recipes/quickstart.yaml"), "--set", f"data.train={tmp_path / 'w.csv'}",
            "--set", "data.test=null", "--set", "model.dev_fraction=0", "--set", "train.epochs=2",
            "--set", "model.maps=4", "--set", "model.embedding_dim=8", "--set", "train.threads=1"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "w"), "--set", "data.weight_column=importance"])
    assert result.exit_code == 0, result.output
    quickstart = dict(maps=4, embedding_dim=8, widths=(3, 4, 5), epochs=2, seed=1, dev_fraction=0, threads=1)
    python = TextCNNClassifier(**quickstart).fit(texts, labels, sample_weight=weights)
    saved = load_file(str(tmp_path / "w" / "model" / "model.safetensors"))
    for name, tensor in python.model_.state_dict().items():
        torch.testing.assert_close(saved[name], tensor, msg=name)
    bad = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--set", "data.weight_column=weight"])
    assert bad.exit_code == 2 and "expected a column 'weight'" in bad.output


# -- class weights with integer labels ------------------------------------------------------------
def test_class_weight_keys_may_be_integers_or_their_text(sample):
    """Kim-format files have integer labels, and YAML or JSON may give a key as 1 or "1": both
    name the class 1. The reference: the loss weights torch gets."""
    X, y = sample
    ints = [1 if label == "positive" else 0 for label in y]
    weights = {}
    for key in (1, "1"):
        clf = TextCNNClassifier(**SMALL, class_weight={key: 3.0})
        clf.fit(X, ints)
        weights[key] = clf._loss_weights(torch.tensor([0, 1])).tolist()
    assert weights[1] == weights["1"] == [1.0, 3.0]
    strings = TextCNNClassifier(**SMALL, class_weight={"positive": 3.0}).fit(X, y)
    np.testing.assert_array_equal(strings.predict_proba(X),
                                  TextCNNClassifier(**SMALL, class_weight={1: 3.0}).fit(X, ints).predict_proba(X))
    with pytest.raises(TextCNNError, match="class_weight: key 2: expected a label of the training data, got 2; "
                                           "known labels: 0, 1"):
        TextCNNClassifier(**SMALL, class_weight={2: 3.0}).fit(X, ints)


@pytest.mark.parametrize("setting", ["model.class_weight={1: 3.0}", "model.class_weight={'1': 3.0}"])
def test_class_weight_with_integer_labels_from_a_recipe(tmp_path, setting):
    rows = read_table(REPO / "data" / "sample" / "train.csv")
    lines = [f"{1 if lab == 'positive' else 0} {t}" for t, lab in zip(list(rows["text"])[:80], list(rows["label"])[:80])]
    (tmp_path / "data.all").write_text("\n".join(lines) + "\n")
    args = ["train", str(REPO / "recipes/quickstart.yaml"), "--set", f"data.train={tmp_path / 'data.all'}",
            "--set", "data.test=null", "--set", "train.epochs=1", "--set", "model.maps=4",
            "--set", "model.embedding_dim=8", "--set", "train.threads=1"]
    weighted = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "w"), "--set", setting])
    plain = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "p")])
    assert weighted.exit_code == plain.exit_code == 0, weighted.output + plain.output
    a = load_file(str(tmp_path / "w" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "p" / "model" / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    params = json.loads((tmp_path / "w" / "model" / "config.json").read_text())["params"]
    assert params["class_weight"] == {"1": 3.0}  # JSON keeps keys as text; a refit still finds class 1


# -- persistence and model selection ----------------------------------------------------------------
@pytest.mark.parametrize("dump, load", [(pickle.dumps, pickle.loads),
                                        (lambda obj: _joblib_bytes(obj), lambda data: _joblib_load(data))],
                         ids=["pickle", "joblib"])
def test_pickle_and_joblib_round_trips(fitted, sample, dump, load):
    X, _ = sample
    expected = fitted.predict_proba(X)
    fitted.predict(X[:3])  # builds the projection tables, which travel too
    again = load(dump(fitted))
    assert again.get_params() == fitted.get_params()
    np.testing.assert_array_equal(again.predict_proba(X), expected)
    unfitted = load(dump(TextCNNClassifier(**SMALL)))
    assert unfitted.get_params() == TextCNNClassifier(**SMALL).get_params()


def _joblib_bytes(obj):
    import io

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def _joblib_load(data):
    import io

    return joblib.load(io.BytesIO(data))


@pytest.mark.parametrize("with_out_dir", [False, True], ids=["in memory", "out_dir"])
def test_grid_search_and_cross_val_score(sample, tmp_path, with_out_dir):
    X, y = sample
    extra = {"out_dir": str(tmp_path / "runs")} if with_out_dir else {}
    est = TextCNNClassifier(**SMALL, **extra)
    scores = cross_val_score(est, X, y, cv=2)
    assert scores.shape == (2,) and ((0 <= scores) & (scores <= 1)).all()
    grid = GridSearchCV(est, {"pooling": ["max", "avg"]}, cv=2).fit(X, y)
    assert grid.best_params_["pooling"] in ("max", "avg") and len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.best_estimator_.get_params()["pooling"] == grid.best_params_["pooling"]
    assert set(grid.predict(X[:5])) <= {"negative", "positive"}
    if with_out_dir:
        # a fit per (parameters, training data) folder: cross_val_score's 2 folds, which the grid's
        # max-pooling candidate fits again on the same folds (resumed, finished: the same scores),
        # the avg candidate's 2, and the refit of the best on all the data
        assert len([p for p in (tmp_path / "runs").iterdir() if p.is_dir()]) == 5
        max_pooling = grid.cv_results_["params"].index({"pooling": "max"})
        np.testing.assert_array_equal([grid.cv_results_[f"split{k}_test_score"][max_pooling] for k in (0, 1)],
                                      scores)


# -- scikit-learn's own checks, on numbers made text -----------------------------------------------
def numbers_as_words(X: np.ndarray) -> list[str]:
    """Each row of numbers as one word per feature and half-unit bin, e.g. "f0b7 f1b4"."""
    return [" ".join(f"f{j}b{int(np.clip(np.floor(2 * v), -6, 6)) + 6}" for j, v in enumerate(row)) for row in X]


# The checks that fail, each with why it does not apply. The first two fail for any Pipeline (its
# `steps` hold the fitted steps; the control below shows it with LogisticRegression).
PIPELINE_CHECKS = {
    "check_estimators_overwrite_params": "a Pipeline's `steps` parameter holds its fitted steps, so "
                                         "fitting changes it: scikit-learn's own Pipeline fails the check",
    "check_dont_overwrite_parameters": "the same: `steps` changes during fit for every Pipeline",
}
NOT_APPLICABLE = {"check_array_api_input": "skipped unless SCIPY_ARRAY_API is set; text is no array API input"}


@pytest.mark.slow
def test_upstream_estimator_checks_through_a_pipeline_of_numbers_as_words():
    """scikit-learn's checks feed numeric arrays; a Pipeline that validates them (check_array:
    2-d, finite, dense, real) and writes each row as words lets them reach the estimator: fit
    and predict on lists, labels of any kind, probabilities, one class, bad targets, pickling,
    the training accuracy on blobs (> 0.83), and so on."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.estimator_checks import check_estimator

    cnn = make_pipeline(FunctionTransformer(numbers_as_words, validate=True),
                        TextCNNClassifier(maps=8, embedding_dim=16, widths=(1, 2), epochs=10, seed=0, threads=1,
                                          dev_fraction=0))
    control = make_pipeline(FunctionTransformer(validate=True), LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {name: check_estimator(est, on_fail=None) for name, est in (("cnn", cnn), ("control", control))}
    outcome = {name: {r["check_name"]: r["status"] for r in rows} for name, rows in results.items()}
    failed = {check for check, status in outcome["cnn"].items() if status != "passed"}
    assert failed <= {*PIPELINE_CHECKS, *NOT_APPLICABLE}, [r for r in results["cnn"] if r["check_name"] in
                                                          failed - {*PIPELINE_CHECKS, *NOT_APPLICABLE}]
    assert all(outcome["control"][check] == "failed" for check in PIPELINE_CHECKS)
    passed = [check for check, status in outcome["cnn"].items() if status == "passed"]
    assert len(passed) >= 45 and "check_classifiers_train" in passed and "check_fit2d_1sample" in passed
