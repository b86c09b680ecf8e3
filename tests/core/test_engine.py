"""The training engine: seeding, selection on dev, early stopping, penalties, logs, resume."""

import json

import pytest
import torch
from torch import nn

from textcnn.core.engine import TrainConfig, Trainer, resolve_device
from textcnn.core.errors import TextCNNError

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()


def make_model():
    return nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 2))


def batches(epoch, generator):
    order = torch.randperm(len(X), generator=generator)
    for i in range(0, len(X), 16):
        idx = order[i:i + 16]
        yield X[idx], Y[idx]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def dev_accuracy(model, device):
    return {"accuracy": (model(X.to(device)).argmax(1).cpu() == Y).float().mean().item()}


def fit(out_dir=None, epochs=6, seed=0, evaluate=dev_accuracy, **cfg):
    torch.manual_seed(seed)
    model = make_model()
    config = TrainConfig(epochs=epochs, seed=seed, optimizer="adam", progress=False, **cfg)
    result = Trainer(model, config=config, loss_fn=loss_fn, batches=batches, evaluate=evaluate,
                     out_dir=out_dir).fit()
    return model, result


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_gives_identical_results_and_other_seed_differs():
    a, ra = fit(seed=3)
    b, rb = fit(seed=3)
    c, _ = fit(seed=4)
    assert torch.equal(weights(a), weights(b))
    assert ra.history == [{**r, "seconds": h["seconds"]} for r, h in zip(rb.history, ra.history)]
    assert not torch.equal(weights(a), weights(c))


def test_best_epoch_weights_are_restored():
    scores = iter([0.5, 0.9, 0.6, 0.7])
    snapshots = []

    def scripted(model, device):
        snapshots.append(weights(model).clone())
        return {"accuracy": next(scores)}

    model, result = fit(epochs=4, evaluate=scripted)
    assert result.best_epoch == 2 and result.best_metrics == {"accuracy": 0.9}
    assert torch.equal(weights(model), snapshots[1])


def test_early_stopping_on_patience():
    scores = iter([0.5, 0.9, 0.6, 0.7, 0.8, 0.95])
    _, result = fit(epochs=6, evaluate=lambda m, d: {"accuracy": next(scores)}, patience=2)
    assert result.epochs_run == 4 and result.best_epoch == 2


def test_missing_dev_metric_is_a_clear_error():
    with pytest.raises(TextCNNError, match="f1"):
        fit(epochs=1, metric="f1")


def test_l2_penalty_enters_the_gradient():
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    lam, lr = 0.1, 0.5
    x, y = X[:16], Y[:16]
    config = TrainConfig(epochs=1, optimizer="sgd", lr=lr, l2=lam, progress=False)
    Trainer(model, config=config, loss_fn=loss_fn, batches=lambda e, g: [(x, y)]).fit()
    ref = nn.Linear(5, 2)
    with torch.no_grad():
        ref.weight.copy_(w0)
        ref.bias.copy_(b0)
    loss = loss_fn(ref, (x, y)) + lam * (ref.weight ** 2).sum()  # biases are not penalised
    loss.backward()
    assert torch.allclose(model.weight, w0 - lr * ref.weight.grad, atol=1e-6)
    assert torch.allclose(model.bias, b0 - lr * ref.bias.grad, atol=1e-6)


def test_after_step_runs_after_each_optimizer_step():
    calls = []
    model = make_model()
    config = TrainConfig(epochs=2, progress=False)
    Trainer(model, config=config, loss_fn=loss_fn, batches=batches,
            after_step=lambda m: calls.append(1)).fit()
    assert len(calls) == 2 * 4


def test_logs_and_resume_give_the_same_run(tmp_path):
    full, full_result = fit(out_dir=tmp_path / "full", epochs=5)
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5]
    assert {"train_loss", "dev_accuracy", "seconds"} <= set(json.loads(lines[0]))
    # An "interrupted" run: 2 epochs, then the same run asked for 5 resumes at epoch 3.
    fit(out_dir=tmp_path / "part", epochs=2)
    resumed, resumed_result = fit(out_dir=tmp_path / "part", epochs=5)
    assert torch.equal(weights(full), weights(resumed))
    assert resumed_result.epochs_run == 5
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed_result.history) == strip(full_result.history)
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == 5


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TextCNNError, match="no CUDA"):
            resolve_device("cuda")


