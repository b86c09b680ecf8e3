"""Prediction at scale and with care: memory bounded by a token budget, streaming `predict
--input`, input encodings, and confidence thresholds on classifiers."""

import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import textcnn.estimator.classifier as classifier_module
import textcnn.estimator.inference as inference_module
from textcnn import TextCNNClassifier
from textcnn.cli import main
from textcnn.core.errors import TextCNNError
from textcnn.data import read_table

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(maps=8, embedding_dim=16, widths=(2, 3), epochs=3, batch_size=25, seed=0)


@pytest.fixture(scope="module")
def sample():
    train, test = read_table(REPO / "data/sample/train.csv"), read_table(REPO / "data/sample/test.csv")
    return list(train["text"]), list(train["label"]), list(test["text"]), list(test["label"])


@pytest.fixture(scope="module")
def fitted(sample):
    X, y, _, _ = sample
    return TextCNNClassifier(**SMALL).fit(X, y)


@pytest.fixture(scope="module")
def model_dir(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("model") / "model")


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def one_line_error(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


# -- memory: inference batches bounded by a token budget --------------------------------------------

LONG = 100_000  # tokens of the one long text among 400 short ones
SHORT = 400
# A generous ceiling per padded token: the default 300-d, 3 x 100 model takes about 1 KB per token
# on the projection path (textcnn/estimator/inference.py); the tiny test model's tensors take far
# less, and the rest pays for the long text's own string, tokens and ids.
PER_TOKEN = 1024
SLACK = 64 << 20  # the allocator's and Python's own growth

MEASURE = textwrap.dedent("""
    import json, re, resource, sys
    import torch
    torch.set_num_threads(1)
    from textcnn import TextCNNClassifier
    from textcnn.pipeline import evaluate_model

    def status(key):
        return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) << 10

    model_dir, data, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    clf = TextCNNClassifier.load(model_dir)
    clf.predict_proba(["a warm up"] * 10)  # builds the projection tables
    texts = [line.split(" ", 1)[1] for line in open(data, encoding="utf-8").read().splitlines()]
    # a cap on address space: batching by count alone (401 x 100k tokens) would fail instead of
    # taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + limit, resource.RLIM_INFINITY))
    growth = {}
    for mode in sys.argv[4:]:
        open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from here
        before = status("VmRSS")
        if mode == "predict":
            clf.predict_proba(texts)
        else:
            evaluate_model(model_dir, data, data_format="kim")
        growth[mode] = status("VmHWM") - before
    print(json.dumps(growth))
""")


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def kim_model_dir(sample, tmp_path_factory):
    """A model with Kim-format (integer) labels, for `textcnn evaluate` on a Kim-format file."""
    X, y, _, _ = sample
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1}).fit(X, [int(label == "positive") for label in y])
    return clf.save(tmp_path_factory.mktemp("kim") / "model")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads peak memory from /proc (Linux)")
