"""Batch evaluation: recipes -> runs (dataset x model x fold x seed) -> results.jsonl -> tables.

Recipes of every task (text, image, detection; see `textcnn.tasks`) run the same way; each task
says what its rows hold and draws its own table (a batch of several tasks: a section each).

A batch directory holds `results.jsonl` (one JSON object per finished run, appended and flushed
by the parent process only, so no worker can corrupt it), `runs/<run name>/` (each run's model,
logs and engine checkpoint) and `table.md` / `table.csv`. Every row carries its run's fingerprint
(`textcnn.core.rundir`: the resolved recipe and the content of its data). Rerunning a batch with
the same `--out` skips the runs whose row has the same fingerprint; a run that was interrupted
resumes from its engine checkpoint. A run whose recipe or data changed since its row (or its
folder) was written is refused before any run starts, or rerun with `overwrite` (its row is
replaced). One batch at a time writes into a directory (a lock file).

Runs train in this process (`jobs=1`), in spawned local worker processes (`jobs=N`), or as tasks
on a Ray cluster (`executor="ray"`, the `cluster` extra): the same plan, the same rows written by
this process alone, the same tables. A Ray task whose worker dies (a killed process, a lost node)
is retried by Ray; the run resumes from its checkpoint, and its row is written once, when the
task returns. On a cluster of several machines, `out_dir` must be a path every node sees (a
shared file system: each run's folder is written by the node that trains it), and each node
finds the data at the recipes' paths or under its own `$TEXTCNN_DATA_DIR`.
"""

from __future__ import annotations

import csv
import fnmatch
import importlib.util
import io
import json
import multiprocessing
import os
import re
import signal
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from textcnn.core.config import apply_overrides, expand_runs, load_recipe_dict
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
from textcnn.tasks import TASKS, task_for_recipe
from textcnn.tasks.base import plot_chart


@dataclass
class RunSpec:
    """One run of a batch: a fully expanded recipe."""

    name: str  # unique within the batch, e.g. "kim2014/mr/rand/fold=3"
    recipe: dict[str, Any]  # plain recipe data, ready for its task's `check`
    source: str  # the recipe file it came from
    task: str = "text"  # the recipe's task (a name in textcnn.tasks.TASKS)

    def checked(self) -> Any:
        """The typed recipe (`Task.check`)."""
        return TASKS[self.task].check(self.recipe, source=self.source)


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
        task = task_for_recipe(data, source=path)
        base = check_run_name(str(data.get("name") or path.stem), f"{path}: name")
        try:
            expanded = expand_runs(data, name=base)
        except TextCNNError as exc:
            raise TextCNNError(f"{path}: {exc}") from None
        # the command line has the last word: a --set key wins over a run's own value in expand
        last_word = [item for item in overrides if not item.strip().startswith("expand.")]
        for name, recipe in expanded:
            recipe = apply_overrides(recipe, last_word)
            checked = task.check(recipe, source=f"{path} ({name})")  # fail before any run starts
            for run_name, spec in task.runs(recipe, checked, name=name, folds=folds):
                for seed in seeds or [checked.train.seed]:
                    if seed == checked.train.seed:
                        runs.append(RunSpec(run_name, spec, str(path), task.name))
                    else:
                        runs.append(RunSpec(f"{run_name}/seed={seed}", task.reseeded(spec, checked, seed),
                                            str(path), task.name))
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


