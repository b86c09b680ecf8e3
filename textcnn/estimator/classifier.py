"""`TextCNNClassifier`: Kim's CNN as a scikit-learn estimator: its parameters (`params.py`),
fitting (here), predictions (`inference.py`) and model directory (`saving.py`)."""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from textcnn.batching import bucket_batches, pad_batch, random_batches
from textcnn.core.config import shown
from textcnn.core.decisions import (
    best_f1_thresholds,
    check_decision,
    check_probability,
    labels_or_abstain,
    multi_label_decisions,
)
from textcnn.core.engine import (
    FitResult,
    Trainer,
    autocast_precision,
    native_bf16,
    resolve_device,
)
from textcnn.core.errors import TextCNNError, check_classes
from textcnn.core.metrics import selection_metrics
from textcnn.core.splits import holdout_split
from textcnn.data import LabelMap
from textcnn.estimator.inference import MAX_TABLE_BYTES, SingleTextScorer, class_scores, decide, ragged_scores
from textcnn.estimator.params import OUT_DIR, with_parameters
from textcnn.estimator.saving import jsonable_params, load_classifier, save_classifier
from textcnn.model import KimCNN, KimCNNConfig
from textcnn.projection import ProjectedKimCNN, projected_logits
from textcnn.recipe import TextRecipe, estimator_parameters, recipe_from_estimator_params
from textcnn.tokenizer import WordTokenizer
from textcnn.vectors import (
    checkpoint_dir,
    embedding_matrix,
    load_hf_embeddings,
    load_vectors,
    train_word2vec,
    vectors_path,
)

GRAPH_PAD_MULTIPLE = 8  # with cuda_graphs: batch widths rounded up to this, a few graphs in all


class FitData(NamedTuple):
    """What `TextCNNClassifier.prepare_fit` hands to training."""

    train_ids: list[list[int]]  # token ids of the training texts
    train_targets: torch.Tensor  # their class ids (or 0/1 rows for multi-label)
    dev_texts: list[str]  # texts to select the best epoch on (may be empty)
    dev_targets: torch.Tensor | None  # their targets; None without dev texts
    vectors: torch.Tensor | None  # the embedding table of the pretrained variants
    train_weights: torch.Tensor | None = None  # per-example loss weights of the training texts; None: all 1


