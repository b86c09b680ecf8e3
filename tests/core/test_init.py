"""The core package re-exports the public names of its modules, unchanged."""

from __future__ import annotations

import importlib

import textcnn.core as core

MODULES = ["activations", "backprop", "conv", "norm", "optim", "pooling", "regularization"]


def test_every_export_is_the_module_object() -> None:
    homes = [importlib.import_module(f"textcnn.core.{name}") for name in MODULES]
    for name in core.__all__:
        owners = [m for m in homes if getattr(m, name, None) is getattr(core, name)]
        assert owners, f"textcnn.core.{name} is not one of the core modules' objects"
    assert len(set(core.__all__)) == len(core.__all__)
