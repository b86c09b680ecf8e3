"""StepGraphs: one recorded training step per batch shape, against plain eager steps.

Without a GPU the recording is replaced by a stand-in whose replay runs the step again on the
static buffers, which is what a CUDA graph does; that checks the bookkeeping (shapes, warm-up,
buffer copies, the fallback). The tests marked `cuda` record real graphs.
"""

import warnings

import pytest
import torch
from torch import nn

from textcnn.batching import pad_batch
from textcnn.core.cuda_graphs import StepGraphs, batch_signature, clone_batch
from textcnn.core.engine import TrainConfig, Trainer
from textcnn.core.errors import TextCNNError
from textcnn.core.optim import create_optimizer
from textcnn.model import KimCNN, KimCNNConfig

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class ReplayStandIn:
    """What a CUDA graph does on replay: the recorded step again, on the same static tensors."""

    def __init__(self, step, static_batch, output):
        self.step, self.static_batch, self.output = step, static_batch, output

    def replay(self):
        self.output.copy_(self.step(self.static_batch))


def stand_in_capture(step, static_batch, stream):
    # a capture records without running: the output tensor exists but holds nothing yet
    output = torch.zeros(())
    return ReplayStandIn(step, static_batch, output), output


def make_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [4, 6, 4, 4, 6, 3, 6, 4, 3, 3, 6]  # repeated shapes, as length buckets give
    return [(torch.randn(n, 5, generator=g), torch.randint(0, 2, (n,), generator=g)) for n in shapes]


def linear_step():
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(batch):
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return model, optimizer, step


def test_batch_signature_and_clone():
    batch = (torch.zeros(2, 3), {"b": torch.ones(4, dtype=torch.long), "a": torch.zeros(1)})
    assert batch_signature(batch) == (((2, 3), torch.float32, torch.device("cpu")),
                                      ((1,), torch.float32, torch.device("cpu")),
                                      ((4,), torch.int64, torch.device("cpu")))
    copy = clone_batch(batch)
    copy[1]["b"].zero_()
    assert batch[1]["b"].sum() == 4


@pytest.mark.parametrize("warmup", [0, 1, 2])
def test_recorded_steps_train_like_eager_steps(warmup):
    eager_model, _, eager_step = linear_step()
    eager_losses = [eager_step(b) for b in make_batches()]
    model, _, step = linear_step()
    graphs = StepGraphs(step, warmup=warmup, capture=stand_in_capture, stream=None)
    losses = [graphs(b) for b in make_batches()]
    torch.testing.assert_close(torch.stack(losses), torch.stack(eager_losses))
    torch.testing.assert_close(model.weight, eager_model.weight)
    # three shapes, seen 4, 4 and 3 times: each is recorded once its warm-up steps have run
    assert graphs.captured == 3
    assert sum(graphs.eager_runs.values()) == 3 * warmup


def test_a_failed_capture_leaves_that_shape_eager_and_the_others_graphed():
    eager_model, _, eager_step = linear_step()
    for b in make_batches():
        eager_step(b)
    model, optimizer, step = linear_step()
    failures, attempts = [], []

    def capture_failing_on_six_rows(step, static_batch, stream):
        attempts.append(static_batch[0].shape[0])
        if static_batch[0].shape[0] == 6:  # like a kernel that synchronises above some size
            raise RuntimeError("operation not permitted when stream is capturing")
        return stand_in_capture(step, static_batch, stream)

    graphs = StepGraphs(step, warmup=1, capture=capture_failing_on_six_rows, stream=None,
                        on_capture_failure=lambda: failures.append(True))
    with pytest.warns(RuntimeWarning, match=r"capture failed .*not permitted.*shape \[\(6, 5\), \(6,\)\]"):
        for b in make_batches():
            graphs(b)
    assert sorted(attempts) == [3, 4, 6] and len(failures) == 1  # each shape tried once
    assert graphs.captured == 2 and list(graphs.failed) == [batch_signature(make_batches()[1])]
    assert graphs.eager_runs[batch_signature(make_batches()[1])] == 4  # every six-row batch
    torch.testing.assert_close(model.weight, eager_model.weight)


def test_pad_batch_multiple_of_changes_no_kim_output_or_gradient():
    """cuda_graphs pads batches wider; padding-only windows are masked, so nothing changes."""
    torch.manual_seed(0)
    model = KimCNN(KimCNNConfig(vocab_size=40, num_classes=3, embedding_dim=6, widths=[2, 3, 5],
                                maps=4, dropout=0.0))
    sentences = [[5, 6, 7], [3], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17], []]
    narrow, wide = pad_batch(sentences), pad_batch(sentences, multiple_of=8)
    assert narrow.shape == (4, 10) and wide.shape == (4, 16)
    outputs = []
    for ids in (narrow, wide):
        model.zero_grad()
        logits = model(ids)
        logits.square().sum().backward()
        outputs.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        torch.testing.assert_close(a, b)


