"""Speed of training all folds of a cross-validation run as one batched model.

Workload: Kim's CNN-rand (300-d embeddings, widths 3/4/5 x 100 maps, batch 50, Adadelta,
dropout 0.5, max-norm 3) on MR, the seeded stratified 10-fold split (textcnn.core.splits.kfold_splits);
each fold holds out 10% of its training part as dev (as the estimator does) to pick its best
epoch. One vocabulary is built on the folds' training text; dev and test words a fold never
trained on become [UNK] for that fold. Timed paths, each over `--epochs` epochs after a warm-up:

- sequential: the folds one after another, an ordinary `KimCNN` each, in the same loop as the
  batched path (device-resident data, the same batch plan, bf16 autocast on CUDA, Adadelta,
  max-norm after each step, dev accuracy every epoch, best epoch kept);
- batched: all folds at once with `textcnn.fold_batched.fit_folds` (`FoldBatchedKimCNN`, the
  convolutions as im2col windows and one batched GEMM);
- batched-grouped: the same with one grouped cuDNN convolution instead;
- estimator: `TextCNNClassifier.fit` per fold, as `textcnn batch` trains a fold today (host-side
  batching; its time includes the per-epoch dev evaluation).

Reported per path: training sentences/s (optimizer steps only; dev evaluation timed apart),
mean test accuracy of the selected epochs, and the batched/sequential ratio.

    python scripts/bench_fold_batched.py --device cuda --out docs/results/bench_fold_batched_cuda
    python scripts/bench_fold_batched.py --device cpu --folds 2 --epochs 1 --max-sentences 200 \\
        --threads 1 --out /tmp/bench_fold_batched_smoke          # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from textcnn.batch_runner import machine_description  # noqa: E402
from textcnn.core.engine import resolve_device  # noqa: E402
from textcnn.core.optim import create_optimizer  # noqa: E402
from textcnn.core.splits import holdout_split, kfold_splits  # noqa: E402
from textcnn.data import LabelMap, read_kim_file  # noqa: E402
from textcnn.fold_batched import (  # noqa: E402
    FoldFitConfig,
    fit_folds,
    fold_epoch_plan,
    known_word_mask,
    map_unseen,
)
from textcnn.model import KimCNN, KimCNNConfig  # noqa: E402
from textcnn.tokenizer import WordTokenizer  # noqa: E402

BATCH, EVAL_BATCH = 50, 1000


def load_folds(args) -> dict:
    """MR's folds as token ids in one vocabulary: train/dev/test (ids, labels) per fold."""
    data_dir = Path(args.data_dir)
    path = data_dir / "rt-polarity.all"
    if not path.is_file():
        sys.exit(f"{path}: not found; set --data-dir or TEXTCNN_DATA_DIR to the kim2014 folder")
    ds = read_kim_file(path)
    texts, raw_labels = list(ds["text"]), list(ds["label"])
    if args.max_sentences:  # a seeded subset, for smoke runs
        keep = np.sort(np.random.default_rng(0).permutation(len(texts))[: args.max_sentences])
        texts, raw_labels = [texts[i] for i in keep], [raw_labels[i] for i in keep]
    labels = LabelMap.fit(raw_labels).encode(raw_labels).tolist()
    splits = kfold_splits(labels, n_folds=10, seed=0)[: args.folds]
    parts = []
    for train_idx, test_idx in splits:
        inner_train, inner_dev = holdout_split([labels[i] for i in train_idx], fraction=0.1, seed=0)
        parts.append((train_idx[inner_train], train_idx[inner_dev], test_idx))
    train_texts = sorted({i for train, _, _ in parts for i in train})
    tokenizer = WordTokenizer.train([texts[i] for i in train_texts])
    ids = tokenizer.encode_batch(texts)
    pick = lambda idx: ([ids[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return {"tokenizer": tokenizer, "texts": texts, "raw_labels": raw_labels,
            "train": [pick(p[0]) for p in parts], "dev": [pick(p[1]) for p in parts],
            "test": [pick(p[2]) for p in parts], "indices": parts}


class DeviceFold:
    """One fold's sentences as a padded id matrix on the device."""

    def __init__(self, ids, labels, pad_id: int, device: torch.device) -> None:
        self.lengths = np.array([len(s) for s in ids], dtype=np.int64)
        matrix = np.full((len(ids), max(1, int(self.lengths.max()))), pad_id, dtype=np.int64)
        for row, s in enumerate(ids):
            matrix[row, : len(s)] = s
        self.ids = torch.from_numpy(matrix).to(device)
        self.labels = torch.tensor(labels, device=device)

    def batches(self, plan: list[np.ndarray]):
        """(ids [B, width], labels [B]) per batch; the plan goes to the device in one copy."""
        order = torch.from_numpy(np.concatenate(plan)).to(self.ids.device)
        start = 0
        for idx in plan:
            rows = order[start : start + len(idx)]
            start += len(idx)
            yield self.ids[:, : max(1, int(self.lengths[idx].max()))][rows], self.labels[rows]


@torch.no_grad()
def accuracy(model: KimCNN, fold: DeviceFold, use_amp: bool) -> torch.Tensor:
    """Correct predictions on `fold`, counted on the device (no host sync)."""
    model.eval()
    order = np.argsort(fold.lengths, kind="stable")
    plan = [order[i : i + EVAL_BATCH] for i in range(0, len(order), EVAL_BATCH)]
    correct = torch.zeros((), device=fold.ids.device)
    for x, y in fold.batches(plan):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            correct += (model(x).argmax(dim=1) == y).sum()
    model.train()
    return correct


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_sequential(args, data, config: KimCNNConfig, device: torch.device) -> dict:
    """The folds one after another with ordinary KimCNNs, in the batched path's loop."""
    use_amp = device.type == "cuda"
    pad = config.pad_id
    known = known_word_mask([ids for ids, _ in data["train"]], config.vocab_size,
                            always=(pad, data["tokenizer"].unk_id))
    all_lengths = [[len(s) for s in ids] for ids, _ in data["train"]]
    # the batched path's plans (fold f trains on column f: the same batches in the same order),
    # made before the clock starts (the batched path's time includes making its plans)
    plans = [fold_epoch_plan(all_lengths, BATCH, seed=args.seed, epoch=epoch)
             for epoch in range(1, args.epochs + 1)]
    train_seconds = eval_seconds = 0.0
    sentences, test_correct, test_total, best_epochs = 0, 0, 0, []
    for f, ((train_ids, train_y), (dev_ids, dev_y), (test_ids, test_y)) in enumerate(
            zip(data["train"], data["dev"], data["test"])):
        unk = data["tokenizer"].unk_id
        train = DeviceFold(train_ids, train_y, pad, device)
        dev = DeviceFold(map_unseen(dev_ids, known[f], unk), dev_y, pad, device)
        test = DeviceFold(map_unseen(test_ids, known[f], unk), test_y, pad, device)
        torch.manual_seed(args.seed + f)
        model = KimCNN(config).to(device)
        opt = create_optimizer("adadelta", [p for p in model.parameters() if p.requires_grad])
        best, best_state, best_epoch = -1.0, None, 0
        for epoch in range(1, args.epochs + 1):
            plan = [step[f] for step in plans[epoch - 1] if step[f] is not None]
            sync(device)
            t0 = time.perf_counter()
            model.train()
            for x, y in train.batches(plan):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                model.apply_max_norm()
            sync(device)
            train_seconds += time.perf_counter() - t0
            sentences += len(train_ids)
            t1 = time.perf_counter()
            acc = float(accuracy(model, dev, use_amp)) / len(dev_ids)
            if acc > best:
                best, best_epoch = acc, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            eval_seconds += time.perf_counter() - t1
        model.load_state_dict(best_state)
        best_epochs.append(best_epoch)
        test_correct += int(accuracy(model, test, use_amp))
        test_total += len(test_ids)
    return {"train_sentences": sentences, "train_seconds": train_seconds,
            "train_sentences_per_s": sentences / train_seconds, "dev_eval_seconds": eval_seconds,
            "test_accuracy": test_correct / test_total, "best_epochs": best_epochs}


def run_batched(args, data, config: KimCNNConfig, device: torch.device, conv: str = "bmm") -> dict:
    """All folds at once with fit_folds (convolutions as im2col + batched GEMM, or grouped)."""
    fit = FoldFitConfig(epochs=args.epochs, batch_size=BATCH, seed=args.seed, device=str(device),
                        unk_id=data["tokenizer"].unk_id, conv=conv)
    start = []
    for f in range(len(data["train"])):  # the sequential path's initial weights
        torch.manual_seed(args.seed + f)
        start.append(KimCNN(config))
    result = fit_folds(config, data["train"], data["dev"], fit, models=start)
    train_seconds = sum(r["train_seconds"] for r in result.history)
    sentences = sum(r["train_sentences"] for r in result.history)
    use_amp = device.type == "cuda"
    test_correct, test_total = 0, 0
    for f, (model, (test_ids, test_y)) in enumerate(zip(result.models, data["test"])):
        test = DeviceFold(map_unseen(test_ids, result.known[f], data["tokenizer"].unk_id), test_y,
                          config.pad_id, device)
        test_correct += int(accuracy(model.to(device), test, use_amp))
        test_total += len(test_ids)
    return {"train_sentences": sentences, "train_seconds": train_seconds,
            "train_sentences_per_s": sentences / train_seconds,
            "dev_eval_seconds": sum(r.get("eval_seconds", 0.0) for r in result.history),
            "epoch_train_seconds": [r["train_seconds"] for r in result.history],
            "test_accuracy": test_correct / test_total, "best_epochs": result.best_epochs}


def run_estimator(args, data, config: KimCNNConfig, device: torch.device) -> dict:
    """TextCNNClassifier.fit per fold, as the project trains a fold today (raw text in)."""
    from textcnn import TextCNNClassifier

    texts, raw = data["texts"], data["raw_labels"]
    seconds, sentences, correct, total = 0.0, 0, 0, 0
    for train_idx, dev_idx, test_idx in data["indices"]:
        clf = TextCNNClassifier(epochs=args.epochs, seed=args.seed, device=str(device),
                                threads=args.threads)
        clf.fit([texts[i] for i in train_idx], [raw[i] for i in train_idx],
                X_dev=[texts[i] for i in dev_idx], y_dev=[raw[i] for i in dev_idx])
        seconds += clf.fit_result_.seconds
        sentences += len(train_idx) * clf.fit_result_.epochs_run
        correct += clf.score([texts[i] for i in test_idx], [raw[i] for i in test_idx]) * len(test_idx)
        total += len(test_idx)
    return {"train_sentences": sentences, "train_seconds": seconds,
            "train_sentences_per_s": sentences / seconds, "test_accuracy": correct / total,
            "note": "seconds include the per-epoch dev evaluation"}


PATHS = {"sequential": run_sequential, "batched": run_batched,
         "batched-grouped": functools.partial(run_batched, conv="grouped"),
         "estimator": run_estimator}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(
        "TEXTCNN_DATA_DIR", str(REPO.parent / "shared/data/kim2014")))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--folds", type=int, default=10, help="train the first N of the 10 folds")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-sentences", type=int, default=None,
                        help="a seeded subset of MR, for smoke runs")
    parser.add_argument("--paths", default="sequential,batched,batched-grouped,estimator",
                        help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs/results/bench_fold_batched"))
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not 1 <= args.folds <= 10:
        sys.exit(f"expected --paths from {', '.join(PATHS)} and --folds 1..10, got "
                 f"{args.paths} and {args.folds}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    t0 = time.perf_counter()
    data = load_folds(args)
    config = KimCNNConfig(vocab_size=data["tokenizer"].vocab_size, num_classes=2,
                          pad_id=data["tokenizer"].pad_id)
    print(f"data: {args.folds} folds, vocabulary {config.vocab_size}, "
          f"{sum(len(t[0]) for t in data['train'])} training sentences in all "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    # warm-up on a few batches per fold: CUDA context, cuBLAS/cuDNN handles, allocator
    warm = dict(data, train=[(ids[:3 * BATCH], y[:3 * BATCH]) for ids, y in data["train"]],
                dev=[(ids[:BATCH], y[:BATCH]) for ids, y in data["dev"]],
                test=[(ids[:BATCH], y[:BATCH]) for ids, y in data["test"]])
    warm_args = argparse.Namespace(**{**vars(args), "epochs": 1})
    for name in paths:
        if name != "estimator":
            PATHS[name](warm_args, warm, config, device)

    results = {}
    for name in paths:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        results[name] = PATHS[name](args, data, config, device)
        results[name]["wall_seconds"] = time.perf_counter() - start
        if device.type == "cuda":
            results[name]["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        print(name, json.dumps(results[name]), flush=True)

    ratios = {}
    for fast in ("batched", "batched-grouped"):
        for other in ("sequential", "estimator"):
            if fast in results and other in results:
                ratios[f"{fast} vs {other}"] = (results[fast]["train_sentences_per_s"]
                                                / results[other]["train_sentences_per_s"])
    workload = (f"MR, {args.folds} fold(s) of the seeded 10-fold split"
                f"{f' on {args.max_sentences} sentences' if args.max_sentences else ''}, "
                f"CNN-rand (300-d, 3/4/5 x 100, batch 50, Adadelta), {args.epochs} epoch(s)")
    report = {"workload": workload, "device": str(device), "torch": torch.__version__,
              "machine": machine_description(str(device), args.threads), "results": results,
              "ratios": ratios, "command": "python scripts/bench_fold_batched.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"Machine: {report['machine']}, torch {torch.__version__}. Workload: {workload}.", "",
          "| path | training sentences/s | train s | dev eval s | wall s | test accuracy | best epochs |",
          "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        evals = f"{r['dev_eval_seconds']:.2f}" if "dev_eval_seconds" in r else "(in train s)"
        md.append(f"| {name} | {r['train_sentences_per_s']:.0f} | {r['train_seconds']:.2f} | {evals} | "
                  f"{r['wall_seconds']:.1f} | {100 * r['test_accuracy']:.2f} | "
                  f"{r.get('best_epochs', '')} |")
    md += [""] + [f"- {k}: **{v:.2f}x** training sentences/s" for k, v in ratios.items()]
    md.append(f"\nCommand: `{report['command']}`")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
