"""Checkpoints as safetensors + JSON, never pickle.

A nested state (model and optimizer state dicts, RNG states, counters) is split into a flat
mapping of tensors, stored with safetensors, and a JSON skeleton in which each tensor is replaced
by a reference. Both files are written atomically; the JSON is written last, so a checkpoint is
complete exactly when its JSON exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from textcnn.io import atomic_write, atomic_write_json

_REF = "__tensor__"


def split_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in a nested dict/list by a reference; return (skeleton, tensors)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_REF: path}
        if isinstance(node, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")]
                                 for i, (k, v) in enumerate(node.items())]}
        if isinstance(node, (list, tuple)):
            items = [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
            return {"__tuple__": items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at '{path}' in a checkpoint")

    return walk(state, "s"), tensors


def join_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `split_state`."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if _REF in node:
                return tensors[node[_REF]]
            if "__dict__" in node:
                return {walk(k): walk(v) for k, v in node["__dict__"]}
            if "__tuple__" in node:
                return tuple(walk(v) for v in node["__tuple__"])
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


def save_checkpoint(path_stem: str | Path, state: dict[str, Any]) -> None:
    """Write `<stem>.safetensors` then `<stem>.json` atomically."""
    stem = Path(path_stem)
    skeleton, tensors = split_state(state)
    atomic_write(stem.with_suffix(".safetensors"), lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(stem.with_suffix(".json"), skeleton)


def load_checkpoint(path_stem: str | Path) -> dict[str, Any] | None:
    """Read a checkpoint written by `save_checkpoint`, or None when there is none."""
    stem = Path(path_stem)
    meta, weights = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not meta.is_file() or not weights.is_file():
        return None
    return join_state(json.loads(meta.read_text()), load_file(str(weights)))
