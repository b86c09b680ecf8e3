"""Data-parallel training: two gloo ranks on loopback (torchrun) train what one process trains.

Every scenario of tests/core/distributed_runs.py runs once as two ranks started by torch's own
launcher and once in this process; at global batch B (each rank a share of every batch, dropout
off, float32 products) the weights agree to float tolerance: Kim's CNN-rand on the fast path
(sparse embedding gradients, lazy Adadelta, gradients all-reduced after backward), CNN-static on
the plain path (DistributedDataParallel), LeNet-5, and ResNet with `train.sync_batchnorm` (and
without it, where each rank's batch statistics differ). Rank 0 alone writes the run; a run
resumed after two epochs ends where an uninterrupted one does, stopping early at the same epoch
on both ranks.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from textcnn.core.distributed import AllReduceBatchNorm, convert_sync_batchnorm, shard
from textcnn.core.errors import TextCNNError

REPO = Path(__file__).resolve().parents[2]
RUNS = Path(__file__).with_name("distributed_runs.py")


def _runs_module():
    spec = importlib.util.spec_from_file_location("distributed_runs", RUNS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Every scenario as two ranks (torchrun) and in one process: their folders."""
    module = _runs_module()
    two, one = tmp_path_factory.mktemp("two_ranks"), tmp_path_factory.mktemp("one_process")
    for folder in (two, one):
        module.write_vectors(folder / "vectors.txt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(RUNS), str(two)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for scenario in module.SCENARIOS:
            scenario(one)
    finally:
        torch.set_num_threads(threads)
    return {"two": two, "one": one}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model" / "model.safetensors"))


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["kim_rand_fast", "kim_static", "lenet5", "resnet_sync"])
def test_two_ranks_train_the_weights_of_one_process(runs, scenario):
    two, one = _weights(runs["two"] / scenario), _weights(runs["one"] / scenario)
    assert _max_difference(two, one) < 1e-4
    history = [json.loads(line) for line in
               (runs["two"] / scenario / "train" / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in
                (runs["one"] / scenario / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [r["epoch"] for r in expected]  # written once, by rank 0
    for mine, theirs in zip(history, expected):  # the epoch's mean loss over both ranks' shares
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_batch_norm_statistics_need_sync_batchnorm(runs):
    """Without sync, each rank normalises its share by its own statistics: other weights."""
    unsynced = _max_difference(_weights(runs["two"] / "resnet"), _weights(runs["one"] / "resnet"))
    synced = _max_difference(_weights(runs["two"] / "resnet_sync"), _weights(runs["one"] / "resnet_sync"))
    assert unsynced > 1e-3 > 1e-4 > synced
    # the option changes nothing in one process: there the batch is whole
    assert _max_difference(_weights(runs["one"] / "resnet"), _weights(runs["one"] / "resnet_sync")) == 0


@pytest.mark.slow
def test_rank_zero_alone_writes_the_run(runs):
    two = runs["two"]
    assert not (two / "lenet5_rank1").exists()  # rank 1 was told another folder: it wrote nothing
    for scenario in ("kim_rand_fast", "lenet5"):
        folder = two / scenario
        assert {p.name for p in folder.iterdir()} == {p.name for p in (runs["one"] / scenario).iterdir()}
        results = json.loads((folder / "results.json").read_text())
        single = json.loads((runs["one"] / scenario / "results.json").read_text())
        assert results.keys() == single.keys() and results["fingerprint"] == single["fingerprint"]


@pytest.mark.slow
def test_a_resumed_run_ends_as_an_uninterrupted_one_and_ranks_stop_together(runs):
    reports = [json.loads((runs["two"] / "resume" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1]  # every rank took rank 0's dev figures and stopped with it
    report = reports[0]
    assert report["resumed"] == report["straight"]
    assert report["straight"]["stopped_by"] == "patience"
    single = json.loads((runs["one"] / "resume" / "rank0.json").read_text())
    assert single["straight"]["epochs_run"] == report["straight"]["epochs_run"]
    np.testing.assert_allclose(report["straight"]["weights"], single["straight"]["weights"], rtol=1e-5)


@pytest.mark.slow
def test_paths_the_ranks_cannot_share_fail_in_one_line(runs):
    for rank in (0, 1):
        messages = json.loads((runs["two"] / "refusals" / f"rank{rank}.json").read_text())
        assert messages["batches"].startswith("distributed training: this training loop gives whole batches")
        assert "gradients are not averaged over the ranks" in messages["bypass"]
        assert all("\n" not in m for m in messages.values())


# -- without processes ----------------------------------------------------------------------------
@pytest.mark.parametrize("size, world", [(20, 2), (7, 2), (5, 3), (1, 2), (2, 4)])
def test_shards_split_a_batch_and_weigh_each_share_by_its_size(size, world):
    batch = np.arange(100, 100 + size)
    shares = [shard(batch, rank=r, world=world) for r in range(world)]
    real = [part for part, weight in shares if weight > 0]
    assert np.array_equal(np.concatenate(real), batch)  # disjoint, in order, every example once
    assert sum(w for _, w in shares) == pytest.approx(world)
    for part, weight in shares:
        assert weight == pytest.approx(len(part) * world / size) or (weight == 0 and len(part) == 1)
    # the weighted mean of per-share means over ranks is the batch's mean
    values = batch.astype(float) ** 2
    averaged = sum(w * values[part - 100].mean() for part, w in shares) / world
    assert averaged == pytest.approx(values.mean())


def test_batch_norms_convert_in_place_and_act_as_batch_norm_in_one_process():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(3)))
    model[1].running_mean.fill_(0.5)
    reference = copy.deepcopy(model)
    parameters = [id(p) for p in model.parameters()]
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    assert sum(isinstance(m, AllReduceBatchNorm) for m in converted.modules()) == 2
    assert [id(p) for p in converted.parameters()] == parameters  # an optimizer made before still trains them
    assert converted.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(4, 1, 6, 6)
    torch.testing.assert_close(converted(x), reference(x))
    torch.testing.assert_close(converted.state_dict(), reference.state_dict())  # running stats too


def test_a_batch_under_torchrun_is_refused_in_one_line(tmp_path, monkeypatch):
    from textcnn.batch_runner import run_batch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TextCNNError, match=r"^batch: expected one process, got a launcher's 2") as err:
        run_batch([str(REPO / "recipes" / "quickstart.yaml")], tmp_path / "out")
    assert "\n" not in str(err.value)


def test_a_launcher_without_its_address_is_a_one_line_error(monkeypatch):
    from textcnn.core.distributed import join_process_group

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TextCNNError, match="expected a launcher's RANK, LOCAL_RANK, MASTER_ADDR"):
        join_process_group(torch.device("cpu"))


def test_an_unknown_backend_is_a_one_line_error(monkeypatch):
    from textcnn.core.distributed import join_process_group

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "1", "TEXTCNN_DIST_BACKEND": "nccl"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TextCNNError, match=r"^TEXTCNN_DIST_BACKEND: expected gloo, or nccl on CUDA, got 'nccl' on cpu$"):
        join_process_group(torch.device("cpu"))
