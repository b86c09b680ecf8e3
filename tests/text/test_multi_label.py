"""Multi-label text classification from a recipe, the command line and Python: label lists in
JSON and separator-joined labels in CSV, thresholds (one, per label from a file, tuned on dev
data) and top-k, and the figures of `evaluate`, results.json and batch tables."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import f1_score, hamming_loss

from textcnn import TextCNNClassifier
from textcnn.batch_runner import write_tables
from textcnn.cli import main
from textcnn.core.decisions import best_f1_thresholds, multi_label_decisions
from textcnn.core.errors import TextCNNError
from textcnn.data import label_sets, load_data
from textcnn.pipeline import classifier_report
from textcnn.recipe import text_recipe

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
FAST = ["--set", "model.maps=8", "--set", "model.embedding_dim=16", "--set", "train.epochs=4"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# -- deciding ---------------------------------------------------------------------------------------
def test_best_f1_thresholds_match_a_search_over_every_cut():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 4)) < [0.5, 0.2, 0.05, 0.0]
    scores = np.clip(truth * 0.3 + rng.random((40, 4)) * 0.8, 0, 1).round(2)  # ties included
    got = best_f1_thresholds(truth, scores, default=0.5)
    for c in range(4):
        if not truth[:, c].any():
            assert got[c] == 0.5  # no positive: F1 is 0 anyway, the default stays
            continue
        candidates = np.unique(np.append(scores[:, c], 1.01))
        best = max(f1_score(truth[:, c], scores[:, c] >= t, zero_division=0) for t in candidates)
        assert f1_score(truth[:, c], scores[:, c] >= got[c], zero_division=0) == pytest.approx(best)
        kept, dropped = scores[scores[:, c] >= got[c], c], scores[scores[:, c] < got[c], c]
        assert got[c] == pytest.approx((kept.min() + (dropped.max() if len(dropped) else 0.0)) / 2)


def test_multi_label_decisions_thresholds_and_top_k():
    probs = np.array([[0.9, 0.6, 0.2, 0.55], [0.1, 0.2, 0.3, 0.05]])
    np.testing.assert_array_equal(multi_label_decisions(probs, 0.5), [[1, 1, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(multi_label_decisions(probs, np.array([0.95, 0.5, 0.1, 0.6])),
                                  [[0, 1, 1, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(multi_label_decisions(probs, None, top_k=2), [[1, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(multi_label_decisions(probs, 0.25, top_k=2), [[1, 1, 0, 0], [0, 0, 1, 0]])
    with pytest.raises(TextCNNError, match="top_k: expected an integer >= 1"):
        multi_label_decisions(probs, 0.5, top_k=0)


# -- reading ---------------------------------------------------------------------------------------
def test_json_lists_and_separated_strings_give_label_lists(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x", "tags": ["b", "a"]}\n{"text": "y", "tags": []}\n')
    ds = load_data(tmp_path / "a.jsonl", label_column="tags")
    assert list(ds["label"]) == [["b", "a"], []]
    assert label_sets(["a| b", "", "c", 3, ["d"]], separator="|") == [["a", "b"], [], ["c"], [3], ["d"]]
    with pytest.raises(TextCNNError, match="row 1: expected labels, got a nested list"):
        label_sets([[["a"]]])


def test_a_list_label_needs_a_multi_label_recipe(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"t {i}", "label": ["a", "b"][: 1 + i % 2]})
                                              + "\n" for i in range(8)))
    result = run("train", REPO / "recipes/quickstart.yaml", "--out", tmp_path / "out",
                 "--set", f"data.train={tmp_path / 'a.jsonl'}", "--set", "data.test=null", *FAST)
    assert result.exit_code == 2
    assert "a.jsonl: row 1: expected one label per text, got a list ['a']; a list of labels needs " \
           "model.multi_label: true" in result.output
    for key, value in (("data.label_separator", "'|'"), ("train.tune_thresholds", "true")):
        result = run("train", REPO / "recipes/quickstart.yaml", "--out", tmp_path / "x", "--set", f"{key}={value}")
        assert result.exit_code == 2 and f"{key}: used with model.multi_label only" in result.output


# -- the sample recipe, end to end -------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "run"
    result = run("train", REPO / "recipes/multilabel.yaml", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


def test_the_sample_recipe_trains_tunes_and_reports(trained):
    recipe = text_recipe(yaml.safe_load((trained / "recipe.yaml").read_text()))
    assert recipe.model.multi_label and recipe.train.tune_thresholds and recipe.data.label_separator == "|"
    results = json.loads((trained / "results.json").read_text())
    clf = TextCNNClassifier.load(trained / "model")
    assert list(clf.classes_) == ["acting", "humour", "music", "plot", "visuals"]
    assert results["thresholds"] == {c: pytest.approx(t, abs=1e-6) for c, t in zip(clf.classes_, clf.thresholds_)}
    # the test figures are scikit-learn's, on the test file's '|'-joined labels
    test = load_data(SAMPLE / "multilabel-test.csv", label_column="labels")
    truth = np.array([[c in row.split("|") for c in clf.classes_] for row in test["label"]], dtype=int)
    predicted = clf.predict(list(test["text"]))
    assert results["test_micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert results["test_samples_f1"] == pytest.approx(f1_score(truth, predicted, average="samples"))
    assert results["test_hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
    assert results["test_subset_accuracy"] == pytest.approx((truth == predicted).all(axis=1).mean())
    assert results["test_micro_f1"] > 0.5  # it learnt the aspects


def test_tuned_thresholds_are_the_default_and_calls_override_them(trained):
    clf = TextCNNClassifier.load(trained / "model")
    texts = ["the score is haunting and the jokes falls flat .", "the cast overacts badly .", "nothing ."]
    proba = clf.predict_proba(texts)
    np.testing.assert_array_equal(clf.predict(texts), proba >= clf.thresholds_)
    np.testing.assert_array_equal(clf.predict(texts, threshold=0.9), proba >= 0.9)
    per_label = clf.predict(texts, thresholds={"music": 0.0, "acting": 1.0})
    expected = proba >= clf.thresholds_
    expected[:, 2], expected[:, 0] = True, proba[:, 0] >= 1.0
    np.testing.assert_array_equal(per_label, expected)
    top = clf.predict(texts, top_k=2)
    assert (top.sum(axis=1) == 2).all()
    np.testing.assert_array_equal(np.sort(np.argsort(-proba, axis=1)[:, :2]), np.argwhere(top)[:, 1].reshape(3, 2))
    np.testing.assert_array_equal(clf.predict(texts, top_k=2, threshold=0.5), top & (proba >= 0.5))
    with pytest.raises(TextCNNError, match="thresholds: label 'drama': expected a label of the training data"):
        clf.predict(texts, thresholds={"drama": 0.5})
    with pytest.raises(TextCNNError, match=r"thresholds: label 'music': expected a probability in \[0, 1\]"):
        clf.predict(texts, thresholds={"music": 2})


def test_cli_evaluate_and_predict_a_multi_label_model(trained, tmp_path):
    model = trained / "model"
    report = run("evaluate", model, "--data", SAMPLE / "multilabel-test.csv", "--label-column", "labels",
                 "--json", "--plot", tmp_path / "scores.png")
    assert report.exit_code == 0, report.output
    figures = json.loads(report.output)
    results = json.loads((trained / "results.json").read_text())
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert figures[key] == pytest.approx(results[f"test_{key}"])
    assert (tmp_path / "scores.png").stat().st_size > 0
    text = run("evaluate", model, "--data", SAMPLE / "multilabel-test.csv")  # the recipe's label column
    assert "micro-F1" in text.output and "Hamming loss" in text.output
    assert json.loads(run("evaluate", model, "--data", SAMPLE / "multilabel-test.csv", "--json").output) == figures
    (tmp_path / "renamed.csv").write_text((SAMPLE / "multilabel-test.csv").read_text().replace("text,labels", "text,tags", 1))
    missing = run("evaluate", model, "--data", tmp_path / "renamed.csv")
    assert missing.exit_code == 2 and "expected a column 'labels'" in missing.output, missing.output
    assert json.loads(run("evaluate", model, "--data", tmp_path / "renamed.csv", "--label-column", "tags",
                          "--json").output) == figures
    # labels joined by another separator: split as asked
    rows = list(csv.reader((SAMPLE / "multilabel-test.csv").open()))[1:30]
    (tmp_path / "semi.csv").write_text("text,labels\n" + "".join(
        f'"{t}","{lab.replace("|", ";")}"\n' for t, lab in rows))
    semi = run("evaluate", model, "--data", tmp_path / "semi.csv", "--label-column", "labels",
               "--label-separator", ";", "--json")
    direct = classifier_report(TextCNNClassifier.load(model), [t for t, _ in rows],
                               label_sets([lab for _, lab in rows], separator="|"))
    assert json.loads(semi.output)["micro_f1"] == pytest.approx(direct["micro_f1"])

    clf = TextCNNClassifier.load(model)
    sentence = "the score is haunting and the jokes lands every time ."
    out = run("predict", model, sentence, "--format", "jsonl")
    assert json.loads(out.output)["label"] == [c for c, on in zip(clf.classes_, clf.predict([sentence])[0]) if on]
    (tmp_path / "t.json").write_text(json.dumps({"music": 0.0, "humour": 1.0}))
    out = run("predict", model, sentence, "--thresholds", tmp_path / "t.json", "--format", "jsonl")
    expected = clf.predict([sentence], thresholds={"music": 0.0, "humour": 1.0})[0]
    assert json.loads(out.output)["label"] == [c for c, on in zip(clf.classes_, expected) if on]
    out = run("predict", model, sentence, "--top-k", "3")
    label_set, ranked, _ = out.output.rstrip("\n").split("\t")
    assert label_set.split(",") == sorted(part.split(" ")[0] for part in ranked.split("  "))
    bad = run("predict", model, "x", "--thresholds", tmp_path / "missing.json")
    assert bad.exit_code == 2 and "missing.json: expected a JSON file {label: threshold}" in bad.output


def test_single_label_models_refuse_the_multi_label_options(tmp_path):
    out = tmp_path / "qs"
    assert run("train", REPO / "recipes/quickstart.yaml", "--out", out, *FAST,
               "--set", "train.epochs=1").exit_code == 0
    (tmp_path / "t.json").write_text('{"positive": 0.5}')
    result = run("predict", out / "model", "fine", "--thresholds", tmp_path / "t.json")
    assert result.exit_code == 2 and "thresholds: for multi-label models" in result.output
    result = run("evaluate", out / "model", "--data", SAMPLE / "test.csv", "--label-separator", "|")
    assert result.exit_code == 2 and "--label-separator: for multi-label models" in result.output
    clf = TextCNNClassifier.load(out / "model")
    for option in ({"top_k": 2}, {"thresholds": {"positive": 0.3}}):
        with pytest.raises(TextCNNError, match="for multi-label models"):
            clf.predict(["fine"], **option)


def test_batch_table_shows_the_multi_label_figures(tmp_path):
    rows = [{"run": f"ml/s{seed}", "task": "text", "model": "CNN-rand", "dataset": "aspects", "multi_label": True,
             "micro_f1": m, "macro_f1": m - 0.1, "samples_f1": m - 0.05, "subset_accuracy": m - 0.2,
             "hamming_loss": 1 - m, "accuracy": None} for seed, m in ((0, 0.9), (1, 0.8))]
    rows.append({"run": "mr/rand/fold=0", "task": "text", "model": "CNN-rand", "dataset": "mr", "accuracy": 0.75})
    write_tables(rows, tmp_path)
    md = (tmp_path / "table.md").read_text()
    assert "| CNN-rand | 75.0 ± 0.0 (n=1) [paper 76.1] |" in md
    assert "| CNN-rand | aspects | 85.0 ± 7.1 (n=2) | 75.0 ± 7.1 (n=2) | 80.0 ± 7.1 (n=2) | 65.0 ± 7.1 (n=2) | " \
           "15.0 ± 7.1 (n=2) |" in md
    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert {r["metric"] for r in table} == {"accuracy", "micro_f1", "macro_f1", "samples_f1", "subset_accuracy",
                                            "hamming_loss"}
    assert (tmp_path / "table.png").is_file()


# -- Python --------------------------------------------------------------------------------------------
def test_tune_thresholds_needs_dev_data_and_multi_label():
    texts, labels = ["a b", "c d", "a d", "c b"] * 3, [["x"], ["y"], ["x", "y"], []] * 3
    with pytest.raises(TextCNNError, match="tune_thresholds: expected dev data"):
        TextCNNClassifier(multi_label=True, tune_thresholds=True, dev_fraction=0, epochs=1, maps=2,
                          embedding_dim=4, widths=(1,)).fit(texts, labels)
    with pytest.raises(TextCNNError, match="train.tune_thresholds: used with model.multi_label only"):
        TextCNNClassifier(tune_thresholds=True).fit(texts, [0, 1] * 6)


def test_tuned_thresholds_are_the_best_f1_cuts_of_the_dev_scores():
    rows = list(itertools.islice(map(json.loads, (SAMPLE / "multilabel-train.jsonl").read_text().splitlines()), 300))
    texts, labels = [r["text"] for r in rows], [r["labels"] for r in rows]
    clf = TextCNNClassifier(multi_label=True, tune_thresholds=True, epochs=2, maps=4, embedding_dim=8,
                            widths=(2,), threads=1).fit(texts[:240], labels[:240], X_dev=texts[240:],
                                                        y_dev=labels[240:])
    truth = np.array([[c in row for c in clf.classes_] for row in labels[240:]])
    np.testing.assert_allclose(clf.thresholds_, best_f1_thresholds(truth, clf.predict_proba(texts[240:]),
                                                                   default=0.5))
