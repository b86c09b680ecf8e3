"""The fold-batched Kim CNN against K separate `KimCNN`s: logits, gradients, optimizer steps with
max-norm, whole training runs (with a fold sitting out steps), and the conversions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from textcnn.core.errors import TextCNNError
from textcnn.core.optim import create_optimizer
from textcnn.core.regularization import max_norm_
from textcnn.fold_batched import (
    FoldBatchedKimCNN,
    FoldFitConfig,
    fit_folds,
    fold_epoch_plan,
    fold_max_norm_,
    known_word_mask,
    map_unseen,
)
from textcnn.model import VARIANTS, KimCNN, KimCNNConfig

V, D, K = 40, 6, 3


def config(variant="rand", widths=(1, 2, 3), **kw):
    kw.setdefault("dropout", 0.0)
    return KimCNNConfig(vocab_size=V, num_classes=3, embedding_dim=D, widths=list(widths), maps=4,
                        variant=variant, **kw)


def models(variant="rand", widths=(1, 2, 3), k=K, **kw):
    """K KimCNNs with different weights (also in the frozen and fine-tuned channels)."""
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        vectors = None if variant == "rand" else torch.randn(V, D)
        model = KimCNN(config(variant, widths, **kw), vectors=vectors)
        with torch.no_grad():
            model.embeddings[-1].weight[1:].add_(0.1 * torch.randn(V - 1, D))
        out.append(model)
    return out


def fold_batches(k=K, lengths=((0, 1, 2, 5, 7), (3, 1, 9, 2, 0), (2, 2, 1, 4, 6)), seed=1):
    """[K, B, L] ids: each fold its own sentences (an empty one and some shorter than the widest
    filter), right-padded to the longest of all; labels [K, B]."""
    gen = torch.Generator().manual_seed(seed)
    width = max(max(n) for n in lengths[:k])
    ids = torch.zeros(k, len(lengths[0]), width, dtype=torch.long)
    for f in range(k):
        for row, n in enumerate(lengths[f]):
            ids[f, row, :n] = torch.randint(2, V, (n,), generator=gen)
    return ids, torch.randint(0, 3, (k, len(lengths[0])), generator=gen)


def trimmed(ids):
    """One fold's batch padded to its own longest sentence, as KimCNN sees it alone."""
    return ids[:, : max(1, int((ids != 0).sum(1).max()))]


