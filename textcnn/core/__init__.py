"""The shared CNN core: layers chosen by name or class, regularisation, optimizers."""

# --- layers, regularisation, optimizers, back-propagation reference ---
from textcnn.core.activations import (
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    create_act_layer,
    get_act_layer,
    lecun_normal_,
)
from textcnn.core.backprop import (
    LECTURE_SIZES,
    SigmoidNet,
    backprop,
    gradcheck,
    init_sigmoid_net,
    numerical_gradient,
)
from textcnn.core.conv import ConvBlock1d, ConvBlock2d, conv_output_size, conv_param_count
from textcnn.core.norm import create_norm_layer, get_norm_layer
from textcnn.core.optim import OPTIMIZER_DEFAULTS, create_optimizer, list_optimizers
from textcnn.core.pooling import (
    GlobalPool,
    KMaxPool1d,
    L2Pool,
    create_pool,
    kmax_pool,
    max_over_time,
)
from textcnn.core.regularization import (
    EarlyStopping,
    GaussianNoise,
    MaxNorm,
    WordDropout,
    apply_weight_norm,
    l1_penalty,
    l2_penalty,
    max_norm_,
)

__all__ = [
    "LECTURE_SIZES",
    "OPTIMIZER_DEFAULTS",
    "SELU",
    "SELU_ALPHA",
    "SELU_SCALE",
    "ConvBlock1d",
    "ConvBlock2d",
    "EarlyStopping",
    "GaussianNoise",
    "GlobalPool",
    "KMaxPool1d",
    "L2Pool",
    "MaxNorm",
    "SigmoidNet",
    "WordDropout",
    "apply_weight_norm",
    "backprop",
    "conv_output_size",
    "conv_param_count",
    "create_act_layer",
    "create_norm_layer",
    "create_optimizer",
    "create_pool",
    "get_act_layer",
    "get_norm_layer",
    "gradcheck",
    "init_sigmoid_net",
    "kmax_pool",
    "l1_penalty",
    "l2_penalty",
    "lecun_normal_",
    "list_optimizers",
    "max_norm_",
    "max_over_time",
    "numerical_gradient",
]
