"""Kim's convolutions computed from word projections: the fast path beside `KimCNN.features`.

A convolution of width h over word vectors is a sum of h per-position products:

    conv_h[t] = b + sum_k  W_h[:, :, k] @ e(word at t - h + 1 + k)

so it only needs each word's projection through each filter tap, `W_h[:, :, k] @ e(v)`.
Stacked by tap, these form a table with rows k*U + u, and the convolution at every position is a
sum of h table rows, which `F.embedding_bag(mode="sum")` gathers and adds in one fused step.
Since ReLU is monotone and the bias is constant over time, max_t relu(x_t + b) equals
relu(max_t x_t + b), so the bias and ReLU are applied after pooling.

- Training (`projected_features`): the table covers the batch's distinct words only. A batch of
  50 sentences has about half as many distinct words as positions, so the projection GEMM (and
  its gradients) costs about half of the convolution's; the table is differentiable.
- Inference (`ProjectedKimCNN`): the table covers the whole vocabulary, computed once, and the
  windows of a long text are summed a chunk at a time (`CHUNK_WINDOWS`), each chunk reading
  `width - 1` positions past its last window: memory is bounded whatever a text's length.

`KimCNN.features` (textcnn/model.py) is the plain reference; tests/text/test_projection.py checks
that both paths give the same features, logits and gradients to float tolerance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textcnn.model import KimCNN

# Windows (texts x positions) summed at a time at inference: 16,384 windows of 100 maps are
# 6.5 MB of sums per width, so a 50,000-word document needs no more memory than a short batch.
CHUNK_WINDOWS = 1 << 14


def tap_tables(vectors: torch.Tensor, model: KimCNN, *,
               matmul_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Per width, the [width * U + 1, maps] table of tap projections of `vectors` [U, C*D]:
    row k * U + u is tap k applied to word u; the last row is -inf (see `pool_from_tables`).

    With `matmul_dtype` (e.g. bfloat16) the projection GEMM and, in training, its two gradient
    GEMMs run in that type (accumulating in float32 inside, rounding their results to it); the
    tables are float32 again before the sums and the max."""
    maps, widths = model.config.maps, list(model.config.widths)
    # one GEMM for every tap of every width: [C*D, sum(widths) * maps], columns ordered (k, m)
    weights = torch.cat([block.conv.weight.permute(1, 2, 0).reshape(vectors.shape[1], -1)
                         for block in model.convs], dim=1)
    if matmul_dtype is None:
        projected = vectors @ weights
    else:
        # Rows padded to a multiple of 64: oneDNN builds (and keeps) a bf16 kernel per GEMM shape,
        # and a batch's distinct-word count would otherwise give a new shape almost every step.
        rows = vectors.shape[0]
        padded = F.pad(vectors.to(matmul_dtype), (0, 0, 0, -rows % 64))
        projected = (padded @ weights.to(matmul_dtype))[:rows].to(vectors.dtype)
    projected = projected.split([w * maps for w in widths], dim=1)
    minus_inf = vectors.new_full((1, maps), float("-inf"))
    return [torch.cat([p.view(-1, w, maps).transpose(0, 1).reshape(-1, maps), minus_inf])
            for p, w in zip(projected, widths)]


