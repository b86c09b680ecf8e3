"""Vision benchmarks; writes docs/results/vision.{json,md} and prints the Markdown.

1. LeNet-5 on scikit-learn's digits (recipes/vision/lenet5-digits.yaml, seeded split, best epoch
   on dev): test accuracy >= 98.5 % within 60 s on 2 CPU cores. Also writes the trained model's
   first-layer pictures to docs/img/ (lenet5-filters.png, lenet5-activations.png,
   lenet5-patches.png).
2. ResNet-18 CPU inference at 224x224, batch 8: the registry model against the same network
   written here in plain torch modules (an independent implementation, checked to give the same
   logits with the same weights). Median of several interleaved runs under
   torch.inference_mode with the same thread count; the ratio must be within 1.1.
3. Every family's digits variant trained briefly through the same pipeline (accuracy, seconds).

    .venv/bin/python scripts/bench_vision.py                 # everything
    .venv/bin/python scripts/bench_vision.py --skip-families # parts 1 and 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from textcnn.core.config import apply_overrides, read_yaml
from textcnn.core.io import atomic_write_json, atomic_write_text
from vision import create_model
from vision.pipeline import train_image_recipe, visualize

REPO = Path(__file__).resolve().parents[1]

ACCURACY_GOAL, SECONDS_GOAL, RATIO_GOAL = 0.985, 60.0, 1.1

# Digits variants of every family: recipe, overrides (short runs; see the recipes for defaults).
FAMILIES = [
    ("lenet5_paper", "lenet5-digits.yaml", ["model.name=lenet5_paper"]),
    ("alexnet_small", "vgg-digits.yaml", ["model.name=alexnet_small", "data.size=32",
                                          "train.epochs=20"]),
    ("vgg_small", "vgg-digits.yaml", []),
    ("googlenet_small", "vgg-digits.yaml", ["model.name=googlenet_small"]),
    ("resnet18_small", "resnet-digits.yaml", ["train.epochs=30"]),
]


# -- ResNet-18 in plain torch, written independently of vision/ -----------------------------------


class PlainBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class PlainResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(PlainBasicBlock(cin, cout, stride),
                                        PlainBasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x)).flatten(1)
        return self.fc(x)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy a state dict across by position (both list conv, bn, ..., fc in the same order)."""
    src_items, dst_keys = list(src.state_dict().items()), list(dst.state_dict())
    assert len(src_items) == len(dst_keys), (len(src_items), len(dst_keys))
    mapped = {}
    for (name, value), key in zip(src_items, dst_keys):
        assert value.shape == dst.state_dict()[key].shape, (name, key)
        mapped[key] = value
    dst.load_state_dict(mapped)


def bench_resnet(threads: int, runs: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    registry = create_model("resnet18").eval()
    # Non-trivial batch-norm statistics, so the equality check means something.
    with torch.no_grad():
        for m in registry.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    plain = PlainResNet18().eval()
    copy_weights(registry, plain)
    x = torch.randn(8, 3, 224, 224)
    times: dict[str, list[float]] = {"registry": [], "plain": []}
    with torch.inference_mode():
        diff = (registry(x) - plain(x)).abs().max().item()
        for model in (registry, plain, registry, plain):  # warm-up
            model(x)
        for _ in range(runs):
            for name, model in (("registry", registry), ("plain", plain)):
                t0 = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"threads": threads, "runs": runs, "batch": 8, "size": 224,
            "registry_median_s": round(med["registry"], 4), "plain_median_s": round(med["plain"], 4),
            "ratio": round(med["registry"] / med["plain"], 3), "max_abs_logit_diff": diff,
            "registry_runs_s": [round(t, 4) for t in times["registry"]],
            "plain_runs_s": [round(t, 4) for t in times["plain"]]}


# -- training runs --------------------------------------------------------------------------------


def train(recipe: str, overrides: list[str], out_dir: Path) -> dict:
    data = apply_overrides(read_yaml(REPO / "recipes" / "vision" / recipe), overrides)
    t0 = time.perf_counter()
    outcome = train_image_recipe(data, source=recipe, out_dir=out_dir)
    seconds = time.perf_counter() - t0
    m = outcome.metrics
    return {"recipe": f"recipes/vision/{recipe}", "overrides": overrides, "model": m["model"],
            "parameters": m["parameters"], "epochs": m["epochs_run"], "best_epoch": m["best_epoch"],
            "dev_accuracy": round(m["dev_accuracy"], 4), "test_accuracy": round(m["test_accuracy"], 4),
            "test_examples": m["test_examples"], "seconds": round(seconds, 2),
            "model_dir": str(outcome.model_dir)}


