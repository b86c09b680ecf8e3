"""The `textcnn` command line: a thin layer over the library.

Library errors (`TextCNNError`), failed reads or writes (`OSError`: a read-only or full disk,
an output path under a file) and click's usage errors (an unknown option, a value out of range)
become one-line messages with exit code 2, and no traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click

from textcnn import __version__
from textcnn.core.errors import TextCNNError
from textcnn.core.memory import keep_freed_memory


class UserError(click.ClickException):
    """A bad input: printed as one line, exit code 2."""

    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C (SIGINT) during training: one line, exit code 130 (128 + SIGINT)."""

    exit_code = 130


def os_error_line(exc: OSError) -> str:
    """An operating-system error as one line that names the path."""
    where = exc.filename if exc.filename is not None else "output"
    if exc.errno == errno.EEXIST and Path(where).is_file():  # making a folder where a file is
        return f"{where}: expected a folder, got a file"
    reason = exc.strerror or str(exc)
    line = f"{where}: cannot read or write it: {reason}"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        line += " (free some space and rerun: finished epochs are kept and resume)"
    return line


def user_errors(func):
    """Turn library errors and OS errors into `UserError` at the CLI boundary."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TextCNNError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(os_error_line(exc)) from None
    return wrapper


class OneLineUsageError(click.UsageError):
    """A usage error of click's own (a value out of range, an unknown option, a missing argument)
    shown as the one line the CLI promises, with the command's help as a hint."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: IO[str] | None = None) -> None:
        where = self.ctx.command_path if self.ctx is not None else "textcnn"
        message = self.format_message().removesuffix(".")
        click.echo(f"Error: {message} (see '{where} --help')", file=file, err=file is None)


@contextlib.contextmanager
def one_line_usage():
    """Re-raise click's usage errors as `OneLineUsageError` (a bare group still shows its help)."""
    try:
        yield
    except (OneLineUsageError, getattr(click.exceptions, "NoArgsIsHelpError", OneLineUsageError)):
        raise
    except click.UsageError as exc:
        raise OneLineUsageError(exc) from None


class Group(click.Group):
    """A command group whose usage errors, at any depth, are one line with exit code 2."""

    group_class = type  # subgroups (`data`) are of this class too

    def make_context(self, *args, **kwargs) -> click.Context:
        with one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with one_line_usage():
            return super().invoke(ctx)


def progress_bars() -> bool:
    """Progress bars only on a terminal: in a log or a pipe, standard error keeps to messages."""
    return sys.stderr.isatty()


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="textcnn")
def main() -> None:
    """Kim (2014) sentence CNNs, classic image CNNs and detectors on one CNN core.

    \b
    Example:
      textcnn train recipes/quickstart.yaml --out runs/quickstart
      textcnn predict runs/quickstart/model "a warm , funny and moving film"
    """
    keep_freed_memory()  # the CLI owns its process (see textcnn.core.memory)