def test_cosine_schedule_with_warmup_follows_the_formula():
    import math

    seen = []

    def record(model):
        seen.append(trainer.optimizer.param_groups[0]["lr"])

    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.1, progress=False, lr_schedule="cosine",
                         warmup_steps=2)
    trainer = Trainer(make_model(), config=config, loss_fn=loss_fn, batches=batches,
                      after_step=record, steps_per_epoch=4)
    trainer.fit()
    total = 3 * 4
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * s / total)) * (min(s + 1, 2) / 2) for s in range(total)]
    assert seen == pytest.approx(expected)
    with pytest.raises(TextCNNError, match="steps per epoch"):
        Trainer(make_model(), config=config, loss_fn=loss_fn, batches=batches)


def test_time_budget_stops_before_an_epoch_that_would_overrun(monkeypatch):
    import itertools
    from types import SimpleNamespace

    from textcnn.core import engine

    clock = itertools.count()  # every reading of the engine's clock is one second later
    monkeypatch.setattr(engine, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    config = TrainConfig(epochs=50, optimizer="adam", progress=False, max_seconds=2.5)
    result = Trainer(make_model(), config=config, loss_fn=loss_fn, batches=batches).fit()
    # each epoch measures 1 s; after two, a third would end at 3 s > 2.5 s
    assert result.epochs_run == 2 and result.seconds == 2.0


def test_grad_clip_bounds_the_update():
    captured = {}

    def grab(model):
        captured.setdefault("norm", torch.cat([p.grad.flatten() for p in model.parameters()]).norm())

    def big_loss(model, batch):
        return 1000.0 * loss_fn(model, batch)

    config = TrainConfig(epochs=1, optimizer="sgd", lr=0.1, progress=False, grad_clip=0.5)
    Trainer(make_model(), config=config, loss_fn=big_loss, batches=batches, after_step=grab).fit()
    assert float(captured["norm"]) == pytest.approx(0.5, rel=1e-4)


def test_nan_loss_is_one_line_naming_the_epoch_and_the_finished_epochs_are_kept(tmp_path):
    def nan_from_epoch_2(model, batch):
        loss = loss_fn(model, batch)
        return loss * float("nan") if model.epoch == 2 else loss

    def epochs(epoch, generator):  # the loss function learns the epoch from here
        model.epoch = epoch
        return batches(epoch, generator)

    torch.manual_seed(0)
    model = make_model()
    config = TrainConfig(epochs=3, optimizer="adam", lr=0.01, progress=False)
    with pytest.raises(TextCNNError) as caught:
        Trainer(model, config=config, loss_fn=nan_from_epoch_2, batches=epochs, evaluate=dev_accuracy,
                out_dir=tmp_path).fit()
    assert str(caught.value) == (f"epoch 2: the training loss became nan; the checkpoint after epoch 1 "
                                 f"is kept in {tmp_path / 'checkpoint'}; try a lower learning rate "
                                 f"(train.lr, now 0.01)")
    # the finished epoch survives: the same run resumes from it (and, without the fault, ends
    # where an uninterrupted run ends)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]
    torch.manual_seed(0)
    model = make_model()
    result = Trainer(model, config=config, loss_fn=loss_fn, batches=epochs, evaluate=dev_accuracy,
                     out_dir=tmp_path).fit()
    torch.manual_seed(0)
    fresh = make_model()
    reference = Trainer(fresh, config=config, loss_fn=loss_fn, batches=batches,
                        evaluate=dev_accuracy).fit()
    assert result.epochs_run == 3 and result.history[0]["train_loss"] == reference.history[0]["train_loss"]
    assert torch.equal(weights(model), weights(fresh))


def test_cuda_graphs_without_cuda_says_it_trains_without_them():
    config = TrainConfig(epochs=1, progress=False, device="cpu", cuda_graphs=True)
    with pytest.warns(UserWarning, match="train.cuda_graphs: CUDA graphs need a CUDA device; training on "
                                         "cpu runs without them"):
        Trainer(make_model(), config=config, loss_fn=loss_fn, batches=batches)


def test_stopped_by_says_what_ended_the_run(monkeypatch):
    assert fit(epochs=2)[1].stopped_by == "epochs"
    flat = iter([0.5] * 10)  # the dev metric never improves after epoch 1
    result = fit(epochs=10, patience=2, evaluate=lambda m, d: {"accuracy": next(flat)})[1]
    assert (result.stopped_by, result.epochs_run) == ("patience", 3)
    import itertools
    from types import SimpleNamespace

    from textcnn.core import engine

    clock = itertools.count()
    monkeypatch.setattr(engine, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    result = fit(epochs=50, max_seconds=2.5)[1]
    assert (result.stopped_by, result.epochs_run) == ("time", 2)
