"""textcnn.baselines: NB-SVM against brute-force numbers, both baselines on toy and real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from textcnn.baselines import (
    BASELINES,
    NBSVM,
    TFIDF_LOGREG_C,
    baseline_available,
    interpolate,
    interpolate_bias,
    log_count_ratio,
    make_baseline,
    make_tfidf_logreg,
)
from textcnn.core.errors import TextCNNError

TINY = ["a good film", "good , good acting", "a bad plot", "bad and dull !", "Good fun"]
TINY_Y = [1, 1, 0, 0, 1]

POS_WORDS = ["great", "superb", "moving", "brilliant"]
NEG_WORDS = ["awful", "boring", "dreadful", "tedious"]
FILLER = ["the", "film", "was", "plot", "acting", "really", "quite"]


def toy_corpus(words_by_class: dict[str, list[str]], n: int, seed: int) -> tuple[list[str], list[str]]:
    """Sentences of filler words plus one key word of their class: linearly separable."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = list(words_by_class)[i % len(words_by_class)]
        words = list(rng.choice(FILLER, size=4)) + [rng.choice(words_by_class[label])]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def ngrams(text: str) -> set[str]:
    tokens = text.lower().split()
    return set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:])}


# -- the NB-SVM formulas --------------------------------------------------------------------------


def test_log_count_ratio_matches_a_brute_force_count():
    model = NBSVM().fit(TINY, TINY_Y)
    vocab = model.vectorizer_.get_feature_names_out().tolist()
    assert set(vocab) == set().union(*(ngrams(t) for t in TINY))  # whitespace uni+bigrams
    pos = np.array([1 + sum(g in ngrams(t) for t, y in zip(TINY, TINY_Y) if y == 1) for g in vocab],
                   dtype=float)
    neg = np.array([1 + sum(g in ngrams(t) for t, y in zip(TINY, TINY_Y) if y == 0) for g in vocab],
                   dtype=float)
    expected = np.log((pos / pos.sum()) / (neg / neg.sum()))
    np.testing.assert_allclose(model.r_[0], expected, rtol=1e-12)
    # binarized: "good , good acting" counts "good" once
    good = vocab.index("good")
    assert pos[good] == 1 + 3 and model.r_.shape == (1, len(vocab))


def test_log_count_ratio_on_a_matrix():
    f = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 1]])
    positive = np.array([True, True, False, False])
    alpha = 0.5
    p = alpha + np.array([2, 1, 1])
    q = alpha + np.array([0, 1, 2])
    expected = [math.log((p[j] / p.sum()) / (q[j] / q.sum())) for j in range(3)]
    np.testing.assert_allclose(log_count_ratio(sp.csr_matrix(f), positive, alpha), expected)
    np.testing.assert_allclose(log_count_ratio(f, positive, alpha), expected)


def test_interpolation_by_hand():
    w = np.array([2.0, -1.0, 0.5, -0.5])  # mean |w| = 1
    np.testing.assert_allclose(interpolate(w, 0.25), [1.25, 0.5, 0.875, 0.625])
    np.testing.assert_allclose(interpolate(w, 1.0), w)
    np.testing.assert_allclose(interpolate(w, 0.0), np.ones(4))
    positive = np.array([True, False, False, False])
    assert interpolate_bias(0.4, w, positive, 0.25) == pytest.approx(0.75 * math.log(1 / 3) + 0.1)
    assert interpolate_bias(0.4, w, positive, 1.0) == pytest.approx(0.4)


def test_fitted_model_is_the_interpolated_svm_on_scaled_features():
    texts, labels = toy_corpus({"pos": POS_WORDS, "neg": NEG_WORDS}, 40, seed=1)
    model = NBSVM(beta=0.25, C=1.0, random_state=0).fit(texts, labels)
    f = model.vectorizer_.transform(texts)
    positive = np.asarray(labels) == model.classes_[1]
    r = model.r_[0]
    svm = LinearSVC(C=1.0, random_state=0, max_iter=2000).fit(f @ sp.diags(r), positive.astype(int))
    w, b = svm.coef_.ravel(), svm.intercept_[0]
    np.testing.assert_allclose(model.svm_coef_[0], w, rtol=1e-6, atol=1e-9)
    w_new = 0.75 * np.abs(w).mean() + 0.25 * w
    b_new = 0.75 * np.abs(w).mean() * np.log(positive.sum() / (~positive).sum()) + 0.25 * b
    np.testing.assert_allclose(model.coef_[0], w_new * r, rtol=1e-6, atol=1e-9)
    expected = f.toarray() @ (w_new * r) + b_new
    np.testing.assert_allclose(model.decision_function(texts), expected, rtol=1e-6, atol=1e-9)
    # beta = 1 is the plain SVM on r-scaled features
    plain = NBSVM(beta=1.0, random_state=0).fit(texts, labels)
    np.testing.assert_allclose(plain.decision_function(texts), svm.decision_function(f @ sp.diags(r)),
                               rtol=1e-6, atol=1e-9)


# -- behaviour ------------------------------------------------------------------------------------


FASTTEXT = baseline_available("fasttext")


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.skipif(
    not baseline_available(name), reason=f"{name} is not installed (an optional baseline)"))
    for name in sorted(BASELINES)])
def test_toy_separable_corpus_is_learned_perfectly(name):
    classes = {"pos": POS_WORDS, "neg": NEG_WORDS}
    train, train_y = toy_corpus(classes, 200, seed=0)
    test, test_y = toy_corpus(classes, 30, seed=1)
    # fastText's 5 epochs are meant for thousands of documents; 200 short lines need more passes
    params = {"epoch": 50} if name == "fasttext" else {}
    model = make_baseline(name, seed=0, **params).fit(train, train_y)
    assert list(model.predict(test)) == test_y
    assert model.score(test, test_y) == 1.0


