"""Class probabilities of a text classifier's model, in batches of bounded memory, and the
decisions taken from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from textcnn.batching import pad_batch, token_budget_batches
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


def class_scores(model: KimCNN | ProjectedKimCNN, ids: list[list[int]], device: torch.device, *,
                 multi_label: bool,
                 forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Probabilities [N, classes] in input order (softmax, or sigmoid for multi-label), in
    batches of at most INFERENCE_TOKENS padded tokens (see `token_budget_batches`)."""
    out = np.zeros((len(ids), model.config.num_classes), dtype=np.float32)
    was_training = model.training
    model.eval()
    batches = token_budget_batches([len(s) for s in ids], max_tokens=INFERENCE_TOKENS,
                                   max_count=INFERENCE_BATCH)
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
