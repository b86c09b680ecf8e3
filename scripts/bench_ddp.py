"""Data-parallel training throughput: one process against two ranks (torch's launcher, gloo).

    python scripts/bench_ddp.py                       # CPU: 1 process (1 and all threads) vs 2 ranks
    python scripts/bench_ddp.py --repeats 5 --out docs/results/ddp/cpu.json
    python scripts/bench_ddp.py --device cuda         # on a GPU machine: 1 GPU, 1 process vs 2 ranks
                                                      # sharing it (gloo, TEXTCNN_DIST_BACKEND)

Each setting trains a recipe through the real command line (`textcnn train`, with `--nproc 2`
for the ranks) into a fresh folder and reads the engine's loop time from results.json, so start-up
is left out; examples per second are training examples x epochs / loop time (the loop includes
rank 0's dev evaluation, as every run does); every process starts with OMP_NUM_THREADS set to its
torch threads (on a loaded machine an OpenMP pool larger than the threads in use costs much).
Settings are interleaved, `--repeats` times, and the
median is reported with the load average before and after. The ranks split each batch of the same
plan, so with dropout off and float32 products their weights are those of one process: the largest
difference is reported beside the figures.

Workloads (self-contained, the data ships with the project or scikit-learn):
  kim-rand: Kim's CNN-rand (fast path) on data/sample (recipes/quickstart.yaml, dropout 0);
  lenet5: LeNet-5 on scikit-learn's digits (recipes/vision/lenet5-digits.yaml, no augmentation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "kim-rand": ("recipes/quickstart.yaml", ["model.dropout=0.0", "train.epochs=4", "train.amp=false"]),
    "lenet5": ("recipes/vision/lenet5-digits.yaml", [
        "train.epochs=4", "augment.crop_padding=0", "augment.noise_std=0.0", "train.amp=false"]),
}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def train(recipe: str, sets: list[str], out: Path, *, nproc: int, threads: int | None,
          device: str) -> dict:
    """One training run through the CLI; its results.json."""
    command = [sys.executable, "-m", "textcnn", "train", str(REPO / recipe), "--out", str(out)]
    for item in [*sets, "train.progress=false"] + ([f"train.threads={threads}"] if threads else []):
        command += ["--set", item]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if threads:  # the OpenMP pool is sized at start-up: the same rule for one process and the ranks
        env["OMP_NUM_THREADS"] = str(threads)
    if device == "cuda" and nproc > 1:  # ranks sharing one GPU: nccl refuses that, gloo does not
        env["TEXTCNN_DIST_BACKEND"] = "gloo"
        device = "cuda:0"  # `cuda` would be each rank's own GPU, cuda:LOCAL_RANK
    command += ["--set", f"train.device={device}"]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads((out / "results.json").read_text())


def weights_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].numel())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    # (label, ranks, torch threads per process); on a GPU both settings share one device
    settings = [("1 process, 1 thread", 1, 1), (f"1 process, {cores} threads", 1, cores),
                (f"2 ranks, {max(1, cores // 2)} thread(s) each", 2, max(1, cores // 2))]
    if args.device == "cuda":
        settings = [("1 process, 1 GPU", 1, None), ("2 ranks on 1 GPU", 2, None)]
    report = {"device": args.device, "cores": cores, "repeats": args.repeats, "load_before": load(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "workloads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads.split(","):
            recipe, sets = WORKLOADS[name]
            seconds: dict[str, list[float]] = {label: [] for label, *_ in settings}
            examples = 0
            for repeat in range(args.repeats):
                for label, nproc, threads in settings:
                    out = Path(tmp) / f"{name}-{repeat}-{nproc}-{threads}"
                    results = train(recipe, sets, out, nproc=nproc, threads=threads, device=args.device)
                    seconds[label].append(results["train_seconds"])
                    examples = results["train_examples"] * results["epochs_run"]
            last = args.repeats - 1
            single, ranks = (Path(tmp) / f"{name}-{last}-{n}-{t}" for _, n, t in (settings[0], settings[-1]))
            rows = {label: {"median_seconds": statistics.median(s), "seconds": s,
                            "examples_per_second": round(examples / statistics.median(s), 1)}
                    for label, s in seconds.items()}
            report["workloads"][name] = {"recipe": recipe, "sets": sets, "examples": examples,
                                         "settings": rows,
                                         "max_weight_difference_2_ranks_vs_1": weights_difference(ranks, single)}
            print(f"{name}: {examples} examples", flush=True)
            for label, row in rows.items():
                print(f"  {label:28s} {row['examples_per_second']:10.1f} examples/s "
                      f"(median of {args.repeats}: {row['median_seconds']:.2f} s)")
            print(f"  largest weight difference, 2 ranks vs 1 process: "
                  f"{report['workloads'][name]['max_weight_difference_2_ranks_vs_1']:.2e}")
    report["load_after"] = load()
    print(f"load average before {report['load_before']}, after {report['load_after']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
