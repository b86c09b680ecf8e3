"""Classification metrics (through scikit-learn, imported when first used: it loads pandas) and
their text and PNG reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The dev metrics a classifier's run can be selected on (train.metric), each with the direction
# that is better (train.mode); `selection_metrics` computes them.
SELECTION_METRICS: dict[str, str] = {"accuracy": "max", "macro_f1": "max", "loss": "min"}


def selection_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                      probabilities: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy and macro-F1: the numbers a run is selected and compared on; with the predicted
    `probabilities` [N, classes], also `loss`: the mean cross-entropy of the true classes (for a
    0/1 indicator `y_true` [N, classes], multi-label, the mean binary cross-entropy)."""
    from sklearn.metrics import accuracy_score, f1_score

    metrics = {"accuracy": float(accuracy_score(y_true, y_pred)),
               "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
    if probabilities is not None:
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
        truth = np.asarray(y_true)
        if truth.ndim == 2:
            q = np.clip(1.0 - np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
            metrics["loss"] = float(-(truth * np.log(p) + (1 - truth) * np.log(q)).mean())
        else:
            metrics["loss"] = float(-np.log(p[np.arange(len(truth)), truth]).mean())
    return metrics


def evaluation_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, a per-class report and the confusion matrix (rows: true labels)."""
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(class_names)))
    names = [str(c) for c in class_names]
    report = classification_report(y_true, y_pred, labels=labels, target_names=names,
                                   output_dict=True, zero_division=0)
    return {
        **selection_metrics(y_true, y_pred),
        "examples": int(len(y_true)),
        "per_class": {name: {k: float(v) for k, v in report[name].items()} for name in names},
        "labels": names,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


# A multi-label report's summary figures: (report key, label in text), in the order shown.
MULTI_LABEL_FIGURES = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
                       ("subset_accuracy", "subset accuracy"), ("hamming_loss", "Hamming loss"))


def multi_label_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """A multi-label model's figures on 0/1 indicator matrices [N, classes] (scikit-learn's
    metrics): micro-, macro- and samples-averaged F1, subset accuracy (every label of a text
    right), Hamming loss (the share of wrong text-label decisions), and per label its precision,
    recall, F1 and support."""
    from sklearn.metrics import accuracy_score, classification_report, f1_score, hamming_loss

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    names = [str(c) for c in class_names]
    per_class = classification_report(y_true, y_pred, labels=list(range(len(names))), target_names=names,
                                      output_dict=True, zero_division=0)
    f1 = {f"{avg}_f1": float(f1_score(y_true, y_pred, average=avg, zero_division=0))
          for avg in ("micro", "macro", "samples")}
    return {"multi_label": True, **f1, "subset_accuracy": float(accuracy_score(y_true, y_pred)),
            "hamming_loss": float(hamming_loss(y_true, y_pred)), "examples": int(len(y_true)),
            "per_class": {name: {k: float(v) for k, v in per_class[name].items()} for name in names},
            "labels": names}


def format_report(report: dict[str, Any]) -> str:
    """The report of `evaluation_report` (or `multi_label_report`) as aligned plain text."""
    if report.get("multi_label"):
        return _format_multi_label(report)
    names = report["labels"]
    width = max(8, *(len(n) for n in names))
    lines = [f"accuracy  {report['accuracy']:.4f}   macro-F1  {report['macro_f1']:.4f}   "
             f"examples  {report['examples']}", "", *_per_class_lines(report)]
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * width + "  " + " ".join(f"{n[:7]:>7}" for n in names)]
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:7d}" for v in row))
    return "\n".join(lines)


def _per_class_lines(report: dict[str, Any]) -> list[str]:
    names = report["labels"]
    width = max(8, *(len(n) for n in names))
    lines = [f"{'label':<{width}}  precision  recall  f1      support"]
    for name in names:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1-score']:6.4f}  {int(row['support']):7d}")
    return lines


def _format_multi_label(report: dict[str, Any]) -> str:
    figures = "   ".join(f"{label}  {report[key]:.4f}" for key, label in MULTI_LABEL_FIGURES)
    return "\n".join([figures + f"   examples  {report['examples']}", "", *_per_class_lines(report)])


def plot_confusion_matrix(report: dict[str, Any], path: str | Path) -> Path:
    """Save the confusion matrix of `report` as a PNG (needs matplotlib: the `plots` extra); a
    multi-label report, which has no confusion matrix, as each label's precision, recall and F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textcnn.core.io import atomic_write

    if report.get("multi_label"):
        names = report["labels"]
        fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 2), 4))
        x = np.arange(len(names))
        for offset, (key, label) in zip((-0.27, 0, 0.27), (("precision", "precision"), ("recall", "recall"),
                                                           ("f1-score", "F1"))):
            ax.bar(x + offset, [report["per_class"][n][key] for n in names], width=0.27, label=label)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"micro-F1 {report['micro_f1']:.3f}   macro-F1 {report['macro_f1']:.3f}   "
                     f"subset accuracy {report['subset_accuracy']:.3f}", fontsize=10)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
        plt.close(fig)
        return Path(path)

    matrix = np.asarray(report["confusion_matrix"])
    names = report["labels"]
    size = 2.5 + 0.5 * len(names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > matrix.max() / 2 else "black")
    ax.set_title(f"accuracy {report['accuracy']:.3f}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(path)
