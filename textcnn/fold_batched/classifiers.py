"""K `TextCNNClassifier`s, one per fold, trained as one batched model (`textcnn batch
--fold-batched`): each fold prepared as `fit` prepares it, trained with `fit_folds`, and adopted
by its classifier."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from textcnn.core.engine import FitResult, autocast_precision, resolve_device
from textcnn.core.errors import TextCNNError
from textcnn.estimator import FitData, TextCNNClassifier
from textcnn.fold_batched.loop import FOLD_OPTIMIZERS, FoldFitConfig, fit_folds
from textcnn.model import KimCNN

FoldTexts = tuple[Sequence[str], Sequence[Any], Sequence[str] | None, Sequence[Any] | None]
"""One fold for `fit_fold_classifiers`: (train texts, train labels, dev texts or None, dev labels)."""


# The estimator settings `fit_folds` has no equivalent for: each must keep its default.
UNSUPPORTED_PARAMS = ("patience", "class_weight", "label_smoothing", "multi_label", "weight_decay", "l1",
                      "l2", "grad_clip", "lr_schedule", "warmup_steps", "metric", "mode", "max_seconds",
                      "cuda_graphs", "max_batch_tokens", "activation", "pooling", "batch_norm", "weight_norm",
                      "input_noise", "word_dropout")


def _check_fold_params(clf: Any) -> None:
    """The estimator settings `fit_folds` has no equivalent for, as one clear error."""
    defaults = type(clf)().get_params()
    for name in UNSUPPORTED_PARAMS:
        if getattr(clf, name) != defaults[name]:
            raise TextCNNError(f"fold-batched training: expected {name}={defaults[name]!r} (not supported "
                               f"when the folds train as one model), got {getattr(clf, name)!r}")
    if clf.optimizer not in FOLD_OPTIMIZERS:
        raise TextCNNError(f"fold-batched training: expected an optimizer in "
                           f"{', '.join(FOLD_OPTIMIZERS)}, got '{clf.optimizer}'")


@torch.no_grad()
def shrink_vocab(model: KimCNN, vocab_size: int) -> KimCNN:
    """A copy of `model` whose embedding tables keep their first `vocab_size` rows only.

    `fit_fold_classifiers` trains each fold in its own tokenizer's id space, padded to the largest
    fold vocabulary; the rows past a fold's vocabulary are never looked up, so dropping them
    leaves every logit the same."""
    config = replace(model.config, vocab_size=vocab_size, sparse=False)
    with torch.random.fork_rng(devices=[]):
        small = KimCNN(config, vectors=torch.zeros(vocab_size, config.embedding_dim))
    state = model.state_dict()
    for name, emb in small.named_modules():
        if isinstance(emb, nn.Embedding):
            state[f"{name}.weight"] = state[f"{name}.weight"][:vocab_size]
    small.load_state_dict(state)
    return small.train(model.training)


def fit_fold_classifiers(params: dict[str, Any], folds: Sequence[FoldTexts]) -> list[TextCNNClassifier]:
    """K `TextCNNClassifier(**params)`, fold k fitted on `folds[k]`, all trained as one model.

    Each fold gets what `TextCNNClassifier.fit` would give it before training
    (`TextCNNClassifier.prepare_fit`: its own labels, dev split, tokenizer trained on its own text
    and vectors, e.g. in-domain word2vec), and the initial weights `fit` would draw
    (`torch.manual_seed(seed)`). The folds then train together with `fit_folds`, each in its own
    tokenizer's id space (tables padded to the largest vocabulary), and each classifier adopts
    its fold's best-epoch weights (`adopt_fitted`), with its `fit_result_` (best epoch, dev
    metrics of the returned model, per-epoch history) and `fit_result_.seconds` = the shared
    training time / K. Early stopping (`patience`), class weights, label smoothing, multi-label,
    penalties and weight decay, gradient clipping, learning rate schedules, a selection metric
    other than accuracy, a time budget, CUDA graphs and the model's menu beyond Kim's choices
    (activation, pooling, batch or weight norm, input noise, word dropout) are not supported here
    (`UNSUPPORTED_PARAMS` must keep their defaults) and raise an error; so does an optimizer
    outside FOLD_OPTIMIZERS.
    """
    if not folds:
        raise TextCNNError("fit_fold_classifiers: expected at least one fold, got none")

    def prepare(fold: FoldTexts) -> tuple[TextCNNClassifier, FitData]:
        clf = TextCNNClassifier(**params)
        _check_fold_params(clf)
        texts, labels, dev_texts, dev_labels = fold
        return clf, clf.prepare_fit(texts, labels, X_dev=dev_texts, y_dev=dev_labels)

    # Each fold's tokenizer and vectors (in-domain word2vec: seconds per fold) are independent;
    # gensim and tokenizers release the GIL, so threads prepare the folds side by side.
    with ThreadPoolExecutor(max_workers=min(len(folds), os.cpu_count() or 1)) as pool:
        prepared = list(pool.map(prepare, folds))
    clfs = [clf for clf, _ in prepared]
    train = [(data.train_ids, data.train_targets.tolist()) for _, data in prepared]
    dev = [(clf.encode(data.dev_texts), data.dev_targets.tolist())
           if data.dev_targets is not None else None for clf, data in prepared]
    first = clfs[0]
    classes = [len(c.classes_) for c in clfs]
    if len(set(classes)) > 1:
        raise TextCNNError(f"fold-batched training: expected every fold to have the same classes, got "
                           f"{classes} classes")
    if len({d is None for d in dev}) > 1:
        raise TextCNNError("fold-batched training: expected dev data for every fold or for none")
    sizes = [c.tokenizer_.vocab_size for c in clfs]
    pads = {c.tokenizer_.pad_id for c in clfs}
    if len(pads) > 1:
        raise TextCNNError(f"fold-batched training: expected one [PAD] id in every fold, got {sorted(pads)}")
    vocab = max(sizes)
    config = replace(first.model_config(prepared[0][1]), vocab_size=vocab)
    start_models = []
    for _, data in prepared:
        padded = None
        if data.vectors is not None:
            padded = torch.zeros(vocab, config.embedding_dim)
            padded[: len(data.vectors)] = data.vectors
        torch.manual_seed(first.seed)  # as `fit` seeds each fold's initial weights
        start_models.append(KimCNN(config, vectors=padded))
    fit = FoldFitConfig(epochs=first.epochs, batch_size=first.batch_size, optimizer=first.optimizer,
                        lr=first.lr, seed=first.seed, device=first.device, amp=first.amp, bucket=first.fast,
                        unk_id=None)  # each fold's own tokenizer already maps its unseen words
    if first.threads:
        torch.set_num_threads(first.threads)
    result = fit_folds(config, train, None if dev[0] is None else dev, fit, models=start_models)
    seconds = sum(r["train_seconds"] for r in result.history) / len(folds)
    precision = autocast_precision(first.amp, resolve_device(first.device))
    for k, ((clf, data), size) in enumerate(zip(prepared, sizes)):
        history = [{"epoch": r["epoch"], "train_loss": r["train_loss"][k],
                    **({"dev_accuracy": r["dev_accuracy"][k]} if "dev_accuracy" in r else {}),
                    "train_seconds": r["train_seconds"] / len(folds)} for r in result.history]
        fitted = FitResult(best_epoch=result.best_epochs[k], best_metrics={}, epochs_run=len(result.history),
                           seconds=seconds, history=history)
        clf.adopt_fitted(shrink_vocab(result.models[k], size), data, fit_result=fitted, precision=precision)
    return clfs
