"""Kim's convolutions computed from word projections: the fast path beside `KimCNN.features`.

A convolution of width h over word vectors is a sum of h per-position products:

    conv_h[t] = b + sum_k  W_h[:, :, k] @ e(word at t - h + 1 + k)

so it only needs each word's projection through each filter tap, `W_h[:, :, k] @ e(v)`.
One table holds them all, word by word: word u's S = sum(widths) rows (every tap of every width)
are rows u*S .. u*S + S - 1, so a word's projections lie together in memory, which makes the
lookups faster than one table per tap. The convolution at every position is a sum of h of its
rows, which `F.embedding_bag(mode="sum")` gathers and adds in one fused step.
Since ReLU is monotone and the bias is constant over time, max_t relu(x_t + b) equals
relu(max_t x_t + b), so the bias and ReLU are applied after pooling (the same holds for every
non-decreasing activation, `KimCNNConfig.activation_after_max`). Other choices of the model's
menu (average, L2 or k-max pooling, batch norm, a softmax or PReLU) take the windows' sums as the
convolution's output and go through `textcnn.model.pool_windows`, as the plain model does; word
dropout acts on the ids before the projection. Gaussian input noise is drawn per position, which
a table of distinct words cannot hold: that model trains on the plain path (see the estimator).

- Training (`projected_features`): the table covers the batch's distinct words only. A batch of
  50 sentences has about half as many distinct words as positions, so the projection GEMM (and
  its gradients) costs about half of the convolution's; the table is differentiable.
- Inference (`ProjectedKimCNN`): the table covers the whole vocabulary, computed once, and the
  windows of a long text are summed a chunk at a time (`CHUNK_WINDOWS`), each chunk reading
  `width - 1` positions past its last window: memory is bounded whatever a text's length.
  `ragged_features` takes many short texts laid end to end instead of a padded batch: no
  padding, no sorting by length, and a dozen torch calls per run of texts.

`KimCNN.features` (textcnn/model.py) is the plain reference; tests/text/test_projection.py checks
that both paths give the same features, logits and gradients to float tolerance.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textcnn.model import KimCNN, KimCNNConfig, pool_windows, valid_windows

Stage = tuple[nn.Module, nn.Module]  # a width's norm and activation

# Windows (texts x positions) summed at a time at inference: 16,384 windows of 100 maps are
# 6.5 MB of sums per width, so a 50,000-word document needs no more memory than a short batch.
CHUNK_WINDOWS = 1 << 14


def tap_offsets(widths: list[int]) -> list[int]:
    """Within a word's block of sum(widths) table rows, the row of each width's first tap."""
    return [sum(widths[:i]) for i in range(len(widths))]


def tap_tables(vectors: torch.Tensor, model: KimCNN, *,
               matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The [(U + 1) * S, maps] table of tap projections of `vectors` [U, C*D], S = sum(widths):
    row u * S + tap_offsets(widths)[i] + k is tap k of width i applied to word u; the last S rows
    (a word U that does not exist) are -inf (see `pool_from_tables`).

    With `matmul_dtype` (e.g. bfloat16) the projection GEMM and, in training, its two gradient
    GEMMs run in that type (accumulating in float32 inside, rounding their results to it); the
    table is float32 again before the sums and the max."""
    maps = model.config.maps
    # one GEMM for every tap of every width: [C*D, S * maps], columns ordered (width, k, m), so
    # that each row of the product is one word's block of S table rows
    weights = torch.cat([block.conv.weight.permute(1, 2, 0).reshape(vectors.shape[1], -1)
                         for block in model.convs], dim=1)
    vectors = F.pad(vectors, (0, 0, 0, 1))  # the -inf word's row
    if matmul_dtype is None:
        projected = vectors @ weights
    else:
        # Rows padded to a multiple of 64: oneDNN builds (and keeps) a bf16 kernel per GEMM shape,
        # and a batch's distinct-word count would otherwise give a new shape almost every step.
        rows = vectors.shape[0]
        padded = F.pad(vectors.to(matmul_dtype), (0, 0, 0, -rows % 64))
        projected = (padded @ weights.to(matmul_dtype))[:rows].to(vectors.dtype)
    projected[-1] = float("-inf")  # the product's backward needs its inputs only, not this row
    return projected.view(-1, maps)


