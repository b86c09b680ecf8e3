"""The projection paths agree with the plain Kim CNN: features, logits and gradients."""

import numpy as np
import pytest
import torch

from textcnn.model import VARIANTS, KimCNN, KimCNNConfig
from textcnn.projection import (
    ProjectedKimCNN,
    pool_from_tables,
    projected_features,
    projected_logits,
)


def make(variant, **kw):
    torch.manual_seed(0)
    cfg = KimCNNConfig(vocab_size=50, num_classes=4, embedding_dim=12, widths=[1, 3, 5], maps=7,
                       variant=variant, dropout=0.0, **kw)
    model = KimCNN(cfg, vectors=None if variant == "rand" else torch.randn(50, 12))
    with torch.no_grad():  # make the fine-tuned channel differ from the frozen one
        model.embeddings[-1].weight[1:].add_(0.1 * torch.randn(49, 12))
    return model


def batch(lengths=(0, 1, 2, 4, 9, 13), width=13):
    gen = torch.Generator().manual_seed(1)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 50, (n,), generator=gen)
    return ids


@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_tables_equal_plain_logits(variant):
    model = make(variant).eval()
    fast = ProjectedKimCNN(model)
    ids = batch()
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), model(ids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.features(ids), model.features(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lengths", [(0, 1, 2, 4, 9, 13), (6, 6, 6)])  # with and without padding
def test_training_projection_matches_plain_values_and_gradients(variant, lengths):
    ids = batch(lengths, width=max(lengths))
    target = torch.tensor([0, 1, 2, 3, 0, 1][: len(lengths)])
    assert_same_values_and_gradients(make(variant), lambda m: m(ids), make(variant),
                                     lambda m: projected_logits(m, ids), target, rtol=1e-5, atol=1e-5)


def assert_same_values_and_gradients(plain, plain_forward, fast, fast_forward, target, *, rtol, atol,
                                     seed=None):
    """The two forwards give the same logits, and the parameters of their models the same
    gradients of the cross-entropy (`seed`: the torch seed each forward starts from)."""
    outputs = []
    for model, forward in ((plain, plain_forward), (fast, fast_forward)):
        if seed is not None:
            torch.manual_seed(seed)
        logits = forward(model)
        torch.nn.functional.cross_entropy(logits, target).backward()
        outputs.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                          if p.grad is not None}))
    (plain_logits, plain_grads), (fast_logits, fast_grads) = outputs
    torch.testing.assert_close(fast_logits, plain_logits, rtol=rtol, atol=atol)
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=10 * rtol, atol=atol, msg=name)


def test_sparse_embedding_gradients_match_dense():
    ids = batch()
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    dense, sparse = make("rand"), make("rand", sparse=True)
    torch.nn.functional.cross_entropy(dense(ids), target).backward()
    torch.nn.functional.cross_entropy(projected_logits(sparse, ids), target).backward()
    grad = sparse.embeddings[0].weight.grad
    assert grad.is_sparse
    torch.testing.assert_close(grad.to_dense(), dense.embeddings[0].weight.grad, rtol=1e-4, atol=1e-5)
    assert projected_features(sparse, ids).shape == (6, 21)


def test_table_size():
    cfg = KimCNNConfig(vocab_size=10, num_classes=2, embedding_dim=4, widths=[2, 3], maps=5)
    model = KimCNN(cfg)
    fast = ProjectedKimCNN(model)
    assert ProjectedKimCNN.table_bytes(model) == 4 * sum(b.numel() for n, b in fast.named_buffers()
                                                         if n.startswith("table"))


