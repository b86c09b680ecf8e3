"""The `Task` interface every kind of model implements, and the table helpers its subclasses
share."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textcnn.core.errors import TextCNNError
from textcnn.core.rundir import RunIdentity, TrainOutcome

# -- tables ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartPoint:
    """One cell of a batch table's chart: a model's figure on a dataset."""

    model: str  # the row (a marker's line in its dataset's panel)
    dataset: str  # the panel
    mean: float  # mean of the runs, in the chart's unit
    std: float  # their sample standard deviation (the error bar)
    n: int  # how many runs
    reference: float | None = None  # a published figure to mark beside it (Kim 2014's), if any


@dataclass
class Table:
    """A batch table of one task: Markdown lines and the CSV header and rows."""

    markdown: list[str]  # table.md lines: the table, then a note on what the cells hold
    header: list[str]  # table.csv columns
    rows: list[list[Any]] = field(default_factory=list)  # table.csv rows, one per header column
    chart: list[ChartPoint] = field(default_factory=list)  # table.png's points (none: no chart)
    chart_metric: str = "accuracy (%)"  # what the chart's points measure
    reference_name: str = "paper"  # what `ChartPoint.reference` is, for the legend


def plot_chart(table: Table, path: str | Path, *, title: str | None = None) -> Path:
    """The table's chart as a PNG: a panel per dataset, a line per model with its mean, a bar of
    ± one standard deviation and the run count, and the reference figure as a red diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textcnn.core.io import atomic_write

    points = table.chart
    datasets = list(dict.fromkeys(p.dataset for p in points))
    models = list(dict.fromkeys(p.model for p in points))
    longest = max(len(m) for m in models)
    fig, axes = plt.subplots(1, len(datasets), squeeze=False, sharey=True,
                             figsize=(0.09 * longest + 2.6 * len(datasets) + 0.6, 0.42 * len(models) + 1.6))
    y = {m: i for i, m in enumerate(models)}
    for ax, dataset in zip(axes[0], datasets):
        here = [p for p in points if p.dataset == dataset]
        ax.errorbar([p.mean for p in here], [y[p.model] for p in here], xerr=[p.std for p in here],
                    fmt="o", color="tab:blue", ecolor="tab:blue", capsize=3, markersize=5, label="mean ± std")
        refs = [p for p in here if p.reference is not None]
        if refs:
            ax.plot([p.reference for p in refs], [y[p.model] for p in refs], "D", color="tab:red",
                    markerfacecolor="none", markersize=6, label=table.reference_name)
        for p in here:
            right = max(p.mean + p.std, p.reference if p.reference is not None else p.mean)
            ax.annotate(f"{p.mean:.1f} (n={p.n})", (right, y[p.model]), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=7, color="0.3")
        low = min(min(p.mean - p.std for p in here), *(p.reference for p in refs)) if refs else \
            min(p.mean - p.std for p in here)
        high = max(max(p.mean + p.std for p in here), *(p.reference for p in refs)) if refs else \
            max(p.mean + p.std for p in here)
        span = max(high - low, 1.0)
        ax.set_xlim(low - 0.1 * span, high + 0.45 * span)  # room for the labels on the right
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel(table.chart_metric, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(models)), models)
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # a panel may hold the only reference figure
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="lower right", fontsize=8, ncol=len(labels))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=130))
    plt.close(fig)
    return Path(path)


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count of `values`."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def recipe_group(run: str) -> str:
    """The run name without a `/seed=N` suffix: the runs of one recipe over training seeds."""
    return re.sub(r"/seed=-?\d+$", "", run)


def stats_cell(stats: dict[str, float] | None, scale: float = 1.0, digits: int = 1) -> str:
    """A table cell of `mean_std`'s figures, times `scale`: 'mean ± std (n=N)' ('–' for None)."""
    if stats is None:
        return "–"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f} (n={stats['n']})"