def test_one_long_text_among_short_ones_takes_bounded_memory(kim_model_dir, tmp_path):
    model_dir = kim_model_dir
    words = ["good", "bad", "film", "fine", "dull"]
    data = tmp_path / "long.kim"
    rows = [f"{i % 2} a {words[i % 5]} film" for i in range(SHORT)]
    rows.append("1 " + " ".join(words[i % 5] for i in range(LONG)))
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    bound = PER_TOKEN * max(inference_module.INFERENCE_TOKENS, LONG) + SLACK
    # batching by count alone (up to 1000 texts, each batch as wide as its longest) pads all 401 texts
    # to 100k tokens: its id matrix alone (int64) is larger than the bound
    assert 8 * (SHORT + 1) * LONG > bound
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    runs = [["predict", "evaluate"]] if _can_reset_peak() else [["predict"], ["evaluate"]]
    growth = {}
    for modes in runs:
        proc = subprocess.run([sys.executable, str(script), str(model_dir), str(data), str(4 * bound), *modes],
                              capture_output=True, text=True, cwd=REPO,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        growth.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert set(growth) == {"predict", "evaluate"}
    for mode, grown in growth.items():
        assert grown < bound, f"{mode}: peak grew by {grown / 2**20:.0f} MB, bound {bound / 2**20:.0f} MB"


def test_dev_scoring_during_training_stays_within_the_budget(sample, monkeypatch):
    X, y, _, _ = sample
    budget = 64
    monkeypatch.setattr(inference_module, "INFERENCE_TOKENS", budget)
    shapes = []
    original = classifier_module.projected_logits

    def spy(model, ids, **kwargs):
        if not model.training:  # dev scoring runs in eval mode, training steps in train mode
            shapes.append(tuple(ids.shape))
        return original(model, ids, **kwargs)

    monkeypatch.setattr(classifier_module, "projected_logits", spy)
    dev = X[:30] + [" ".join(["film"] * 200)]
    TextCNNClassifier(**{**SMALL, "epochs": 1}).fit(X[30:], y[30:], X_dev=dev, y_dev=y[:30] + [y[0]])
    assert shapes and sum(n for n, _ in shapes) == len(dev)
    for n, width in shapes:
        assert n * width <= budget or n == 1, (n, width)


# -- confidence thresholds in Python ------------------------------------------------------------------

def test_predict_with_a_threshold_abstains_as_brute_force_does(fitted, sample):
    _, _, Xt, _ = sample
    proba = fitted.predict_proba(Xt)
    top = proba.max(axis=1)
    for threshold in (0.0, float(np.median(top)), float(top[3]), 1.0):
        for abstain in (None, "unsure"):
            expected = [fitted.classes_[row.argmax()] if row.max() >= threshold else abstain for row in proba]
            got = fitted.predict(Xt, threshold=threshold, abstain=abstain)
            assert got.dtype == object and list(got) == expected
    assert fitted.predict(Xt, threshold=float(top[3]))[3] == fitted.classes_[proba[3].argmax()]  # >= keeps
    np.testing.assert_array_equal(fitted.predict(Xt), fitted.classes_[proba.argmax(axis=1)])


def test_predict_threshold_of_a_multi_label_model_is_per_label(sample):
    X, y, Xt, _ = sample
    tags = [[label] + (["long"] if len(t.split()) > 12 else []) for t, label in zip(X, y)]
    clf = TextCNNClassifier(**{**SMALL, "epochs": 1}, multi_label=True, threshold=0.5).fit(X, tags)
    proba = clf.predict_proba(Xt)
    np.testing.assert_array_equal(clf.predict(Xt), (proba >= 0.5).astype(int))
    cut = float(np.median(proba))
    np.testing.assert_array_equal(clf.predict(Xt, threshold=cut), (proba >= cut).astype(int))
    with pytest.raises(TextCNNError, match="abstain: a multi-label model"):
        clf.predict(Xt, threshold=0.5, abstain="none")
    from textcnn.pipeline import predict_stream

    decided = [p.label for p in predict_stream(clf, Xt, threshold=cut)]
    assert decided == [[c for c, p in zip(clf.classes_, row) if p >= cut] for row in proba]
    with pytest.raises(TextCNNError, match="abstain: a multi-label model"):
        next(predict_stream(clf, Xt, threshold=cut, abstain="none"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"threshold": 1.5}, r"threshold: expected a probability in \[0, 1\], got 1.5"),
    ({"threshold": float("nan")}, r"threshold: expected a probability in \[0, 1\], got nan"),
    ({"threshold": "high"}, r"threshold: expected a probability in \[0, 1\], got 'high'"),
    ({"abstain": "unsure"}, r"abstain: takes effect below a confidence threshold, and none was given"),
])
def test_bad_thresholds_are_one_line_errors(fitted, kwargs, message):
    with pytest.raises(TextCNNError, match=message):
        fitted.predict(["a film"], **kwargs)


# -- thresholds on the command line --------------------------------------------------------------------

def test_cli_threshold_and_abstain_follow_the_probabilities(fitted, model_dir, sample):
    _, _, Xt, _ = sample
    texts = Xt[:12]
    proba = fitted.predict_proba(texts)
    cut = float(np.median(proba.max(axis=1)))
    expected = [fitted.classes_[row.argmax()] if row.max() >= cut else None for row in proba]
    assert None in expected and any(e is not None for e in expected)
    rows = [json.loads(line) for line in
            cli("predict", model_dir, *texts, "--threshold", cut, "--format", "jsonl").output.splitlines()]
    assert [r["label"] for r in rows] == expected and [r["text"] for r in rows] == texts
    lines = cli("predict", model_dir, *texts, "--threshold", cut, "--abstain", "unsure").output.splitlines()
    assert [line.split("\t")[0] for line in lines] == [e if e is not None else "unsure" for e in expected]
    lines = cli("predict", model_dir, *texts, "--threshold", cut).output.splitlines()
    assert [line.split("\t")[0] for line in lines] == [e if e is not None else "(abstain)" for e in expected]
    assert [line.split("\t")[2] for line in lines] == texts


