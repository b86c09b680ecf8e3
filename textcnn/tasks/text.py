"""The text task: Kim's sentence CNN and the scikit-learn baselines (`textcnn/`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

from textcnn.tasks.base import (
    ChartPoint,
    ClassifierTask,
    Table,
    mean_std,
    pin_split_seed,
    stats_cell,
)

# A multi-label run's test figures in its row and table: (row key, column title).
MULTI_LABEL_COLUMNS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_f1", "samples-F1"),
                       ("subset_accuracy", "subset accuracy"), ("hamming_loss", "Hamming loss"))


class TextTask(ClassifierTask):
    """Kim's sentence CNN and the scikit-learn baselines (`textcnn/`)."""

    name = "text"
    model_kind = "text-classifier"
    title = "Text classification"

    def check(self, data, *, source):
        from textcnn.recipe import text_recipe

        return text_recipe(dict(data), source=source)

    def train(self, data, *, source, out_dir=None, overwrite=False):
        from textcnn.pipeline import train_text_recipe

        return train_text_recipe(data, source=source, out_dir=out_dir, overwrite=overwrite)

    def evaluate(self, model, data_file, *, data_format=None, text_column=None, label_column=None,
                 label_separator=None):
        from textcnn.pipeline import evaluate_model

        return evaluate_model(model, data_file, data_format=data_format, text_column=text_column,
                              label_column=label_column, label_separator=label_separator)

    def predict(self, model, inputs, *, top_k=1, threshold=None, abstain=None, thresholds=None,
                label_top_k=False):
        from textcnn.pipeline import predict_stream

        return predict_stream(model, inputs, top_k=top_k, threshold=threshold, abstain=abstain,
                              thresholds=thresholds, label_top_k=label_top_k)

    def visualize(self, model, out_dir, *, data_file, maps, samples, top):
        from textcnn.pipeline import visualize_model

        return visualize_model(model, out_dir, data_file=data_file, maps=maps, top=top)

    def runs(self, data, checked, *, name, folds):
        """One run per fold (the first `folds`) of a cross-validated benchmark, else one; none for
        an optional baseline that is not installed here (fastText), with a warning."""
        from textcnn.baselines import baseline_available

        if not baseline_available(checked.model.arch):
            warnings.warn(f"{name}: model.arch {checked.model.arch} is not installed here; its run is "
                          "left out of the batch", stacklevel=2)
            return []
        if not self._cv(checked):
            return super().runs(data, checked, name=name, folds=folds)
        n_folds = checked.data.folds if folds is None else min(folds, checked.data.folds)
        spec = dict(data, name=name)
        return [(f"{name}/fold={fold}", {**spec, "data": {**spec.get("data", {}), "fold": fold}})
                for fold in range(n_folds)]

    def reseeded(self, data, checked, seed):
        return pin_split_seed(data, checked, seed)  # on the same CV folds

    def group_key(self, checked, run):
        """The Kim CNN folds of one cross-validation recipe (and seed) train as one model."""
        if checked.model.arch != "kim-cnn" or not self._cv(checked):
            return None
        return re.sub(r"/fold=\d+", "", run)

    def identity(self, checked, *, digests=None):
        from textcnn.pipeline import text_run_identity

        return text_run_identity(checked, digests=digests)

    def train_runs(self, runs, out_dirs, *, overwrite=False):
        if len(runs) == 1:
            return super().train_runs(runs, out_dirs, overwrite=overwrite)
        from textcnn.pipeline import train_fold_recipes

        return train_fold_recipes([self.check(data, source=source) for data, source in runs],
                                  list(out_dirs), overwrite=overwrite)

    def batch_row(self, checked, metrics):
        from textcnn.kim2014 import model_label

        recipe, m = checked, metrics
        return {"dataset": recipe.data.dataset or recipe.data.train,
                "model": model_label(recipe), "variant": recipe.model.variant,
                "vectors": recipe.embeddings.path if recipe.model.arch == "kim-cnn" and
                recipe.model.variant != "rand" else None,
                "fold": recipe.data.fold if self._cv(recipe) else None,
                "seed": recipe.train.seed, "phrases": recipe.data.phrases,
                "fingerprint": m.get("fingerprint"),
                "accuracy": m.get("test_accuracy"), "macro_f1": m.get("test_macro_f1"),
                "dev_accuracy": m.get("dev_accuracy"), "epochs_run": m.get("epochs_run"),
                "stopped_by": m.get("stopped_by"),
                "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
                "wall_seconds": m.get("wall_seconds"), "fold_batched": m.get("fold_batched"),
                "precision": m.get("precision"), "cuda_graphs": m.get("cuda_graphs"),
                "fast_path": m.get("fast_path"),
                **({"multi_label": True, **{key: m.get(f"test_{key}") for key, _ in MULTI_LABEL_COLUMNS}}
                   if m.get("multi_label") else {})}

    def row_summary(self, row):
        if row.get("multi_label") and row.get("micro_f1") is not None:
            return f"micro-F1 {row['micro_f1']:.4f}, subset accuracy {row['subset_accuracy']:.4f}"
        return super().row_summary(row)

    def table(self, rows):
        """Rows are models, columns are datasets in the paper's order; a cell is the mean ± std
        accuracy over folds and seeds, with Kim (2014)'s figure where the paper has the row.
        Runs without a test split have no accuracy: their cell says so, with how many there are."""
        from textcnn.kim2014 import BENCHMARKS, paper_figure

        multi = [row for row in rows if row.get("multi_label")]
        rows = [row for row in rows if not row.get("multi_label")]
        stats = summarize(rows)
        untested: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["model"], row["dataset"])
            if row.get("accuracy") is None and key not in stats:
                untested[key] = untested.get(key, 0) + 1
        keys = [*stats, *untested]
        datasets = [d for d in BENCHMARKS if any(k[1] == d for k in keys)]
        datasets += sorted({k[1] for k in keys} - set(datasets))
        models = sorted({k[0] for k in keys}, key=_text_row_order)
        titles = [BENCHMARKS[d].title if d in BENCHMARKS else d for d in datasets]
        md = ["| model | " + " | ".join(titles) + " |", "|---" * (len(datasets) + 1) + "|"]
        table = Table(md, ["model", "dataset", "mean", "std", "n", "paper", "metric"])
        for model in models:
            cells = []
            for d in datasets:
                s, paper = stats.get((model, d)), paper_figure(model, d)
                if (model, d) in untested:
                    cells.append(f"no test split (n={untested[model, d]})")
                    table.rows.append([model, d, "", "", untested[model, d], "" if paper is None else paper])
                    continue
                if s is None:
                    cells.append("–")
                    continue
                cells.append(stats_cell(s) + (f" [paper {paper:.1f}]" if paper is not None else ""))
                table.rows.append([model, d, f"{s['mean']:.2f}", f"{s['std']:.2f}", s["n"],
                                   "" if paper is None else paper, "accuracy"])
                table.chart.append(ChartPoint(model, titles[datasets.index(d)], s["mean"], s["std"], s["n"], paper))
            md.append(f"| {model} | " + " | ".join(cells) + " |")
        md += ["", "Accuracy (%) on the test folds / test split: mean ± std over folds and seeds, n runs; "
               "[paper X] is Kim (2014) Table 2 where it has the row."]
        if multi:
            if not rows:
                del md[:]
            else:
                md.append("")
            _multi_label_table(multi, table)
        return table

    @staticmethod
    def _cv(checked) -> bool:
        from textcnn.pipeline import cross_validated

        return cross_validated(checked.data)