@main.command(context_settings=CONTEXT)
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set model.dropout=0.3 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory [runs/<recipe name>].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device [recipe's, auto].")
@click.option("--seed", type=int, help="Seed for splits, initialisation and shuffling.")
@click.option("--overwrite", is_flag=True, help="Replace a different run already in --out (without "
              "it, the same run resumes and a different one is refused).")
@click.option("--nproc", type=click.IntRange(min=1), help="Train data-parallel in N local processes "
              "started by torch's launcher (torch.distributed.run; gloo on CPU, nccl on CUDA); "
              "train.batch_size is the global batch, shared among them [1].")
@user_errors
def train(recipe: str, overrides: tuple[str, ...], out: str | None, device: str | None,
          seed: int | None, overwrite: bool, nproc: int | None) -> None:
    """Train the model a RECIPE describes; write it, its metrics and the resolved recipe.

    An --out that holds the same run (same resolved recipe and data) resumes it; one that holds
    another run is refused, naming the first difference, unless --overwrite. Under torchrun
    (or with --nproc) every process trains a share of each batch and rank 0 writes the run.

    \b
    Example:
      textcnn train recipes/quickstart.yaml --set train.epochs=5 --out runs/qs
      textcnn train recipes/vision/lenet5-digits.yaml --nproc 2
      torchrun --nproc-per-node 2 -m textcnn train recipes/quickstart.yaml
    """
    from textcnn.core.distributed import is_main_process, launched_world_size
    from textcnn.core.rundir import time_note
    from textcnn.tasks import train_from_recipe

    sets = list(overrides)
    if device:
        sets.append(f"train.device={device}")
    if seed is not None:
        sets.append(f"train.seed={seed}")
    if nproc is not None and nproc > 1:
        if launched_world_size() > 1:
            raise UserError(f"--nproc: expected no --nproc under torchrun (it started "
                            f"{launched_world_size()} processes already), got --nproc {nproc}")
        sys.exit(_launch_train(recipe, sets, nproc=nproc, out_dir=out, overwrite=overwrite))
    try:
        result = train_from_recipe(recipe, sets, out_dir=out, overwrite=overwrite)
    except KeyboardInterrupt:
        if not is_main_process():  # rank 0 says it for every rank
            sys.exit(Interrupted.exit_code)
        raise Interrupted("interrupted: the finished epochs are kept; rerun the same command to "
                          "resume") from None
    except TextCNNError as exc:
        rank = None if is_main_process() else os.environ.get("RANK")
        raise UserError(f"rank {rank}: {exc}" if rank else str(exc)) from None
    finally:
        from textcnn.core.distributed import leave_process_group

        leave_process_group()
    if not is_main_process():  # rank 0 reports the run
        return
    click.echo(result.summary())
    note = time_note(result.metrics)
    if note:
        click.echo(note, err=True)


def _launch_train(recipe: str, sets: list[str], *, nproc: int, out_dir: str | None,
                  overwrite: bool) -> int:
    """`textcnn train RECIPE` in `nproc` local processes through torch's own launcher
    (`torch.distributed.run`, a standalone rendezvous on a free port); returns the exit code.
    The recipe is checked here first, so a bad key is one line before any process starts."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from textcnn.core.config import load_recipe_dict
    from textcnn.tasks import task_for_recipe

    data = load_recipe_dict(recipe, sets)
    task_for_recipe(data, source=recipe).check(data, source=recipe)
    command = ["train", recipe, *(a for s in sets for a in ("--set", s))]
    command += ["--out", out_dir] if out_dir else []
    command += ["--overwrite"] if overwrite else []
    # the cores shared among the workers (torchrun's own default is one thread each)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "textcnn", *command])
    try:
        run(args)
    except ChildFailedError as exc:  # the failing rank has printed its one-line error
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    except (KeyboardInterrupt, SignalException):  # the workers stopped; rank 0 has said so
        return Interrupted.exit_code
    return 0


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_file", help="Labelled file (any supported format); for an image model, "
              "an image folder or dataset [the test split of its own data].")
@click.option("--format", "data_format", help="Text model: kim, sst, csv, tsv, json, jsonl, parquet, hub or "
              "folders [guessed].")
@click.option("--text-column", help="Text model: the table's text column [the training recipe's "
              "data.text_column, else text].")
@click.option("--label-column", help="Text model: the table's label column [the training recipe's "
              "data.label_column, else label].")
@click.option("--label-separator", metavar="SEP", help="Multi-label text model: the separator of a "
              "text's labels in a CSV/TSV label column [the training recipe's data.label_separator].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the confusion matrix as PNG "
              "(multi-label: each label's precision, recall and F1).")
@user_errors
def evaluate(model: str, data_file: str | None, data_format: str | None, text_column: str | None,
             label_column: str | None, label_separator: str | None, as_json: bool, plot: str | None) -> None:
    """Evaluate MODEL on labelled data: accuracy, macro-F1, per-class report, confusion matrix
    (a multi-label model: micro-, macro- and samples-F1, subset accuracy, Hamming loss, per label).

    \b
    Example:
      textcnn evaluate runs/quickstart/model --data data/sample/test.csv --plot cm.png
      textcnn evaluate runs/lenet5-digits/model
      textcnn evaluate runs/ssd-shapes/model --json
    """
    from textcnn.tasks import task_for_model

    task = task_for_model(model)
    if plot and task.role == "detector":
        raise UserError("--plot: a detector has no confusion matrix; draw detections with "
                        "`textcnn predict MODEL IMAGE --out DIR`")
    report = task.evaluate(model, data_file, data_format=data_format, text_column=text_column,
                           label_column=label_column, label_separator=label_separator)
    click.echo(json.dumps(report, indent=2) if as_json else task.format_report(report))
    if plot:
        task.plot_report(report, plot)


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", type=click.Path(dir_okay=False, allow_dash=True, exists=True),
              help="Read one text (or image file) per line from FILE ('-' for standard input); "
              "read, predicted and written a chunk at a time.")
@click.option("--encoding", help="Text encoding of --input, e.g. latin-1 or cp1252 [utf-8].")
@click.option("--top-k", type=click.IntRange(min=1), help="Classifier: show the K most probable labels [1]; "
              "multi-label: they are the label set (with --threshold/--thresholds, those reaching it).")
@click.option("--format", "out_format", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), help="Classifier: abstain (label null, "
              "'(abstain)' in text) where the top probability is below P; multi-label: the labels "
              "reaching P [the thresholds tuned on dev data, else the model's threshold].", metavar="P")
@click.option("--thresholds", "thresholds_file", type=click.Path(dir_okay=False),
              help="Multi-label classifier: a JSON file {label: threshold} of per-label thresholds "
              "(over --threshold or the model's own).")
@click.option("--abstain", metavar="LABEL", help="Classifier, with --threshold: the label to give "
              "instead of null.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Detector: write each image with its boxes drawn and detections.json here.")
@click.option("--score-threshold", type=click.FloatRange(0, 1),
              help="Detector: keep detections scoring at least this [0.5].")
@user_errors
def predict(model: str, texts: tuple[str, ...], input_file: str | None, encoding: str | None,
            top_k: int | None, out_format: str, threshold: float | None, thresholds_file: str | None,
            abstain: str | None, out_dir: str | None, score_threshold: float | None) -> None:
    """Predict labels with probabilities for TEXTS (or lines of --input); for an image model,
    TEXTS are image files; for a detector, image files whose boxes it finds.

    Results are written as they come, a chunk of inputs at a time. With --threshold, text
    output starts with the decision (the label, or '(abstain)') and JSON lines carry "label".

    \b
    Example:
      textcnn predict runs/quickstart/model "a dull , lifeless film" --top-k 2
      echo "great acting" | textcnn predict runs/quickstart/model --input - --format jsonl
      textcnn predict runs/quickstart/model --input reviews.txt --threshold 0.8 --abstain unsure
      textcnn predict runs/multilabel/model "a tense , funny thriller" --thresholds thresholds.json
      textcnn predict runs/ssd-shapes/model shapes.png --out detections/
    """
    import itertools

    from textcnn.core.streaming import read_lines
    from textcnn.tasks import PredictOptions, task_for_model

    if not texts and input_file is None:
        raise UserError("predict: expected TEXT arguments or --input FILE, got neither")
    if encoding is not None and input_file is None:
        raise UserError(f"--encoding: applies to --input FILE, which was not given (got --encoding {encoding})")
    task = task_for_model(model)
    if task.role == "detector":
        for given, option in ((threshold, "--threshold"), (abstain, "--abstain"), (top_k, "--top-k"),
                              (thresholds_file, "--thresholds")):
            if given is not None:
                raise UserError(f"{option}: is for classifiers; {model} is a detector"
                                + (" (use --score-threshold)" if option == "--threshold" else ""))
    else:
        for given, option in ((score_threshold, "--score-threshold"), (out_dir, "--out")):
            if given is not None:
                raise UserError(f"{option}: is for detectors; {model} is a classifier"
                                + (" (use --threshold)" if option == "--score-threshold" else ""))
    with contextlib.ExitStack() as stack:
        items: Iterable[str] = texts
        if input_file is not None:
            stream = stack.enter_context(click.open_file(input_file, "rb"))
            items = itertools.chain(texts, read_lines(stream, encoding=encoding or "utf-8",
                                                      name="<stdin>" if input_file == "-" else input_file))
        thresholds = None if thresholds_file is None else read_thresholds(thresholds_file)
        options = PredictOptions(top_k=top_k, threshold=threshold, abstain=abstain, thresholds=thresholds,
                                 score_threshold=score_threshold, out_dir=out_dir, out_format=out_format)
        for line in task.prediction_lines(model, items, options):
            click.echo(line)
    if out_dir:
        click.echo(f"drawn images and detections.json in {out_dir}", err=True)


def read_thresholds(path: str) -> dict[str, float]:
    """A `--thresholds` file: a JSON object {label: threshold}; anything else is one line naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: expected a JSON file {{label: threshold}}, got no such file") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: expected a JSON object {{label: threshold}}, got invalid JSON "
                        f"({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a JSON object {{label: threshold}} with a label, got "
                        f"{json.dumps(data)[:60]}")
    return data