@pytest.mark.parametrize("variant", ["rand", "multichannel"])
def test_bf16_projection_matches_float32_up_to_bf16_rounding(variant):
    """The CPU `amp` path: bf16 GEMM inputs and outputs, float32 accumulation inside the GEMM.
    Rounding to bf16 (8-bit mantissa) costs at most 2^-9 relative per value, so the tap tables,
    their gradients and the logits agree with float32 to a few 2^-8 of their scale. Gradients
    are compared through the tables (a fixed linear function of them): through the max over
    time, rounding may move a near-tie to another window, which is no test of arithmetic."""
    from textcnn.projection import tap_tables

    model = make(variant)
    vectors = torch.randn(30, model.config.embedding_dim * model.config.channels, requires_grad=True)
    probe = None
    grads = []
    for dtype in (None, torch.bfloat16):
        model.zero_grad()
        vectors.grad = None
        table = tap_tables(vectors, model, matmul_dtype=dtype)
        assert table.dtype == torch.float32
        finite = table[:-sum(model.config.widths)]  # the last word's rows are -inf
        if probe is None:
            probe = torch.randn_like(finite)
        (finite * probe).sum().backward()
        grads.append((finite.detach(), vectors.grad.clone(), model.convs[0].conv.weight.grad.clone()))
    for exact, bf16 in zip(*grads):
        scale = exact.abs().max().item()
        torch.testing.assert_close(bf16, exact, rtol=0, atol=2 ** -7 * scale)
        assert not torch.equal(bf16, exact)  # the bf16 products really ran
    ids = batch()
    exact, bf16 = (projected_logits(model, ids, matmul_dtype=d).detach() for d in (None, torch.bfloat16))
    torch.testing.assert_close(bf16, exact, rtol=0, atol=2 ** -6 * exact.abs().max().item())


def test_native_bf16_knows_cuda_and_answers_for_this_cpu():
    from textcnn.core.engine import native_bf16

    assert native_bf16(torch.device("cuda")) is True
    assert isinstance(native_bf16(torch.device("cpu")), bool)
    assert native_bf16(torch.device("meta")) is False


@pytest.mark.parametrize("length", [1, 7, 5_000, 50_000])
def test_long_documents_give_the_plain_logits_chunk_by_chunk(length):
    """ProjectedKimCNN sums CHUNK_WINDOWS windows at a time (a 50,000-word text in four chunks);
    the plain convolutions see the whole text at once."""
    model = make("multichannel").eval()
    fast = ProjectedKimCNN(model)
    ids = torch.randint(2, 50, (1, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), model(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 5, 16, 10_000])
def test_chunk_edges_change_no_feature(chunk):
    """Chunks of any size, over a batch with padding and an empty text, give the features of the
    unchunked sums (each chunk reads width - 1 positions past its last window)."""
    model = make("non-static").eval()
    fast = ProjectedKimCNN(model)
    ids = batch()
    biases = [getattr(fast, f"bias{i}") for i in range(3)]
    whole, pieces = (pool_from_tables(fast.table, biases, ids, (ids != 0).sum(1), pad_row=0, config=model.config,
                                      stages=list(zip(fast.norms, fast.acts)),
                                      chunk=c) for c in (None, chunk))
    torch.testing.assert_close(pieces, whole, rtol=0, atol=0)
    torch.testing.assert_close(whole, model.features(ids), rtol=1e-5, atol=1e-5)


def ragged(lengths, seed=1):
    """Texts of `lengths` words laid end to end: (ids [sum], lengths [N], the same right-padded)."""
    gen = torch.Generator().manual_seed(seed)
    texts = [torch.randint(1, 50, (n,), generator=gen) for n in lengths]
    padded = torch.zeros(len(lengths), max([1, *lengths]), dtype=torch.long)
    for row, text in enumerate(texts):
        padded[row, :len(text)] = text
    return torch.cat([torch.zeros(0, dtype=torch.long), *texts]), torch.tensor(lengths, dtype=torch.long), padded


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lengths", [(0, 1, 2, 4, 9, 13), (5,), (0,), (0, 0, 3, 0), (1, 1, 1), (13, 0)])
def test_ragged_features_equal_the_plain_features(variant, lengths):
    """Texts end to end with width - 1 pads between them (widths 1, 3 and 5: a width of 1 has no
    gap, and an empty text no window) give each text's own features: empty texts zeros."""
    model = make(variant).eval()
    ids, counts, padded = ragged(lengths)
    with torch.no_grad():
        got = ProjectedKimCNN(model).ragged_features(ids.numpy(), counts.numpy())
        torch.testing.assert_close(got, model.features(padded), rtol=1e-5, atol=1e-5)
    assert not got[counts == 0].any()


