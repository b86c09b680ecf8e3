"""Prediction at scale: memory bounded by a token budget."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import textcnn.estimator as estimator_module
from textcnn import TextCNNClassifier
from textcnn.cli import main
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
# on the projection path (textcnn/estimator.py); the tiny test model's tensors take far less, and
# the rest pays for the long text's own string, tokens and ids.
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
    # a cap on address space: batching as before this fix (401 x 100k tokens) fails instead of
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
    bound = PER_TOKEN * max(estimator_module.INFERENCE_TOKENS, LONG) + SLACK
    # batching as before (up to 1000 texts, each batch as wide as its longest) pads all 401 texts
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
    monkeypatch.setattr(estimator_module, "INFERENCE_TOKENS", budget, raising=False)
    shapes = []
    original = estimator_module.projected_logits

    def spy(model, ids, **kwargs):
        if not model.training:  # dev scoring runs in eval mode, training steps in train mode
            shapes.append(tuple(ids.shape))
        return original(model, ids, **kwargs)

    monkeypatch.setattr(estimator_module, "projected_logits", spy)
    dev = X[:30] + [" ".join(["film"] * 200)]
    TextCNNClassifier(**{**SMALL, "epochs": 1}).fit(X[30:], y[30:], X_dev=dev, y_dev=y[:30] + [y[0]])
    assert shapes and sum(n for n, _ in shapes) == len(dev)
    for n, width in shapes:
        assert n * width <= budget or n == 1, (n, width)