# -- the interface ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    """What `textcnn predict` was asked for; a classifier reads the first four, a detector the
    next two (the CLI refuses those of the other role)."""

    top_k: int | None = None  # classifier: the K most probable labels [1] (multi-label: the label set)
    threshold: float | None = None  # classifier: abstain where the top probability is below it
    abstain: Any = None  # classifier, with threshold: the label given instead of None
    thresholds: Mapping[Any, float] | None = None  # multi-label classifier: {label: threshold}
    score_threshold: float | None = None  # detector: keep detections scoring at least this [0.5]
    out_dir: str | None = None  # detector: write each image with its boxes and detections.json here
    out_format: str = "text"  # 'text' (tab-separated lines) or 'jsonl'


class Task:
    """What one kind of model does; subclasses fill in each step for their side."""

    name: ClassVar[str]  # the recipe's `task`
    model_kind: ClassVar[str]  # config.json's `kind` in its model directories
    role: ClassVar[str]  # 'classifier' or 'detector': which `textcnn predict` options apply
    title: ClassVar[str]  # its section heading in the table of a batch of several tasks

    # recipes and training
    def check(self, data: Mapping[str, Any], *, source: str | Path) -> Any:
        """The typed recipe of plain recipe data; a bad key or value is a one-line `TextCNNError`."""
        raise NotImplementedError

    def train(self, data: dict[str, Any], *, source: str | Path, out_dir: str | Path | None = None,
              overwrite: bool = False) -> TrainOutcome:
        """Train the recipe `data` (after `--set` overrides) into `out_dir` (default
        `runs/<name>`); the same run there resumes, another is refused unless `overwrite`."""
        raise NotImplementedError

    # saved models
    def evaluate(self, model: str | Path, data_file: str | None, *, data_format: str | None = None,
                 text_column: str | None = None, label_column: str | None = None,
                 label_separator: str | None = None) -> dict[str, Any]:
        """The report of a saved model on labelled data (None: the model's own test split,
        where the task has one); `label_separator` splits a multi-label model's label strings;
        the columns (None: the training recipe's) name a text model's table columns."""
        raise NotImplementedError

    def format_report(self, report: dict[str, Any]) -> str:
        """`evaluate`'s report as readable text."""
        raise NotImplementedError

    def prediction_lines(self, model: str | Path, inputs: Iterable[str], options: PredictOptions
                         ) -> Iterator[str]:
        """`textcnn predict`'s output, a line per input as it is predicted."""
        raise NotImplementedError

    def visualize(self, model: str | Path, out_dir: str | Path, *, data_file: str | None,
                  maps: tuple[int, ...], samples: int, top: int) -> list[Path]:
        """Pictures of what the model's filters respond to (Zeiler & Fergus)."""
        raise NotImplementedError

    # batch runs
    def runs(self, data: dict[str, Any], checked: Any, *, name: str, folds: int | None
             ) -> list[tuple[str, dict[str, Any]]]:
        """The (run name, recipe data) runs of one expanded recipe; `folds` limits the folds of
        a cross-validated one."""
        return [(name, dict(data, name=name))]

    def reseeded(self, data: dict[str, Any], checked: Any, seed: int) -> dict[str, Any]:
        """A run's recipe data trained with another seed, on the same data."""
        return {**data, "train": {**data.get("train", {}), "seed": seed}}

    def group_key(self, checked: Any, run: str) -> str | None:
        """Runs with the same key train together with `--fold-batched`; None: alone."""
        return None

    def identity(self, checked: Any, *, digests: dict[str, str | None] | None = None) -> RunIdentity:
        """A run's identity (its fingerprint): the resolved recipe and its data's content."""
        raise NotImplementedError

    def train_runs(self, runs: Sequence[tuple[dict[str, Any], str]], out_dirs: Sequence[Path], *,
                   overwrite: bool = False) -> list[TrainOutcome]:
        """Train (recipe data, source) runs, each into its folder; several only as a group
        made by `group_key`."""
        if len(runs) != 1:
            raise TextCNNError(f"{self.name} runs train one at a time, got a group of {len(runs)}")
        (data, source), = runs
        return [self.train(data, source=source, out_dir=out_dir, overwrite=overwrite)
                for out_dir in out_dirs]

    def batch_row(self, checked: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        """A finished run's fields in results.jsonl (beside run, task, machine and source)."""
        raise NotImplementedError

    def row_summary(self, row: dict[str, Any]) -> str:
        """A finished run's figure for the batch's progress line, e.g. 'accuracy 0.9100'."""
        if row.get("accuracy") is not None:
            return f"accuracy {row['accuracy']:.4f}"
        dev = row.get("dev_accuracy")
        return "no test split" + (f" (dev accuracy {dev:.4f})" if dev is not None else "")

    def table(self, rows: Sequence[dict[str, Any]]) -> Table:
        """The task's table.md and table.csv from its results.jsonl rows."""
        raise NotImplementedError


def common_row(checked: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """The fields every task's row has, after its own figures."""
    m = metrics
    return {"epochs_run": m.get("epochs_run"), "stopped_by": m.get("stopped_by"),
            "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
            "wall_seconds": m.get("wall_seconds"), "precision": m.get("precision")}


def reject_text_option(option: str, value: Any, model: str | Path) -> None:
    """An option of text models given for an image model: a one-line error."""
    if value is not None:
        raise TextCNNError(f"{option}: for text models; {model} is an image model (got {value!r})")


def reject_multi_label_option(option: str, value: Any, model: str | Path) -> None:
    """A multi-label option given for a model of one label per input: a one-line error."""
    if value is not None:
        raise TextCNNError(f"{option}: for multi-label text models; {model} gives one label per input "
                           f"(got {value!r})")


def pin_split_seed(data: dict[str, Any], checked: Any, seed: int) -> dict[str, Any]:
    """Recipe data with training seed `seed` and the split seed the recipe had (the split seed
    defaults to the training seed, so it is written out: the data stays split the same way)."""
    split_seed = checked.train.seed if checked.data.split_seed is None else checked.data.split_seed
    return {**data, "train": {**data.get("train", {}), "seed": seed},
            "data": {**data.get("data", {}), "split_seed": split_seed}}


class ClassifierTask(Task):
    """A classifier: predictions are ranked labels with probabilities, and a decision."""

    role = "classifier"

    def predict(self, model: str | Path, inputs: Iterable[str], *, top_k: int = 1,
                threshold: float | None = None, abstain: Any = None,
                thresholds: Mapping[Any, float] | None = None, label_top_k: bool = False) -> Iterator[Any]:
        """`textcnn.core.streaming.Prediction`s of `inputs`, a chunk at a time; for a multi-label
        model, `thresholds` {label: threshold} and, with `label_top_k`, the `top_k` as its
        label set (see `textcnn.pipeline.predict_stream`)."""
        raise NotImplementedError

    def prediction_lines(self, model: str | Path, inputs: Iterable[str], options: PredictOptions
                         ) -> Iterator[str]:
        for p in self.predict(model, inputs, top_k=options.top_k or 1, threshold=options.threshold,
                              abstain=options.abstain, thresholds=options.thresholds,
                              label_top_k=options.top_k is not None):
            # a multi-label model's label set is always its decision, shown first
            decided = options.threshold is not None or isinstance(p.label, list)
            if options.out_format == "jsonl":
                yield json.dumps({"text": p.input, "label": p.label, "labels": [
                    {"label": label, "probability": round(prob, 6)} for label, prob in p.ranked]})
                continue
            shown = "  ".join(f"{label} ({prob:.3f})" for label, prob in p.ranked)
            if decided:
                label = (",".join(map(str, p.label)) or "(none)") if isinstance(p.label, list) \
                    else "(abstain)" if p.label is None else p.label
                shown = f"{label}\t{shown}"
            yield f"{shown}\t{p.input}"

    def format_report(self, report: dict[str, Any]) -> str:
        from textcnn.core.metrics import format_report

        return format_report(report)

    def plot_report(self, report: dict[str, Any], path: str | Path) -> Path:
        """The confusion matrix of `evaluate`'s report as PNG."""
        from textcnn.core.metrics import plot_confusion_matrix

        return plot_confusion_matrix(report, path)
