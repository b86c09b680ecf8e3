"""Class probabilities of a text classifier's model, in batches of bounded memory, and the
decisions taken from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from textcnn.batching import pad_batch, token_budget_batches
from textcnn.core.decisions import probabilities
from textcnn.model import KimCNN
from textcnn.projection import CHUNK_WINDOWS, ProjectedKimCNN, tap_offsets

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
# Windows (of the widest filter) per run of texts laid end to end (`ragged_scores`): their sums,
# one width at a time, are 13 MB at 100 maps; a run of 16,384 was 5-10% slower on MR's test
# sentences, one of 65,536 no faster.
RAGGED_WINDOWS = 1 << 15


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


def ragged_scores(model: ProjectedKimCNN, ids: np.ndarray, lengths: np.ndarray, *, multi_label: bool,
                  budget: int = RAGGED_WINDOWS) -> np.ndarray:
    """Probabilities [N, classes] in input order of texts given end to end (`ids` [sum(lengths)],
    `lengths` [N], as `WordTokenizer.encode_ragged` gives them), through
    `ProjectedKimCNN.ragged_features`: consecutive texts of about `budget` windows (of the
    widest filter) at a time, with no padding and no sorting. A text of more than CHUNK_WINDOWS
    windows goes alone through `ProjectedKimCNN.features`, whose memory does not grow with its
    length. The same probabilities as `class_scores` to float rounding (the linear layer sees
    other batches). Texts holding the pad id itself (a subword tokenizer's literal "[PAD]") go
    through `class_scores`, whose padded batches count it as padding, as training did."""
    if (ids == model.config.pad_id).any():
        texts = np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return class_scores(model, [text.tolist() for text in texts], torch.device("cpu"), multi_label=multi_label)
    out = np.empty((len(lengths), model.config.num_classes), dtype=np.float32)
    windows = np.cumsum(lengths + max(model.config.widths) - 1)
    word_ends = np.cumsum(lengths)
    start = 0
    with torch.inference_mode():
        while start < len(lengths):
            before = windows[start - 1] if start else 0
            end = max(start + 1, int(np.searchsorted(windows, before + budget, side="right")))
            first_word = word_ends[start - 1] if start else 0
            chunk_ids = ids[first_word:word_ends[end - 1]]
            if end == start + 1 and windows[start] - before > CHUNK_WINDOWS:  # one long text
                features = model.features(torch.from_numpy(chunk_ids)[None])
            else:
                features = model.ragged_features(chunk_ids, lengths[start:end])
            out[start:end] = probabilities(model.fc(features).numpy(), multi_label=multi_label)
            start = end
    return out


def decide(scores: np.ndarray, *, multi_label: bool, threshold: float) -> np.ndarray:
    """Class ids, or for multi-label a 0/1 matrix of the probabilities reaching `threshold`."""
    if multi_label:
        return (scores >= threshold).astype(np.int64)
    return scores.argmax(axis=1)


_CACHED_LENGTHS = 128  # the single-text path keeps its index arrays for texts up to this long


class SingleTextScorer:
    """The lean path for one text on the CPU: tokenizer, table lookups, max, linear, in NumPy.

    A call into torch costs microseconds of dispatch per operation, and `class_scores` makes a
    few dozen of them (and the batching around them) even for one sentence; that overhead, not
    the arithmetic, is most of a single prediction's time. This scorer computes the same values
    as `ProjectedKimCNN` over the same tap tables (read in place, not copied) in a dozen NumPy
    calls: one gather of every tap row of every window of every width, then per width the
    window sums and their max. For a sentence of n > 0
    words every one of its n + h - 1 windows holds a word, so no masking is needed; an empty
    sentence gives zero features, as there. The probabilities equal `class_scores`' to float
    rounding (tests/text/test_single_text.py checks them). A text holding the pad id itself (a
    subword tokenizer's literal "[PAD]") goes through `class_scores`, which counts it as padding
    as training did."""

    def __init__(self, projected: ProjectedKimCNN, encode: Callable[[str], list[int]], *,
                 multi_label: bool) -> None:
        cfg = projected.config
        self.projected, self.pad_id = projected, cfg.pad_id
        self.encode, self.multi_label = encode, multi_label
        self.widths = list(cfg.widths)
        self.taps_per_word, self.firsts = sum(self.widths), tap_offsets(self.widths)
        self.table = projected.table.detach().cpu().numpy()  # read in place: no second copy
        self.bias = torch.cat([getattr(projected, f"bias{i}") for i in range(len(self.widths))]).detach().numpy()
        self.weight = projected.fc.weight.detach().numpy().T.copy()  # [features, classes]
        self.fc_bias = projected.fc.bias.detach().numpy()
        self.widest, self.maps = max(self.widths), cfg.maps
        self.padding = [cfg.pad_id] * (self.widest - 1)
        self._layouts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _layout(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For a text of n words, padded by widest - 1 on each side: the padded position and the
        table row offset of every tap of every window, width by width, tap by tap."""
        if n in self._layouts:
            return self._layouts[n]
        positions, offsets = [], []
        for width, first in zip(self.widths, self.firsts):
            count = n + width - 1  # windows holding at least one word
            # tap by tap (each tap's rows for every window together, so that a window sum adds
            # whole slabs): position of tap k of window t, and tap k's row in a word's block
            grid = np.arange(width)[:, None] + np.arange(count) + (self.widest - width)
            positions.append(grid.ravel())
            offsets.append(np.repeat(first + np.arange(width), count))
        layout = (np.concatenate(positions), np.concatenate(offsets))
        if n <= _CACHED_LENGTHS:
            self._layouts[n] = layout
        return layout

    def __call__(self, text: str) -> np.ndarray:
        """Probabilities [1, classes] of `text`."""
        ids = self.encode(text)
        if self.pad_id in ids:
            return class_scores(self.projected, [ids], torch.device("cpu"), multi_label=self.multi_label)
        if ids:
            n = len(ids)
            positions, offsets = self._layout(n)
            padded = np.array(self.padding + ids + self.padding, dtype=np.intp)
            rows = np.take(self.table, padded[positions] * self.taps_per_word + offsets, axis=0)
            features = np.empty(len(self.bias), dtype=np.float32)
            start, maps = 0, self.maps
            for i, width in enumerate(self.widths):
                count = n + width - 1
                taps = rows[start:start + count * width].reshape(width, count, maps)
                taps.sum(axis=0).max(axis=0, out=features[i * maps:(i + 1) * maps])
                start += count * width
            features += self.bias
            np.maximum(features, 0, out=features)
            logits = features @ self.weight + self.fc_bias
        else:
            logits = self.fc_bias.copy()
        return probabilities(logits[None], multi_label=self.multi_label)