def seed_lines(runs: list[dict]) -> list[str]:
    if len(runs) < 2:
        return []
    accs = [r["test_accuracy"] for r in runs]
    listed = ", ".join(f"{r['test_accuracy']:.4f}" for r in runs)
    return [f"Spread over training seeds 0-{len(runs) - 1} (same split): test accuracy {listed}; "
            f"mean {statistics.mean(accs):.4f}, min {min(accs):.4f}; slowest run "
            f"{max(r['seconds'] for r in runs):.1f} s.", ""]


def markdown(results: dict) -> str:
    lenet, rn = results["lenet5"], results["resnet18_inference"]
    lines = [
        "# Vision benchmarks", "",
        f"Machine: {results['machine']}. Written by `scripts/bench_vision.py`.", "",
        "## LeNet-5 on scikit-learn's digits", "",
        f"`{lenet['recipe']}`: {lenet['parameters']:,} parameters, {lenet['epochs']} epochs, "
        f"best epoch {lenet['best_epoch']} on dev.", "",
        "| test accuracy | goal | seconds (train + test) | goal | dev accuracy | test images |",
        "|---|---|---|---|---|---|",
        f"| {lenet['test_accuracy']:.4f} | >= {ACCURACY_GOAL} | {lenet['seconds']:.1f} | "
        f"<= {SECONDS_GOAL:.0f} | {lenet['dev_accuracy']:.4f} | {lenet['test_examples']} |", "",
        *seed_lines(results["lenet5_seeds"]),
        "## ResNet-18 inference, 224x224, batch 8, CPU", "",
        "| registry (median s) | plain torch (median s) | ratio | goal | runs | threads | "
        "max logit diff |", "|---|---|---|---|---|---|---|",
        f"| {rn['registry_median_s']:.4f} | {rn['plain_median_s']:.4f} | {rn['ratio']:.3f} | "
        f"<= {RATIO_GOAL} | {rn['runs']} | {rn['threads']} | {rn['max_abs_logit_diff']:.1e} |",
    ]
    if results.get("families"):
        lines += ["", "## Every family on digits (short runs)", "",
                  "| model | parameters | input | epochs | dev accuracy | test accuracy | seconds |",
                  "|---|---|---|---|---|---|---|"]
        for r in results["families"]:
            size = "32x32" if any(o in ("data.size=32",) for o in r["overrides"]) \
                or r["model"].startswith("lenet") else "8x8"
            lines.append(f"| {r['model']} | {r['parameters']:,} | {size} | {r['epochs']} | "
                         f"{r['dev_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['seconds']:.1f} |")
    verdict = results["checks"]
    lines += ["", "Checks: " + ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in verdict.items()),
              ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for part 2")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per model in part 2")
    parser.add_argument("--seeds", type=int, default=4,
                        help="LeNet-5 runs with training seeds 0..N-1 on the same split (spread)")
    parser.add_argument("--skip-families", action="store_true", help="skip part 3")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--img", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()

    results: dict = {"machine": f"{os.cpu_count()} CPU cores visible, torch "
                                f"{torch.__version__}, {torch.get_num_threads()} default threads"}
    with tempfile.TemporaryDirectory(prefix="bench_vision_") as tmp:
        work = Path(tmp)
        lenet = train("lenet5-digits.yaml", [], work / "lenet5")
        results["lenet5"] = lenet
        pictures = visualize(lenet["model_dir"], work / "pictures", filters=(0, 1, 2, 3, 4, 5),
                             samples=6)
        args.img.mkdir(parents=True, exist_ok=True)
        for path in pictures:
            shutil.copyfile(path, args.img / f"lenet5-{path.name}")
        results["lenet5_seeds"] = [
            {"seed": 0, "test_accuracy": lenet["test_accuracy"], "seconds": lenet["seconds"]}]
        for seed in range(1, args.seeds):
            run = train("lenet5-digits.yaml", [f"train.seed={seed}"], work / f"lenet5-{seed}")
            results["lenet5_seeds"].append({"seed": seed, "test_accuracy": run["test_accuracy"],
                                            "seconds": run["seconds"]})
        results["resnet18_inference"] = bench_resnet(args.threads, args.runs)
        if not args.skip_families:
            results["families"] = [train(recipe, sets, work / name)
                                   for name, recipe, sets in FAMILIES]
    for r in [results["lenet5"], *results.get("families", [])]:
        r.pop("model_dir")
    results["checks"] = {
        "lenet5 accuracy": results["lenet5"]["test_accuracy"] >= ACCURACY_GOAL,
        "lenet5 seconds": results["lenet5"]["seconds"] <= SECONDS_GOAL,
        "resnet18 ratio": results["resnet18_inference"]["ratio"] <= RATIO_GOAL,
        "resnet18 same logits": results["resnet18_inference"]["max_abs_logit_diff"] < 1e-3,
    }
    text = markdown(results)
    atomic_write_json(args.results / "vision.json", results)
    atomic_write_text(args.results / "vision.md", text)
    print(text)
    return 0 if all(results["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
