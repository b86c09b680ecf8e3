"""Checkpoints as safetensors + JSON, never pickle.

A nested state (model and optimizer state dicts, RNG states, counters) is split into a flat
mapping of tensors and a JSON skeleton in which each tensor is replaced by a reference. Both go
into one `.safetensors` file, the skeleton in its metadata, written with one atomic rename: a
checkpoint is always one whole epoch, whenever the process dies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write

_REF = "__tensor__"
_SKELETON = "textcnn.checkpoint.skeleton"  # metadata key of the JSON skeleton


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


def save_checkpoint(path_stem: str | Path, state: dict[str, Any]) -> Path:
    """Write `<stem>.safetensors` (tensors, and the skeleton in its metadata) atomically."""
    path = Path(path_stem).with_suffix(".safetensors")
    skeleton, tensors = split_state(state)
    metadata = {_SKELETON: json.dumps(skeleton)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path_stem: str | Path) -> dict[str, Any] | None:
    """Read a checkpoint written by `save_checkpoint`, or None when there is none."""
    path = Path(path_stem).with_suffix(".safetensors")
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            skeleton = (f.metadata() or {}).get(_SKELETON)
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError) as err:
        raise TextCNNError(f"{path}: expected a training checkpoint, got an unreadable file "
                           f"({err}); remove it to train from the start") from None
    if skeleton is None:
        raise TextCNNError(f"{path}: expected a training checkpoint with its state in the metadata, "
                           "got none (an older format); remove it to train from the start")
    return join_state(json.loads(skeleton), tensors)