def test_multiclass_one_vs_rest():
    classes = {"loc": ["where", "city", "country"], "num": ["how many", "number", "count"],
               "hum": ["who", "person", "author"]}
    train, train_y = toy_corpus(classes, 210, seed=0)
    test, test_y = toy_corpus(classes, 30, seed=2)
    model = NBSVM(random_state=0).fit(train, train_y)
    assert model.classes_.tolist() == ["hum", "loc", "num"]
    scores = model.decision_function(test)
    assert scores.shape == (30, 3) and model.r_.shape[0] == 3 and model.coef_.shape[0] == 3
    assert list(model.predict(test)) == test_y
    np.testing.assert_array_equal(model.predict(test), model.classes_[scores.argmax(axis=1)])
    f = model.vectorizer_.transform(train)
    for k, label in enumerate(model.classes_):
        np.testing.assert_allclose(model.r_[k], log_count_ratio(f, np.asarray(train_y) == label))
    lr = make_tfidf_logreg(seed=0).fit(train, train_y)
    assert list(lr.predict(test)) == test_y


def test_binary_scores_are_one_dimensional_with_classes_1_positive():
    texts, labels = toy_corpus({"pos": POS_WORDS, "neg": NEG_WORDS}, 40, seed=0)
    model = NBSVM().fit(texts, labels)
    scores = model.decision_function(texts)
    assert scores.shape == (40,)
    np.testing.assert_array_equal(model.predict(texts), np.where(scores > 0, model.classes_[1],
                                                                 model.classes_[0]))


def test_clone_and_get_params_round_trip():
    model = NBSVM(alpha=0.5, beta=0.4, C=2.0, ngram_range=(1, 3), random_state=7)
    params = model.get_params()
    assert params == dict(alpha=0.5, beta=0.4, C=2.0, ngram_range=(1, 3),
                          token_pattern=model.token_pattern, lowercase=True, max_iter=2000,
                          random_state=7)
    twin = clone(model)
    assert twin is not model and twin.get_params() == params
    assert NBSVM(**params).get_params() == params
    fitted = NBSVM().fit(TINY, TINY_Y)
    fresh = clone(fitted)
    assert not hasattr(fresh, "r_") and not hasattr(fresh, "classes_")
    with pytest.raises(NotFittedError):
        fresh.predict(TINY)
    assert fresh.set_params(beta=0.9).beta == 0.9
    pipe = make_tfidf_logreg(C=5.0, seed=3)
    copy = clone(pipe)
    assert copy.get_params()["logreg__C"] == 5.0 and copy.get_params()["logreg__random_state"] == 3


def test_make_baseline():
    lr = make_baseline("tfidf-logreg", seed=4)
    assert isinstance(lr, Pipeline) and lr.get_params()["logreg__C"] == TFIDF_LOGREG_C
    assert lr.get_params()["tfidf__ngram_range"] == (1, 2) and lr.get_params()["tfidf__sublinear_tf"]
    assert make_baseline("tfidf_logreg", seed=4).get_params()["logreg__random_state"] == 4
    nb = make_baseline("nbsvm", seed=5, beta=0.5)
    assert isinstance(nb, NBSVM) and nb.random_state == 5 and nb.beta == 0.5
    with pytest.raises(TextCNNError, match="did you mean 'nbsvm'"):
        make_baseline("nbsv", seed=0)


@pytest.mark.parametrize("texts, labels, match", [
    ("one string", [1], "expected a list of texts, got a single string"),
    (["a", 2], [0, 1], "expected texts \\(str\\), got int at index 1"),
    (["a", "b"], [0, 0], "expected at least 2 classes"),
    (["a", "b"], [0, 1, 1], "expected one label per text \\(2\\), got 3"),
])
def test_bad_input(texts, labels, match):
    with pytest.raises(TextCNNError, match=match):
        NBSVM().fit(texts, labels)


# -- real data ------------------------------------------------------------------------------------


def test_mr_fold0_accuracy(shared_data):
    path = shared_data / "kim2014" / "rt-polarity.all"
    if not path.is_file():
        pytest.skip(f"MR not found at {path}")
    from textcnn.core.splits import kfold_splits
    from textcnn.data import read_kim_file

    ds = read_kim_file(path)
    texts, labels = list(ds["text"]), np.asarray(ds["label"])
    train, test = kfold_splits(labels, n_folds=10, seed=0)[0]
    pick = lambda idx: [texts[i] for i in idx]  # noqa: E731
    # Kim (2014), Table 2: NBSVM 79.4 on MR (10-fold CV mean); one fold varies by a point or two.
    nbsvm = make_baseline("nbsvm", seed=0).fit(pick(train), labels[train])
    assert nbsvm.score(pick(test), labels[test]) > 0.77
    lr = make_baseline("tfidf-logreg", seed=0).fit(pick(train), labels[train])
    assert lr.score(pick(test), labels[test]) > 0.75


@pytest.mark.skipif(FASTTEXT, reason="fasttext is installed here")
def test_fasttext_absent_is_a_one_line_error_and_left_out_of_a_batch(tmp_path):
    with pytest.raises(TextCNNError, match=r"model.arch: fasttext needs the fasttext package") as info:
        make_baseline("fasttext", seed=0).fit(["a b", "c d"], [0, 1])
    assert "\n" not in str(info.value)
    from textcnn.tasks.text import TextTask

    task = TextTask()
    data = {"data": {"train": "t.csv"}, "model": {"arch": "fasttext"}}
    with pytest.warns(UserWarning, match="fasttext is not installed here; its run is left out"):
        assert task.runs(data, task.check(data, source="r.yaml"), name="r/fasttext", folds=None) == []
