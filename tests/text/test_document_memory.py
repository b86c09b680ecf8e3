"""Memory of long documents, measured in fresh processes (peak RSS, Linux's VmHWM reset before the
stage measured): a training batch is bounded by its token budget, and streaming prediction takes
the same memory whatever the input's length. No timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from textcnn.core.memory import reset_peak_rss

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not reset_peak_rss(),
                                reason="needs Linux's resettable peak RSS (/proc/self/clear_refs)")

TRAIN = """
import json, random, sys
import torch
from textcnn import TextCNNClassifier
from textcnn.core.memory import peak_rss_bytes, reset_peak_rss
docs, length, budget = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
rng = random.Random(0)
words = [f"w{i}" for i in range(500)]
texts = [" ".join(rng.choice(words) for _ in range(length)) for _ in range(docs)]
labels = [i % 2 for i in range(docs)]
torch.set_num_threads(1)
clf = TextCNNClassifier(epochs=1, dev_fraction=0, max_tokens=None, truncation="none",
                        max_batch_tokens=budget, amp=False, threads=1)
clf.fit(texts[:4], labels[:4])  # libraries' one-off allocations happen before the measurement
reset_peak_rss()
base = peak_rss_bytes()
clf.fit(texts, labels)  # Kim's 300-d vectors and 3 x 100 maps on the fast CPU path
print(json.dumps({"growth_mb": (peak_rss_bytes() - base) / 2**20}))
"""


def _growth(*args) -> float:
    out = subprocess.run([sys.executable, "-c", TRAIN, *map(str, args)], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                        "TEXTCNN_KEEP_FREED_MEMORY": "0"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["growth_mb"]


@pytest.mark.slow
def test_a_training_batch_is_bounded_by_its_token_budget():
    """32,000 words in all: 8 documents of 4,000 words or 32 of 1,000, in batches of at most
    4,000 padded words, peak alike and far below one batch of all 8 long documents."""
    budget = 4000
    long_capped, short_capped = _growth(8, 4000, budget), _growth(32, 1000, budget)
    long_uncapped = _growth(8, 4000, "null")
    # counted at 1.5 KB per padded word, below the 2-3 KB measured on the fast CPU path (see
    # textcnn/recipe.py), whatever the lengths
    assert max(long_capped, short_capped) < 4 * budget * 1.5 / 1024 + 16, (long_capped, short_capped)
    # one batch of all 8 long documents holds 28,000 padded words more than a capped batch: at
    # least half of 1.5 KB each shows (the capped runs' fixed share, a few MB, cancels out)
    extra_words = 8 * 4000 - budget
    assert long_uncapped - max(long_capped, short_capped) > 0.5 * extra_words * 1.5 / 1024, \
        (long_capped, short_capped, long_uncapped)


PREDICT = """
import json, sys
from textcnn.cli import main
from textcnn.core.memory import peak_rss_bytes, reset_peak_rss
model, small, big = sys.argv[1:4]
peaks = []
for path in (small, small, big):  # the first run loads what every run needs
    reset_peak_rss()
    try:
        main(["predict", model, "--input", path, "--format", "jsonl"], standalone_mode=False)
    finally:
        peaks.append(peak_rss_bytes() / 2**20)
print(json.dumps(peaks), file=sys.stderr)
"""


@pytest.mark.slow
def test_streaming_prediction_memory_does_not_grow_with_the_input(tmp_path):
    """The same model predicts 800 and 6,400 documents of 250 words (one per line) from a file;
    the larger input (16 MB) peaks no higher than the smaller: texts are read, predicted and
    printed a chunk at a time."""
    import random

    from textcnn import TextCNNClassifier

    rng = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(3200)]
    clf = TextCNNClassifier(epochs=1, maps=4, embedding_dim=8, dev_fraction=0).fit(docs[:200], [i % 3 for i in range(200)])
    model = clf.save(tmp_path / "model")
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("\n".join(docs[:400]) + "\n")
    big.write_text("\n".join(docs) + "\n")
    out = subprocess.run([sys.executable, "-c", PREDICT, str(model), str(small), str(big)], capture_output=True,
                         text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.splitlines()) == 400 * 2 + 3200
    _, small_peak, big_peak = json.loads(out.stderr.strip().splitlines()[-1])
    # the big file's texts alone are 10 MB more, and their token lists tens of MB more if held
    assert big_peak < small_peak + 8, (small_peak, big_peak)