def pool_from_tables(tables: list[torch.Tensor], biases: list[torch.Tensor], rows: torch.Tensor,
                     lengths: torch.Tensor, *, pad_row: int, widths: list[int],
                     chunk: int | None = None) -> torch.Tensor:
    """Max-over-time features [N, maps * len(widths)] from tap tables.

    `rows` [N, L] indexes each word's table row (right-padded with `pad_row`, whose projection
    is zero); `lengths` [N] counts real words. Windows of padding alone are left out, and an
    empty sentence gives zero features, as in `KimCNN.features`. With `chunk`, the windows are
    summed and pooled at most `chunk` (N x windows) at a time, each piece reading `width - 1`
    positions past its last window start, and the pieces' maxima combined: the same features,
    with memory bounded by `chunk` rather than by the texts' length.
    """
    n = rows.shape[0]
    pooled = []
    for width, table, bias in zip(widths, tables, biases):
        n_rows = (table.shape[0] - 1) // width
        padded = F.pad(rows, (width - 1, width - 1), value=pad_row)
        windows = padded.shape[1] - width + 1
        step = windows if chunk is None else max(1, chunk // max(1, n))
        taps = torch.arange(width, device=rows.device) * n_rows
        best = None
        for first in range(0, windows, step):
            last = min(windows, first + step)
            # Window t ends at padded position t + width - 1 and holds no word once t >= length +
            # width - 1 (or when the sentence is empty). Pointing that last tap at an extra -inf
            # row rules such windows out of the max without masking the [N, T, maps] sums; no
            # valid window reaches that row.
            positions = torch.arange(first + width - 1, last + width - 1, device=rows.device)
            beyond = (positions[None, :] >= lengths[:, None] + 2 * (width - 1)) | (lengths[:, None] == 0)
            index = padded[:, first : last + width - 1].unfold(1, width, 1) + taps  # [N, last - first, width]
            index[..., -1] = index[..., -1].masked_fill(beyond, width * n_rows)
            sums = F.embedding_bag(index.reshape(-1, width), table, mode="sum")
            piece = sums.view(n, last - first, -1).amax(dim=1)
            best = piece if best is None else torch.maximum(best, piece)
        pooled.append(torch.relu(best + bias))  # relu(-inf) = 0: an empty sentence gives zeros
    return torch.cat(pooled, dim=1)


def projected_features(model: KimCNN, ids: torch.Tensor, *,
                       matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """`model.features(ids)` computed from the batch's distinct words (differentiable); see
    `tap_tables` for `matmul_dtype`."""
    cfg = model.config
    pad = torch.tensor([cfg.pad_id], device=ids.device)
    words, rows = torch.unique(torch.cat([ids.flatten(), pad]), return_inverse=True)
    rows = rows[:-1].view_as(ids)
    vectors = torch.cat([emb(words) for emb in model.embeddings], dim=-1)  # [U, C*D]
    pad_row = int(torch.searchsorted(words, pad))
    tables = tap_tables(vectors, model, matmul_dtype=matmul_dtype)
    return pool_from_tables(tables, [b.conv.bias for b in model.convs], rows,
                            (ids != cfg.pad_id).sum(dim=1), pad_row=pad_row, widths=list(cfg.widths))


def projected_logits(model: KimCNN, ids: torch.Tensor, *,
                     matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """`model(ids)` through `projected_features` (dropout as the model's mode has it)."""
    return model.fc(model.dropout(projected_features(model, ids, matmul_dtype=matmul_dtype)))


class ProjectedKimCNN(nn.Module):
    """Inference-only form of a trained `KimCNN`: tap tables over the whole vocabulary."""

    def __init__(self, model: KimCNN) -> None:
        super().__init__()
        cfg = model.config
        if cfg.act_layer != "relu":
            raise ValueError(f"projected inference needs a monotone ReLU, got act_layer '{cfg.act_layer}'")
        self.config = cfg
        with torch.no_grad():
            vectors = torch.cat([emb.weight for emb in model.embeddings], dim=-1)  # [V, C*D]
            rows = vectors.shape[0]
            sizes = [block.conv.weight.shape[2] * rows + 1 for block in model.convs]
            # One block of memory, each width's table a slice of it: the single-text path
            # (textcnn.estimator.inference.SingleTextScorer) gathers from all of them at once.
            # `tap_tables`' layout, written a tap at a time into the block itself: the peak is
            # the tables, not three copies of them (a 80k-word vocabulary's are 390 MB).
            combined = vectors.new_empty(sum(sizes), cfg.maps)
            start = 0
            for i, (block, size) in enumerate(zip(model.convs, sizes)):
                table, weight = combined[start:start + size], block.conv.weight  # [maps, C*D, width]
                for k in range(weight.shape[2]):
                    torch.matmul(vectors, weight[:, :, k].t(), out=table[k * rows:(k + 1) * rows])
                table[-1] = float("-inf")
                self.register_buffer(f"table{i}", table)
                self.register_buffer(f"bias{i}", block.conv.bias.detach().clone())
                start += size
            self.fc = nn.Linear(cfg.num_features, cfg.num_classes)
            self.fc.load_state_dict(model.fc.state_dict())
        self.eval()

    @staticmethod
    def table_bytes(model: KimCNN) -> int:
        """Memory the tables of `model` would take."""
        cfg = model.config
        return 4 * cfg.maps * sum(w * cfg.vocab_size + 1 for w in cfg.widths)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] right-padded ids -> [N, maps * len(widths)] pooled features (as KimCNN.features),
        summed `CHUNK_WINDOWS` windows at a time: memory does not grow with a text's length."""
        n_widths = len(self.config.widths)
        return pool_from_tables([getattr(self, f"table{i}") for i in range(n_widths)],
                                [getattr(self, f"bias{i}") for i in range(n_widths)], ids,
                                (ids != self.config.pad_id).sum(dim=1), pad_row=self.config.pad_id,
                                widths=list(self.config.widths), chunk=CHUNK_WINDOWS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, num_classes] logits."""
        return self.fc(self.features(ids))
