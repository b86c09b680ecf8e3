"""The lean path for one text (`SingleTextScorer`): the probabilities of the batched path
(`class_scores` over the projection tables, and the plain convolutions) to float rounding."""

from pathlib import Path

import numpy as np
import pytest
import torch

from textcnn import TextCNNClassifier
from textcnn.data import read_table
from textcnn.estimator.inference import SingleTextScorer, class_scores

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample():
    train = read_table(ROOT / "data" / "sample" / "train.csv")
    return list(train["text"]), list(train["label"])


def texts_for(clf: TextCNNClassifier) -> list[str]:
    words = clf.tokenizer_.vocab()[2:]
    return ["", "!", words[0], " ".join(words[:2]), "unseenword " * 3, " ".join(words[:300]),
            "[PAD] and [UNK] are plain words here", *(" ".join(words[i:i + 3 + i % 20]) for i in range(0, 80, 7))]


@pytest.mark.parametrize("settings", [dict(widths=(3, 4, 5)), dict(widths=(1,)), dict(widths=(2, 7), multi_label=True)])
def test_one_text_gets_the_batched_probabilities(sample, settings):
    X, y = sample
    labels = [[label] for label in y] if settings.get("multi_label") else y
    clf = TextCNNClassifier(maps=6, embedding_dim=12, epochs=2, seed=0, **settings).fit(X, labels)
    texts = texts_for(clf)
    batched = class_scores(clf.model_, clf.tokenizer_.encode_batch(texts), torch.device("cpu"),
                           multi_label=clf.multi_label)  # the plain convolutions, in one batch
    alone = np.vstack([clf.predict_proba([text]) for text in texts])
    assert isinstance(clf._single_scorer[1], SingleTextScorer)  # the lean path answered
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone, clf.predict_proba(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([clf.predict([text]) for text in texts]), clf.predict(texts))


def test_the_lean_path_follows_a_refit_and_the_plain_path_is_left_alone(sample):
    X, y = sample
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0).fit(X, y)
    first = clf.predict_proba([X[0]])
    clf.set_params(seed=1).fit(X, y)  # new weights: the scorer is rebuilt from the new tables
    np.testing.assert_allclose(clf.predict_proba([X[0]]), clf.predict_proba(X[:2])[:1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, clf.predict_proba([X[0]]))
    plain = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0, fast=False).fit(X, y)
    plain.predict_proba([X[0]])
    assert getattr(plain, "_single_scorer", None) is None  # fast=False predicts with the convolutions


def test_a_classifier_that_predicted_one_text_still_pickles(sample):
    import pickle

    X, y = sample
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0).fit(X, y)
    before = clf.predict_proba([X[3]])
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(copy.predict_proba([X[3]]), before, rtol=1e-6)


def test_the_scorer_reads_the_table_in_place(sample):
    X, y = sample
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0).fit(X, y)
    clf.predict_proba([X[0]])
    projected, scorer = clf._single_scorer[:2]
    assert np.shares_memory(scorer.table, projected.table.numpy())  # no second copy of the table


@pytest.mark.parametrize("menu", [dict(activation="tanh"), dict(pooling="avg"), dict(batch_norm=True)])
def test_a_model_off_kims_relu_and_max_predicts_one_text_on_the_batched_path(sample, menu):
    X, y = sample
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0, **menu).fit(X, y)
    texts = texts_for(clf)[:5]
    batched = class_scores(clf.model_, clf.tokenizer_.encode_batch(texts), torch.device("cpu"),
                           multi_label=False)
    alone = np.vstack([clf.predict_proba([text]) for text in texts])
    assert getattr(clf, "_single_scorer", None) is None  # the lean path computes ReLU after max only
    np.testing.assert_allclose(alone, batched, rtol=1e-5, atol=1e-6)


def test_a_length_policy_set_after_a_single_prediction_takes_effect(sample):
    """The lean path encodes with the length policy: set_params(max_tokens=...) after it has
    answered once must cut the next text by the new policy, as the batched path does."""
    X, y = sample
    clf = TextCNNClassifier(maps=6, embedding_dim=12, epochs=1, seed=0).fit(X, y)
    text = " ".join(clf.tokenizer_.vocab()[2:400])
    whole = clf.predict_proba([text])
    for max_tokens, truncation in ((3, "head"), (3, "tail"), (None, "none")):
        clf.set_params(max_tokens=max_tokens, truncation=truncation)
        ids = clf.tokenizer_.encode_batch([text], max_tokens=max_tokens, truncation=truncation)
        expected = class_scores(clf.model_, ids, torch.device("cpu"), multi_label=False)
        np.testing.assert_allclose(clf.predict_proba([text]), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(clf.predict_proba([text, text])[:1], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(clf.set_params(max_tokens=3, truncation="head").predict_proba([text]), whole)


def test_a_text_holding_the_pad_id_is_scored_as_the_padded_batches_do(sample):
    """A subword tokenizer gives the pad id for a literal "[PAD]"; the padded batches (and
    training) count it as padding, and so does the single-text path."""
    X, y = sample
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=1, seed=0).fit(X, y)
    pad = clf.tokenizer_.pad_id
    for ids in ([5, pad, 7, 9], [pad], [8, 8, pad]):  # "[PAD]" alone is an empty text to the model
        scorer = SingleTextScorer(clf._inference_model(torch.device("cpu")), lambda text, ids=ids: list(ids),
                                  multi_label=False)
        expected = class_scores(clf.model_, [ids], torch.device("cpu"), multi_label=False)
        np.testing.assert_allclose(scorer("a text"), expected, rtol=1e-5, atol=1e-6)
