"""ONNX export and int8 quantization measured: file size, test accuracy and speed of the torch
model, the ONNX float32 graph and the ONNX int8 graph, for Kim's CNN-rand on MR (fold 0 of the
seeded 10-fold split) and TREC (its test set).

    python scripts/bench_deploy.py      # writes docs/results/deploy/deploy.{json,md}

The two models are trained with the project's recipes (recipes/kim2014/mr.yaml and trec.yaml,
the rand variant) by the batch runner into --work (default runs/deploy; a finished run is
reused, an interrupted one resumes), exported with `textcnn export --quantize int8`, and
measured in this one process with --threads threads (torch and onnxruntime alike):

- size: model.safetensors (torch), model.onnx, model.int8.onnx;
- accuracy on the test split, and how many test predictions differ from torch's;
- batch speed: sentences/s over the whole test split (median of --repeats calls, the three
  runtimes interleaved); single-sentence latency: p50 and p99 over the first 300 test
  sentences, raw text in, probabilities out (torch: the lean single-text path).

A second int8 graph quantizes the convolutions too (onnxruntime's ConvInteger); it is measured
here to show why `--quantize int8` leaves them in float32. The machine's load average is
recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = {"mr": "mr/rand/fold=0", "trec": "trec/rand"}


def shown(path: Path) -> str:
    """`path` relative to the repository where it lies inside it (results files name no machine's folders)."""
    for candidate in (Path(path).absolute(), Path(path).resolve()):  # a linked run folder: its name here
        try:
            return str(candidate.relative_to(REPO))
        except ValueError:
            pass
    return str(path)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def trained_models(work: Path, data_dir: str) -> dict[str, Path]:
    """Train (or reuse) CNN-rand on MR fold 0 and on TREC with the project's recipes; their
    model directories by dataset."""
    from textcnn.batch_runner import run_batch

    os.environ["TEXTCNN_DATA_DIR"] = data_dir
    run_batch([REPO / "recipes/kim2014/mr.yaml", REPO / "recipes/kim2014/trec.yaml"], work,
              only=list(RUNS.values()), overrides=["train.threads=1"], progress=False,
              echo=lambda line: print(line, flush=True))
    return {name: work / "runs" / run / "model" for name, run in RUNS.items()}


def test_split(model_dir: Path) -> tuple[list[str], list]:
    """The test texts and labels of the run that trained `model_dir` (its resolved recipe)."""
    from textcnn.core.config import load_recipe_dict
    from textcnn.pipeline import recipe_splits
    from textcnn.recipe import text_recipe

    recipe = text_recipe(load_recipe_dict(model_dir / "recipe.yaml"), source=model_dir / "recipe.yaml")
    return recipe_splits(recipe.data, seed=recipe.train.seed).test


def latencies_ms(predict, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        predict([text])
        out.append((time.perf_counter() - start) * 1000)
    return out


def measure(name: str, model_dir: Path, work: Path, args) -> dict:
    import numpy as np
    import onnxruntime as ort

    from textcnn import TextCNNClassifier
    from textcnn.core.onnx import quantize_int8
    from textcnn.onnx import OnnxClassifier, export_model

    texts, labels = test_split(model_dir)
    exported = export_model(model_dir, work / "onnx" / name, quantize="int8")
    torch_clf = TextCNNClassifier.load(model_dir)
    runtimes = {"torch": torch_clf,
                "onnx float32": OnnxClassifier(exported, threads=args.threads),
                "onnx int8": OnnxClassifier(exported, int8=True, threads=args.threads)}
    # the alternative: convolutions (and the output layer) in int8 too
    all_int8 = work / "onnx" / f"{name}.all-int8.onnx"
    quantize_int8(exported / "model.onnx", all_int8, op_types=("Gather", "Conv", "Gemm"))
    alternative = OnnxClassifier(exported, threads=args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    alternative._scorer.graph.session = ort.InferenceSession(str(all_int8), options,
                                                             providers=["CPUExecutionProvider"])
    runtimes["onnx int8 (+ convolutions)"] = alternative
    sizes = {"torch": (model_dir / "model.safetensors").stat().st_size,
             "onnx float32": (exported / "model.onnx").stat().st_size,
             "onnx int8": (exported / "model.int8.onnx").stat().st_size,
             "onnx int8 (+ convolutions)": all_int8.stat().st_size}
    truth = np.asarray([str(label) for label in labels])
    rows = {}
    reference = torch_clf.predict_proba(texts)
    for runtime, clf in runtimes.items():
        probs = clf.predict_proba(texts)  # also the warm-up
        predicted = np.asarray([str(c) for c in clf.classes_])[probs.argmax(1)]
        rows[runtime] = {"bytes": sizes[runtime], "accuracy": float((predicted == truth).mean()),
                         "differs_from_torch": int((probs.argmax(1) != reference.argmax(1)).sum()),
                         "max_probability_difference": float(np.abs(probs - reference).max()),
                         "batch": [], "single": []}
    for _ in range(args.repeats):  # interleaved, so that the machine's load falls on all alike
        for runtime, clf in runtimes.items():
            start = time.perf_counter()
            clf.predict_proba(texts)
            rows[runtime]["batch"].append(len(texts) / (time.perf_counter() - start))
            rows[runtime]["single"] += latencies_ms(clf.predict_proba, texts[:300])
    for row in rows.values():
        single = sorted(row.pop("single"))
        row["batch_sentences_per_s"] = statistics.median(row.pop("batch"))
        row["latency_ms_p50"] = statistics.median(single)
        row["latency_ms_p99"] = single[int(0.99 * (len(single) - 1))]
    return {"test_sentences": len(texts), "model_dir": shown(model_dir), "runtimes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TEXTCNN_DATA_DIR", str(REPO.parent / "shared/data/kim2014")))
    parser.add_argument("--work", default=str(REPO / "runs/deploy"), help="training runs and exports")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "docs/results/deploy/deploy"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    models = trained_models(work, args.data_dir)
    load_before = load_average()
    results = {name: measure(name, path, work, args) for name, path in models.items()}
    import onnxruntime

    from textcnn.batch_runner import machine_description

    report = {"workload": "CNN-rand (recipes/kim2014, rand variant): MR fold 0 and TREC",
              "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "machine": machine_description("cpu", args.threads),
              "load_average_before": load_before, "load_average_after": load_average(),
              "results": results, "command": "python scripts/bench_deploy.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"{report['machine']}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"load average (1, 5, 15 min) {load_before} before, {report['load_average_after']} after.", ""]
    for name, result in results.items():
        md += [f"**{name.upper()}** ({result['test_sentences']} test sentences)", "",
               "| runtime | file (MB) | accuracy (%) | predictions unlike torch's | batch sentences/s | "
               "latency p50 (ms) | latency p99 (ms) |", "|---|---|---|---|---|---|---|"]
        for runtime, row in result["runtimes"].items():
            md.append(f"| {runtime} | {row['bytes'] / 1e6:.2f} | {100 * row['accuracy']:.2f} | "
                      f"{row['differs_from_torch']} | {row['batch_sentences_per_s']:.0f} | "
                      f"{row['latency_ms_p50']:.3f} | {row['latency_ms_p99']:.3f} |")
        md.append("")
    md.append(f"Command: `{report['command']}`")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
