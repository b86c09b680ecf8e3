"""The shared CNN core: layers chosen by name or class, regularisation, optimizers.

Lazy: `import textcnn.core` loads none of its modules (nor torch); a name below is imported from
its module when first asked for, e.g. `textcnn.core.ConvBlock2d`. Everything else lives in the
core's modules (`textcnn.core.errors`, `.io`, `.engine`, `.rundir`, ...), imported by name.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the core module that defines it
_HOMES: dict[str, str] = {
    **dict.fromkeys(["SELU", "SELU_ALPHA", "SELU_SCALE", "create_act_layer", "get_act_layer",
                     "lecun_normal_"], "activations"),
    # (the function `backprop` is `textcnn.core.backprop.backprop`: its module has its name)
    **dict.fromkeys(["LECTURE_SIZES", "SigmoidNet", "gradcheck", "init_sigmoid_net",
                     "numerical_gradient"], "backprop"),
    **dict.fromkeys(["ConvBlock1d", "ConvBlock2d", "conv_output_size", "conv_param_count"], "conv"),
    **dict.fromkeys(["create_norm_layer", "get_norm_layer"], "norm"),
    **dict.fromkeys(["OPTIMIZER_DEFAULTS", "create_optimizer", "list_optimizers"], "optim"),
    **dict.fromkeys(["GlobalPool", "KMaxPool1d", "L2Pool", "create_pool", "kmax_pool",
                     "max_over_time", "pool_over_time"], "pooling"),
    **dict.fromkeys(["EarlyStopping", "GaussianNoise", "MaxNorm", "WordDropout", "apply_weight_norm",
                     "l1_penalty", "l2_penalty", "max_norm_"], "regularization"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'textcnn.core' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"textcnn.core.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
