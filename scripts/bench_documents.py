"""Prediction on documents: textcnn against fastText on the same 20 Newsgroups posts, in one run.

Workload: 20 Newsgroups' by-date split ($TEXTCNN_20NG_DIR, else ../shared/data/20news, else
data/20ng). textcnn's model is CNN-rand of recipes/docs/20ng.yaml's shape (Kim's 300-d vectors,
widths 3/4/5 x 100 maps, the vocabulary of the training posts, posts cut to their first 512 words),
or a trained model directory given with --model; prediction speed does not depend on the weights,
so by default the model keeps its initial ones (`prepare_fit`, then `adopt_fitted`: no training).
fastText (if the `fasttext` package is importable; it is never a dependency of the project) is
the project's baseline (`textcnn.baselines.FastText`: bigrams, 5 epochs), trained on the same
training posts and timed as it is used: raw one-line text in, split by fastText itself (textcnn's
time includes its own tokenizing too). Both predict on the same one-line posts.

    python scripts/bench_documents.py                  # writes docs/results/bench_documents.{json,md}
    python scripts/bench_documents.py --stream-docs 100000 --stream-gb 1

Measured, each a median of `--repeats` interleaved runs (textcnn, fastText, textcnn, ...):
- batch: the 7,532 test posts predicted as one list (texts in, labels out): documents/s;
- long: one document of 50,000 words (test posts joined), as a user's long report would come:
  ms per prediction, for the default model (which reads its first 512 words) and for the same
  model without a cap (truncation none: every word, through the chunked projection path);
- stream: `textcnn predict MODEL --input FILE` over `--stream-docs` posts (one per line), and
  over a file of `--stream-gb` GB, in a child process each: peak RSS and documents/s;
- training: fastText's training time on the training posts (the CNN's is in
  docs/results/20ng/results.jsonl, train_seconds).
Every figure is written with the machine's load average (uptime) at its start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def newsgroups_dir() -> Path:
    for candidate in (os.environ.get("TEXTCNN_20NG_DIR"), REPO.parent / "shared" / "data" / "20news",
                      REPO / "data" / "20ng"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    sys.exit("20 Newsgroups not found: set TEXTCNN_20NG_DIR or run `textcnn data fetch 20ng`")


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def one_line(text: str) -> str:
    return " ".join(text.split())


def textcnn_model(args, train):
    import torch

    from textcnn import TextCNNClassifier
    from textcnn.core.engine import FitResult
    from textcnn.model import KimCNN

    if args.model:
        return TextCNNClassifier.load(args.model)
    clf = TextCNNClassifier(seed=0, threads=args.threads)
    data = clf.prepare_fit(*train)
    torch.manual_seed(0)
    model = KimCNN(clf.model_config(data), vectors=data.vectors)
    return clf.adopt_fitted(model, data, fit_result=FitResult(0, {}, 0, 0.0), precision="float32")


STREAM = """
import json, sys, time
from textcnn.cli import main
from textcnn.core.memory import peak_rss_bytes, reset_peak_rss
model, path = sys.argv[1:3]
reset_peak_rss()
start = time.perf_counter()
try:
    main(["predict", model, "--input", path, "--format", "jsonl"], standalone_mode=False)
finally:
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_bytes() / 2**20}),
          file=sys.stderr)