def test_capturable_only_where_the_optimizer_has_it():
    params = [nn.Parameter(torch.zeros(2))]
    assert create_optimizer("adadelta", params, capturable=True).defaults["capturable"] is True
    assert "capturable" not in create_optimizer("sgd", params, capturable=True).defaults
    assert create_optimizer("adadelta", params).defaults["capturable"] is False


def test_cuda_graphs_on_cpu_trains_exactly_as_without():
    def run(graphs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.3), nn.Linear(4, 2))
        batches = make_batches()
        config = TrainConfig(epochs=2, progress=False, device="cpu", cuda_graphs=graphs)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            trainer = Trainer(model, config=config, batches=lambda epoch, g: batches,
                              loss_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]))
        # asked for graphs on a CPU, the run says it trains without them
        assert [str(w.message)[:17] for w in said] == (["train.cuda_graphs"] if graphs else [])
        trainer.fit()
        return model, trainer

    (plain, _), (graphed, trainer) = run(False), run(True)
    assert trainer.step_graphs is None
    for a, b in zip(plain.parameters(), graphed.parameters()):
        assert torch.equal(a, b)


# -- real CUDA graphs ------------------------------------------------------------------------

def _kim_batches(n_batches=12, seed=0):
    """Batches of 8 sentences, padded like cuda_graphs pads them: widths 8 and 16 in turn."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        longest = 8 if i % 2 == 0 else 14
        lengths = [longest, *torch.randint(1, longest + 1, (7,), generator=g).tolist()]
        sentences = [torch.randint(1, 60, (n,), generator=g).tolist() for n in lengths]
        out.append((pad_batch(sentences, multiple_of=8), torch.randint(0, 3, (8,), generator=g)))
    return out


def _train_kim(graphs: bool, *, dropout: float = 0.0, lr: float | None = None):
    torch.manual_seed(0)
    model = KimCNN(KimCNNConfig(vocab_size=60, num_classes=3, embedding_dim=16, maps=8,
                                dropout=dropout))
    batches = _kim_batches()
    config = TrainConfig(epochs=3, progress=False, device="cuda", cuda_graphs=graphs, amp=False, lr=lr)
    trainer = Trainer(model, config=config, batches=lambda epoch, g: batches,
                      loss_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                      after_step=KimCNN.apply_max_norm)
    result = trainer.fit()
    return model, trainer, result


@cuda
def test_cuda_graph_training_matches_eager_training():
    eager, _, eager_result = _train_kim(False)
    graphed, trainer, result = _train_kim(True)
    assert trainer.step_graphs is not None and trainer.step_graphs.captured == 2
    assert not trainer.step_graphs.failed
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(eager_result.history, result.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


@cuda
def test_cuda_graph_dropout_draws_fresh_masks():
    # lr 0 keeps the weights and every epoch has the same batches, so epochs 2 and 3 (all replays)
    # differ only if each replay draws new dropout masks
    model, trainer, result = _train_kim(True, dropout=0.5, lr=0.0)
    assert trainer.step_graphs.captured == 2 and not trainer.step_graphs.failed
    losses = [r["train_loss"] for r in result.history]
    assert losses[1] != losses[2]
    _, _, no_dropout = _train_kim(True, dropout=0.0, lr=0.0)
    assert no_dropout.history[1]["train_loss"] == pytest.approx(no_dropout.history[2]["train_loss"])


@cuda
def test_cuda_graphs_refuse_a_learning_rate_schedule():
    config = TrainConfig(device="cuda", cuda_graphs=True, lr_schedule="cosine", progress=False)
    with pytest.raises(TextCNNError, match="cuda_graphs: expected a constant learning rate"):
        Trainer(nn.Linear(2, 2), config=config, batches=lambda e, g: [], steps_per_epoch=1,
                loss_fn=lambda m, b: m(b).sum())


def test_recipe_key_reaches_the_estimator_and_results_row():
    from textcnn.recipe import text_recipe

    recipe = text_recipe({"data": {"train": "x.csv"}, "train": {"cuda_graphs": True}})
    assert recipe.train.cuda_graphs is True
    assert recipe.estimator_params()["cuda_graphs"] is True
