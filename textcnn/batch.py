"""Batch evaluation: recipes -> runs (dataset x model x fold x seed) -> results.jsonl -> tables.

A batch directory holds `results.jsonl` (one JSON object per finished run, appended and flushed
by the parent process only, so no worker can corrupt it), `runs/<run name>/` (each run's model,
logs and engine checkpoint) and `table.md` / `table.csv`. Every row carries its run's fingerprint
(`textcnn.core.rundir`: the resolved recipe and the content of its data). Rerunning a batch with
the same `--out` skips the runs whose row has the same fingerprint; a run that was interrupted
resumes from its engine checkpoint. A run whose recipe or data changed since its row (or its
folder) was written is refused before any run starts, or rerun with `overwrite` (its row is
replaced). One batch at a time writes into a directory (a lock file).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import multiprocessing
import os
import re
import signal
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from textcnn.benchmarks import BENCHMARKS, get_benchmark
from textcnn.core.config import expand_runs
from textcnn.core.errors import TextCNNError
from textcnn.core.io import append_jsonl, atomic_write_text
from textcnn.core.memory import keep_freed_memory
from textcnn.core.rundir import (
    RUN_FILE,
    check_run_name,
    first_difference,
    folder_conflict,
    folder_lock,
    inside,
    read_run_record,
)
from textcnn.recipe import load_recipe_dict, text_recipe

PAPER_TABLE2: dict[str, dict[str, float]] = {
    "CNN-rand": {"mr": 76.1, "sst1": 45.0, "sst2": 82.7, "subj": 89.6, "trec": 91.2, "cr": 79.8, "mpqa": 83.4},
    "CNN-static": {"mr": 81.0, "sst1": 45.5, "sst2": 86.8, "subj": 93.0, "trec": 92.8, "cr": 84.7, "mpqa": 89.6},
    "CNN-non-static": {"mr": 81.5, "sst1": 48.0, "sst2": 87.2, "subj": 93.4, "trec": 93.6, "cr": 84.3,
                       "mpqa": 89.5},
    "CNN-multichannel": {"mr": 81.1, "sst1": 47.4, "sst2": 88.1, "subj": 93.2, "trec": 92.2, "cr": 85.0,
                         "mpqa": 89.4},
    "NBSVM": {"mr": 79.4, "subj": 93.2, "cr": 81.8, "mpqa": 86.3},
}
"""Kim (2014) Table 2, as listed in the project's reference notes (accuracy, %)."""


@dataclass
class RunSpec:
    """One run of a batch: a fully expanded recipe."""

    name: str  # unique within the batch, e.g. "kim2014/mr/rand/fold=3"
    recipe: dict[str, Any]  # plain recipe data, ready for `text_recipe`
    source: str  # the recipe file it came from