@main.command(context_settings=CONTEXT)
@click.argument("recipes", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Batch directory: results.jsonl, table.md, table.csv, runs/.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel worker processes.")
@click.option("--folds", type=click.IntRange(min=1), help="Run only the first N folds of CV datasets.")
@click.option("--only", metavar="GLOB", multiple=True,
              help="Run only runs whose name matches GLOB, e.g. 'mr/rand/*' (repeatable: any match).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key in every recipe and run, over the runs' own values in expand (repeatable).")
@click.option("--seeds", metavar="N,N,...", help="Repeat every run once per training seed, e.g. 0,1,2 "
              "(the table averages over them).")
@click.option("--fold-batched", is_flag=True, help="Train the Kim CNN folds of each cross-validation "
              "recipe as one batched model (fast on a GPU, slower on a CPU).")
@click.option("--overwrite", is_flag=True, help="Rerun runs whose recipe or data changed since they "
              "were written to --out, replacing their rows (without it they are refused).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where runs train: local worker processes (--jobs), or tasks on a Ray cluster "
              "(pip install 'textcnn[cluster]').")
@click.option("--address", metavar="ADDRESS", help="--executor ray: the cluster, e.g. "
              "ray://HOST:10001 (Ray Client) or auto [a local Ray instance with --jobs CPUs].")
@user_errors
def batch(recipes: tuple[str, ...], out: str, jobs: int, folds: int | None, only: tuple[str, ...],
          overrides: tuple[str, ...], seeds: str | None, fold_batched: bool, overwrite: bool,
          executor: str, address: str | None) -> None:
    """Run every run of RECIPES (files or directories; text, image or detection) and tabulate
    the results, a table per task.

    Resumable: rerun with the same --out and finished runs (same recipe and data) are skipped;
    runs that changed are refused, naming the first difference, unless --overwrite.

    \b
    Example:
      textcnn batch recipes/kim2014 --out runs/kim2014 --folds 1 --set train.epochs=2
      textcnn batch recipes/kim2014/trec.yaml --out runs/trec --only 'trec/rand' --seeds 0,1,2
      textcnn batch recipes/kim2014/mr.yaml --out runs/mr --only 'mr/rand/*' --fold-batched \\
        --set train.device=cuda
      textcnn batch recipes/vision --out runs/vision --only 'lenet5*' --only 'ssd*'
      textcnn batch recipes/kim2014 --out /shared/runs/kim2014 --executor ray --address ray://head:10001
    """
    from textcnn.batch_runner import run_batch

    if address is not None and executor != "ray":
        raise UserError(f"--address: applies to --executor ray, got --executor {executor}")

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds else []
    except ValueError:
        raise UserError(f"--seeds: expected comma-separated integers such as 0,1,2, got '{seeds}'") from None
    try:
        run_batch(recipes, out, jobs=jobs, folds=folds, only=only, overrides=overrides,
                  seeds=seed_list, fold_batched=fold_batched, overwrite=overwrite, echo=click.echo,
                  progress=progress_bars(), executor=executor, address=address)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: finished runs are kept; rerun the same command to resume "
                          "the others") from None
    click.echo(Path(out, "table.md").read_text(encoding="utf-8"))


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where the pictures go.")
@click.option("--data", "data_file", help="Text model: texts to read n-grams from (required). "
              "Image model: images to show [its own test split].")
