"""Top n-grams per feature map against a brute-force scoring of every window."""

import pytest
import torch
from click.testing import CliRunner

from textcnn import TextCNNClassifier
from textcnn.cli import main
from textcnn.core.errors import TextCNNError
from textcnn.visualize_text import top_ngrams, visualize_text_model

TEXTS = ["a warm and funny film", "a dull , dull plot", "funny", "", "the cast is warm and clever"] * 4
LABELS = ["pos", "neg", "pos", "neg", "pos"] * 4


def brute_force(clf, width_index, fmap, top, texts=TEXTS):
    conv = clf.model_.convs[width_index].conv
    width = clf.model_.config.widths[width_index]
    scores = {}
    for text in texts:
        ids = clf.tokenizer_.encode_batch([text])[0]
        for start in range(len(ids) - width + 1):
            window = torch.tensor([ids[start:start + width]])
            x = clf.model_.embed(window)  # [1, C*D, width]
            value = torch.relu((conv.weight[fmap] * x[0]).sum() + conv.bias[fmap]).item()
            key = " ".join(clf.tokenizer_.id_to_token(t) for t in ids[start:start + width])
            scores[key] = max(value, scores.get(key, -1.0))
    return scores


def test_top_ngrams_equal_brute_force(tmp_path):
    clf = TextCNNClassifier(maps=3, embedding_dim=8, widths=(1, 2, 3), epochs=2, dev_fraction=0).fit(TEXTS, LABELS)
    found = top_ngrams(clf, TEXTS, maps=(0, 2), top=4)
    assert [(e["width"], e["map"]) for e in found] == [(1, 0), (1, 2), (2, 0), (2, 2), (3, 0), (3, 2)]
    for entry in found:
        every = brute_force(clf, [1, 2, 3].index(entry["width"]), entry["map"], 4)
        best = sorted(every.values(), reverse=True)[:4]
        got = [score for _, score in entry["ngrams"]]
        assert len(got) == len(best) and all(abs(a - b) < 1e-4 for a, b in zip(got, best))
        for gram, score in entry["ngrams"]:  # n-grams with equal scores may come in any order
            assert abs(every[gram] - score) < 1e-4
    paths = visualize_text_model(clf.save(tmp_path / "m"), tmp_path / "viz", texts=TEXTS, maps=(0,))
    names = {p.name for p in paths}
    assert names == {"ngrams.md", "ngrams.json", "training-curve.png"}
    assert (tmp_path / "viz" / "training-curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("maps", [(999,), (-1,), (0, 3), ()])
def test_maps_outside_the_model_are_one_line(maps):
    # -1 would silently show the last map; 999 an IndexError
    clf = TextCNNClassifier(maps=3, embedding_dim=8, widths=(2,), epochs=1, dev_fraction=0).fit(TEXTS, LABELS)
    with pytest.raises(TextCNNError, match=r"maps: expected feature-map indices in 0\.\.2"):
        top_ngrams(clf, TEXTS, maps=maps)


def test_cli_visualize_maps_999_exits_2(tmp_path):
    clf = TextCNNClassifier(maps=3, embedding_dim=8, widths=(2,), epochs=1, dev_fraction=0).fit(TEXTS, LABELS)
    model = clf.save(tmp_path / "m")
    data = tmp_path / "texts.csv"
    data.write_text("text,label\na warm film,pos\n", encoding="utf-8")
    for maps in ("999", "-1"):
        result = CliRunner().invoke(main, ["visualize", str(model), "--out", str(tmp_path / "viz"),
                                           "--data", str(data), "--maps", maps])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "in 0..2 (the model has 3 maps per width)" in result.output
        assert not (tmp_path / "viz").exists()



def test_one_long_text_is_a_batch_of_its_own_and_the_n_grams_stay_the_brute_forces(monkeypatch):
    """Texts are scored in batches of bounded padded size (count x longest), so one long text does
    not widen a batch of many short ones; the top n-grams are still the brute force's."""
    import textcnn.visualize_text as visualize_text

    clf = TextCNNClassifier(maps=3, embedding_dim=8, widths=(1, 2, 3), epochs=2, dev_fraction=0).fit(TEXTS, LABELS)
    texts = [*TEXTS, " ".join(["warm", "dull", "funny", "plot", "clever"] * 40)]  # 200 tokens
    real_pad_batch, shapes = visualize_text.pad_batch, []

    def spy(seqs, **kwargs):
        batch = real_pad_batch(seqs, **kwargs)
        shapes.append(tuple(batch.shape))
        return batch

    monkeypatch.setattr(visualize_text, "pad_batch", spy)
    budget = 32
    found = top_ngrams(clf, texts, maps=(0, 2), top=4, max_tokens=budget)
    assert sum(n for n, _ in shapes) == len(texts)
    assert (1, 200) in shapes and all(n * width <= budget or n == 1 for n, width in shapes), shapes
    for entry in found:
        every = brute_force(clf, [1, 2, 3].index(entry["width"]), entry["map"], 4, texts=texts)
        best = sorted(every.values(), reverse=True)[:4]
        assert [score for _, score in entry["ngrams"]] == pytest.approx(best, abs=1e-4)
        for gram, score in entry["ngrams"]:
            assert every[gram] == pytest.approx(score, abs=1e-4)
    shapes.clear()
    top_ngrams(clf, texts, maps=(0,), top=4)  # prediction's budget: 21 texts fit in one batch
    assert shapes == [(len(texts), 200)]