def test_cli_threshold_options_out_of_place_are_one_line_errors(model_dir, tmp_path):
    message = one_line_error(cli("predict", model_dir, "a film", "--score-threshold", "0.3"))
    assert "--score-threshold: is for detectors" in message and "--threshold" in message
    message = one_line_error(cli("predict", model_dir, "a film", "--abstain", "unsure"))
    assert "abstain: takes effect below a confidence threshold, and none was given" in message
    message = one_line_error(cli("predict", model_dir, "a film", "--out", tmp_path / "drawn"))
    assert "--out: is for detectors" in message


# -- streaming ---------------------------------------------------------------------------------------------

def test_predict_stream_yields_before_reading_all_inputs(fitted, sample, monkeypatch, stream_and_count):
    from textcnn import pipeline

    monkeypatch.setattr(pipeline, "CHUNK_TEXTS", 50)
    _, _, Xt, _ = sample
    texts = (Xt * 3)[:260]
    predictions, read_at_first = stream_and_count(pipeline.predict_stream, fitted, texts, top_k=2)
    assert read_at_first == 50 < len(texts)
    proba = fitted.predict_proba(texts)
    assert [p.input for p in predictions] == texts
    for p, row in zip(predictions, proba):
        order = np.argsort(-row, kind="stable")[:2]
        assert [label for label, _ in p.ranked] == list(fitted.classes_[order])
        np.testing.assert_allclose([prob for _, prob in p.ranked], row[order], rtol=1e-6)
        assert p.label == fitted.classes_[order[0]]


def test_cli_predict_input_streams_through_a_pipe(fitted, model_dir):
    from textcnn.pipeline import CHUNK_TEXTS

    # ~100 bytes a line, so the pipe (64 KB on Linux) holds few lines beyond what the CLI reads
    lines = [f"a {'good' if i % 3 else 'dull'} film {i} " + "z" * 80 for i in range(3 * CHUNK_TEXTS)]
    proc = subprocess.Popen([sys.executable, "-m", "textcnn.cli", "predict", str(model_dir), "--input", "-",
                             "--format", "jsonl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    written = [0]

    def feed():
        try:
            for line in lines:
                proc.stdin.write(line.encode() + b"\n")
                proc.stdin.flush()
                written[0] += 1
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    first = proc.stdout.readline()
    written_at_first_output = written[0]
    rest = proc.stdout.read()
    writer.join()
    assert proc.wait() == 0
    # the first results came while most of the input was still unwritten
    assert written_at_first_output < len(lines) / 2, written_at_first_output
    rows = [json.loads(line) for line in (first + rest).decode().splitlines()]
    assert [r["text"] for r in rows] == lines
    proba = fitted.predict_proba(lines)
    np.testing.assert_allclose([r["labels"][0]["probability"] for r in rows], proba.max(axis=1), atol=2e-6)
    assert [r["label"] for r in rows] == list(fitted.classes_[proba.argmax(axis=1)])


# -- encodings -----------------------------------------------------------------------------------------------

def test_input_that_does_not_decode_names_the_line_and_keeps_earlier_output(fitted, model_dir, tmp_path):
    data = tmp_path / "reviews.txt"
    data.write_bytes(b"a good film\na dull film\nun film d\xe9cevant\nthe end\n")
    result = cli("predict", model_dir, "--input", data)
    message = one_line_error(result)
    assert re.fullmatch(rf"Error: {re.escape(str(data))}:3: expected utf-8 text, got bytes that do not "
                        r"decode \(.+\); give the file's encoding with --encoding, e.g. --encoding latin-1",
                        message), message
    printed = result.stdout.splitlines()
    assert [line.split("\t")[1] for line in printed] == ["a good film", "a dull film"]  # lines before it
    result = cli("predict", model_dir, "--input", data, "--encoding", "latin-1", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    texts = ["a good film", "a dull film", "un film décevant", "the end"]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose([r["labels"][0]["probability"] for r in rows],
                               fitted.predict_proba(texts).max(axis=1), atol=2e-6)


def test_encoding_option_errors(model_dir, tmp_path):
    data = tmp_path / "ok.txt"
    data.write_text("a film\n")
    assert "--encoding: expected a text encoding such as utf-8" in one_line_error(
        cli("predict", model_dir, "--input", data, "--encoding", "klingon"))
    assert "--encoding: applies to --input FILE" in one_line_error(
        cli("predict", model_dir, "a film", "--encoding", "latin-1"))
