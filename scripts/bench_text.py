"""Speed of TextCNN training and inference: the project's path against a plain port.

Workload: Kim's CNN-rand (300-d embeddings, widths 3/4/5 x 100 maps, batch 50, Adadelta) on MR,
fold 0 of the seeded stratified 10-fold split. The reference is a straightforward port written
here, as public TextCNN ports do it: Python `clean_str` and a dict vocabulary, every sentence
padded to the corpus maximum (plus h-1 on each side), one `Conv2d(1, maps, (h, dim))` per width,
dense `torch.optim.Adadelta`. Both run in child processes with the same thread settings, so each
peak RSS is its own.

    python scripts/bench_text.py                       # CPU, writes docs/results/bench_text.{json,md}
    python scripts/bench_text.py --device cuda --out docs/results/bench_text_cuda

Reported per path: training sentences/s over a whole run (`--epochs`, 25 as in Kim's setting;
a fresh vocabulary, encoding and model each time, all timed) and over its first epoch with the
set-up, batch inference sentences/s at batch 1000 (median of 5 calls), single-sentence latency
p50/p99 (raw text in, probabilities out), peak RSS, test accuracy, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_fold(data_dir: Path):
    from textcnn.core.splits import kfold_splits
    from textcnn.data import read_kim_file

    ds = read_kim_file(data_dir / "rt-polarity.all")
    texts, labels = list(ds["text"]), list(ds["label"])
    train_idx, test_idx = kfold_splits(labels, n_folds=10, seed=0)[0]
    pick = lambda idx: ([texts[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return pick(train_idx), pick(test_idx)


# -- the reference: a plain port ---------------------------------------------------------------
def plain_clean_str(text: str) -> list[str]:
    text = re.sub(r"[^A-Za-z0-9(),!?\'\`]", " ", text)
    for pattern, repl in ((r"\'s", " 's"), (r"\'ve", " 've"), (r"n\'t", " n't"), (r"\'re", " 're"),
                          (r"\'d", " 'd"), (r"\'ll", " 'll"), (",", " , "), ("!", " ! "),
                          (r"\(", " ( "), (r"\)", " ) "), (r"\?", " ? "), (r"\s{2,}", " ")):
        text = re.sub(pattern, repl, text)
    return text.strip().lower().split()


def run_plain(args, train, test) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class PlainKimCNN(nn.Module):
        def __init__(self, vocab: int, dim: int = 300, maps: int = 100, widths=(3, 4, 5), classes=2):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim, padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv2d(1, maps, (h, dim)) for h in widths)
            self.dropout = nn.Dropout(0.5)
            self.fc = nn.Linear(maps * len(widths), classes)

        def forward(self, x):
            e = self.emb(x).unsqueeze(1)
            hs = [F.relu(conv(e)).squeeze(3) for conv in self.convs]
            hs = [F.max_pool1d(h, h.size(2)).squeeze(2) for h in hs]
            return self.fc(self.dropout(torch.cat(hs, 1)))

    device = torch.device(args.device)
    pad, vocab, max_len, model = 4, {}, 0, None

    def encode(texts):
        rows = []
        for t in texts:
            ids = [vocab.get(w, 0) for w in plain_clean_str(t)][: max_len - 2 * pad]
            rows.append([0] * pad + ids + [0] * (max_len - pad - len(ids)))
        return torch.tensor(rows)

    y = torch.tensor(train[1])

    def train_run(epochs: int, limit: int | None = None) -> tuple[int, list[float]]:
        """A fresh vocabulary and model trained `epochs` epochs; sentences, epoch seconds."""
        nonlocal model, vocab, max_len
        vocab = {"<pad>": 0}
        for text in train[0]:
            for w in plain_clean_str(text):
                vocab.setdefault(w, len(vocab))
        max_len = max(len(plain_clean_str(t)) for t in train[0]) + 2 * pad
        x = encode(train[0])
        torch.manual_seed(0)
        model = PlainKimCNN(len(vocab)).to(device)
        opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-6)
        seen, epoch_seconds = 0, []
        for _ in range(epochs):
            start = time.perf_counter()
            order = torch.randperm(len(x))
            for step, i in enumerate(range(0, len(x), 50)):
                if limit and step >= limit:
                    break
                idx = order[i:i + 50]
                loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    w = model.fc.weight
                    norms = w.norm(dim=1, keepdim=True)
                    w.mul_(torch.clamp(3.0 / norms, max=1.0))
                seen += len(idx)
            epoch_seconds.append(time.perf_counter() - start)
        return seen, epoch_seconds

    def predict(texts):
        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 1000):
                out.append(torch.softmax(model(encode(texts[i:i + 1000]).to(device)), -1).cpu())
        model.train()
        return torch.cat(out)

    return measure(args, train_run, predict, test, device)


# -- the project's path ------------------------------------------------------------------------
def run_fast(args, train, test) -> dict:
    import torch

    from textcnn import TextCNNClassifier

    device = torch.device(args.device)
    clf = TextCNNClassifier(epochs=1, dev_fraction=0, seed=0, device=args.device, verbose=False,
                            threads=args.threads, cuda_graphs=args.cuda_graphs)

    def train_run(epochs: int, limit: int | None = None) -> tuple[int, list[float]]:
        """`fit` for `epochs` epochs (set-up included); sentences, epoch seconds."""
        texts, labels = (train[0][: limit * 50], train[1][: limit * 50]) if limit else train
        clf.set_params(epochs=epochs).fit(texts, labels)
        return len(texts) * epochs, [r["seconds"] for r in clf.fit_result_.history]

    def predict(texts):
        return torch.as_tensor(clf.predict_proba(texts))

    result = measure(args, train_run, predict, test, device)
    result["cuda_graphs"] = clf.cuda_graphs_  # batch shapes trained through CUDA graphs
    return result


def measure(args, train_run, predict, test, device) -> dict:
    """Training: a warm-up of 3 batches, then a fresh model trained `args.epochs` epochs, set-up
    (vocabulary, encoding, model) included. Inference: one warm-up call on the whole test fold,
    then the median of 5 timed calls. Latency: 300 single sentences, raw text in."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train_run(1, limit=3)  # warm-up
    sync()
    start = time.perf_counter()
    n, epoch_seconds = train_run(args.epochs)
    sync()
    train_seconds = time.perf_counter() - start
    texts = test[0]
    predict(texts)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        probs = predict(texts)
        sync()
        times.append(time.perf_counter() - start)
    accuracy = float((probs.argmax(1) == torch.tensor(test[1])).float().mean())
    latencies = []
    for t in texts[:300]:
        s = time.perf_counter()
        predict([t])
        sync()
        latencies.append((time.perf_counter() - s) * 1000)
    latencies.sort()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"epochs": args.epochs, "train_sentences_per_s": n / train_seconds,
              "train_seconds": train_seconds, "epoch_seconds": [round(x, 3) for x in epoch_seconds],
              "setup_seconds": train_seconds - sum(epoch_seconds),
              "first_epoch_sentences_per_s": n / args.epochs / (train_seconds - sum(epoch_seconds[1:])),
              "infer_sentences_per_s": len(texts) / statistics.median(times),
              "infer_seconds": [round(x, 4) for x in times],
              "latency_ms_p50": statistics.median(latencies),
              "latency_ms_p99": latencies[int(0.99 * (len(latencies) - 1))],
              "peak_rss_mb": peak_kb / 1024, "test_accuracy": accuracy}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    train, test = load_fold(Path(args.data_dir))
    result = (run_plain if args.child == "plain" else run_fast)(args, train, test)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TEXTCNN_DATA_DIR", str(REPO.parent / "shared/data/kim2014")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=25, help="training epochs timed per path (Kim: 25)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "docs/results/bench_text"))
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="train the project's path with CUDA graphs (cuda_graphs=True)")
    parser.add_argument("--child", choices=["plain", "fast"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = {}
    for path in ("plain", "fast"):
        cmd = [sys.executable, __file__, "--child", path, "--data-dir", args.data_dir,
               "--threads", str(args.threads), "--device", args.device, "--epochs", str(args.epochs)]
        cmd += ["--cuda-graphs"] if args.cuda_graphs else []
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{path} failed:\n{proc.stderr[-3000:]}")
        results[path] = json.loads(line[7:])
        print(path, json.dumps(results[path], indent=1), flush=True)
    p, f = results["plain"], results["fast"]
    ratios = {"train": f["train_sentences_per_s"] / p["train_sentences_per_s"],
              "train_first_epoch": f["first_epoch_sentences_per_s"] / p["first_epoch_sentences_per_s"],
              "infer": f["infer_sentences_per_s"] / p["infer_sentences_per_s"],
              "latency_p50": p["latency_ms_p50"] / f["latency_ms_p50"]}
    import torch

    from textcnn.batch_runner import machine_description

    report = {"workload": f"MR fold 0, CNN-rand (300-d, 3/4/5 x 100, batch 50, Adadelta), {args.epochs} epochs",
              "device": args.device, "cuda_graphs": args.cuda_graphs, "threads": args.threads, "torch": torch.__version__,
              "machine": machine_description(args.device, args.threads),
              "plain": p, "fast": f, "ratios": ratios,
              "command": "python scripts/bench_text.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [(f"training sentences/s ({args.epochs} epochs, set-up included)", "train_sentences_per_s",
             "{:.0f}", ratios["train"]),
            ("training sentences/s (first epoch, set-up included)", "first_epoch_sentences_per_s",
             "{:.0f}", ratios["train_first_epoch"]),
            ("test accuracy after training", "test_accuracy", "{:.4f}", None),
            ("inference sentences/s (batch 1000, median of 5 calls)", "infer_sentences_per_s", "{:.0f}",
             ratios["infer"]),
            ("single-sentence latency p50 (ms)", "latency_ms_p50", "{:.3f}", ratios["latency_p50"]),
            ("single-sentence latency p99 (ms)", "latency_ms_p99", "{:.3f}", None),
            ("peak RSS (MB)", "peak_rss_mb", "{:.0f}", None)]
    graphs = f", CUDA graphs ({f['cuda_graphs']} batch shapes)" if args.cuda_graphs else ""
    md = [f"Device: {args.device}{graphs}, {args.threads} thread(s), torch {torch.__version__}. "
          f"Workload: {report['workload']}.", "",
          "| measure | plain port | textcnn | ratio |", "|---|---|---|---|"]
    for label, key, fmt, ratio in rows:
        md.append(f"| {label} | {fmt.format(p[key])} | {fmt.format(f[key])} | "
                  f"{'' if ratio is None else f'{ratio:.1f}x'} |")
    md.append(f"\nCommand: `{report['command']}`")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