def pool_from_tables(table: torch.Tensor, biases: list[torch.Tensor | None], rows: torch.Tensor,
                     lengths: torch.Tensor, *, pad_row: int, config: KimCNNConfig,
                     stages: list[Stage], chunk: int | None = None) -> torch.Tensor:
    """Pooled features [N, num_features] from a tap table (`tap_tables`' layout), as
    `KimCNN.features` gives them.

    `rows` [N, L] indexes each word's block of the table (right-padded with `pad_row`, whose
    projections are zero); `lengths` [N] counts real words; `biases` (None: a convolution without
    one) and `stages` (each width's norm and activation) come from the model. Windows of padding
    alone are left out, and an empty sentence gives zero features, as in `KimCNN.features`. With
    `chunk` and max pooling before the activation (Kim's order), the windows are summed and pooled
    at most `chunk` (N x windows) at a time, each piece reading `width - 1` positions past its last
    window start, and the pieces' maxima combined: the same features, with memory bounded by
    `chunk` rather than by the texts' length. The other poolings see every window at once.
    """
    n, taps_per_word = rows.shape[0], sum(config.widths)
    minus_inf = table.shape[0] - 1  # a row of the -inf word
    blocks = rows * taps_per_word  # each word's first row
    pooled = []
    for width, first, bias, (norm, act) in zip(config.widths, tap_offsets(list(config.widths)), biases, stages):
        padded = F.pad(blocks, (width - 1, width - 1), value=pad_row * taps_per_word)
        taps = torch.arange(first, first + width, device=rows.device)
        windows = padded.shape[1] - width + 1
        if config.activation_after_max:
            valid = valid_windows(lengths, width, windows)
            step = windows if chunk is None else max(1, chunk // max(1, n))
            best = None
            for start in range(0, windows, step):
                last = min(windows, start + step)
                index = padded[:, start:last + width - 1].unfold(1, width, 1) + taps  # [N, last - start, width]
                # Pointing the last tap of every window without a word at a -inf row rules it out
                # of the max without masking the [N, T, maps] sums; no valid window reaches it.
                index[..., -1] = index[..., -1].masked_fill(~valid[:, start:last], minus_inf)
                sums = F.embedding_bag(index.reshape(-1, width), table, mode="sum")
                piece = sums.view(n, last - start, -1).amax(dim=1)
                best = piece if best is None else torch.maximum(best, piece)
            if bias is not None:
                best = best + bias
            # an empty sentence's max is -inf: it gives zeros, as max_over_time does
            pooled.append(act(best).masked_fill(lengths[:, None] == 0, 0.0))
            continue
        index = padded.unfold(1, width, 1) + taps  # [N, L + width - 1, width]: window t's rows
        valid = valid_windows(lengths, width, index.shape[1])
        sums = F.embedding_bag(index.reshape(-1, width), table, mode="sum").view(n, index.shape[1], -1)
        if bias is not None:
            sums = sums + bias
        pooled.append(pool_windows(sums, valid, norm=norm, act=act, config=config))
    return torch.cat(pooled, dim=1)


def stages_of(model: KimCNN) -> list[Stage]:
    """Each width's norm and activation modules of `model`."""
    return [(block.norm, block.act) for block in model.convs]


def projected_features(model: KimCNN, ids: torch.Tensor, *,
                       matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """`model.features(ids)` computed from the batch's distinct words (differentiable); see
    `tap_tables` for `matmul_dtype`. Word dropout acts as in `KimCNN.features`; a model that adds
    input noise in training is refused there (noise is drawn per position)."""
    cfg = model.config
    if model.training and cfg.input_noise:
        raise ValueError("projected features draw no input noise (it is drawn per position); "
                         "train a model with input_noise on the plain path")
    ids = model.word_dropout(ids)
    pad = torch.tensor([cfg.pad_id], device=ids.device)
    words, rows = torch.unique(torch.cat([ids.flatten(), pad]), return_inverse=True)
    rows = rows[:-1].view_as(ids)
    vectors = torch.cat([emb(words) for emb in model.embeddings], dim=-1)  # [U, C*D]
    pad_row = int(torch.searchsorted(words, pad))
    table = tap_tables(vectors, model, matmul_dtype=matmul_dtype)
    return pool_from_tables(table, [b.conv.bias for b in model.convs], rows, (ids != cfg.pad_id).sum(dim=1),
                            pad_row=pad_row, config=cfg, stages=stages_of(model))


def projected_logits(model: KimCNN, ids: torch.Tensor, *,
                     matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """`model(ids)` through `projected_features` (dropout as the model's mode has it)."""
    return model.fc(model.dropout(projected_features(model, ids, matmul_dtype=matmul_dtype)))


class ProjectedKimCNN(nn.Module):
    """Inference-only form of a trained `KimCNN`: tap tables over the whole vocabulary."""

    def __init__(self, model: KimCNN) -> None:
        super().__init__()
        cfg = model.config
        self.config = cfg
        with torch.no_grad():
            vectors = torch.cat([emb.weight for emb in model.embeddings], dim=-1)  # [V, C*D]
            words, taps_per_word = vectors.shape[0], sum(cfg.widths)
            # `tap_tables`' layout, one tap's rows written at a time, a slab of words at a time:
            # the peak is the table, not copies of it (a 80k-word vocabulary's is 390 MB). The
            # single-text path (textcnn.estimator.inference.SingleTextScorer) reads it in place.
            table = vectors.new_empty((words + 1) * taps_per_word, cfg.maps)
            by_word = table.view(words + 1, taps_per_word, cfg.maps)
            for i, (block, first) in enumerate(zip(model.convs, tap_offsets(list(cfg.widths)))):
                weight = block.conv.weight  # [maps, C*D, width]
                for k in range(weight.shape[2]):
                    for slab in range(0, words, 8192):
                        end = min(words, slab + 8192)
                        by_word[slab:end, first + k] = vectors[slab:end] @ weight[:, :, k].t()
                bias = block.conv.bias
                self.register_buffer(f"bias{i}", torch.zeros(cfg.maps) if bias is None else bias.detach().clone())
            by_word[words] = float("-inf")
            self.register_buffer("table", table)
            # each width's norm (batch norm: its running statistics) and activation, as trained
            self.norms = nn.ModuleList(copy.deepcopy(norm) for norm, _ in stages_of(model))
            self.acts = nn.ModuleList(copy.deepcopy(act) for _, act in stages_of(model))
            self.fc = nn.Linear(cfg.num_features, cfg.num_classes)
            self.fc.load_state_dict(model.fc.state_dict())
        self.eval()

    @staticmethod
    def table_bytes(model: KimCNN) -> int:
        """Memory the tables of `model` would take."""
        cfg = model.config
        return 4 * cfg.maps * (cfg.vocab_size + 1) * sum(cfg.widths)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] right-padded ids -> [N, maps * len(widths)] pooled features (as KimCNN.features),
        summed `CHUNK_WINDOWS` windows at a time: memory does not grow with a text's length."""
        n_widths = len(self.config.widths)
        return pool_from_tables(self.table, [getattr(self, f"bias{i}") for i in range(n_widths)], ids,
                                (ids != self.config.pad_id).sum(dim=1), pad_row=self.config.pad_id,
                                config=self.config, stages=list(zip(self.norms, self.acts)),
                                chunk=CHUNK_WINDOWS)

    def ragged_features(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """Kim's features of N texts given one after another, `ids` [sum(lengths)] with `lengths`
        [N] (NumPy integer arrays), -> [N, num_features] on the CPU, as `features` gives them,
        with no padding to a common length.

        Each width lays the texts out in one run with width - 1 pad ids before each and after the
        last: every window of the run then holds a word of one text only (an empty text's
        width - 1 windows hold none; it gets zero features), and text j's len_j + width - 1
        windows follow text j - 1's. One `embedding_bag` sums every window of the run and one
        scatter takes each text's max. The layout is computed in NumPy, whose calls cost a
        fraction of torch's on arrays this small (the windows' rows excepted: torch adds the taps
        to an unfolded view four times faster). Kim's order only (max pooling, then the
        activation: `KimCNNConfig.activation_after_max`); the caller bounds the run's length, as
        the windows' sums [windows, maps] are held at once."""
        cfg = self.config
        if not cfg.activation_after_max:
            raise ValueError("ragged_features computes max pooling before the activation; "
                             f"this model has pooling {cfg.pooling!r}, batch_norm {cfg.batch_norm}, "
                             f"activation {cfg.activation!r}")
        taps_per_word, count, total = sum(cfg.widths), len(lengths), len(ids)
        if total == 0:
            return self.table.new_zeros(count, cfg.num_features)
        lengths = np.asarray(lengths, dtype=np.int64)
        texts = np.arange(count)
        word_order, texts_up_to_word = np.arange(total), np.repeat(texts + 1, lengths)  # texts up to each word's, its own included
        rows = np.asarray(ids, dtype=np.int64) * taps_per_word  # each word's first table row
        # every width's maxima in one tensor, then one bias, one activation and one copy into
        # columns: on two threads a torch call on a tensor this size costs tens of microseconds,
        # more than its arithmetic
        pooled = self.table.new_empty(len(cfg.widths), count, cfg.maps)
        for i, (width, first) in enumerate(zip(cfg.widths, tap_offsets(list(cfg.widths)))):
            gap = width - 1
            run = np.full(total + (count + 1) * gap, cfg.pad_id * taps_per_word, dtype=np.int64)
            run[word_order + gap * texts_up_to_word] = rows  # a gap before each text
            windows = torch.from_numpy(run).unfold(0, width, 1) + torch.arange(first, first + width)
            sums = F.embedding_bag(windows, self.table, mode="sum")
            owner = torch.from_numpy(np.repeat(texts, lengths + gap))
            pooled[i].scatter_reduce_(0, owner[:, None].expand(-1, cfg.maps), sums, "amax", include_self=False)
        pooled += torch.stack([getattr(self, f"bias{i}") for i in range(len(cfg.widths))])[:, None]
        if all(type(act) is nn.ReLU for act in self.acts):
            pooled.relu_()
        else:
            pooled = torch.stack([act(width_maxima) for act, width_maxima in zip(self.acts, pooled)])
        if not lengths.all():
            pooled[:, torch.from_numpy(lengths == 0)] = 0.0
        return pooled.permute(1, 0, 2).reshape(count, cfg.num_features)

    def window_scores(self, index: int, sums: torch.Tensor) -> torch.Tensor:
        """What width `index`'s maps make of windows whose tap sums are `sums` [..., maps]: the
        bias, the norm (batch norm: its running statistics) and the activation."""
        x = sums + getattr(self, f"bias{index}")
        if self.config.batch_norm:
            x = self.norms[index](x.reshape(-1, x.shape[-1])).view_as(x)
        return self.acts[index](x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] token ids -> [N, num_classes] logits."""
        return self.fc(self.features(ids))
