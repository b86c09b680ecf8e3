"""`TextCNNClassifier`'s parameters: generated from the recipe settings they stand for
(`textcnn.recipe.estimator_parameters`), so that a setting declared once is a parameter at once."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from textcnn.core.errors import did_you_mean
from textcnn.recipe import EstimatorParameter

OUT_DIR = EstimatorParameter(
    "out_dir", None, None, None, str | None,
    "a folder for the engine's metrics and checkpoints (resumable): each fit trains in its own "
    "subfolder, keyed by the parameters and the training data (see `fit`); not saved with the "
    "model; None keeps everything in memory")


def with_parameters(params: Sequence[EstimatorParameter]) -> Callable[[type], type]:
    """Class decorator: an `__init__` taking `params` as keyword-only arguments and only storing
    them (as scikit-learn wants), with their signature (what `get_params`, `set_params`, `clone`
    and `repr` read), and their list in the class docstring (its `{parameters}`)."""
    defaults = {p.name: p.default for p in params}

    def lend(cls: type) -> type:
        def __init__(self, **kwargs: Any) -> None:
            unknown = [name for name in kwargs if name not in defaults]
            if unknown:
                raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument "
                                f"'{unknown[0]}'{did_you_mean(unknown[0], defaults)}")
            for name, default in defaults.items():
                setattr(self, name, kwargs.get(name, default))

        __init__.__signature__ = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                                 annotation=p.annotation) for p in params])
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__doc__ = f"Store the parameters (see `{cls.__name__}`); `fit` checks them."
        cls.__init__ = __init__
        if cls.__doc__:  # None under python -OO
            lines = [textwrap.fill(f"{p.name}={p.default!r}" + (f" ({p.section}.{p.key})" if p.section else "")
                                   + (f": {p.comment}" if p.comment else ""), width=100,
                                   initial_indent=" " * 8, subsequent_indent=" " * 12)
                     for p in params]
            cls.__doc__ = cls.__doc__.replace(" " * 8 + "{parameters}", "\n".join(lines))
        return cls
    return lend