@pytest.mark.parametrize("conv", ["bmm", "grouped"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("widths", [(1, 2, 3), (3, 4, 5)])
def test_forward_equals_each_models_own_forward(variant, widths, conv):
    separate = [m.eval() for m in models(variant, widths)]
    batched = FoldBatchedKimCNN.from_models(separate, conv=conv).eval()
    ids, _ = fold_batches()
    with torch.no_grad():
        logits = batched(ids)
        assert logits.shape == (K, ids.shape[1], 3)
        for f, model in enumerate(separate):
            torch.testing.assert_close(logits[f], model(trimmed(ids[f])), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(batched.features(ids)[f], model.features(ids[f]),
                                       rtol=1e-5, atol=1e-5)


def test_bf16_autocast_stays_close_to_float():
    batched = FoldBatchedKimCNN.from_models(models()).eval()
    ids, _ = fold_batches()
    with torch.no_grad():
        want = batched(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = batched(ids)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)


def stacked_grads(batched, widths):
    """Per fold, the stacked gradients cut into KimCNN's shapes."""
    taps = max(widths)
    out = []
    for f in range(batched.folds):
        grads = [t.grad[f] for t in batched.embeddings if t.requires_grad]
        grads += [batched.conv_weight.grad[f, i, :, :, taps - w:] for i, w in enumerate(widths)]
        grads += [batched.conv_bias.grad[f, i] for i in range(len(widths))]
        grads += [batched.fc_weight.grad[f], batched.fc_bias.grad[f]]
        out.append(grads)
    return out


def model_grads(model):
    grads = [e.weight.grad for e in model.embeddings if e.weight.requires_grad]
    grads += [b.conv.weight.grad for b in model.convs] + [b.conv.bias.grad for b in model.convs]
    return grads + [model.fc.weight.grad, model.fc.bias.grad]


@pytest.mark.parametrize("conv", ["bmm", "grouped"])
@pytest.mark.parametrize("variant", ["rand", "multichannel"])
@pytest.mark.parametrize("widths", [(1, 2, 3), (3, 4, 5)])
def test_summed_loss_gives_each_fold_its_own_gradients(variant, widths, conv):
    separate = models(variant, widths)
    batched = FoldBatchedKimCNN.from_models(separate, conv=conv)
    ids, labels = fold_batches()
    F.cross_entropy(batched(ids).flatten(0, 1), labels.flatten(), reduction="none").view(K, -1) \
        .mean(dim=1).sum().backward()
    for f, model in enumerate(separate):
        F.cross_entropy(model(trimmed(ids[f])), labels[f]).backward()
        for got, want in zip(stacked_grads(batched, widths)[f], model_grads(model)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    taps = max(widths)
    for i, width in enumerate(widths):  # the taps a narrow filter does not have get no gradient
        assert not batched.conv_weight.grad[:, i, :, :, : taps - width].any()
    for table in batched.embeddings:  # no fold's [PAD] row gets a gradient
        assert table.grad is None or not table.grad[:, 0].any()


def test_adadelta_steps_with_max_norm_equal_separate_optimizers():
    separate = models(max_norm=0.4)  # a small cap, so that the constraint bites
    batched = FoldBatchedKimCNN.from_models(separate)
    opt = create_optimizer("adadelta", [p for p in batched.parameters() if p.requires_grad])
    opts = [create_optimizer("adadelta", [p for p in m.parameters() if p.requires_grad])
            for m in separate]
    capped = False
    for step in range(3):
        ids, labels = fold_batches(seed=step)
        opt.zero_grad()
        F.cross_entropy(batched(ids).flatten(0, 1), labels.flatten(), reduction="none") \
            .view(K, -1).mean(dim=1).sum().backward()
        opt.step()
        capped |= bool((batched.fc_weight.norm(dim=2) > 0.4 + 1e-6).any())
        batched.apply_max_norm()
        for f, (model, o) in enumerate(zip(separate, opts)):
            o.zero_grad()
            F.cross_entropy(model(trimmed(ids[f])), labels[f]).backward()
            o.step()
            model.apply_max_norm()
    assert capped
    assert torch.all(batched.fc_weight.norm(dim=2) <= 0.4 + 1e-5)
    for got, want in zip(batched.to_models(), separate):
        for (name, a), b in zip(got.state_dict().items(), want.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_fold_max_norm_caps_each_fold_row_like_max_norm():
    weight = torch.randn(3, 4, 5) * 3
    want = [row.clone() for row in weight]
    for w in want:
        max_norm_(w, 3.0)
    fold_max_norm_(weight, 3.0)
    torch.testing.assert_close(weight, torch.stack(want))
    with pytest.raises(TextCNNError, match=r"\[K, classes, F\]"):
        fold_max_norm_(torch.randn(4, 5), 3.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_to_models_round_trip_is_exact(variant):
    separate = models(variant)
    batched = FoldBatchedKimCNN.from_models(separate)
    for got, want in zip(batched.to_models(), separate):
        assert got.state_dict().keys() == want.state_dict().keys()
        for name, value in want.state_dict().items():
            assert torch.equal(got.state_dict()[name], value), name
        assert [e.weight.requires_grad for e in got.embeddings] == \
               [e.weight.requires_grad for e in want.embeddings]
    again = FoldBatchedKimCNN.from_models(batched.to_models())
    for a, b in zip(again.parameters(), batched.parameters()):
        assert torch.equal(a, b)


def test_to_models_can_give_unseen_words_the_unk_row():
    batched = FoldBatchedKimCNN(config(), 2)
    known = torch.ones(2, V, dtype=torch.bool)
    known[1, 7] = False
    fold0, fold1 = batched.to_models(known=known, unk_id=1)
    assert torch.equal(fold0.embeddings[0].weight, batched.embeddings[0][0])
    assert torch.equal(fold1.embeddings[0].weight[7], batched.embeddings[0][1, 1])


def test_bad_input_is_a_clear_error():
    with pytest.raises(TextCNNError, match="config of model 0"):
        FoldBatchedKimCNN.from_models([KimCNN(config()), KimCNN(config(widths=(2, 3)))])
    with pytest.raises(TextCNNError, match=r"expected integer ids \[3, B, L\]"):
        FoldBatchedKimCNN(config(), 3)(torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(TextCNNError, match="needs pretrained vectors"):
        FoldBatchedKimCNN(config("static"), 2)
    with pytest.raises(TextCNNError, match="conv: expected one of bmm, grouped"):
        FoldBatchedKimCNN(config(), 2, conv="loop")


# -- training ------------------------------------------------------------------------------------
def synthetic(n, seed, vocab=V):
    """Class 0 sentences draw from words 2..9, class 1 from 10..17, both with noise words 18..;
    lengths 0..6 (empty ones are labelled 0)."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        length = int(rng.integers(7))
        signal = rng.integers(2, 10, size=length) + 8 * label
        noise = rng.integers(18, vocab, size=length)
        sentence = np.where(rng.random(length) < 0.5, signal, noise)
        ids.append(sentence.tolist())
        labels.append(label if length else 0)
    return ids, labels


def two_class_config(**kw):
    kw.setdefault("dropout", 0.5)
    return KimCNNConfig(vocab_size=V, num_classes=2, embedding_dim=8, widths=[1, 2], maps=4, **kw)


def test_fit_folds_learns_and_picks_each_folds_best_epoch_on_dev():
    train = [synthetic(300, 0), synthetic(290, 1)]
    dev = [synthetic(80, 2), synthetic(80, 3)]  # chance: about 0.57 (empty sentences are class 0)
    result = fit_folds(two_class_config(), train, dev,
                       FoldFitConfig(epochs=10, batch_size=10, device="cpu", seed=0))
    assert len(result.models) == 2 and all(isinstance(m, KimCNN) for m in result.models)
    for f in range(2):
        accuracies = [record["dev_accuracy"][f] for record in result.history]
        assert result.best_epochs[f] == 1 + int(np.argmax(accuracies))  # first best epoch
        assert result.dev_accuracy[f] == max(accuracies) > 0.75
        # the returned model is that epoch's: it scores the same on dev on its own
        ids, labels = dev[f]
        x = torch.zeros(len(ids), 6, dtype=torch.long)
        for row, s in enumerate(ids):
            x[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        with torch.no_grad():
            own = (result.models[f](x).argmax(1) == torch.tensor(labels)).float().mean().item()
        assert own == pytest.approx(result.dev_accuracy[f])


def test_fit_folds_equals_separate_training_when_a_fold_sits_out_steps():
    """Dropout off, so both runs are deterministic: the batched run, with fold 1 one batch short
    (it sits out a step every epoch), ends with each fold's weights from training it alone."""
    cfg = two_class_config(dropout=0.0, max_norm=0.5)
    train = [synthetic(53, 0), synthetic(41, 1)]  # 6 and 5 batches of 10
    start = []
    for seed in range(2):
        torch.manual_seed(seed)
        start.append(KimCNN(cfg))
    fit = FoldFitConfig(epochs=2, batch_size=10, device="cpu", seed=3)
    result = fit_folds(cfg, train, None, fit, models=start)
    assert result.best_epochs == [2, 2]  # without dev data: the last epoch

    lengths = [[len(s) for s in ids] for ids, _ in train]
    for f, (ids, labels) in enumerate(train):
        model = start[f]  # from_models copied the weights; train the originals alone
        opt = create_optimizer("adadelta", model.parameters())
        sat_out = 0
        for epoch in (1, 2):
            for step in fold_epoch_plan(lengths, 10, seed=3, epoch=epoch):
                idx = step[f]
                if idx is None:
                    sat_out += 1
                    continue
                x = torch.zeros(len(idx), max(1, max(len(ids[i]) for i in idx)), dtype=torch.long)
                for row, i in enumerate(idx):
                    x[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                opt.zero_grad()
                F.cross_entropy(model(x), torch.tensor([labels[i] for i in idx])).backward()
                opt.step()
                model.apply_max_norm()
        assert sat_out == (2 if f == 1 else 0)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(result.models[f].state_dict()[name], value, rtol=1e-4,
                                       atol=1e-5, msg=name)


def test_fold_epoch_plan_covers_each_fold_once_per_epoch():
    lengths = [list(range(23)), list(range(17))]
    plan = fold_epoch_plan(lengths, 5, seed=0, epoch=1)
    assert len(plan) == 5
    for f, n in enumerate((23, 17)):
        seen = np.concatenate([step[f] for step in plan if step[f] is not None])
        assert sorted(seen.tolist()) == list(range(n))
    assert sum(step[1] is None for step in plan) == 1


def test_unseen_dev_words_map_to_unk_per_fold():
    known = known_word_mask([[[2, 3]], [[3, 4]]], 6)
    assert known.tolist() == [[True, True, True, True, False, False],
                              [True, True, False, True, True, False]]
    assert map_unseen([[2, 4, 5], []], known[1], unk_id=1) == [[1, 4, 1], []]
    with pytest.raises(TextCNNError, match="token ids in 0..5"):
        known_word_mask([[[6]]], 6)


# -- folds of classifiers (what `textcnn batch --fold-batched` trains) ------------------------------
def toy_fold(seed, n=60):
    """A separable two-class task: class words 'good...'/'bad...' among shared filler words;
    each fold draws its own sentences, so the folds' vocabularies differ."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        cue = ["good", "great", "fine"][rng.integers(3)] if label else ["bad", "awful", "poor"][rng.integers(3)]
        filler = [f"w{rng.integers(40)}" for _ in range(rng.integers(2, 8))]
        filler.insert(int(rng.integers(len(filler) + 1)), cue)
        texts.append(" ".join(filler))
        labels.append("pos" if label else "neg")
    return texts, labels


def test_shrink_vocab_keeps_every_logit():
    from textcnn.fold_batched import shrink_vocab

    model = models("multichannel", k=1)[0].eval()
    ids = torch.randint(0, 25, (4, 9))
    small = shrink_vocab(model, 25)
    assert small.config.vocab_size == 25 and small.embeddings[0].weight.shape == (25, D)
    torch.testing.assert_close(small(ids), model(ids), rtol=0, atol=0)


def test_fit_fold_classifiers_prepares_each_fold_as_fit_does_and_learns():
    from textcnn import TextCNNClassifier
    from textcnn.fold_batched import fit_fold_classifiers

    params = dict(epochs=20, maps=8, embedding_dim=16, widths=(1, 2), dropout=0.0, seed=3, device="cpu",
                  verbose=False)
    folds = [toy_fold(s) for s in range(3)]
    dev = [toy_fold(10 + s, n=20) for s in range(3)]
    clfs = fit_fold_classifiers(params, [(x, y, dx, dy) for (x, y), (dx, dy) in zip(folds, dev)])
    assert len(clfs) == 3
    for clf, (x, y), (dx, dy) in zip(clfs, folds, dev):
        alone = TextCNNClassifier(**params)
        alone.prepare_fit(x, y, X_dev=dx, y_dev=dy)  # what `fit` builds for this fold before training
        assert clf.tokenizer_.vocab() == alone.tokenizer_.vocab()
        assert clf.model_.config.vocab_size == clf.tokenizer_.vocab_size
        assert list(clf.classes_) == ["neg", "pos"]
        fit = clf.fit_result_
        assert fit.epochs_run == 20 and 1 <= fit.best_epoch <= 20 and len(fit.history) == 20
        # the reported dev figures are the returned model's own
        assert fit.best_metrics["accuracy"] == pytest.approx(clf.score(dx, dy))
        assert fit.history[fit.best_epoch - 1]["dev_accuracy"] == pytest.approx(fit.best_metrics["accuracy"])
        assert clf.score(x, y) >= 0.9
    # folds trained together still differ: each has its own data and vocabulary
    assert clfs[0].tokenizer_.vocab() != clfs[1].tokenizer_.vocab()


def test_adopt_fitted_takes_a_model_trained_elsewhere():
    import copy
    import dataclasses

    from textcnn import TextCNNClassifier

    params = dict(epochs=3, maps=4, embedding_dim=8, widths=(1, 2), seed=1, device="cpu", threads=1)
    x, y = toy_fold(5)
    trained = TextCNNClassifier(**params).fit(x, y)
    other = TextCNNClassifier(**params)
    data = other.prepare_fit(x, y)  # the same labels, dev split and tokenizer as `fit` made
    assert other.model_config(data) == dataclasses.replace(trained.model_config_, sparse=False)
    other.adopt_fitted(copy.deepcopy(trained.model_), data, fit_result=trained.fit_result_, precision="float32")
    np.testing.assert_array_equal(other.predict_proba(x), trained.predict_proba(x))
    dev_truth = data.dev_targets.numpy()
    accuracy = float(np.mean(other.label_map_.encode(other.predict(data.dev_texts)) == dev_truth))
    assert other.fit_result_.best_metrics["accuracy"] == pytest.approx(accuracy)
    assert other.fit_result_.best_epoch == trained.fit_result_.best_epoch and other.precision_ == "float32"
    wider = TextCNNClassifier(**{**params, "maps": 5})
    with pytest.raises(TextCNNError, match=r"^adopt_fitted: expected a KimCNN of config .*maps=5"):
        wider.adopt_fitted(copy.deepcopy(trained.model_), wider.prepare_fit(x, y),
                           fit_result=trained.fit_result_, precision="float32")


def test_fit_fold_classifiers_rejects_what_it_cannot_do():
    from textcnn.fold_batched import fit_fold_classifiers

    x, y = toy_fold(0, n=10)
    with pytest.raises(TextCNNError, match="expected patience=None .* got 2"):
        fit_fold_classifiers(dict(patience=2, device="cpu"), [(x, y, None, None)])
    with pytest.raises(TextCNNError, match="expected an optimizer in adadelta.*got 'adam'"):
        fit_fold_classifiers(dict(optimizer="adam", device="cpu"), [(x, y, None, None)])
    with pytest.raises(TextCNNError, match="same classes, got \\[2, 3\\] classes"):
        fit_fold_classifiers(dict(device="cpu", epochs=1), [(x, y, None, None),
                                                           (x, [*y[:-1], "third"], None, None)])
