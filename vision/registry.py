"""A registry of image models by name, like timm's: `create_model("resnet18", num_classes=10)`.

Each model file registers its builders with `@register_model(...)`, which also records the
input the design expects: the paper's input side, the smallest side a forward pass accepts, and
whether the size is fixed (LeNet-5's C5 is a convolution exactly as large as its input).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from textcnn.core.errors import TextCNNError
from textcnn.core.registry import resolve

if TYPE_CHECKING:  # the model files import this module to register themselves
    from vision.models.base import ImageClassifier

Builder = TypeVar("Builder", bound="Callable[..., ImageClassifier]")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model name."""

    name: str
    builder: Callable[..., ImageClassifier]
    family: str  # lenet, alexnet, vgg, googlenet, resnet
    input_size: int  # side of the square input the design is drawn for
    min_input_size: int  # smallest side that gives a valid forward pass
    fixed_size: bool  # True: only `input_size` works
    in_channels: int  # the builder's default input channels


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    *, family: str, input_size: int, min_input_size: int, fixed_size: bool = False
) -> Callable[[Builder], Builder]:
    """Decorator that registers a builder under its function name."""

    def wrap(builder: Builder) -> Builder:
        in_channels = inspect.signature(builder).parameters["in_channels"].default
        _MODELS[builder.__name__] = ModelInfo(
            builder.__name__, builder, family, input_size, min_input_size, fixed_size, in_channels)
        return builder

    return wrap


def _load_models() -> None:
    import vision.models  # noqa: F401  (importing the model files registers them)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern` (e.g. "resnet*"), sorted."""
    _load_models()
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry for `name`; unknown names raise `TextCNNError` with a hint."""
    _load_models()
    return resolve(name, _MODELS, "vision model")


def create_model(
    name: str, *, num_classes: int | None = None, in_channels: int | None = None, **kwargs: Any
) -> ImageClassifier:
    """Build the model registered as `name` (see `list_models`).

    `num_classes` and `in_channels` default to the builder's own (ImageNet models: 1000 classes,
    3 channels; LeNet-5: 10 and 1; the small variants: 10 and 3). Other keywords go to the
    builder; one it does not take raises `TextCNNError` naming the keywords it does.
    """
    info = model_info(name)
    accepted = set(inspect.signature(info.builder).parameters) | _class_keywords(info.builder)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TextCNNError(f"model '{info.name}': unknown keyword '{unknown[0]}'; "
                           f"expected some of: {', '.join(sorted(accepted - {'kwargs'}))}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    try:
        return info.builder(**kwargs)
    except TextCNNError:
        raise
    except (TypeError, ValueError) as err:  # a bad keyword value, or one the builder fixes itself
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise TextCNNError(f"model '{info.name}' ({given}): {err}") from err


def _class_keywords(builder: Callable[..., Any]) -> set[str]:
    """Keyword-only arguments of the class a builder returns (its `**kwargs` go there)."""
    cls = inspect.signature(builder).return_annotation
    if isinstance(cls, str):
        cls = builder.__globals__.get(cls)
    if not inspect.isclass(cls):
        return set()
    return {p.name for p in inspect.signature(cls).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


def count_parameters(model: Any, *, trainable: bool = True) -> int:
    """Number of (trainable, by default) parameters of a module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


__all__ = ["ModelInfo", "count_parameters", "create_model", "list_models", "model_info",
           "register_model"]
