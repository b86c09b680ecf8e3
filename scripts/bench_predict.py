"""In-process prediction speed of a trained CNN-rand against fastText, side by side in one run.

    python scripts/bench_predict.py     # writes docs/results/deploy/predict.{json,md}

Workload: MR fold 0 (the seeded 10-fold split), CNN-rand trained by scripts/bench_deploy.py's
runs (--work, trained there if missing), its 1,067 test sentences. fastText (the `fasttext`
package, for benchmarks only; without it the script says so and measures textcnn alone) is
trained here on the same fold's training sentences, shuffled, with its defaults (one thread,
seed 0) and is given the sentences already cleaned by Kim's `clean_str`; textcnn gets the raw
text and tokenizes it inside the timed call.

Measured, in --rounds rounds that alternate the paths (so that the machine's load falls on all),
each path a block of consecutive calls per round:
- single-sentence latency: `clf.predict([text])` (the lean single-text path) and the batched
  path on one text (`class_scores`, what `predict` did for one text before the lean path),
  against `model.predict(text)`; p50 and p99 over the first --sentences test sentences, pooled
  over the rounds;
- batch throughput: `clf.predict(test)` against `model.predict(test)`, --batch-calls calls in a
  row per path and round, sentences/s (median over the rounds), and the ratio of each round's
  two blocks, whose median is the headline ratio.
torch runs with --threads threads. The load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import REPO, load_average, shown, test_split, trained_models  # noqa: E402


def fasttext_model(train_texts: list[str], train_labels: list, threads: int):
    """fastText trained on the cleaned training sentences, or None when it is not installed."""
    try:
        import fasttext
    except ImportError:
        return None
    from textcnn.tokenizer import clean_str

    lines = [f"__label__{label} {clean_str(text)}\n" for text, label in zip(train_texts, train_labels)]
    random.Random(0).shuffle(lines)  # fastText reads its file in order: a sorted one teaches it one class
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.writelines(lines)
    try:
        return fasttext.train_supervised(f.name, thread=1, seed=0, verbose=0)
    finally:
        os.unlink(f.name)


def fasttext_one(model):
    """fastText's `predict` for one line, as its Python wrapper does it, but with `np.asarray`:
    fastText 0.9.2's wrapper calls `np.array(probs, copy=False)`, which NumPy 2 refuses."""
    import numpy as np

    def predict(text: str):
        probs, labels = zip(*model.f.predict(text + "\n", 1, 0.0, "strict"))
        return labels, np.asarray(probs)

    return predict


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TEXTCNN_DATA_DIR", str(REPO.parent / "shared/data/kim2014")))
    parser.add_argument("--work", default=str(REPO / "runs/deploy"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sentences", type=int, default=300, help="test sentences timed one at a time")
    parser.add_argument("--batch-calls", type=int, default=20, help="batch calls in a row per path and round")
    parser.add_argument("--out", default=str(REPO / "docs/results/deploy/predict"))
    args = parser.parse_args()
    import numpy as np
    import torch

    from textcnn import TextCNNClassifier
    from textcnn.core.splits import kfold_splits
    from textcnn.data import read_kim_file
    from textcnn.estimator.inference import class_scores
    from textcnn.tokenizer import clean_str

    torch.set_num_threads(args.threads)
    model_dir = trained_models(Path(args.work), args.data_dir)["mr"]
    texts, labels = test_split(model_dir)
    clf = TextCNNClassifier.load(model_dir)
    corpus = read_kim_file(Path(args.data_dir) / "rt-polarity.all")
    all_texts, all_labels = list(corpus["text"]), list(corpus["label"])
    train_idx, _ = kfold_splits(all_labels, n_folds=10, seed=0)[0]
    ft = fasttext_model([all_texts[i] for i in train_idx], [all_labels[i] for i in train_idx], args.threads)
    cleaned = [clean_str(t) for t in texts]
    singles = texts[: args.sentences]
    ft_predict_one = fasttext_one(ft) if ft is not None else None
    cpu = torch.device("cpu")

    def batched_one(text: str) -> np.ndarray:  # the batched path, for one text
        return class_scores(clf._inference_model(cpu), clf.tokenizer_.encode_batch([text]), cpu,
                            multi_label=clf.multi_label)

    # warm-up, and the lean path's agreement with the batched one
    lean = np.vstack([clf.predict_proba([t]) for t in singles])
    agreement = float(np.abs(lean - clf.predict_proba(singles)).max())
    timings: dict[str, list[float]] = {k: [] for k in ("lean", "batched_one", "fasttext_one")}
    batch: dict[str, list[float]] = {"textcnn": [], "fasttext": []}
    load_before = load_average()
    one_at_a_time = {"lean": (lambda t: clf.predict([t]), singles), "batched_one": (batched_one, singles)}
    if ft is not None:
        one_at_a_time["fasttext_one"] = (ft_predict_one, cleaned[: len(singles)])
    for _ in range(args.rounds):
        # a block of calls per path: torch's worker threads spin for a while after each of its
        # calls, which would slow a NumPy or fastText call made right after it
        for name, (predict, inputs) in one_at_a_time.items():
            for item in inputs:
                start = time.perf_counter()
                predict(item)
                timings[name].append(time.perf_counter() - start)
        # the batch, --batch-calls times in a row per path: one call (about 10-20 ms) alone
        # swings by a third with the host's load from one moment to the next
        start = time.perf_counter()
        for _ in range(args.batch_calls):
            clf.predict(texts)
        batch["textcnn"].append(args.batch_calls * len(texts) / (time.perf_counter() - start))
        if ft is not None:
            start = time.perf_counter()
            for _ in range(args.batch_calls):
                ft.predict(cleaned)
            batch["fasttext"].append(args.batch_calls * len(texts) / (time.perf_counter() - start))
    load_after = load_average()
    latency = {k: {"p50_ms": 1000 * statistics.median(v), "p99_ms": 1000 * percentile(v, 0.99)}
               for k, v in timings.items() if v}
    throughput = {k: statistics.median(v) for k, v in batch.items() if v}
    accuracy = float(np.mean(np.asarray([str(x) for x in clf.predict(texts)]) == np.asarray([str(x) for x in labels])))
    report = {"workload": f"MR fold 0, CNN-rand ({shown(model_dir)}), {len(texts)} test sentences",
              "threads": args.threads, "rounds": args.rounds, "batch_calls_per_round": args.batch_calls,
              "sentences_timed_alone": len(singles),
              "fasttext": "fastText " + importlib.metadata.version("fasttext-wheel")
              if ft is not None and _installed("fasttext-wheel") else "fastText" if ft is not None else
              "fastText not installed: textcnn measured alone",
              "latency": latency, "batch_sentences_per_s": throughput,
              "lean_vs_batched_max_probability_difference": agreement, "textcnn_test_accuracy": accuracy,
              "fasttext_test_accuracy": None if ft is None else float(np.mean(
                  [p[0].removeprefix("__label__") == str(y) for p, y in zip(ft.predict(cleaned)[0], labels)])),
              "load_average_before": load_before, "load_average_after": load_after,
              "command": "python scripts/bench_predict.py " + " ".join(sys.argv[1:])}
    if ft is not None:
        # each round's two blocks ran back to back, under about the same load: the median of the
        # rounds' ratios is the figure the host's swings disturb least
        by_round = [ours / theirs for ours, theirs in zip(batch["textcnn"], batch["fasttext"])]
        report["ratios"] = {"latency_p50_lean_over_fasttext": latency["lean"]["p50_ms"] / latency["fasttext_one"]["p50_ms"],
                            "batch_textcnn_over_fasttext": statistics.median(by_round),
                            "batch_textcnn_over_fasttext_by_round": by_round,
                            "batch_median_over_median": throughput["textcnn"] / throughput["fasttext"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"{report['workload']}; torch threads {args.threads}; {report['fasttext']}; load average "
          f"(1, 5, 15 min) {load_before} before, {load_after} after.", "",
          "| measure | textcnn | fastText | textcnn / fastText |", "|---|---|---|---|"]
    for label, key in (("one sentence, p50 (ms)", "p50_ms"), ("one sentence, p99 (ms)", "p99_ms")):
        ours = latency["lean"][key]
        theirs = latency["fasttext_one"][key] if ft is not None else None
        md.append(f"| {label}, lean path (`predict`) | {ours:.3f} | "
                  + ("– | |" if theirs is None else f"{theirs:.3f} | {ours / theirs:.1f}x |"))
        md.append(f"| {label}, batched path on one text | {latency['batched_one'][key]:.3f} | | |")
    ours, theirs = throughput["textcnn"], throughput.get("fasttext")
    md.append(f"| batch of {len(texts)}, sentences/s (median of the rounds) | {ours:.0f} | "
              + ("– | |" if theirs is None else f"{theirs:.0f} | {ours / theirs:.2f}x |"))
    if theirs is not None:
        by_round = report["ratios"]["batch_textcnn_over_fasttext_by_round"]
        md.append(f"| batch, textcnn / fastText, median of the rounds' ratios | | | "
                  f"**{report['ratios']['batch_textcnn_over_fasttext']:.2f}x** |")
        md += ["", f"Batch ratio round by round ({args.batch_calls} calls a path a round): "
                   + ", ".join(f"{r:.2f}x" for r in by_round) + "."]
    md += ["", f"Lean path against the batched one: largest probability difference "
               f"{agreement:.1e}. Test accuracy: textcnn {100 * accuracy:.2f}%"
               + ("" if ft is None else f", fastText {100 * report['fasttext_test_accuracy']:.2f}%") + ".",
           "", f"Command: `{report['command']}`"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
