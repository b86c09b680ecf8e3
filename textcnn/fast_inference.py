"""Fast inference for a trained Kim CNN: every word's filter responses, computed once.

A convolution of width h over word vectors is a sum of h per-position products:

    conv_h[t] = b + sum_k  W_h[:, :, k] @ e(word at t - h + 1 + k)

At inference the embeddings and filters are fixed, so `W_h[:, :, k] @ e(v)` can be tabulated
for every vocabulary word v and tap k. The convolution then becomes a sum of h table rows per
position, which `F.embedding_bag(mode="sum")` computes in one fused gather-and-add, without
materialising the [N, L, D] embeddings. Since ReLU is monotone and the bias is constant over
time, max_t relu(x_t + b) = relu(max_t x_t + b), so the bias and ReLU wait until after pooling.

`KimCNN` (textcnn/model.py) is the plain reference; `tests/text/test_fast_inference.py` checks
that both give the same logits to float tolerance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textcnn.model import KimCNN


class ProjectedKimCNN(nn.Module):
    """Inference-only form of a trained `KimCNN` (eval mode: no dropout)."""

    def __init__(self, model: KimCNN) -> None:
        super().__init__()
        cfg = model.config
        if cfg.act_layer != "relu":
            raise ValueError(f"projected inference needs a monotone ReLU, got act_layer '{cfg.act_layer}'")
        self.config = cfg
        self.pad_id, self.vocab_size, self.widths = cfg.pad_id, cfg.vocab_size, list(cfg.widths)
        with torch.no_grad():
            vectors = torch.cat([emb.weight for emb in model.embeddings], dim=-1)  # [V, C*D]
            for i, block in enumerate(model.convs):
                conv = block.conv
                # row k*V + v holds tap k of every filter applied to word v: [width * V, maps]
                table = torch.einsum("vd,mdk->kvm", vectors, conv.weight).reshape(-1, cfg.maps)
                self.register_buffer(f"table{i}", table.contiguous())
                self.register_buffer(f"bias{i}", conv.bias.detach().clone())
            self.fc = nn.Linear(cfg.num_features, cfg.num_classes)
            self.fc.load_state_dict(model.fc.state_dict())
        self.eval()

    @staticmethod
    def table_bytes(model: KimCNN) -> int:
        """Memory the tables of `model` would take."""
        cfg = model.config
        return 4 * cfg.vocab_size * cfg.maps * sum(cfg.widths)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] right-padded ids -> [N, maps * len(widths)] pooled features (as KimCNN.features)."""
        n = ids.shape[0]
        lengths = (ids != self.pad_id).sum(dim=1)
        pooled = []
        for i, width in enumerate(self.widths):
            table, bias = getattr(self, f"table{i}"), getattr(self, f"bias{i}")
            padded = F.pad(ids, (width - 1, width - 1), value=self.pad_id)
            windows = padded.unfold(1, width, 1)  # [N, L + width - 1, width]
            taps = torch.arange(width, device=ids.device) * self.vocab_size
            sums = F.embedding_bag((windows + taps).reshape(-1, width), table, mode="sum")
            sums = sums.view(n, windows.shape[1], -1)
            positions = torch.arange(windows.shape[1], device=ids.device)
            padding_only = positions[None, :] >= lengths[:, None] + width - 1
            best = sums.masked_fill(padding_only[:, :, None], float("-inf")).amax(dim=1)
            feats = torch.relu(best + bias)
            pooled.append(feats.masked_fill((lengths == 0)[:, None], 0.0))
        return torch.cat(pooled, dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, num_classes] logits."""
        return self.fc(self.features(ids))
