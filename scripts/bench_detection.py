"""Detection benchmark: the five detectors on the synthetic shapes data; writes
docs/results/detection.{json,md} and prints the Markdown.

1. Each detector's recipe (recipes/vision/<detector>-shapes.yaml) is trained for its epochs,
   capped at a budget of 15 minutes on the machine's CPU cores (`--set train.max_seconds=870`;
   720 for R-CNN, whose SVM stage counts in the train time; a run the cap cut short records
   `stopped_by: time`), selected on the val split, and evaluated once on the fixed test split:
   VOC mAP@0.5 (goal >= 0.90 for Faster R-CNN, SSD and YOLO v1, >= 0.70 for R-CNN and Fast
   R-CNN) and COCO mAP@[.5:.95].
2. Per-image detection time of the five trained detectors on the same test images: batch 1,
   median and p90 over the images, after a warm-up, with the same thread count for all.

Resumable: a detector already in the JSON is not retrained (`--force` retrains it); `--only`
picks detectors.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_detection.py
    .venv/bin/python scripts/bench_detection.py --only ssd --only yolo_v1 --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from textcnn.batch_runner import machine_description
from textcnn.core.config import apply_overrides, read_yaml
from textcnn.core.io import atomic_write_json, atomic_write_text
from textcnn.core.memory import keep_freed_memory
from vision.detection.pipeline import (
    detection_recipe,
    load_detection_splits,
    load_detector,
    train_detection_recipe,
)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "results"
BUDGET_SECONDS = 15 * 60
# the cap on each detector's training loop, within the budget (R-CNN's SVM stage comes after it)
MAX_SECONDS = {"rcnn": 720}
DEFAULT_MAX_SECONDS = 870

# detector, recipe, mAP@0.5 goal; in the order of the history (and of the expected time per image)
DETECTORS = [
    ("rcnn", "rcnn-shapes.yaml", 0.70),
    ("fast_rcnn", "fast-rcnn-shapes.yaml", 0.70),
    ("faster_rcnn", "faster-rcnn-shapes.yaml", 0.90),
    ("yolo_v1", "yolo-shapes.yaml", 0.90),
    ("ssd", "ssd-shapes.yaml", 0.90),
]


def train_one(name: str, recipe_file: str, runs: Path, threads: int, overrides: list[str]) -> dict:
    """Train one detector within the budget; its results.json row plus the run directory."""
    path = REPO / "recipes" / "vision" / recipe_file
    cap = f"train.max_seconds={MAX_SECONDS.get(name, DEFAULT_MAX_SECONDS)}"
    data = apply_overrides(read_yaml(path), [f"train.threads={threads}", "train.progress=false", cap,
                                             *overrides])
    recipe = detection_recipe(data, source=str(path))
    if recipe.train.max_seconds is None or recipe.train.max_seconds > BUDGET_SECONDS:
        raise SystemExit(f"{path}: train.max_seconds must be set and at most {BUDGET_SECONDS}")
    # a fresh run directory: a measurement never resumes an earlier run
    shutil.rmtree(runs / name, ignore_errors=True)
    outcome = train_detection_recipe(data, source=str(path), out_dir=runs / name)
    m = outcome.metrics
    return {"detector": name, "recipe": f"recipes/vision/{recipe_file}", "model_dir": _relative(outcome.model_dir),
            "map_50": m["test_map_50"], "coco_map": m.get("test_coco_map"), "ap_50": m["test_ap_50"],
            "train_seconds": m["train_seconds"], "post_fit_seconds": m["post_fit_seconds"],
            "epochs_run": m["epochs_run"], "stopped_by": m["stopped_by"], "best_epoch": m["best_epoch"],
            "val_map_50": m.get("val_map_50"),
            "parameters": m["parameters"], "seed": m["seed"]}


def _relative(path: Path) -> str:
    """`path` relative to the repository when inside it (the JSON is committed)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def time_per_image(model_dir: str, images: list[torch.Tensor], warmup: list[torch.Tensor]) -> dict:
    """Seconds per image, batch 1, inference mode: `median_ms`/`p90_ms` from a freshly loaded
    model (selective search runs for every image), and `network_median_ms` from a second pass
    over the same images, when R-CNN's and Fast R-CNN's proposals come from their cache: the
    time excluding proposals, as the Fast R-CNN paper reports it. It warms up on other images."""
    model, _ = load_detector(model_dir)

    def timed() -> list[float]:
        times = []
        for img in images:
            t0 = time.perf_counter()
            model([img])
            times.append(time.perf_counter() - t0)
        return sorted(times)

    with torch.inference_mode():
        for img in warmup:
            model([img])
        total, cached = timed(), timed()
    return {"median_ms": 1000 * statistics.median(total), "p90_ms": 1000 * total[int(0.9 * (len(total) - 1))],
            "network_median_ms": 1000 * statistics.median(cached), "images": len(total)}


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", "",
             "| detector | mAP@0.5 (test) | goal | COCO mAP@[.5:.95] | train s (budget 900) | epochs | "
             "ms / image (median) | ms / image (p90) | ms / image excluding proposals |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, _, goal in DETECTORS:
        r = results["detectors"].get(name)
        if r is None:
            lines.append(f"| {name} | not run | {goal:.2f} | | | | | | |")
            continue
        t = results.get("timing", {}).get(name, {})
        ok = "met" if r["map_50"] >= goal else "missed"
        coco = f"{r['coco_map']:.3f}" if r.get("coco_map") is not None else "–"
        lines.append(f"| {name} | {r['map_50']:.3f} ({ok}) | {goal:.2f} | {coco} | {r['train_seconds']:.0f} | "
                     f"{r['epochs_run']} | {t.get('median_ms', float('nan')):.1f} | {t.get('p90_ms', float('nan')):.1f} | "
                     f"{t.get('network_median_ms', float('nan')):.1f} |")
    lines += ["", f"Test split: {results.get('test_images', '?')} synthetic shapes images "
              "(96x96, fixed seed); timing on the first "
              f"{results.get('timing_images', '?')} of them, batch 1, {results['threads']} thread(s); "
              "'excluding proposals' is a second pass over the same images with R-CNN's and Fast "
              "R-CNN's selective-search boxes cached (the others have no separate proposal stage)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    keep_freed_memory()  # as the CLI does (textcnn/core/memory.py)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="detector names (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain detectors already measured")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing-images", type=int, default=50)
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench-detection"))
    parser.add_argument("--out", default=str(OUT / "detection"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override for every detector (smoke runs), e.g. data.train_images=16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    results = {"detectors": {}, "timing": {}}
    if json_path.is_file():
        import json

        results = json.loads(json_path.read_text())
    results.update(machine=f"{machine_description('cpu', args.threads)}, torch {torch.__version__}",
                   threads=args.threads)
    chosen = [d for d in DETECTORS if not args.only or d[0] in args.only]
    for name, recipe_file, _ in chosen:
        if name in results["detectors"] and not args.force:
            print(f"{name}: already measured (use --force to retrain)")
            continue
        print(f"{name}: training ...", flush=True)
        results["detectors"][name] = train_one(name, recipe_file, Path(args.runs), args.threads, args.overrides)
        atomic_write_json(json_path, results)
        print(f"{name}: mAP@0.5 {results['detectors'][name]['map_50']:.3f} in "
              f"{results['detectors'][name]['train_seconds']:.0f} s", flush=True)
    # timing on the same images for every trained detector
    first = next(iter(results["detectors"].values()), None)
    if first is not None:
        data = apply_overrides(read_yaml(REPO / first["recipe"]), args.overrides)
        section = detection_recipe(data, source=first["recipe"]).data
        test = load_detection_splits(section)[2]
        count = min(args.timing_images, len(test) - 3)
        images = [test.images[i] for i in range(count)]
        warmup = [test.images[i] for i in range(count, count + 3)]
        results.update(test_images=len(test), timing_images=len(images))
        for name, _, _ in DETECTORS:
            r = results["detectors"].get(name)
            if r is not None and (REPO / r["model_dir"]).is_dir() and (args.only is None or name in args.only
                                                                     or name not in results["timing"]):
                results["timing"][name] = time_per_image(str(REPO / r["model_dir"]), images, warmup)
                print(f"{name}: {results['timing'][name]['median_ms']:.1f} ms / image", flush=True)
    atomic_write_json(json_path, results)
    md = markdown(results)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