@click.option("--maps", default="0,1,2,3", show_default=True, help="Feature maps / filters to show.")
@click.option("--samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Image model: inputs whose activation maps are drawn.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Text model: n-grams listed per feature map.")
@user_errors
def visualize(model: str, out: str, data_file: str | None, maps: str, samples: int, top: int) -> None:
    """Show what MODEL's filters respond to (Zeiler & Fergus), as PNG and Markdown files.

    \b
    Example:
      textcnn visualize runs/lenet5-digits/model --out viz/lenet5
      textcnn visualize runs/quickstart/model --out viz/qs --data data/sample/train.csv
    """
    from textcnn.tasks import task_for_model

    try:
        chosen = tuple(int(m) for m in maps.split(",") if m.strip())
    except ValueError:
        raise UserError(f"--maps: expected comma-separated integers such as 0,1,2, got '{maps}'") from None
    task = task_for_model(model)
    for path in task.visualize(model, out, data_file=data_file, maps=chosen, samples=samples, top=top):
        click.echo(path)


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "export_format", type=click.Choice(["onnx"]), default="onnx",
              show_default=True, help="What to export to.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The exported directory (an older export there is replaced).")
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write model.int8.onnx "
              "(onnxruntime's dynamic int8 quantization).")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True,
              help="ONNX opset of the graph.")