"""


def stream(model_dir: Path, path: Path, docs: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    load = load_average()
    out = subprocess.run([sys.executable, "-c", STREAM, str(model_dir), str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, check=True)
    figures = json.loads(out.stderr.strip().splitlines()[-1])
    return {"documents": docs, "bytes": path.stat().st_size, "peak_rss_mb": round(figures["peak_rss_mb"]),
            "docs_per_s": round(docs / figures["seconds"]), "seconds": round(figures["seconds"], 1),
            "load_before": load, "load_after": load_average()}


def write_stream_file(path: Path, lines: list[str], *, docs: int | None = None, size: int | None = None) -> int:
    """Cycle `lines` into `path` until `docs` lines or `size` bytes; returns the lines written."""
    written = total = 0
    with open(path, "w", encoding="utf-8") as f:
        while (docs is None or written < docs) and (size is None or total < size):
            line = lines[written % len(lines)] + "\n"
            f.write(line)
            total += len(line.encode("utf-8"))
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a trained textcnn model directory (default: CNN-rand's shape, untrained)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (fastText predicts on one)")
    parser.add_argument("--long-words", type=int, default=50_000)
    parser.add_argument("--stream-docs", type=int, default=100_000)
    parser.add_argument("--stream-gb", type=float, default=0.0, help="also stream a file of this many GB")
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_documents"))
    args = parser.parse_args()

    import torch

    from textcnn.baselines import FastText, baseline_available
    from textcnn.documents import newsgroups_splits
    from textcnn.recipe import DataSection
    from textcnn.tokenizer import kim_words

    torch.set_num_threads(args.threads)
    splits = newsgroups_splits(DataSection(dataset="20ng", data_dir=str(newsgroups_dir())))
    train, test = splits.train, splits.test
    results: dict = {"machine": f"{os.cpu_count()} cores, torch threads {args.threads}",
                     "load_start": load_average(), "test_docs": len(test[0])}
    clf = textcnn_model(args, train)
    results["model"] = args.model or "CNN-rand of recipes/docs/20ng.yaml's shape (untrained weights)"
    results["vocab"] = clf.tokenizer_.vocab_size
    texts = [one_line(t) for t in test[0]]
    words, pieces = 0, []
    for text in texts:  # one long document of test posts, as it would come: raw text
        pieces.append(text)
        words += len(kim_words(text))
        if words >= args.long_words:
            break
    long_doc = " ".join(pieces)
    results["long_words"] = len(kim_words(long_doc))

    ft = None
    if baseline_available("fasttext"):
        start = time.perf_counter()
        ft = FastText(threads=1).fit(*train)
        results["fasttext_train_seconds"] = round(time.perf_counter() - start, 1)
        ft_model = ft.model_  # timed as fastText is used: raw one-line text in, its own tokenizing
        # a list of one: fasttext-wheel 0.9.2's single-string predict fails under NumPy 2
        ft_lines, ft_long = texts, long_doc
    else:
        results["fasttext"] = "not installed: pip install fasttext-wheel to compare"

    batch, long_ms, long_none_ms, ft_batch, ft_long_ms = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved, so that the machine's load falls on both alike
        batch.append(median_ms(lambda: clf.predict(texts), 1))
        long_ms.append(median_ms(lambda: clf.predict([long_doc]), 3))
        clf.set_params(max_tokens=None, truncation="none")
        long_none_ms.append(median_ms(lambda: clf.predict([long_doc]), 3))
        clf.set_params(max_tokens=512, truncation="head")
        if ft is not None:
            ft_batch.append(median_ms(lambda: ft_model.predict(ft_lines, k=1), 1))
            ft_long_ms.append(median_ms(lambda: ft_model.predict([ft_long], k=1), 3))
    results["batch_docs_per_s"] = round(len(texts) / (statistics.median(batch) / 1000))
    results["long_ms"] = round(statistics.median(long_ms), 2)
    results["long_ms_truncation_none"] = round(statistics.median(long_none_ms), 2)
    if ft is not None:
        results["fasttext_batch_docs_per_s"] = round(len(texts) / (statistics.median(ft_batch) / 1000))
        results["fasttext_long_ms"] = round(statistics.median(ft_long_ms), 3)
        results["batch_ratio"] = round(results["batch_docs_per_s"] / results["fasttext_batch_docs_per_s"], 3)
        results["long_ratio"] = round(results["long_ms"] / results["fasttext_long_ms"], 1)
        results["long_ratio_truncation_none"] = round(results["long_ms_truncation_none"] / results["fasttext_long_ms"], 1)
    results["load_after_prediction"] = load_average()

    with tempfile.TemporaryDirectory(prefix="bench_documents.") as tmp:
        model_dir = Path(args.model) if args.model else clf.save(Path(tmp) / "model")
        streams = []
        path = Path(tmp) / "docs.txt"
        docs = write_stream_file(path, texts, docs=args.stream_docs)
        streams.append(stream(model_dir, path, docs, args.threads))
        if args.stream_gb:
            docs = write_stream_file(path, texts, size=int(args.stream_gb * 1e9))
            streams.append(stream(model_dir, path, docs, args.threads))
        results["stream"] = streams
    results["load_end"] = load_average()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| figure | textcnn | fastText | ratio |", "|---|---|---|---|",
             f"| batch, {len(texts)} test posts (documents/s) | {results['batch_docs_per_s']} | "
             f"{results.get('fasttext_batch_docs_per_s', '–')} | {results.get('batch_ratio', '–')} |",
             f"| one {results['long_words']}-word document, default cap of 512 words (ms) | {results['long_ms']} | "
             f"{results.get('fasttext_long_ms', '–')} | {results.get('long_ratio', '–')} |",
             f"| the same, truncation none: every word (ms) | {results['long_ms_truncation_none']} | "
             f"{results.get('fasttext_long_ms', '–')} | {results.get('long_ratio_truncation_none', '–')} |"]
    for s in results["stream"]:
        lines.append(f"| `predict --input`: {s['documents']} documents, {s['bytes'] / 1e9:.2f} GB "
                     f"(peak RSS MB; documents/s) | {s['peak_rss_mb']}; {s['docs_per_s']} | – | – |")
    if "fasttext_train_seconds" in results:
        lines.append(f"| fastText training on the {len(train[0])} training posts (s) | – | "
                     f"{results['fasttext_train_seconds']} | – |")
    lines += ["", f"Load average (1, 5, 15 min): {results['load_start']} at the start, {results['load_end']} "
              f"at the end; {results['machine']}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
