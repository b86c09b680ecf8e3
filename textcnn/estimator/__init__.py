"""`TextCNNClassifier`: Kim's CNN as a scikit-learn estimator, and its saved model directory.

    clf = TextCNNClassifier(epochs=10).fit(texts, labels)
    clf.predict(["a gripping , funny film"]); clf.save("model/"); TextCNNClassifier.load("model/")

A saved model is a directory: `model.safetensors` (weights), `tokenizer.json`, `labels.json`,
`config.json` (model shape and estimator parameters), `recipe.yaml` (the resolved recipe, when
trained from one) and `metrics.json`. Loading needs no training data and no pickle.

The package, file by file: `classifier.py` (the estimator and its fitting), `params.py` (its
parameters, generated from the recipe settings), `inference.py` (probabilities in batches of
bounded memory, and decisions) and `saving.py` (the model directory).
"""

from textcnn.estimator.classifier import FitData, TextCNNClassifier
from textcnn.estimator.inference import INFERENCE_BATCH, INFERENCE_TOKENS, MAX_TABLE_BYTES
from textcnn.estimator.saving import KIND

__all__ = ["INFERENCE_BATCH", "INFERENCE_TOKENS", "KIND", "MAX_TABLE_BYTES", "FitData", "TextCNNClassifier"]