@user_errors
def export(model: str, export_format: str, out: str, quantize: str | None, opset: int) -> None:
    """Export a text or image classifier MODEL as ONNX: model.onnx beside its tokenizer, labels
    and configuration, for onnxruntime (`textcnn.onnx.OnnxClassifier`) or `textcnn serve`.

    Needs `pip install 'textcnn[onnx]'`. Detectors are not exported.

    \b
    Example:
      textcnn export runs/quickstart/model --format onnx --out deploy/quickstart
      textcnn export runs/mr/model --out deploy/mr --quantize int8
    """
    from textcnn.onnx import export_model

    path = export_model(model, out, format=export_format, quantize=quantize, opset=opset)
    files = sorted(p.name for p in Path(path).iterdir())
    click.echo(f"exported {model} to {path}: {', '.join(files)}")


@main.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="0: a free port, named in the first line the server prints.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default="auto",
              show_default=True, help="auto: onnx for an exported directory, else torch.")
@click.option("--int8", is_flag=True, help="ONNX: serve model.int8.onnx.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per worker for torch or "
              "onnxruntime [their default].")
@click.option("--max-items", type=click.IntRange(min=1), default=256, show_default=True,
              help="Inputs per request; more get 413.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="Request body bytes; more get 413.")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long a micro-batch waits for more requests.")
@click.option("--max-batch", type=click.IntRange(min=1), default=512, show_default=True,
              help="Inputs per micro-batch.")
@user_errors
def serve(model: str, host: str, port: int, workers: int, runtime: str, int8: bool,
          threads: int | None, max_items: int, max_bytes: int, batch_wait_ms: float,
          max_batch: int) -> None:
    """Serve MODEL (a model directory, or one `textcnn export` wrote) over HTTP: POST /predict
    {"texts": [...], "top_k": k} (image models: "images", base64 files), GET /health, GET /info,
    OpenAPI docs at /docs. SIGTERM or Ctrl-C finish the requests in flight, then exit 0.

    Needs `pip install 'textcnn[serve]'`.

    \b
    Example:
      textcnn serve runs/quickstart/model --port 8000
      textcnn serve deploy/mr --int8 --workers 2
      curl -s localhost:8000/predict -d '{"texts": ["a fine film"], "top_k": 2}'
    """
    from textcnn.serve import ServeSettings, require_server
    from textcnn.serve import serve as run_server

    require_server()
    settings = ServeSettings(model=model, runtime=runtime, int8=int8, max_items=max_items,
                             max_bytes=max_bytes, batch_wait_ms=batch_wait_ms, max_batch=max_batch,
                             threads=threads)
    run_server(settings, host=host, port=port, workers=workers, echo=lambda line: click.echo(line, err=True))


@main.group(context_settings=CONTEXT)
def data() -> None:
    """Benchmark data: download or copy it, checking every file's SHA-256.

    \b
    Example:
      textcnn data fetch kim2014 --dest data/kim2014
    """


@data.command("fetch", context_settings=CONTEXT)
@click.argument("name", type=click.Choice(["kim2014", "sst", "20ng"]))
@click.option("--dest", type=click.Path(file_okay=False),
              help="Where the files go [data/kim2014, data/sst or data/20ng].")
@click.option("--from", "source", metavar="DIR_OR_URL",
              help="A local mirror (folder or zip) or a base URL instead of the public address.")
@user_errors
def fetch_command(name: str, dest: str | None, source: str | None) -> None:
    """Fetch the NAME files (kim2014: Kim's 12 files; sst: the SST trees; 20ng: 20 Newsgroups'
    by-date archive, unpacked beside it) and verify them.

    Files already present with the right checksum are kept.

    \b
    Example:
      textcnn data fetch kim2014 --dest data/kim2014 --from ../shared/data/kim2014
      textcnn data fetch sst --dest data/sst
      textcnn data fetch 20ng --dest data/20ng --from ../shared/data/20news
    """
    from textcnn.fetch import fetch

    report = fetch(name, dest=dest or Path("data") / name, source=source, progress=progress_bars())
    unpacked = f", {len(report.extracted)} folders unpacked" if report.extracted else ""
    click.echo(f"{name}: {len(report.fetched)} fetched, {len(report.skipped)} already in place{unpacked}, "
               f"in {report.dest}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
