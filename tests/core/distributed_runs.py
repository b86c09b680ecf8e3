"""Training runs for tests/core/test_distributed.py, the same code in one process and under
torchrun: `python -m torch.distributed.run --standalone --nproc-per-node 2 distributed_runs.py
OUT` runs every scenario as two gloo ranks; the test imports this file and runs them in one
process. Each scenario writes into OUT/<scenario> (rank 0's run folder; rank 1 of `lenet5`
writes to another folder, as on another machine, which must stay absent)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from textcnn.core.engine import TrainConfig, Trainer  # noqa: E402
from textcnn.tasks import TASKS  # noqa: E402

TEXT = {"data": {"train": str(REPO / "data" / "sample" / "train.csv"),
                 "test": str(REPO / "data" / "sample" / "test.csv")},
        "model": {"maps": 4, "embedding_dim": 8, "widths": [2, 3], "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 20, "amp": False, "progress": False, "threads": 1}}
IMAGE = {"task": "image", "data": {"source": "digits", "max_examples": 60, "size": 16, "split_seed": 0},
         "model": {"name": "lenet5"},
         "train": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False,
                   "threads": 1}}
RESNET = {**IMAGE,
          "model": {"name": "resnet18_small", "kwargs": {"widths": [4, 4, 8, 8]}},
          "train": {**IMAGE["train"], "batch_size": 20, "lr": 0.003}}


def _with(recipe: dict, **sections: dict) -> dict:
    return {**recipe, **{k: {**recipe.get(k, {}), **v} for k, v in sections.items()}}


def _train(kind: str, recipe: dict, out: Path) -> None:
    TASKS[kind].train(recipe, source="distributed_runs", out_dir=out)


def kim_rand_fast(out: Path) -> None:
    """Kim's CNN-rand on the fast path (sparse embedding gradients, lazy Adadelta); both ranks
    name the same run folder, where rank 0 alone takes the lock."""
    _train("text", _with(TEXT, model={"fast": True}), out / "kim_rand_fast")


def kim_static(out: Path) -> None:
    """CNN-static on the plain path (DistributedDataParallel); vectors from OUT/vectors.txt."""
    _train("text", _with(TEXT, model={"variant": "static", "fast": False},
                         embeddings={"path": str(out / "vectors.txt")}), out / "kim_static")


def lenet5(out: Path) -> None:
    rank = int(os.environ.get("RANK", "0"))
    _train("image", IMAGE, out / ("lenet5" if rank == 0 else "lenet5_rank1"))


def resnet_sync(out: Path) -> None:
    _train("image", _with(RESNET, train={"sync_batchnorm": True}), out / "resnet_sync")


def resnet(out: Path) -> None:
    _train("image", RESNET, out / "resnet")


def resume(out: Path) -> None:
    """The engine alone: 2 epochs, then the same run resumed to 4 (as after a kill), beside 4
    epochs straight; with dev figures from rank 0 and early stopping."""
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(45, 6, generator=data), torch.randint(0, 3, (45,), generator=data)
    dev_x, dev_y = torch.randn(20, 6, generator=data), torch.randint(0, 3, (20,), generator=data)

    def fit(folder: str, epochs: int) -> dict:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        config = TrainConfig(epochs=epochs, batch_size=10, lr=2.0, patience=2, progress=False,
                             metric="loss", mode="min")
        trainer = Trainer(
            model, config=config, loss_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
            plan=lambda epoch, g: list(torch.randperm(len(x), generator=g).split(10)),
            collate=lambda idx, g: (x[torch.as_tensor(idx)], y[torch.as_tensor(idx)]),
            evaluate=lambda m, device: {"loss": float(nn.functional.cross_entropy(m(dev_x), dev_y))},
            out_dir=out / "resume" / folder)
        result = trainer.fit()
        return {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                "stopped_by": result.stopped_by,
                "weights": [p.detach().double().sum().item() for p in model.parameters()]}

    fit("resumed", 2)
    report = {"resumed": fit("resumed", 30), "straight": fit("straight", 30)}
    rank = int(os.environ.get("RANK", "0"))
    (out / "resume" / f"rank{rank}.json").write_text(json.dumps(report))


def refusals(out: Path) -> None:
    """What a distributed run refuses: whole batches it cannot share, and a loss that calls the
    model's inner module past DistributedDataParallel (its gradients would not be averaged)."""
    from textcnn.core.errors import TextCNNError

    x = torch.randn(8, 3)
    messages = {}
    cases = {"batches": dict(batches=lambda epoch, g: [x]),
             "bypass": dict(plan=lambda epoch, g: [list(range(8))], collate=lambda idx, g: x[idx])}
    for name, kwargs in cases.items():
        torch.manual_seed(0)
        trainer_loss = (lambda m, b: m.module(b).square().mean()) if name == "bypass" else \
            (lambda m, b: m(b).square().mean())
        try:
            Trainer(nn.Linear(3, 1), config=TrainConfig(epochs=1, progress=False, optimizer="sgd", lr=0.1),
                    loss_fn=trainer_loss, **kwargs).fit()
        except TextCNNError as err:
            messages[name] = str(err)
    (out / "refusals").mkdir(exist_ok=True)
    (out / "refusals" / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(messages))


SCENARIOS = [kim_rand_fast, kim_static, lenet5, resnet_sync, resnet, resume]


def write_vectors(path: Path) -> None:
    """Random 8-d vectors for the sample data's words (the static variant's)."""
    import csv

    with open(REPO / "data" / "sample" / "train.csv", newline="", encoding="utf-8") as f:
        words = sorted({w for row in list(csv.reader(f))[1:] for w in row[0].lower().split()})
    table = np.random.default_rng(0).uniform(-0.5, 0.5, size=(len(words), 8))
    lines = [f"{len(words)} 8", *(f"{w} " + " ".join(f"{v:.4f}" for v in row) for w, row in zip(words, table))]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for scenario in [*SCENARIOS, refusals]:
        scenario(target)