def _row(run: RunSpec, recipe: Any, metrics: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """A finished run's results.jsonl row: its name and task, its task's fields, where it ran."""
    return {"run": run.name, "task": run.task, **TASKS[run.task].batch_row(recipe, metrics),
            "machine": machine_description(recipe.train.device, threads), "source": run.source}


def run_folder(out_dir: str | Path, name: str) -> Path:
    """The folder of run `name` in a batch directory: `runs/<name>`, checked to stay inside."""
    return inside(Path(out_dir) / "runs", *name.split("/"))


def _run_task(runs: list[RunSpec], out_dir: str, threads: int | None,
              overwrite: bool = False) -> list[dict[str, Any]]:
    """Train and test one run, or a group of folds as one batched model (in a worker process);
    returns their results.jsonl rows."""
    task = TASKS[runs[0].task]
    if threads:
        import torch

        torch.set_num_threads(threads)
        runs = [RunSpec(run.name, {**run.recipe, "train": {**run.recipe.get("train", {}), "threads": threads}},
                        run.source, run.task) for run in runs]
    dirs = [run_folder(out_dir, run.name) for run in runs]
    outcomes = task.train_runs([(run.recipe, run.source) for run in runs], dirs, overwrite=overwrite)
    return [_row(run, run.checked(), outcome.metrics, threads) for run, outcome in zip(runs, outcomes)]


def fold_groups(runs: Sequence[RunSpec], *, fold_batched: bool) -> list[list[RunSpec]]:
    """The batch's tasks: one run each, or with `fold_batched` the runs that their task groups
    (the Kim CNN folds of one cross-validation recipe and seed) together, to train as one model."""
    if not fold_batched:
        return [[run] for run in runs]
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    tasks: list[list[RunSpec]] = []
    for run in runs:
        key = TASKS[run.task].group_key(run.checked(), run.name)
        if key is None:
            tasks.append([run])
            continue
        if (run.task, key) not in groups:
            groups[run.task, key] = []
            tasks.append(groups[run.task, key])
        groups[run.task, key].append(run)
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


RAY_TASK_RETRIES = 3  # a run whose worker died (killed, node lost) is tried again this often
RAY_LOCAL_OBJECT_STORE = 128 * 2**20  # bytes: a local instance's object store holds rows only


def _run_in_cwd(task: tuple[list[RunSpec], str, int | None, bool], cwd: str
                ) -> list[tuple[RunSpec, dict | None, str | None]]:
    """`_run_guarded` in a Ray worker, from the driver's working directory where this node has
    it, so recipes' relative data paths mean the same there (on a shared file system)."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return _run_guarded(task)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TextCNNError("--executor ray: expected the Ray package, got none installed; install "
                           "it with: pip install 'textcnn[cluster]'") from None
    return ray


def _run_on_ray(tasks: list[list[RunSpec]], out: Path, *, jobs: int, address: str | None,
                overwrite: bool,
                finish: Callable[[RunSpec, dict[str, Any] | None, BaseException | str | None], None]
                ) -> None:
    """Train the tasks on a Ray cluster (`address`), or on a local Ray instance with `jobs` CPUs;
    each run takes one CPU (one torch thread). Rows come back to `finish` as tasks end."""
    ray = _import_ray()
    local = address is None
    options: dict[str, Any] = dict(num_cpus=jobs, include_dashboard=False,
                                   object_store_memory=RAY_LOCAL_OBJECT_STORE) if local else {}
    ray.init(address=address, log_to_driver=False, configure_logging=False, **options)
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_TASK_RETRIES)(_run_in_cwd)
        cwd = os.getcwd()
        pending = {remote.remote((task, str(out.resolve()), 1, overwrite), cwd): task for task in tasks}
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready)
            try:
                outcomes = ray.get(ready)
            except ray.exceptions.RayError as exc:  # retries spent: the runs fail, the batch goes on
                for run in task:
                    finish(run, None, f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            for run, row, error in outcomes:
                finish(run, row, error)
    finally:
        ray.shutdown()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _changed_runs(runs: Sequence[RunSpec], out: Path, rows: Sequence[dict[str, Any]]
                  ) -> tuple[set[str], set[str], dict[str, str]]:
    """Which planned runs are done (a row with their fingerprint), which have a row without any
    fingerprint (written by an older version), and which changed since their row or folder was
    written (name -> the first difference, in a few words)."""
    by_name = {row["run"]: row for row in rows}
    digests: dict[str, str | None] = {}  # each data file is hashed once for the whole plan
    done: set[str] = set()
    legacy: set[str] = set()
    changed: dict[str, str] = {}
    for run in runs:
        identity = TASKS[run.task].identity(run.checked(), digests=digests)
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


def run_batch(paths: Sequence[str | Path], out_dir: str | Path, *, jobs: int = 1,
              folds: int | None = None, only: Sequence[str] = (), overrides: Sequence[str] = (),
              seeds: Sequence[int] = (), fold_batched: bool = False, overwrite: bool = False,
              progress: bool = True, echo: Callable[[str], None] = print,
              executor: str = "local", address: str | None = None) -> list[dict[str, Any]]:
    """Run every pending run of the recipes into `out_dir`; write the tables; return all rows.

    A run is done when results.jsonl has a row with its fingerprint. A run that changed (its
    row or folder was made from another recipe or data) raises `TextCNNError` before any run
    starts, naming the first difference; with `overwrite` it is rerun and its row replaced.
    Rows from before fingerprints (none in the row) count as done by name, with a note; with
    `overwrite` they are rerun too.
    With `fold_batched`, the Kim CNN folds of each cross-validation recipe train as one batched
    model (`textcnn.pipeline.train_fold_recipes`), one task per recipe; meant for a GPU; other
    runs train alone.
    `executor="ray"` sends the tasks to the Ray cluster at `address` (e.g. `ray://HOST:10001`),
    or to a local Ray instance with `jobs` CPUs without one (see the module's docstring)."""
    from textcnn.core.distributed import launched_world_size

    if executor not in ("local", "ray"):
        raise TextCNNError(f"--executor: expected local or ray, got {executor!r}")
    if launched_world_size() > 1:
        raise TextCNNError("batch: expected one process, got a launcher's "
                           f"{launched_world_size()} (torchrun); spread a batch's runs with "
                           "--jobs or --executor ray, and train one run with torchrun")
    if executor == "ray":
        _import_ray()  # fails before any planning
    out = Path(out_dir)
    runs = plan_runs(paths, overrides=overrides, folds=folds, only=only, seeds=seeds)
    with folder_lock(out):
        return _run_pending(runs, out, jobs=jobs, fold_batched=fold_batched, overwrite=overwrite,
                            progress=progress, echo=echo, executor=executor, address=address)


def _run_pending(runs: list[RunSpec], out: Path, *, jobs: int, fold_batched: bool, overwrite: bool,
                 progress: bool, echo: Callable[[str], None], executor: str = "local",
                 address: str | None = None) -> list[dict[str, Any]]:
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
    where = f"{jobs} worker(s)" if executor == "local" else \
        f"Ray at {address}" if address else f"a local Ray instance with {jobs} CPU(s)"
    echo(f"batch: {len(runs)} runs, {len(runs) - len(pending)} already done, {len(pending)} to run"
         + (f" ({len(changed)} changed, rerun)" if changed else "") + f", {where}")
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
            echo(f"  done {run.name}: {TASKS[run.task].row_summary(row)} in {row['train_seconds']:.0f}s{stopped}")
        bar.update(1)

    try:
        tasks = fold_groups(pending, fold_batched=fold_batched)
        if executor == "ray":
            if tasks:
                _run_on_ray(tasks, out, jobs=jobs, address=address, overwrite=overwrite, finish=finish)
        elif jobs <= 1:
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


def write_tables(rows: Sequence[dict[str, Any]], out_dir: Path) -> None:
    """table.md and table.csv: each task's table of its rows (`Task.table`; a row without a task
    is text). Rows of several tasks give a section per task in table.md, and one table.csv whose
    first column names the task, with every task's columns. The tables' figures are also drawn
    as a chart (`textcnn.tasks.base.plot_chart`): table.png, or table-<task>.png for each of
    several tasks."""
    by_task = {name: [row for row in rows if row.get("task", "text") == name] for name in TASKS}
    tables = {name: TASKS[name].table(found) for name, found in by_task.items() if found} \
        or {"text": TASKS["text"].table([])}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if len(tables) == 1:
        (table,) = tables.values()
        md = table.markdown
        writer.writerow(table.header)
        writer.writerows(table.rows)
    else:
        columns = list(dict.fromkeys(c for table in tables.values() for c in table.header))
        md = []
        writer.writerow(["task", *columns])
        for name, table in tables.items():
            md += [f"## {TASKS[name].title}", "", *table.markdown, ""]
            for row in table.rows:
                cells = dict(zip(table.header, row))
                writer.writerow([name, *(cells.get(c, "") for c in columns)])
    atomic_write_text(out_dir / "table.md", "\n".join(md).rstrip("\n") + "\n")
    atomic_write_text(out_dir / "table.csv", buf.getvalue())
    charted = {name: table for name, table in tables.items() if table.chart}
    if charted and importlib.util.find_spec("matplotlib") is None:
        warnings.warn("batch: no table.png: drawing it needs matplotlib (pip install 'textcnn[plots]')",
                      stacklevel=2)
        charted = {}
    for name, table in charted.items():  # table.png, or with several tasks table-<task>.png
        plot_chart(table, out_dir / ("table.png" if len(charted) == 1 else f"table-{name}.png"),
                   title=TASKS[name].title)


__all__ = ["RunSpec", "fold_groups", "machine_description", "plan_runs", "read_results", "run_batch",
           "write_tables"]
