"""The model files; importing this package registers every model (see `vision.registry`)."""

from vision.models import alexnet, googlenet, lenet, resnet, vgg  # noqa: F401  (registration)
from vision.models.base import ImageClassifier

__all__ = ["ImageClassifier"]
