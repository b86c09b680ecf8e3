"""Checkpoints: nested state round-trips through one safetensors file exactly, no pickle, and a
checkpoint is written as one unit."""

import json
import os

import pytest
import torch

from textcnn.core.checkpoint import join_state, load_checkpoint, save_checkpoint, split_state
from textcnn.core.errors import TextCNNError


def test_split_and_join_round_trip_nested_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adadelta(model.parameters(), rho=0.95, eps=1e-6)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
             "pair": (1, "a"), "none": None, "rng": torch.get_rng_state()}
    skeleton, tensors = split_state(state)
    json.dumps(skeleton)  # the skeleton is plain JSON
    back = join_state(json.loads(json.dumps(skeleton)), tensors)
    assert back["epoch"] == 3 and back["pair"] == (1, "a") and back["none"] is None
    assert torch.equal(back["rng"], state["rng"])
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    opt2 = torch.optim.Adadelta(model.parameters())
    opt2.load_state_dict(back["optimizer"])  # integer parameter keys survive the JSON round trip
    assert opt2.state_dict()["param_groups"][0]["rho"] == 0.95


def test_save_and_load_files(tmp_path):
    assert load_checkpoint(tmp_path / "none") is None
    save_checkpoint(tmp_path / "ck" / "last", {"w": torch.arange(6.0).reshape(2, 3), "n": 1})
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["last.safetensors"]  # one file
    got = load_checkpoint(tmp_path / "ck" / "last")
    assert got["n"] == 1 and torch.equal(got["w"], torch.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("renames", [0, 1, 2])
def test_a_kill_between_writes_leaves_one_consistent_epoch(tmp_path, monkeypatch, renames):
    """The process dies after `renames` file renames while epoch 3 is saved over epoch 2: the
    checkpoint read back is one whole epoch, weights and counters together."""
    def state(epoch):
        return {"epoch": epoch, "model": {"w": torch.full((4,), float(epoch))}, "history": [epoch]}

    save_checkpoint(tmp_path / "last", state(2))
    real_replace, done = os.replace, []

    def dying_replace(src, dst):
        if len(done) == renames:
            raise SystemExit("killed")  # the process ends here
        done.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    try:
        save_checkpoint(tmp_path / "last", state(3))
    except SystemExit:
        pass
    monkeypatch.setattr(os, "replace", real_replace)
    got = load_checkpoint(tmp_path / "last")
    assert got["epoch"] == (2 if renames == 0 else 3)
    assert torch.equal(got["model"]["w"], torch.full((4,), float(got["epoch"])))
    assert got["history"] == [got["epoch"]]


def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    save_checkpoint(tmp_path / "last", {"w": torch.ones(3)})
    path = tmp_path / "last.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(TextCNNError, match="last.safetensors: expected a training checkpoint"):
        load_checkpoint(tmp_path / "last")