def test_ragged_features_refuse_a_model_that_activates_before_pooling():
    with pytest.raises(ValueError, match="max pooling before the activation"):
        ProjectedKimCNN(make("rand", pooling="avg").eval()).ragged_features(*(a.numpy() for a in ragged((2, 3))[:2]))


@pytest.mark.parametrize("budget", [1, 7, 40, 10_000])
def test_ragged_scores_equal_the_plain_model_in_chunks_of_any_budget(budget):
    """Chunks cut by the budget, and a text longer than CHUNK_WINDOWS alone through the chunked
    `features`, give the plain model's probabilities in input order."""
    from textcnn.estimator.inference import class_scores, ragged_scores
    from textcnn.projection import CHUNK_WINDOWS

    model = make("non-static").eval()
    lengths = (3, 0, 9, CHUNK_WINDOWS + 5, 1, 13, 0, 2)
    ids, counts, _ = ragged(lengths)
    texts = [ids[end - n:end].tolist() for n, end in zip(lengths, counts.cumsum(0).tolist())]
    for multi_label in (False, True):
        got = ragged_scores(ProjectedKimCNN(model), ids.numpy(), counts.numpy(), multi_label=multi_label,
                            budget=budget)
        expected = class_scores(model, texts, torch.device("cpu"), multi_label=multi_label)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_ragged_scores_treat_a_pad_id_inside_a_text_as_the_padded_batches_do():
    """A subword tokenizer gives the pad id for a literal "[PAD]"; the padded batches (and
    training) count it as padding, so such texts take that path."""
    from textcnn.estimator.inference import class_scores, ragged_scores

    model = make("rand").eval()
    texts = [[5, 0, 7, 9], [3, 4], [0], [8, 8, 0]]
    ids, lengths = np.array([i for t in texts for i in t]), np.array([len(t) for t in texts])
    expected = class_scores(model, texts, torch.device("cpu"), multi_label=False)
    np.testing.assert_allclose(ragged_scores(ProjectedKimCNN(model), ids, lengths, multi_label=False), expected,
                               rtol=1e-5, atol=1e-6)


# -- the model's menu: every choice served by the projection path --------------------------------------
MENUS = [dict(activation="tanh"), dict(activation="leaky_relu"), dict(activation="prelu"),
         dict(activation="softmax", pooling="avg"), dict(pooling="l2"), dict(pooling="kmax", k=3),
         dict(batch_norm=True), dict(batch_norm=True, pooling="kmax", activation="selu"),
         dict(weight_norm=True, pooling="avg"), dict(word_dropout=0.4, activation="sigmoid")]


@pytest.mark.parametrize("menu", MENUS, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
def test_projection_path_equals_the_plain_model_under_every_choice(menu):
    """Training (differentiable tables of the batch's words, batch norm in training mode, the
    same word-dropout draw) and inference (`ProjectedKimCNN`): values and gradients."""
    ids = batch()
    plain, fast = make("rand", **menu).train(), make("rand", **menu).train()
    assert_same_values_and_gradients(plain, lambda m: m(ids), fast, lambda m: projected_logits(m, ids),
                                     torch.tensor([0, 1, 2, 3, 0, 1]), rtol=1e-5, atol=1e-5,
                                     seed=11)  # the same word-dropout draw
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(ProjectedKimCNN(plain)(ids), plain(ids), rtol=1e-5, atol=1e-5)


def test_projected_training_refuses_input_noise():
    model = make("rand", input_noise=0.1).train()
    with pytest.raises(ValueError, match="input noise"):
        projected_features(model, batch())
    projected_features(model.eval(), batch())  # at inference the noise is off: the tables serve