def _multi_label_table(rows: Sequence[dict[str, Any]], table: Table) -> None:
    """Multi-label runs as a table of their own (appended to `table`): a row per (model,
    dataset), a column per figure, each mean ± std (%) over folds and seeds."""
    md = table.markdown
    md += ["| model | dataset | " + " | ".join(title for _, title in MULTI_LABEL_COLUMNS) + " |",
           "|---" * (len(MULTI_LABEL_COLUMNS) + 2) + "|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    for (model, dataset), group in groups.items():
        cells = []
        for key, _ in MULTI_LABEL_COLUMNS:
            values = [100 * r[key] for r in group if r.get(key) is not None]
            s = mean_std(values) if values else None
            cells.append(stats_cell(s) if s else f"no test split (n={len(group)})")
            if s:
                table.rows.append([model, dataset, f"{s['mean']:.2f}", f"{s['std']:.2f}", s["n"], "", key])
        md.append(f"| {model} | {dataset} | " + " | ".join(cells) + " |")
    md += ["", "Multi-label runs, on the test split (%): micro-, macro- and samples-averaged F1, subset "
           "accuracy (every label of a text right) and Hamming loss (wrong text-label decisions); mean ± "
           "std over folds and seeds, n runs."]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean and standard deviation of accuracy (%) per (model, dataset) over folds and seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.get("accuracy") is not None:
            groups.setdefault((row["model"], row["dataset"]), []).append(100 * row["accuracy"])
    return {key: mean_std(v) for key, v in groups.items()}


def _text_row_order(model: str) -> tuple:
    """The paper's row order: rand, static, non-static, multichannel, then the baselines."""
    order = ["CNN-rand", "CNN-static", "CNN-non-static", "CNN-multichannel", "NBSVM", "TF-IDF+LR", "fastText"]
    base = model.split(" ")[0]
    return (order.index(base) if base in order else len(order), "[sentences only]" in model, model)
