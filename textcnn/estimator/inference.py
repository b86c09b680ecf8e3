"""Class probabilities of a text classifier's model, in batches of bounded memory, and the
decisions taken from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from textcnn.batching import pad_batch, token_budget_batches
from textcnn.core.decisions import probabilities
from textcnn.model import KimCNN
from textcnn.projection import ProjectedKimCNN

INFERENCE_BATCH = 1000  # at most this many texts per inference batch
# Padded tokens (texts x longest text) per inference batch. Measured at the default 300-d vectors
# and 3 x 100 maps, float32 on a CPU: the projection path (ProjectedKimCNN) peaks at about 1 KB per
# padded token, the plain convolutions at about 5.5 KB (rand, static, non-static) to 9 KB
# (multichannel), as each width's conv output, its ReLU and its mask live beside the embedded
# batch. 2^16 tokens thus bound a batch at about 64 MB (projection) and 350-600 MB (plain), while
# texts of up to 65 tokens (all of MR, SST and TREC; all but 33 of Subj's 10,000) still go
# INFERENCE_BATCH at a time, at full speed (Subj: about 10k texts/s on one CPU thread, as with
# batches bounded by count alone). A longer text is a batch of its own: memory in its own length
# only.
INFERENCE_TOKENS = 1 << 16
MAX_TABLE_BYTES = 1 << 30  # larger vocabularies predict with the convolutions instead
# Texts per batch for the projection tables on a CPU. Batches are cut in length order and each is
# padded to its own longest text: a thousand texts pad to about twice the words they hold (MR),
# a hundred and twenty-eight to a few more than theirs, which makes the lookups about 1.5x faster.
# The probabilities are the same bit for bit (each text's windows, max and linear layer are its
# own row); on a GPU larger batches stay faster.
PROJECTED_CPU_BATCH = 128


def class_scores(model: KimCNN | ProjectedKimCNN, ids: list[list[int]], device: torch.device, *,
                 multi_label: bool,
                 forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Probabilities [N, classes] in input order (softmax, or sigmoid for multi-label), in
    batches of at most INFERENCE_TOKENS padded tokens (see `token_budget_batches`)."""
    out = np.zeros((len(ids), model.config.num_classes), dtype=np.float32)
    was_training = model.training
    model.eval()
    lean = isinstance(model, ProjectedKimCNN) and device.type == "cpu"
    batches = token_budget_batches([len(s) for s in ids], max_tokens=INFERENCE_TOKENS,
                                   max_count=PROJECTED_CPU_BATCH if lean else INFERENCE_BATCH)
    with torch.inference_mode():
        for idx in batches:
            x = pad_batch([ids[i] for i in idx], pad_id=model.config.pad_id).to(device)
            logits = (model(x) if forward is None else forward(model, x)).float()
            probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            out[idx] = probs.cpu().numpy()
    model.train(was_training)
    return out


def decide(scores: np.ndarray, *, multi_label: bool, threshold: float) -> np.ndarray:
    """Class ids, or for multi-label a 0/1 matrix of the probabilities reaching `threshold`."""
    if multi_label:
        return (scores >= threshold).astype(np.int64)
    return scores.argmax(axis=1)


_WINDOWS = 256  # window index rows kept per width; a longer text makes its own


class SingleTextScorer:
    """The lean path for one text on the CPU: tokenizer, table lookups, max, linear, in NumPy.

    A call into torch costs microseconds of dispatch per operation, and `class_scores` makes a
    dozen of them (and the batching around them) even for one sentence; that overhead, not the
    arithmetic, is most of a single prediction's time. This scorer computes the same values as
    `ProjectedKimCNN` over the same tap tables (shared, not copied): for one sentence of n > 0
    words every one of its n + h - 1 windows holds a word, so no masking is needed; an empty
    sentence gives zero features, as there. The probabilities equal `class_scores`' to float
    rounding (tests/text/test_single_text.py checks them)."""

    def __init__(self, projected: ProjectedKimCNN, encode: Callable[[str], list[int]], *,
                 multi_label: bool) -> None:
        cfg = projected.config
        self.encode, self.multi_label = encode, multi_label
        self.widths = list(cfg.widths)
        n_widths = len(self.widths)
        # views of the projection buffers: the scorer follows them and holds no copy
        self.tables = [getattr(projected, f"table{i}").detach().numpy() for i in range(n_widths)]
        self.bias = torch.cat([getattr(projected, f"bias{i}") for i in range(n_widths)]).detach().numpy()
        self.weight = projected.fc.weight.detach().numpy().T.copy()  # [features, classes]
        self.fc_bias = projected.fc.bias.detach().numpy()
        # A text is padded by widest - 1 on each side; per width, row t of `windows` lists the
        # padded positions of window t (shifted past the extra padding of the narrower widths),
        # and `taps` the row offset of each tap (tap k of word u is row k * vocab_size + u).
        self.maps, self.widest = cfg.maps, max(self.widths)
        self.padding = [cfg.pad_id] * (self.widest - 1)
        self.windows = [self._windows(_WINDOWS, w) for w in self.widths]
        self.taps = [np.arange(w, dtype=np.intp) * cfg.vocab_size for w in self.widths]

    def _windows(self, count: int, width: int) -> np.ndarray:
        return np.arange(count)[:, None] + np.arange(width) + (self.widest - width)

    def __call__(self, text: str) -> np.ndarray:
        """Probabilities [1, classes] of `text`."""
        ids = self.encode(text)
        n = len(ids)
        if n:
            features = np.empty(self.bias.shape[0], dtype=np.float32)
            maps = self.maps
            padded = np.array(self.padding + ids + self.padding, dtype=np.intp)
            for i, (width, table, windows, taps) in enumerate(zip(self.widths, self.tables, self.windows,
                                                                  self.taps)):
                count = n + width - 1  # windows holding at least one word
                if count > len(windows):
                    windows = self._windows(count, width)
                rows = padded[windows[:count]] + taps  # a window's sum is that of its taps' rows
                features[i * maps:(i + 1) * maps] = np.take(table, rows, axis=0).sum(axis=1).max(axis=0)
            features += self.bias
            np.maximum(features, 0, out=features)
            logits = features @ self.weight + self.fc_bias
        else:
            logits = self.fc_bias.copy()
        return probabilities(logits[None], multi_label=self.multi_label)
