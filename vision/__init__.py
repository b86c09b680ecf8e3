"""Classic image CNNs on the shared `textcnn.core`: LeNet-5, AlexNet, VGG, GoogLeNet, ResNet.

    import vision
    model = vision.create_model("resnet18", num_classes=10)
    vision.list_models("resnet*")
"""

from __future__ import annotations

from vision.models import ImageClassifier
from vision.registry import ModelInfo, count_parameters, create_model, list_models, model_info

__all__ = ["ImageClassifier", "ModelInfo", "count_parameters", "create_model", "list_models",
           "model_info"]