def recipe_files(paths: Sequence[str | Path]) -> list[Path]:
    """The recipe files named, and the `*.yaml` files inside named directories (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.yaml"))
            if not found:
                raise TextCNNError(f"{p}: expected recipe files (*.yaml) in the directory, found none")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise TextCNNError(f"{p}: expected a recipe file or directory, got no such path")
    return files


def plan_runs(paths: Sequence[str | Path], *, overrides: Sequence[str] = (), folds: int | None = None,
              only: Sequence[str] = (), seeds: Sequence[int] = ()) -> list[RunSpec]:
    """Expand every recipe into its runs; CV benchmarks into one run per fold (the first `folds`).

    `seeds` repeats every run once per training seed, on the same CV folds (the split seed stays
    the recipe's). The recipe's own seed keeps the plain run name and any other seed adds
    `/seed=N`, so adding seeds to a finished batch reruns nothing.
    """
    runs: list[RunSpec] = []
    for path in recipe_files(paths):
        data = load_recipe_dict(path, list(overrides))
        base = check_run_name(str(data.get("name") or path.stem), f"{path}: name")
        try:
            expanded = expand_runs(data, name=base)
        except TextCNNError as exc:
            raise TextCNNError(f"{path}: {exc}") from None
        for name, recipe in expanded:
            checked = text_recipe(recipe, source=f"{path} ({name})")  # fail before any run starts
            n_folds = 1
            if checked.data.dataset and get_benchmark(checked.data.dataset).cv:
                n_folds = checked.data.folds if folds is None else min(folds, checked.data.folds)
            for fold in range(n_folds):
                spec = dict(recipe, name=name)
                if n_folds > 1 or (checked.data.dataset and get_benchmark(checked.data.dataset).cv):
                    spec = {**spec, "data": {**spec.get("data", {}), "fold": fold}}
                    run_name = f"{name}/fold={fold}"
                else:
                    run_name = name
                for seed in seeds or [checked.train.seed]:
                    if seed == checked.train.seed:
                        runs.append(RunSpec(run_name, spec, str(path)))
                    else:
                        split_seed = (checked.train.seed if checked.data.split_seed is None
                                      else checked.data.split_seed)
                        seeded = {**spec, "train": {**spec.get("train", {}), "seed": seed},
                                  "data": {**spec.get("data", {}), "split_seed": split_seed}}
                        runs.append(RunSpec(f"{run_name}/seed={seed}", seeded, str(path)))
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise TextCNNError(f"batch: two runs are both named '{run.name}'; give the recipes distinct names")
        seen.add(run.name)
    for run in runs:  # only `seed=N` runs live inside another run's folder (they cannot clash)
        parts = run.name.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        clash = next((p for p in parents if p in seen), None)
        if clash is not None and not re.fullmatch(r"seed=-?\d+", run.name[len(clash) + 1:]):
            raise TextCNNError(f"batch: run '{run.name}' would be stored inside the folder of run "
                               f"'{clash}'; give the recipes distinct names")
    for glob in only:
        if runs and not any(fnmatch.fnmatch(r.name, glob) for r in runs):
            raise TextCNNError(f"--only {glob!r}: expected a pattern matching some of the {len(runs)} "
                               f"runs of these recipes (named like '{runs[0].name}'), got none")
    if only:  # a run is kept when its name matches any of the globs
        runs = [r for r in runs if any(fnmatch.fnmatch(r.name, glob) for glob in only)]
    return runs


def read_results(path: Path) -> list[dict[str, Any]]:
    """The finished runs of a batch; a line that is not JSON (torn by a crash mid-write) is
    skipped with a warning (the next append cuts it off, see `textcnn.core.io.append_jsonl`)."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "run" not in row:
            warnings.warn(f"{path}:{number}: skipped a line that is no results row (a write torn "
                          "by a crash?)", stacklevel=2)
            continue
        rows.append(row)
    return rows


def _row(run: RunSpec, recipe, metrics: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """A finished run's results.jsonl row."""
    m = metrics
    return {"run": run.name, "dataset": recipe.data.dataset or recipe.data.train,
            "model": model_label(recipe), "variant": recipe.model.variant,
            "vectors": recipe.embeddings.path if recipe.model.arch == "kim-cnn" and
            recipe.model.variant != "rand" else None,
            "fold": recipe.data.fold if recipe.data.dataset and get_benchmark(recipe.data.dataset).cv else None,
            "seed": recipe.train.seed, "phrases": recipe.data.phrases,
            "fingerprint": m.get("fingerprint"),
            "accuracy": m.get("test_accuracy"), "macro_f1": m.get("test_macro_f1"),
            "dev_accuracy": m.get("dev_accuracy"), "epochs_run": m.get("epochs_run"),
            "stopped_by": m.get("stopped_by"),
            "best_epoch": m.get("best_epoch"), "train_seconds": m.get("train_seconds"),
            "wall_seconds": m.get("wall_seconds"), "fold_batched": m.get("fold_batched"),
            "precision": m.get("precision"), "cuda_graphs": m.get("cuda_graphs"),
            "machine": machine_description(recipe.train.device, threads), "source": run.source}


def run_folder(out_dir: str | Path, name: str) -> Path:
    """The folder of run `name` in a batch directory: `runs/<name>`, checked to stay inside."""
    return inside(Path(out_dir) / "runs", *name.split("/"))


def _run_task(runs: list[RunSpec], out_dir: str, threads: int | None,
              overwrite: bool = False) -> list[dict[str, Any]]:
    """Train and test one run, or a group of folds as one batched model (in a worker process);
    returns their results.jsonl rows."""
    from textcnn.pipeline import train_fold_recipes, train_recipe

    recipes = [text_recipe(run.recipe, source=run.source) for run in runs]
    if threads:
        import torch

        torch.set_num_threads(threads)
        for recipe in recipes:
            recipe.train.threads = threads
    dirs = [run_folder(out_dir, run.name) for run in runs]
    outcomes = (train_fold_recipes(recipes, dirs, overwrite=overwrite) if len(runs) > 1
                else [train_recipe(recipes[0], dirs[0], overwrite=overwrite)])
    return [_row(run, recipe, outcome.metrics, threads)
            for run, recipe, outcome in zip(runs, recipes, outcomes)]


def fold_groups(runs: Sequence[RunSpec], *, fold_batched: bool) -> list[list[RunSpec]]:
    """The batch's tasks: one run each, or with `fold_batched` the Kim CNN folds of one
    cross-validation recipe (and seed) together, to train as one batched model."""
    if not fold_batched:
        return [[run] for run in runs]
    groups: dict[str, list[RunSpec]] = {}
    tasks: list[list[RunSpec]] = []
    for run in runs:
        recipe = text_recipe(run.recipe, source=run.source)
        cv = recipe.data.dataset and get_benchmark(recipe.data.dataset).cv
        if recipe.model.arch != "kim-cnn" or not cv:
            tasks.append([run])
            continue
        key = re.sub(r"/fold=\d+", "", run.name)
        if key not in groups:
            groups[key] = []
            tasks.append(groups[key])
        groups[key].append(run)
    return tasks


def machine_description(device: str, threads: int | None) -> str:
    """Where a run ran, for its results row: the CPU or GPU, cores and torch threads."""
    import platform

    import torch

    from textcnn.core.engine import resolve_device

    if resolve_device(device).type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return f"cpu: {cpu}, {os.cpu_count()} cores, {threads or torch.get_num_threads()} torch thread(s)"


def _run_guarded(task: tuple[list[RunSpec], str, int | None, bool]
                 ) -> list[tuple[RunSpec, dict | None, str | None]]:
    """`_run_task` in a worker: a failure comes back as a message, so the other runs go on."""
    runs, out_dir, threads, overwrite = task
    keep_freed_memory()  # a worker process of our own (see textcnn.core.memory)
    try:
        return [(run, row, None) for run, row in zip(runs, _run_task(runs, out_dir, threads, overwrite))]
    except Exception as exc:  # noqa: BLE001 - reported per run; the batch goes on
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TextCNNError) else str(exc)
        return [(run, None, error) for run in runs]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def model_label(recipe) -> str:
    """The table row a run belongs to, e.g. 'CNN-static (word2vec)' or 'NBSVM'."""
    arch = recipe.model.arch
    if arch != "kim-cnn":
        return {"nbsvm": "NBSVM", "tfidf-logreg": "TF-IDF+LR"}[arch]
    label = f"CNN-{recipe.model.variant}"
    if recipe.model.variant != "rand":
        source = recipe.embeddings.path or "?"
        label += f" ({source if source in ('word2vec', 'minilm') else Path(source).name})"
    if recipe.data.dataset in ("sst1", "sst2") and not recipe.data.phrases:
        label += " [sentences only]"
    return label


def _changed_runs(runs: Sequence[RunSpec], out: Path, rows: Sequence[dict[str, Any]]
                  ) -> tuple[set[str], set[str], dict[str, str]]:
    """Which planned runs are done (a row with their fingerprint), which have a row without any
    fingerprint (written by an older version), and which changed since their row or folder was
    written (name -> the first difference, in a few words)."""
    from textcnn.pipeline import text_run_identity

    by_name = {row["run"]: row for row in rows}
    digests: dict[str, str | None] = {}  # each data file is hashed once for the whole plan
    done: set[str] = set()
    legacy: set[str] = set()
    changed: dict[str, str] = {}
    for run in runs:
        identity = text_run_identity(text_recipe(run.recipe, source=run.source), digests=digests)
        row = by_name.get(run.name)
        if row is not None and row.get("fingerprint") == identity.fingerprint:
            done.add(run.name)
            continue
        if row is not None and "fingerprint" not in row:
            legacy.add(run.name)
            continue
        folder = run_folder(out, run.name)
        try:
            record = read_run_record(folder)
        except TextCNNError as err:
            changed[run.name] = str(err)
            continue
        if record is not None and record["fingerprint"] != identity.fingerprint:
            changed[run.name] = first_difference(record, identity)
        elif record is None and folder_conflict(folder, identity) is not None:
            changed[run.name] = f"{folder} holds files but no {RUN_FILE}"
        elif row is not None:
            changed[run.name] = (f"its results row has fingerprint {str(row.get('fingerprint'))[:12]}, "
                                 f"the run now {identity.fingerprint[:12]}")
    return done, legacy, changed


def _accuracy_text(row: dict[str, Any]) -> str:
    if row.get("accuracy") is not None:
        return f"accuracy {row['accuracy']:.4f}"
    dev = row.get("dev_accuracy")
    return "no test split" + (f" (dev accuracy {dev:.4f})" if dev is not None else "")


def run_batch(paths: Sequence[str | Path], out_dir: str | Path, *, jobs: int = 1,
              folds: int | None = None, only: Sequence[str] = (), overrides: Sequence[str] = (),
              seeds: Sequence[int] = (), fold_batched: bool = False, overwrite: bool = False,
              progress: bool = True, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every pending run of the recipes into `out_dir`; write the tables; return all rows.

    A run is done when results.jsonl has a row with its fingerprint. A run that changed (its
    row or folder was made from another recipe or data) raises `TextCNNError` before any run
    starts, naming the first difference; with `overwrite` it is rerun and its row replaced.
    Rows from before fingerprints (none in the row) count as done by name, with a note; with
    `overwrite` they are rerun too.
    With `fold_batched`, the Kim CNN folds of each cross-validation recipe train as one batched
    model (`textcnn.pipeline.train_fold_recipes`), one task per recipe; meant for a GPU."""
    out = Path(out_dir)
    runs = plan_runs(paths, overrides=overrides, folds=folds, only=only, seeds=seeds)
    with folder_lock(out):
        return _run_pending(runs, out, jobs=jobs, fold_batched=fold_batched, overwrite=overwrite,
                            progress=progress, echo=echo)


def _run_pending(runs: list[RunSpec], out: Path, *, jobs: int, fold_batched: bool, overwrite: bool,
                 progress: bool, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    results_file = out / "results.jsonl"
    rows = read_results(results_file)
    done, legacy, changed = _changed_runs(runs, out, rows)
    if legacy and overwrite:
        changed.update({name: "its results row has no fingerprint" for name in legacy})
    elif legacy:
        done |= legacy
        echo(f"batch: {len(legacy)} row(s) in {results_file} carry no fingerprint (written by an older "
             "version), so they count as done by run name alone; --overwrite reruns them")
    if changed and not overwrite:
        name, why = next(iter(changed.items()))
        raise TextCNNError(f"batch: {len(changed)} run(s) in {out} differ from the recipes now, e.g. "
                           f"'{name}': {why}; pass --overwrite to rerun them (their rows are "
                           "replaced), or choose another --out")
    if changed and any(row["run"] in changed for row in rows):
        kept = "".join(json.dumps(row) + "\n" for row in rows if row["run"] not in changed)
        atomic_write_text(results_file, kept)
    pending = [r for r in runs if r.name not in done]
    echo(f"batch: {len(runs)} runs, {len(runs) - len(pending)} already done, {len(pending)} to run"
         + (f" ({len(changed)} changed, rerun)" if changed else "") + f", {jobs} worker(s)")
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs)) if jobs > 1 else None
    bar = tqdm(total=len(pending), desc="batch", unit="run", disable=not progress)
    failures: list[str] = []

    def finish(run: RunSpec, row: dict[str, Any] | None, error: BaseException | str | None) -> None:
        if error is not None:
            failures.append(f"{run.name}: {error}")
            echo(f"  failed {run.name}: {error}")
        else:
            append_jsonl(results_file, row)
            stopped = " (stopped by train.max_seconds)" if row.get("stopped_by") == "time" else ""
            echo(f"  done {run.name}: {_accuracy_text(row)} in {row['train_seconds']:.0f}s{stopped}")
        bar.update(1)

    try:
        tasks = fold_groups(pending, fold_batched=fold_batched)
        if jobs <= 1:
            for task in tasks:
                bar.set_postfix_str(task[0].name if len(task) == 1 else f"{task[0].name} +{len(task) - 1}")
                try:
                    rows = _run_task(task, str(out), None, overwrite)
                except (TextCNNError, FloatingPointError) as exc:
                    for run in task:
                        finish(run, None, exc)
                else:
                    for run, row in zip(task, rows):
                        finish(run, row, None)
        else:
            # A fresh spawned process per task; leaving the `with` block (also on an interrupt or
            # SIGTERM) terminates the workers, so none is left running without its parent.
            ctx = multiprocessing.get_context("spawn")
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                with ctx.Pool(processes=jobs, maxtasksperchild=1) as pool:
                    for outcomes in pool.imap_unordered(_run_guarded,
                                                        [(t, str(out), threads, overwrite) for t in tasks]):
                        for run, row, error in outcomes:
                            finish(run, row, error)
            finally:
                signal.signal(signal.SIGTERM, previous)
    finally:
        bar.close()
        rows = read_results(results_file)
        write_tables(rows, out)
    if failures:
        raise TextCNNError(f"batch: {len(failures)} run(s) failed (finished runs are kept): "
                           + "; ".join(failures[:3]))
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean and standard deviation of accuracy (%) per (model, dataset) over folds and seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.get("accuracy") is not None:
            groups.setdefault((row["model"], row["dataset"]), []).append(100 * row["accuracy"])
    return {key: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                  "n": len(v)} for key, v in groups.items()}


def _paper_figure(model: str, dataset: str) -> float | None:
    base = model.split(" ")[0]
    if "[sentences only]" in model:
        return None
    return PAPER_TABLE2.get(base, {}).get(dataset)


def _row_order(model: str) -> tuple:
    """The paper's row order: rand, static, non-static, multichannel, then the baselines."""
    order = ["CNN-rand", "CNN-static", "CNN-non-static", "CNN-multichannel", "NBSVM", "TF-IDF+LR"]
    base = model.split(" ")[0]
    return (order.index(base) if base in order else len(order), "[sentences only]" in model, model)


def write_tables(rows: Sequence[dict[str, Any]], out_dir: Path) -> None:
    """table.md and table.csv: rows are models, columns are datasets in the paper's order. Runs
    without a test split have no accuracy: their cell says so, with how many there are."""
    stats = summarize(rows)
    untested: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["model"], row["dataset"])
        if row.get("accuracy") is None and key not in stats:
            untested[key] = untested.get(key, 0) + 1
    keys = [*stats, *untested]
    datasets = [d for d in BENCHMARKS if any(k[1] == d for k in keys)]
    datasets += sorted({k[1] for k in keys} - set(datasets))
    models = sorted({k[0] for k in keys}, key=_row_order)
    titles = [BENCHMARKS[d].title if d in BENCHMARKS else d for d in datasets]
    md = ["| model | " + " | ".join(titles) + " |", "|---" * (len(datasets) + 1) + "|"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "dataset", "mean", "std", "n", "paper"])
    for model in models:
        cells = []
        for d in datasets:
            s, paper = stats.get((model, d)), _paper_figure(model, d)
            if (model, d) in untested:
                cells.append(f"no test split (n={untested[model, d]})")
                writer.writerow([model, d, "", "", untested[model, d], "" if paper is None else paper])
                continue
            if s is None:
                cells.append("–")
                continue
            cell = f"{s['mean']:.1f} ± {s['std']:.1f} (n={s['n']})"
            cells.append(cell + (f" [paper {paper:.1f}]" if paper is not None else ""))
            writer.writerow([model, d, f"{s['mean']:.2f}", f"{s['std']:.2f}", s["n"],
                             "" if paper is None else paper])
        md.append(f"| {model} | " + " | ".join(cells) + " |")
    md += ["", "Accuracy (%) on the test folds / test split: mean ± std over folds and seeds, n runs; "
           "[paper X] is Kim (2014) Table 2 where it has the row."]
    atomic_write_text(out_dir / "table.md", "\n".join(md) + "\n")
    atomic_write_text(out_dir / "table.csv", buf.getvalue())


__all__ = ["RunSpec", "plan_runs", "run_batch", "read_results", "summarize", "write_tables",
           "model_label", "PAPER_TABLE2"]