@with_parameters([*estimator_parameters(), OUT_DIR])
class TextCNNClassifier(ClassifierMixin, BaseEstimator):
    """Kim (2014) sentence CNN for raw text, with scikit-learn's estimator interface.

    Parameters, keyword-only: each but `out_dir` is a setting of a text recipe (its key in
    parentheses), with the recipe's default (but for `verbose`, off here) and meaning:
        {parameters}

    vectors: a word2vec/GloVe/fastText/.kv file, a Hugging Face checkpoint directory, "minilm"
    (the installed MiniLM-L6 checkpoint) or "word2vec" (trained on the training split only);
    ignored by rand. A loaded model's `allow_pickle` is always False. Adadelta (rho 0.95, eps
    1e-6) is the default optimizer. On the fast CPU path, `weight_decay`, `l1` and `l2` make the
    embedding gradients dense (every row moves), so each step costs what dense Adadelta costs;
    the result is that of fast=False's optimizer. `metric` is "accuracy" or "macro_f1" (mode
    "max") or "loss", the dev cross-entropy (mode "min"). `dev_fraction` is held out stratified,
    only when `fit` gets no dev data; 0 keeps the last epoch. With `multi_label`, `y` is a list
    of label lists and a label is predicted when its probability reaches its threshold:
    `threshold`, or with `tune_thresholds` each label's cut of best F1 on the dev data
    (`thresholds_`, saved with the model); `predict(X, threshold=P, thresholds={label: P},
    top_k=K)` overrides them per call (for a single-label model `threshold` is a confidence
    threshold below which `predict` abstains). `fit(X, y, sample_weight=w)` weighs each text's
    loss (see `fit`); `class_weight` keys may be labels or their text (1 or "1"). The model's
    menu (`activation`, `pooling`, `k`, `batch_norm`, `weight_norm`, `input_noise`,
    `word_dropout`) defaults to Kim's choices; the fast path trains every choice but
    `input_noise`, which trains on the plain path with a warning (`fast_path_` says which). `fast` trains with length
    bucketing and sparse (lazy) Adadelta updates of the embeddings and predicts from
    precomputed word projections (textcnn/projection.py): the same model either way. `amp`:
    autocast on CUDA; on a CPU with AVX-512 BF16 or AMX, the fast path's projection GEMMs in
    training (float32 accumulation; about 3x faster products); False: float32 throughout.
    `cuda_graphs` pads batches to a multiple of 8 words, which changes no result; ignored on
    CPU. `verbose` shows progress bars.
    """

    # -- fitting -------------------------------------------------------------------------------
    def _settings(self) -> TextRecipe:
        """The parameters as the recipe sections they stand for; building them checks every
        parameter, with the one-line errors a recipe gets."""
        return recipe_from_estimator_params(self.get_params())

    def fit(self, X: Iterable[str], y: Sequence[Any], sample_weight: Any = None, *,
            X_dev: Iterable[str] | None = None, y_dev: Sequence[Any] | None = None) -> TextCNNClassifier:
        """Train on texts `X` with labels `y`; select the best epoch on (X_dev, y_dev) or a holdout.

        `sample_weight` (one finite weight >= 0 per text, not all 0) weighs each text's loss: a
        batch's loss is the weighted mean sum(w_i * loss_i) / sum(w_i), as torch weighs classes,
        so weights 1 change nothing, scaling them all changes nothing, and an integer weight
        counts as that many copies of the text within a batch. Weights of texts held out as dev
        data go with them; dev figures are unweighted.

        With `out_dir`, the engine checkpoints into `out_dir/<fingerprint>`, a subfolder named by
        a fingerprint of the parameters and the training data: clones fitted on other data (the
        folds of `cross_val_score`) never share one, and fitting the same data again resumes."""
        self._settings()  # bad parameters fail before any data work or folder
        texts, labels = _as_texts(X, "X"), _as_labels(y)
        weights = None if sample_weight is None else check_sample_weight(sample_weight, len(texts))
        dev_texts = None if X_dev is None else _as_texts(X_dev, "X_dev")
        dev_labels = None if y_dev is None else list(y_dev)
        if self.out_dir is None:
            return self.fit_into(None, texts, labels, sample_weight=weights, X_dev=dev_texts, y_dev=dev_labels)
        from textcnn.core.rundir import open_run_folder, run_identity

        values = {"X": texts, "y": labels, "X_dev": dev_texts, "y_dev": dev_labels}
        if weights is not None:  # unweighted fits keep the folders they had
            values["sample_weight"] = weights.tolist()
        identity = run_identity(
            jsonable_params(self.get_params()), exclude=("out_dir", "verbose", "threads"),
            files={"vectors": vectors_path(self.variant, self.vectors)}, values=values)
        with open_run_folder(Path(self.out_dir) / identity.fingerprint[:16], identity) as run:
            run.begin()
            return self.fit_into(run.folder, texts, labels, sample_weight=weights, X_dev=dev_texts,
                                 y_dev=dev_labels)

    def fit_into(self, run_dir: str | Path | None, X: Iterable[str], y: Sequence[Any], *,
                 sample_weight: Any = None, X_dev: Iterable[str] | None = None,
                 y_dev: Sequence[Any] | None = None) -> TextCNNClassifier:
        """`fit`, with the engine's checkpoints and metrics in `run_dir` (None: in memory), a
        folder the caller has claimed (`textcnn.core.rundir.open_run_folder`); `out_dir` is not
        used."""
        data = self.prepare_fit(X, y, sample_weight=sample_weight, X_dev=X_dev, y_dev=y_dev)
        # The CPU fast path: only a mini-batch's words get gradients and LazyAdadelta updates those
        # rows alone; on CUDA the dense update is cheaper than the extra kernel launches.
        sparse = self.fast and self.optimizer == "adadelta" and resolve_device(self.device).type == "cpu"
        if sparse and self.input_noise:
            warnings.warn(f"input_noise={self.input_noise}: the fast projection path draws no per-word "
                          "noise; this model trains on the plain path (fast=False)", stacklevel=2)
            sparse = False
        self.fast_path_ = sparse  # whether the projection path (textcnn/projection.py) trains it
        self.model_config_ = self.model_config(data, sparse=sparse)
        torch.manual_seed(self.seed)
        self.model_ = KimCNN(self.model_config_, vectors=data.vectors)
        self.projected_ = None
        self.fit_result_ = self._train(data.train_ids, data.train_targets, data.dev_texts, data.dev_targets,
                                       run_dir=None if run_dir is None else Path(run_dir),
                                       train_weights=data.train_weights)
        self.model_.cpu().eval()
        self.thresholds_ = self._tuned_thresholds(data) if self.tune_thresholds else None
        return self

    def _tuned_thresholds(self, data: FitData) -> np.ndarray:
        """Each label's threshold of best F1 on the dev data (`best_f1_thresholds`)."""
        if data.dev_targets is None:
            raise TextCNNError("tune_thresholds: expected dev data to choose the thresholds on (X_dev, or "
                               "dev_fraction > 0), got none")
        scores = class_scores(self.model_, self.encode(data.dev_texts), torch.device("cpu"),
                              multi_label=True)
        return best_f1_thresholds(data.dev_targets.numpy(), scores, default=self.threshold)

    def model_config(self, data: FitData, *, sparse: bool = False) -> KimCNNConfig:
        """The shape of the model this classifier trains on `data` (from `prepare_fit`): its
        parameters, the vocabulary and classes of `data`, and the vectors' size when it has some."""
        dim = data.vectors.shape[1] if data.vectors is not None else self.embedding_dim
        if self.word_dropout and self.tokenizer_.unk_id is None:
            raise TextCNNError(f"word_dropout: needs an [UNK] token to put in a dropped word's place; the "
                               f"tokenizer of vectors={self.vectors!r} has none, expected word_dropout=0")
        return self._settings().model.kim_config(
            vocab_size=self.tokenizer_.vocab_size, num_classes=len(self.classes_), embedding_dim=dim,
            pad_id=self.tokenizer_.pad_id, unk_id=self.tokenizer_.unk_id, sparse=sparse)

    def adopt_fitted(self, model: KimCNN, data: FitData, *, fit_result: FitResult,
                     precision: str) -> TextCNNClassifier:
        """Take `model`, trained elsewhere on `data` (from this classifier's `prepare_fit`), as
        the fitted model: how `textcnn.fold_batched` hands back the folds it trained as one.
        `fit_result` is its training history, with `best_metrics` replaced by the model's own
        dev metrics on `data` (float32, on the CPU); `precision` that of its matrix products."""
        expected = self.model_config(data)
        if replace(model.config, sparse=False) != expected:
            raise TextCNNError(f"adopt_fitted: expected a KimCNN of config {expected} (the parameters "
                               f"and the prepared data), got {model.config}")
        self.model_config_, self.model_ = model.config, model.cpu().eval()
        self.projected_ = None
        self.precision_ = precision
        self.fast_path_ = False  # trained by another trainer, not the projection path
        best = {}
        if data.dev_targets is not None:
            scores = class_scores(self.model_, self.encode(data.dev_texts), torch.device("cpu"),
                                  multi_label=self.multi_label)
            best = selection_metrics(data.dev_targets.numpy(), self._decide(scores))
        self.fit_result_ = replace(fit_result, best_metrics=best)
        return self

    def prepare_fit(self, X: Iterable[str], y: Sequence[Any], *, sample_weight: Any = None,
                    X_dev: Iterable[str] | None = None, y_dev: Sequence[Any] | None = None) -> FitData:
        """Everything `fit` does before training: check the parameters (before any data work),
        fit the labels (`label_map_`, `classes_`), hold out the dev split, train the tokenizer
        (`tokenizer_`), encode the training texts and build the vectors. A trainer of its own
        (`textcnn.fold_batched`) then trains a model of `model_config(data)` and hands it to
        `adopt_fitted`."""
        self._settings()
        texts = _as_texts(X, "X")
        labels = _as_labels(y)
        if len(texts) != len(labels):
            raise TextCNNError(f"fit: expected as many labels as texts, got {len(labels)} labels "
                               f"for {len(texts)} texts")
        if not texts:
            raise TextCNNError("fit: expected at least one training text, got none")
        weights = None if sample_weight is None else check_sample_weight(sample_weight, len(texts))
        if self.multi_label:
            for i, items in enumerate(labels):
                if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
                    raise TextCNNError(f"y[{i}]: expected a list of labels (multi_label), got {items!r}")
        else:
            labels = _class_labels(labels)
        self.label_map_ = LabelMap.fit(_flatten(labels) if self.multi_label else labels)
        if not self.multi_label:
            check_classes(self.label_map_.classes)
        self.classes_ = self.label_map_.as_array()
        if X_dev is not None:
            dev_texts, dev_labels = _as_texts(X_dev, "X_dev"), list(y_dev if y_dev is not None else [])
            train_idx = np.arange(len(texts))
        elif self.dev_fraction and self.dev_fraction > 0:
            train_idx, dev_idx = holdout_split(
                [str(t) for t in labels] if self.multi_label else labels,
                fraction=self.dev_fraction, seed=self.seed)
            dev_texts = [texts[i] for i in dev_idx]
            dev_labels = [labels[i] for i in dev_idx]
        else:
            train_idx, dev_texts, dev_labels = np.arange(len(texts)), [], []
        train_texts = [texts[i] for i in train_idx]
        train_targets = self._encode_labels([labels[i] for i in train_idx])
        dev_targets = self._encode_labels(dev_labels) if dev_texts else None
        train_weights = None if weights is None else torch.as_tensor(weights[train_idx], dtype=torch.float32)
        if train_weights is not None and not train_weights.sum() > 0:
            raise TextCNNError("sample_weight: expected a positive weight on some training text, got all 0 "
                               "(after the dev holdout)")

        torch.manual_seed(self.seed)
        self.tokenizer_, train_ids, vectors = self._tokenizer_and_vectors(train_texts)
        return FitData(train_ids, train_targets, dev_texts, dev_targets, vectors, train_weights)

    def _tokenizer_and_vectors(self, train_texts: list[str]) -> tuple[WordTokenizer, list[list[int]],
                                                                      torch.Tensor | None]:
        """The tokenizer, the training texts' ids, and the embedding table for the non-rand
        variants."""
        source = None if self.variant == "rand" else self.vectors  # the recipe checks it is set
        checkpoint = checkpoint_dir(source)
        if checkpoint is not None:
            # the checkpoint brings its own vocabulary: settings that build one cannot act on it
            own = {p.name: p.default for p in estimator_parameters() if p.name in ("min_frequency", "max_vocab")}
            for name, default in own.items():
                if getattr(self, name) != default:
                    raise TextCNNError(f"{name}: the vocabulary is the checkpoint's own with vectors="
                                       f"{self.vectors!r}, so it must stay {default!r}; got {getattr(self, name)!r}")
            tokenizer, table = load_hf_embeddings(checkpoint)
            self.coverage_ = 1.0
            self.tokenizer_ = tokenizer
            return tokenizer, self.encode(train_texts), torch.as_tensor(table, dtype=torch.float32)
        tokenizer, ids = WordTokenizer.train_encode(train_texts, min_frequency=self.min_frequency,
                                                    max_size=self.max_vocab, lowercase=self.lowercase,
                                                    max_tokens=self.max_tokens, truncation=self.truncation)
        if source is None:
            return tokenizer, ids, None
        if source == "word2vec":
            kv = train_word2vec(train_texts, tokenizer, dim=self.embedding_dim, seed=self.seed,
                                epochs=self.word2vec_epochs)
        else:
            kv = load_vectors(source, allow_pickle=self.allow_pickle)
        table, self.coverage_ = embedding_matrix(tokenizer.vocab(), kv, seed=self.seed,
                                                 special_ids={"pad": tokenizer.pad_id, "unk": tokenizer.unk_id})
        return tokenizer, ids, torch.as_tensor(table, dtype=torch.float32)

    def _encode_labels(self, labels: Sequence[Any]) -> torch.Tensor:
        if not self.multi_label:
            return torch.as_tensor(self.label_map_.encode(labels), dtype=torch.long)
        target = torch.zeros(len(labels), len(self.classes_))
        for row, items in enumerate(labels):
            target[row, torch.as_tensor(self.label_map_.encode(list(items)), dtype=torch.long)] = 1.0
        return target

    def _loss_weights(self, targets: torch.Tensor) -> torch.Tensor | None:
        if self.class_weight is None or self.multi_label:
            return None
        n = len(self.classes_)
        if self.class_weight == "balanced":
            counts = torch.bincount(targets, minlength=n).float().clamp(min=1)
            return counts.sum() / (n * counts)
        if isinstance(self.class_weight, dict):
            weights = torch.ones(n)
            for label, w in self.class_weight.items():
                weights[self.label_map_.find(label, name=f"model.class_weight: key {label!r}")] = float(w)
            return weights
        raise TextCNNError(f"class_weight: expected None, 'balanced' or a dict, got {self.class_weight!r}")

    def _train(self, ids: list[list[int]], train_targets: torch.Tensor, dev_texts: list[str],
               dev_targets: torch.Tensor | None, *, run_dir: Path | None = None,
               train_weights: torch.Tensor | None = None) -> FitResult:
        lengths = [len(s) for s in ids]
        dev_ids = self.encode(dev_texts) if dev_texts else None
        device = resolve_device(self.device)
        weights = self._loss_weights(train_targets)
        if weights is not None:  # moved once: a copy inside the step would sync (or break a CUDA graph)
            weights = weights.to(device)
        pad_id = self.tokenizer_.pad_id
        # padding-only windows are masked out, so wider padding changes no value, only the shape
        multiple_of = GRAPH_PAD_MULTIPLE if self.cuda_graphs and device.type == "cuda" else 1

        def plan(epoch: int, generator: torch.Generator) -> list[np.ndarray]:
            if self.fast:
                return bucket_batches(lengths, self.batch_size, generator=generator,
                                      max_tokens=self.max_batch_tokens)
            return random_batches(len(ids), self.batch_size, generator=generator, lengths=lengths,
                                  max_tokens=self.max_batch_tokens)

        def collate(idx: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
            x = pad_batch([ids[i] for i in idx], pad_id=pad_id, multiple_of=multiple_of)
            return (x, train_targets[idx]) if train_weights is None else (x, train_targets[idx], train_weights[idx])

        # The CPU fast path computes the convolutions from the batch's distinct words (same values
        # and gradients, fewer FLOPs); on CUDA, cuDNN's convolutions are the faster way.
        forward = projected_logits if self.model_config_.sparse else KimCNN.__call__
        train_forward = forward  # dev scores stay float32, like the predictions of the result
        self.precision_ = autocast_precision(self.amp, device)
        if self.model_config_.sparse and self.amp and native_bf16(torch.device("cpu")):
            train_forward = functools.partial(projected_logits, matmul_dtype=torch.bfloat16)
            self.precision_ = "bfloat16"

        def loss_fn(model: KimCNN, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            x, target, *example_weights = batch
            logits = train_forward(model, x).float()
            if not example_weights:
                if self.multi_label:
                    return F.binary_cross_entropy_with_logits(logits, target)
                return F.cross_entropy(logits, target, weight=weights, label_smoothing=self.label_smoothing)
            # the weighted mean of the texts' losses (with class weights: of both weights' product)
            if self.multi_label:
                losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
                total = example_weights[0]
            else:
                losses = F.cross_entropy(logits, target, weight=weights, label_smoothing=self.label_smoothing,
                                         reduction="none")  # already times each text's class weight
                total = example_weights[0] * (1.0 if weights is None else weights[target])
            return (losses * example_weights[0]).sum() / total.sum().clamp(min=torch.finfo(total.dtype).tiny)

        def evaluate(model: KimCNN, device: torch.device) -> dict[str, float]:
            scores = class_scores(model, dev_ids, device, multi_label=self.multi_label, forward=forward)
            return selection_metrics(dev_targets.numpy(), self._decide(scores), scores)

        config = self._settings().train
        if self.model_config_.sparse:
            config = replace(config, optimizer="lazy_adadelta")
        # the fast path calls the model's parts (projected_logits), which DDP's hooks would not see
        trainer = Trainer(self.model_, config=config, loss_fn=loss_fn, plan=plan, collate=collate,
                          evaluate=evaluate if dev_ids is not None else None,
                          after_step=KimCNN.apply_max_norm, out_dir=run_dir,
                          # with a token budget the count varies a little by epoch: the first's stands for all
                          steps_per_epoch=len(plan(0, torch.Generator().manual_seed(self.seed))),
                          grad_sync="allreduce" if self.model_config_.sparse else "ddp")
        result = trainer.fit()
        # how many batch shapes trained through CUDA graphs (0: none, e.g. on CPU or after a failed capture)
        self.cuda_graphs_ = trainer.step_graphs.captured if trainer.step_graphs is not None else 0
        return result

    # -- prediction ----------------------------------------------------------------------------
    def encode(self, X: Iterable[str]) -> list[list[int]]:
        """The token ids the model sees for each text: the tokenizer's, cut by `max_tokens` and
        `truncation` (as in training)."""
        return self.tokenizer_.encode_batch(_as_texts(X, "X"), max_tokens=self.max_tokens,
                                            truncation=self.truncation)

    def _decide(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """`decide` with this model's kind and `threshold` (default: the `threshold` parameter)."""
        return decide(scores, multi_label=self.multi_label, threshold=self.threshold if threshold is None else threshold)

    def _inference_model(self, device: torch.device) -> torch.nn.Module:
        """The fitted model, as projection tables when `fast` (built once, on first use)."""
        if not self.fast or ProjectedKimCNN.table_bytes(self.model_) > MAX_TABLE_BYTES:
            return self.model_.to(device)
        if getattr(self, "projected_", None) is None:
            self.projected_ = ProjectedKimCNN(self.model_.eval())
        return self.projected_.to(device)

    def _single_text_scorer(self, device: torch.device) -> SingleTextScorer | None:
        """The lean path for one text (built once per fitted model), where the projection
        tables are how this model predicts on the CPU; else None."""
        cfg = self.model_config_
        if device.type != "cpu" or not (cfg.activation_after_max and cfg.activation.lower() == "relu"):
            return None  # the lean path computes Kim's features alone: ReLU after max pooling
        # the scorer encodes with the length policy it was built with: a set_params since builds anew
        policy = (self.max_tokens, self.truncation)
        cached = getattr(self, "_single_scorer", None)
        if cached is not None and cached[0] is getattr(self, "projected_", None) and cached[2] == policy:
            return cached[1]
        projected = self._inference_model(device)
        if not isinstance(projected, ProjectedKimCNN):
            return None
        encode = functools.partial(self.tokenizer_.encode, max_tokens=self.max_tokens, truncation=self.truncation)
        scorer = SingleTextScorer(projected, encode, multi_label=self.multi_label)
        self._single_scorer = (projected, scorer, policy)
        return scorer

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_single_scorer", None)  # rebuilt on the next single prediction
        return state

    def predict_proba(self, X: Iterable[str]) -> np.ndarray:
        """Class probabilities [n_texts, n_classes], columns in the order of `classes_`.

        One text on the CPU takes the lean path (`SingleTextScorer`): the same probabilities
        to float rounding, without torch's per-call overhead."""
        check_is_fitted(self, "model_")
        texts = _as_texts(X, "X")
        device = resolve_device(self.device)
        if len(texts) == 1:
            scorer = self._single_text_scorer(device)
            if scorer is not None:
                return scorer(texts[0])
        # the model stays on `device`, so that repeated calls do not copy it back and forth
        model = self._inference_model(device)
        if isinstance(model, ProjectedKimCNN) and device.type == "cpu" and model.config.activation_after_max:
            ids, lengths = self.tokenizer_.encode_ragged(texts, max_tokens=self.max_tokens, truncation=self.truncation)
            return ragged_scores(model, ids, lengths, multi_label=self.multi_label)
        return class_scores(model, self.encode(texts), device, multi_label=self.multi_label)

    def predict(self, X: Iterable[str], *, threshold: float | None = None,
                thresholds: Mapping[Any, float] | None = None, top_k: int | None = None,
                abstain: Any = None) -> np.ndarray:
        """Labels (or, for multi-label, a 0/1 indicator matrix over `classes_`).

        threshold: for a single-label model, a confidence threshold in [0, 1]: a text whose top
            probability is below it gets `abstain` instead of a label (the result is then an
            object array). For a multi-label model, every label's decision threshold for this
            call (default: the thresholds tuned on dev data, `thresholds_`, else the `threshold`
            parameter given at construction).
        thresholds: multi-label: {label: threshold} for this call, over those defaults (labels
            may be given as their text, e.g. "1" for 1).
        top_k: multi-label: the k most probable labels; with `threshold` or `thresholds`, those
            of them that reach it.
        abstain: what a text below `threshold` gets (default None); single-label models only.
        """
        threshold = check_decision(threshold=threshold, abstain=abstain, multi_label=self.multi_label)
        if not self.multi_label:
            for name, given in (("thresholds", thresholds), ("top_k", top_k)):
                if given is not None:
                    raise TextCNNError(f"{name}: for multi-label models; this one predicts one label per "
                                       f"text (got {name}={given!r}; see predict_proba for the ranking)")
        proba = self.predict_proba(X)
        if self.multi_label:
            explicit = threshold is not None or thresholds is not None
            per_label = self.decision_thresholds(threshold=threshold, thresholds=thresholds)
            return multi_label_decisions(proba, per_label if explicit or top_k is None else None, top_k=top_k)
        if threshold is None:
            return self.classes_[self._decide(proba)]
        return labels_or_abstain(proba, self.classes_, threshold=threshold, abstain=abstain)

    def decision_thresholds(self, *, threshold: float | None = None,
                            thresholds: Mapping[Any, float] | None = None) -> np.ndarray:
        """A multi-label model's threshold per class (in the order of `classes_`): `threshold`
        for all, else those tuned on dev data (`thresholds_`), else the `threshold` parameter;
        then `thresholds` {label: threshold} over them. A label the model does not know, or a
        value outside [0, 1], is a `TextCNNError` naming it."""
        check_is_fitted(self, "model_")
        if threshold is not None:
            out = np.full(len(self.classes_), check_probability(threshold, name="threshold"))
        elif getattr(self, "thresholds_", None) is not None:
            out = np.array(self.thresholds_, dtype=np.float64)
        else:
            out = np.full(len(self.classes_), float(self.threshold))
        if thresholds is not None:
            if not isinstance(thresholds, Mapping):
                raise TextCNNError(f"thresholds: expected a mapping {{label: threshold}}, got {thresholds!r}")
            for label, value in thresholds.items():
                name = f"thresholds: label {label!r}"
                out[self.label_map_.find(label, name=name)] = check_probability(value, name=name)
        return out

    def score(self, X: Iterable[str], y: Sequence[Any], sample_weight: Any = None) -> float:
        """Accuracy on (X, y); a label never seen in training raises a clear error."""
        if not self.multi_label:
            self.label_map_.encode(list(y))  # fails fast on unseen labels
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.target_tags.single_output = not self.multi_label
        tags.classifier_tags.multi_label = self.multi_label
        return tags

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: str | Path, *, recipe: str | None = None, metrics: dict | None = None) -> Path:
        """Write the model directory (`textcnn.estimator.saving`) as a whole, replacing an older
        model there; returns its path."""
        check_is_fitted(self, "model_")
        return save_classifier(self, path, recipe=recipe, metrics=metrics)

    @classmethod
    def load(cls, path: str | Path) -> TextCNNClassifier:
        """Load a model directory written by `save`; every file is checked first (checksums,
        keys, shapes, labels) and a bad one is a `TextCNNError` naming it. The model's
        `allow_pickle` is always False: a model directory never makes a refit unpickle vectors."""
        return load_classifier(cls, path)


def _as_texts(X: Iterable[str], name: str) -> list[str]:
    if isinstance(X, str):
        raise TextCNNError(f"{name}: expected a list of texts, got a single string")
    texts = list(X.ravel() if isinstance(X, np.ndarray) else X)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TextCNNError(f"{name}[{i}]: expected a text (str), got {type(t).__name__}")
    return texts


def _as_labels(y: Any) -> list[Any]:
    """`y` as a list; None (no target) is scikit-learn's error for it, and a column vector [n, 1]
    is raveled with its warning."""
    if y is None:
        raise TextCNNError("y: TextCNNClassifier requires y to be passed, but the target y is None")
    if isinstance(y, (str, bytes)):
        raise TextCNNError(f"y: expected a list of labels, got a single string {y!r}")
    if not isinstance(y, (list, tuple, np.ndarray)) and hasattr(y, "__array__"):
        y = np.asarray(y)  # array-likes that are no sequences (a pandas column is one)
    if isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning

        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                      "of y to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    return list(y)


def _class_labels(labels: list[Any]) -> list[Any]:
    """Single-label targets checked as scikit-learn checks a classifier's (complex, NaN,
    infinite or continuous numbers are its errors); whole floats (1.0) become the integers they
    hold, as class labels."""
    if not labels or not all(isinstance(v, numbers.Number) and not isinstance(v, (bool, np.bool_))
                             for v in labels):
        return labels
    from sklearn.utils.multiclass import type_of_target

    try:
        kind = type_of_target(np.asarray(labels), input_name="y")
    except ValueError as err:  # complex numbers, NaN, infinity
        raise TextCNNError(f"y: {err}") from None
    if kind not in ("binary", "multiclass"):
        raise TextCNNError(f"y: Unknown label type: {kind}; expected class labels (integers or "
                           f"strings), got values such as {shown(labels[0])}")
    return [int(v) for v in labels]


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """`sample_weight` as a float array of `n` finite weights >= 0, not all 0; anything else is
    a one-line `TextCNNError` (a ValueError, as scikit-learn raises)."""
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        sample_weight = [sample_weight] * n  # one number for every text, as scikit-learn allows
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TextCNNError(f"sample_weight: expected numbers, got {str(sample_weight)[:60]}") from None
    if weights.ndim != 1 or len(weights) != n:
        raise TextCNNError(f"sample_weight: expected one weight per text ({n}), got shape {weights.shape}")
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise TextCNNError(f"sample_weight: expected finite weights >= 0, got {weights[bad[0]]} at "
                           f"index {bad[0]}")
    total = float(weights.sum())
    if n and not 0 < total < math.inf:
        raise TextCNNError(f"sample_weight: expected a positive (finite) total weight, got {total}")
    return weights


def _flatten(label_lists: Sequence[Iterable[Any]]) -> list[Any]:
    return [label for items in label_lists for label in items]
