"""What a text model's filters respond to: the top-scoring n-grams per feature map.

Each feature map of width h scores every h-word window of a sentence; the windows that score
highest over a corpus show what the filter detects (the text analogue of Zeiler & Fergus's
top-activating image patches). Scores are the convolution outputs after the model's norm and
activation (Kim's: ReLU), computed with the same tap tables as fast inference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from textcnn import estimator
from textcnn.batching import pad_batch, token_budget_batches
from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write, atomic_write_json, atomic_write_text
from textcnn.projection import ProjectedKimCNN, tap_offsets


def top_ngrams(clf: estimator.TextCNNClassifier, texts: Sequence[str], *,
               maps: Sequence[int] = (0, 1, 2, 3), top: int = 5,
               max_tokens: int | None = None) -> list[dict[str, Any]]:
    """For each width and each map in `maps`, the `top` distinct n-grams with the highest score.

    Texts are scored in batches of at most `max_tokens` padded tokens (default: prediction's
    `INFERENCE_TOKENS`), so one very long text cannot make a batch of many texts as wide as itself.
    A map index outside 0..maps-1 raises `TextCNNError` naming the valid range."""
    cfg = clf.model_.config
    bad = [m for m in maps if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < cfg.maps]
    if bad or not maps:
        raise TextCNNError(f"maps: expected feature-map indices in 0..{cfg.maps - 1} (the model has "
                           f"{cfg.maps} maps per width), got {list(maps)}")
    model = ProjectedKimCNN(clf.model_.cpu().eval())
    ids = clf.encode(list(texts))
    best: dict[tuple[int, int], dict[str, float]] = {(w, m): {} for w in cfg.widths for m in maps}
    with torch.no_grad():
        budget = estimator.INFERENCE_TOKENS if max_tokens is None else max_tokens
        for idx in token_budget_batches([len(s) for s in ids], max_tokens=budget,
                                        max_count=estimator.INFERENCE_BATCH):
            batch = pad_batch([ids[i] for i in idx], pad_id=cfg.pad_id)
            for i, (width, first) in enumerate(zip(cfg.widths, tap_offsets(list(cfg.widths)))):
                if batch.shape[1] < width:
                    continue  # no text of this batch holds a whole n-gram of this width
                # only windows wholly inside a sentence: a filter's n-gram has all its words
                windows = batch.unfold(1, width, 1)
                taps = torch.arange(first, first + width)
                scores = F.embedding_bag((windows * sum(cfg.widths) + taps).reshape(-1, width), model.table,
                                         mode="sum")
                scores = model.window_scores(i, scores.view(*windows.shape[:2], -1))
                valid = (windows != cfg.pad_id).all(dim=-1)
                if not valid.any():
                    continue
                # distinct n-grams of the batch, each with its best score per map
                grams, inverse = torch.unique(windows[valid], dim=0, return_inverse=True)
                flat = scores[valid]
                gram_scores = torch.full((len(grams), flat.shape[1]), float("-inf")).scatter_reduce(
                    0, inverse[:, None].expand_as(flat), flat, reduce="amax")
                for m in maps:
                    values, where = gram_scores[:, m].topk(min(top, len(grams)))
                    bucket = best[(width, m)]
                    for value, g in zip(values.tolist(), where.tolist()):
                        key = " ".join(clf.tokenizer_.id_to_token(t) for t in grams[g].tolist())
                        bucket[key] = max(value, bucket.get(key, float("-inf")))
    return [{"width": w, "map": m, "ngrams": sorted(best[(w, m)].items(), key=lambda kv: -kv[1])[:top]}
            for w in cfg.widths for m in maps]


def plot_training_curve(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Training loss and dev metrics per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, loss_ax = plt.subplots(figsize=(6, 3.5))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], color="tab:red", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss")
    dev_keys = [k for k in history[0] if k.startswith("dev_")] if history else []
    if dev_keys:
        dev_ax = loss_ax.twinx()
        for key in dev_keys:
            dev_ax.plot(epochs, [r[key] for r in history], label=key.replace("_", " "))
        dev_ax.set_ylabel("dev metric")
        dev_ax.legend(loc="lower right", fontsize=8)
    loss_ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return Path(path)


def visualize_text_model(model_dir: str | Path, out_dir: str | Path, *, texts: Sequence[str],
                         maps: Sequence[int] = (0, 1, 2, 3), top: int = 5) -> list[Path]:
    """Write `ngrams.md`/`ngrams.json` (top n-grams per map) and `training-curve.png`."""
    clf = estimator.TextCNNClassifier.load(model_dir)
    found = top_ngrams(clf, texts, maps=maps, top=top)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| width | map | top n-grams (score) |", "|---|---|---|"]
    for entry in found:
        shown = "; ".join(f"{g} ({s:.2f})" for g, s in entry["ngrams"])
        lines.append(f"| {entry['width']} | {entry['map']} | {shown} |")
    written = [atomic_write_text(out / "ngrams.md", "\n".join(lines) + "\n"),
               atomic_write_json(out / "ngrams.json", found)]
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
    if metrics.get("history"):
        written.append(plot_training_curve(metrics["history"], out / "training-curve.png"))
    return written
