"""All K folds of a cross-validation run trained as one batched model.

On a GPU a single Kim CNN at batch 50 is bound by kernel launches, not arithmetic. The K folds
of a cross-validation run are independent models of the same shape, so their weights can be
stacked along a leading fold axis and one forward/backward pass can serve all K at once:

    ids [K, B, L] -> embeddings [K*V, D] gathered per fold -> [K, B, L, C*D]
      -> ONE batched GEMM over im2col windows (or one grouped conv1d, groups=K) for every width
         and fold -> masked max over time -> ReLU
      -> dropout -> ONE batched GEMM with the stacked output layers [K, classes, F]

- Every width shares one convolution: a width-h filter is stored right-aligned in `max(widths)`
  taps, the other taps held at zero by a fixed mask (their gradient is zero, so no element-wise
  optimizer ever moves them). With padding `max(widths) - 1`, output t of the wide filter equals
  output t of the width-h filter padded by h - 1 (as `KimCNN`); the extra outputs at the end are
  windows of padding alone, which the mask leaves out anyway.
- ReLU is monotone, so relu(max_t x_t) = max_t relu(x_t): it is applied after pooling, and it
  turns the -inf of an empty sentence (every window masked) into the 0 `max_over_time` gives.
- The parameters of different folds are disjoint, so the gradient of the sum of the per-fold mean
  losses with respect to fold k's slice is exactly fold k's own gradient, and an element-wise
  optimizer (Adadelta) on the stacked tensors is K separate optimizers.

`fit_folds` trains the K folds this way, each step one mini-batch of every fold, and selects
each fold's best epoch on its own dev set. `to_models` gives K ordinary `KimCNN`s to save.

- Vocabulary: the folds share one index space (a vocabulary of all their training text). A word
  fold k never trained on is mapped to [UNK] in fold k's dev/test ids (`known_word_mask`,
  `map_unseen`), as a tokenizer trained on fold k alone would map it; its own embedding row gets
  no gradient in fold k and never moves.
- Unequal folds: a fold's smaller batch is padded with empty sentences of zero loss weight; a
  fold with fewer batches sits out a step with its weights and optimizer state put back after it.

tests/text/test_fold_batched.py checks logits, gradients, optimizer steps and whole training
runs against separate `KimCNN`s. This is for GPUs: on a CPU the work is compute-bound, and
oneDNN's per-width convolutions beat the batched GEMM (the project's CPU path is
textcnn/projection.py).

The package, file by file: `model.py` (the stacked model), `plan.py` (the known words of each
fold, the steps of an epoch, the folds packed on the device), `loop.py` (`fit_folds`) and
`classifiers.py` (`fit_fold_classifiers`: K `TextCNNClassifier`s trained this way).
"""

from textcnn.fold_batched.classifiers import UNSUPPORTED_PARAMS, fit_fold_classifiers, shrink_vocab
from textcnn.fold_batched.loop import FOLD_OPTIMIZERS, FoldFitConfig, FoldsFitResult, fit_folds
from textcnn.fold_batched.model import CONV_IMPLS, FoldBatchedKimCNN, fold_max_norm_
from textcnn.fold_batched.plan import fold_epoch_plan, known_word_mask, map_unseen

__all__ = [
    "CONV_IMPLS",
    "FOLD_OPTIMIZERS",
    "FoldBatchedKimCNN",
    "FoldFitConfig",
    "FoldsFitResult",
    "UNSUPPORTED_PARAMS",
    "fit_fold_classifiers",
    "fit_folds",
    "fold_epoch_plan",
    "fold_max_norm_",
    "known_word_mask",
    "map_unseen",
    "shrink_vocab",
]
