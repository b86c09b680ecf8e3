"""Checkpoints: nested state round-trips through safetensors + JSON exactly, no pickle."""

import json

import torch

from textcnn.core.checkpoint import join_state, load_checkpoint, save_checkpoint, split_state


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
    assert (tmp_path / "ck" / "last.safetensors").is_file()
    got = load_checkpoint(tmp_path / "ck" / "last")
    assert got["n"] == 1 and torch.equal(got["w"], torch.arange(6.0).reshape(2, 3))
    assert not list((tmp_path / "ck").glob("*.tmp"))
