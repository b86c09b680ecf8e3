"""Kim's (2014) sentence preprocessing, as plain Python and as a Hugging Face `tokenizers` pipeline.

`clean_str` is the readable statement of the preprocessing; `WordTokenizer` runs the same rules
in Rust (a `tokenizers.Tokenizer` with a WordLevel model), so `tokens(text)` equals
`clean_str(text).split()` for every input (the tests check this on the benchmark sentences).
The pipeline is saved as `tokenizer.json`; for encoding, where it is exactly Kim's, the Python
rules (`kim_words`) are faster than the Rust chain of normalizers and give the same ids.

One deliberate difference from Kim's `process_data.py`: there the replacement strings for
`(`, `)` and `?` are written as `" \\( "` etc., which Python's `re.sub` keeps as a literal
backslash, so the original emits the tokens `\\(`, `\\)` and `\\?`. We emit `(`, `)` and `?`.
"""

from __future__ import annotations

import codecs
import gc
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write
from textcnn.core.splits import materialize

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"

# The length policy (docs/documents.md: chosen on a dev split of 20 Newsgroups' training posts).
# Sentences are far shorter than the cap, so Kim's benchmarks are never cut.
Truncation = Literal["head", "tail", "head+tail", "none"]
DEFAULT_MAX_TOKENS = 512
DEFAULT_TRUNCATION: Truncation = "head"
T = TypeVar("T")

# Kim's rules, in order; both `clean_str` and the Rust normalizer are built from this one table.
# Every character outside the class becomes a space (so "[PAD]" in a text is just the word "pad").
_KEEP_CHARS = r"[^A-Za-z0-9(),!?'`]"
_CONTRACTIONS = ("'s", "'ve", "n't", "'re", "'d", "'ll")
_SPACED_PUNCTUATION = (",", "!", "(", ")", "?")


def clean_str(text: str, *, lowercase: bool = True) -> str:
    """Kim's preprocessing: keep `[A-Za-z0-9(),!?'\\`]`, split contractions, space out punctuation.

    Contractions ('s 've n't 're 'd 'll) become tokens of their own, `, ! ( ) ?` get spaces on
    both sides, whitespace runs collapse, the ends are stripped and, unless `lowercase=False`
    (Kim keeps TREC's case), the result is lower-cased last, as in the original.
    """
    return " ".join(kim_words(text, lowercase=lowercase))


_KEEP = re.compile(_KEEP_CHARS)
# Kim's first rule without the regex, several times faster: encoding to ASCII turns every run of
# non-ASCII characters into a space (this error handler), then a byte table every other character
# outside the class (`bytes.translate` is 3x faster than `str.translate`, which looks each character
# up in a mapping, on a sentence and 19x on a batch joined into one string). `_KEEP_JOINED` also
# keeps byte 0, which separates the texts of a batch cleaned as one string (`kim_words_joined`).
_NON_ASCII_AS_SPACE = "textcnn.non_ascii_as_space"
codecs.register_error(_NON_ASCII_AS_SPACE, lambda error: (" ", error.end))
_KEEP_ASCII = bytes(c if _KEEP.fullmatch(chr(c)) is None else ord(" ") for c in range(256))
_TEXT_SEPARATOR = "\x00"
_SEPARATOR_ID = -1  # what the vocabulary lookup answers for the separator: no word's id
# Texts cleaned as one string at a time (`WordTokenizer.encode_ragged`), if they hold at most
# _JOINED_CHARS characters: the slice's words are in hand at once, about 60 bytes each.
_JOINED_TEXTS = 2048
_JOINED_CHARS = 1 << 22
_KEEP_JOINED = _TEXT_SEPARATOR.encode("ascii") + _KEEP_ASCII[1:]
# each contraction as its two sides of the apostrophe: ("", "s") for 's, ("n", "t") for n't
_CONTRACTION_SIDES = tuple(tuple(piece.split("'")) for piece in _CONTRACTIONS)


def _kim_clean(text: str, keep: bytes = _KEEP_ASCII) -> str:
    """Kim's rules up to lowercasing: characters outside the class become spaces, punctuation is
    spaced out and contractions split off (`clean_str` without the case and the whitespace).

    The contractions are split in one pass over the apostrophes where Kim replaces each in turn
    over the whole text: no two of them can claim the same apostrophe (each is followed by a
    different letter) and no punctuation mark lies inside one, so the order does not matter and
    the words are the same (the tests check them against the Rust pipeline)."""
    text = text.encode("ascii", _NON_ASCII_AS_SPACE).translate(keep).decode("ascii")
    for mark in _SPACED_PUNCTUATION:
        if mark in text:
            text = text.replace(mark, f" {mark} ")
    if "'" not in text:
        return text
    pieces = text.split("'")
    out = pieces[:1]
    for piece in pieces[1:]:
        for before, after in _CONTRACTION_SIDES:
            if piece.startswith(after) and out[-1].endswith(before):
                out[-1] = out[-1][:len(out[-1]) - len(before)] + " " + before
                break
        out.append(piece)
    return "'".join(out)


def kim_words(text: str, *, lowercase: bool = True) -> list[str]:
    """The words of `clean_str(text)`: the same rules, split on whitespace."""
    text = _kim_clean(text)
    return (text.lower() if lowercase else text).split()


def kim_words_joined(texts: Sequence[str], *, lowercase: bool = True) -> list[str] | None:
    """`kim_words` of every text, each text's words followed by the separator word "\\x00",
    cleaned as one string: MR's test sentences in about half the time they take one by one.
    None when a text holds the separator itself."""
    if not texts:
        return []
    joined = f" {_TEXT_SEPARATOR} ".join(texts) + f" {_TEXT_SEPARATOR}"
    if joined.count(_TEXT_SEPARATOR) != len(texts):
        return None
    text = _kim_clean(joined, _KEEP_JOINED)
    return (text.lower() if lowercase else text).split()


def _kim_normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = [normalizers.Replace(Regex(_KEEP_CHARS), " ")]
    steps += [normalizers.Replace(piece, " " + piece) for piece in _CONTRACTIONS]
    steps += [normalizers.Replace(mark, f" {mark} ") for mark in _SPACED_PUNCTUATION]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


class WordTokenizer:
    """A `tokenizers.Tokenizer` used without special-token post-processing, truncation or padding.

    Built by `train` (Kim's word-level vocabulary: `[PAD]` id 0, `[UNK]` id 1), `from_file`
    (a `tokenizer.json` written by `save`, or any other) or `from_pretrained_dir` (a Hugging Face
    checkpoint's tokenizer, e.g. MiniLM's WordPiece; its own pad and unk ids are used).
    """

    def __init__(self, tokenizer: Tokenizer, *, source: str = "<memory>") -> None:
        padding = tokenizer.padding
        tokenizer.no_truncation()
        tokenizer.no_padding()
        tokenizer.post_processor = None
        self._tok = tokenizer
        self._source = source
        self._pad_id = padding["pad_id"] if padding else self._find_pad_id()
        unk = getattr(tokenizer.model, "unk_token", None)
        self._unk_id = tokenizer.token_to_id(unk) if unk else None
        # A pipeline that is exactly Kim's (what `train` builds) encodes in Python: `kim_words`
        # and a dict lookup give its ids (the tests check the two agree) two to three times
        # faster than the Rust pipeline's chain of normalizers.
        self._kim_lowercase = _kim_pipeline(tokenizer)
        self._word_ids = _WordIds(tokenizer.get_vocab(with_added_tokens=True) if self._kim_lowercase is not None
                                  else {}, unk_id=self._unk_id)

    def _find_pad_id(self) -> int:
        for token in (PAD_TOKEN, "<pad>", "<PAD>"):
            found = self._tok.token_to_id(token)
            if found is not None:
                return found
        raise TextCNNError(
            f"{self._source}: expected a padding token ({PAD_TOKEN}, <pad> or <PAD>) in the "
            f"vocabulary, got none among {self._tok.get_vocab_size()} tokens"
        )

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        min_frequency: int = 1,
        max_size: int | None = None,
        lowercase: bool = True,
    ) -> WordTokenizer:
        """Build Kim's word vocabulary from `texts` (the training texts only); see `train_encode`."""
        return cls.train_encode(texts, min_frequency=min_frequency, max_size=max_size,
                                lowercase=lowercase)[0]

    @classmethod
    def train_encode(
        cls,
        texts: Iterable[str],
        *,
        min_frequency: int = 1,
        max_size: int | None = None,
        lowercase: bool = True,
        max_tokens: int | None = None,
        truncation: Truncation = "none",
    ) -> tuple[WordTokenizer, list[list[int]]]:
        """Build Kim's word vocabulary from `texts`, and return it with their token ids (what
        `encode_batch(texts)` gives, from the one pass that counted the words).

        We count the words ourselves rather than use `WordLevelTrainer`, so that `[PAD]`/`[UNK]`
        stay ordinary vocabulary entries: registered as special tokens they would be matched in
        raw input before normalization, and `tokens()` would stop agreeing with `clean_str`. The
        words come from `kim_words`, which the Rust pipeline equals (tests check both on the
        benchmark data). Words seen fewer than `min_frequency` times are dropped; then the
        `max_size` most frequent remain (not counting `[PAD]` and `[UNK]`), ties broken
        alphabetically. Ids: `[PAD]` 0, `[UNK]` 1, then by that order. With `max_tokens`, each
        text is cut first (`truncate`), so only the words a model sees are counted.
        """
        if min_frequency < 1:
            raise TextCNNError(f"min_frequency: expected an integer >= 1, got {min_frequency}")
        if max_size is not None and max_size < 0:
            raise TextCNNError(f"max_size: expected an integer >= 0 or None, got {max_size}")
        with gc_paused():
            words = [kim_words_cut(text, lowercase=lowercase, max_tokens=max_tokens, truncation=truncation)
                     for text in materialize(texts)]
        counts = Counter(word for sentence in words for word in sentence)
        ranked = sorted(
            (word for word, n in counts.items() if n >= min_frequency),
            key=lambda word: (-counts[word], word),
        )
        if max_size is not None:
            ranked = ranked[:max_size]
        vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
        vocab.update({word: i for i, word in enumerate(ranked, start=2)})
        with gc_paused():
            ids = [[vocab.get(word, 1) for word in sentence] for sentence in words]
        return cls(cls._word_level_tokenizer(vocab, lowercase)), ids

    @staticmethod
    def _word_level_tokenizer(vocab: dict[str, int], lowercase: bool) -> Tokenizer:
        tok = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
        tok.normalizer = _kim_normalizer(lowercase)
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tok

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> WordTokenizer:
        """Load a `tokenizer.json` (ours from `save`, or any Hugging Face one)."""
        path = Path(path)
        if not path.is_file():
            raise TextCNNError(f"{path}: expected a tokenizer.json file, got no such file")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exception on bad JSON
            raise TextCNNError(
                f"{path}: expected a Hugging Face tokenizer.json, got an unreadable file ({err})"
            ) from err
        return cls(tok, source=str(path))

    @classmethod
    def from_pretrained_dir(cls, directory: str | os.PathLike) -> WordTokenizer:
        """Wrap the `tokenizer.json` of a local Hugging Face checkpoint directory.

        No [CLS]/[SEP] are added and the checkpoint's truncation and padding are switched off;
        pad and unk ids are the checkpoint's own.
        """
        directory = Path(directory)
        if not (directory / "tokenizer.json").is_file():
            raise TextCNNError(
                f"{directory}: expected a checkpoint directory with tokenizer.json, got none there"
            )
        return cls.from_file(directory / "tokenizer.json")

    def save(self, path: str | os.PathLike) -> Path:
        """Write `tokenizer.json` atomically."""
        return atomic_write(path, lambda tmp: self._tok.save(str(tmp)))

    # -- use ----------------------------------------------------------------------------------

    def encode_batch(self, texts: Iterable[str], *, max_tokens: int | None = None,
                     truncation: Truncation = "none") -> list[list[int]]:
        """Token ids of each text, without special tokens or padding, cut by `max_tokens` and
        `truncation` (see `truncate`).

        Kim's word-level pipeline (a tokenizer from `train`, or one saved from it) runs as
        `kim_words` and a dictionary lookup: the same ids as the Rust pipeline (tests check
        both), several times faster on long documents, and a text to be cut is read only as far
        as its kept words reach (`kim_words_cut`). Other tokenizers encode in Rust, then cut."""
        texts = materialize(texts)
        if self._kim_lowercase is not None:
            word_id, lowercase = self._word_ids.__getitem__, self._kim_lowercase
            with gc_paused():
                return [list(map(word_id, kim_words_cut(text, lowercase=lowercase, max_tokens=max_tokens,
                                                        truncation=truncation)))
                        for text in texts]
        # encode_batch_fast skips the character offsets, which we never use
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        with gc_paused():
            return [list(truncate(enc.ids, max_tokens=max_tokens, truncation=truncation))
                    for enc in encode(texts, add_special_tokens=False)]

    def encode_ragged(self, texts: Iterable[str], *, max_tokens: int | None = None,
                      truncation: Truncation = "none") -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch(texts)` as one int64 array of every text's ids, text after text, and
        each text's length: the same ids without a Python list per text, which is what a batch
        prediction over the texts laid end to end needs (`ProjectedKimCNN.ragged_features`).

        Kim's pipeline cleans `_JOINED_TEXTS` texts at a time as one string (`kim_words_joined`)
        where no cut can reach them (none longer than `max_tokens` characters, as a word takes
        at least one) and they are short (`_JOINED_CHARS`), else text by text."""
        texts = materialize(texts)
        if self._kim_lowercase is None:
            encoded = self.encode_batch(texts, max_tokens=max_tokens, truncation=truncation)
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            return np.fromiter(chain.from_iterable(encoded), dtype=np.int64, count=int(lengths.sum())), lengths
        pieces = [self._kim_ragged(texts[start:start + _JOINED_TEXTS], max_tokens=max_tokens, truncation=truncation)
                  for start in range(0, len(texts), _JOINED_TEXTS)]
        if not pieces:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([ids for ids, _ in pieces]), np.concatenate([lengths for _, lengths in pieces])

    def _kim_ragged(self, texts: list[str], *, max_tokens: int | None,
                    truncation: Truncation) -> tuple[np.ndarray, np.ndarray]:
        """`encode_ragged` of a slice of texts, through Kim's pipeline in Python."""
        word_id, lowercase = self._word_ids.__getitem__, self._kim_lowercase
        uncut = max_tokens is None or truncation == "none" or max(map(len, texts), default=0) <= max_tokens
        words = kim_words_joined(texts, lowercase=lowercase) if uncut and sum(map(len, texts)) <= _JOINED_CHARS else None
        if words is not None:
            ids = np.fromiter(map(word_id, words), dtype=np.int64, count=len(words))
            ends = np.flatnonzero(ids == _SEPARATOR_ID)
            if len(ends) == len(texts):  # else a vocabulary holding the separator: text by text
                return ids[ids != _SEPARATOR_ID], np.diff(ends, prepend=-1) - 1
        each = [np.fromiter(map(word_id, kim_words_cut(text, lowercase=lowercase, max_tokens=max_tokens,
                                                       truncation=truncation)), dtype=np.int64)
                for text in texts]
        return np.concatenate([np.zeros(0, dtype=np.int64), *each]), \
            np.fromiter(map(len, each), dtype=np.int64, count=len(each))

    def encode(self, text: str, *, max_tokens: int | None = None, truncation: Truncation = "none") -> list[int]:
        """Token ids of one text, as `encode_batch` gives them."""
        if self._kim_lowercase is not None:
            return list(map(self._word_ids.__getitem__, kim_words_cut(
                text, lowercase=self._kim_lowercase, max_tokens=max_tokens, truncation=truncation)))
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return list(truncate(ids, max_tokens=max_tokens, truncation=truncation))

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text` before the vocabulary lookup maps unknown ones to unk.

        For a word-level model these are the words (equal to `clean_str(text).split()` for a
        tokenizer from `train`); for a subword model they are its pieces.
        """
        if isinstance(self._tok.model, WordLevel):
            return [word for word, _ in _split(self._tok, text)]
        return self._tok.encode(text, add_special_tokens=False).tokens

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        """Id of the padding token (0 for a tokenizer from `train`)."""
        return self._pad_id

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown token (1 for `train`); None for models that have none (byte BPE)."""
        return self._unk_id

    def id_to_token(self, token_id: int) -> str:
        """The token string of `token_id`."""
        token = self._tok.id_to_token(token_id)
        if token is None:
            raise TextCNNError(f"token id: expected 0..{self.vocab_size - 1}, got {token_id}")
        return token

    def vocab(self) -> list[str]:
        """All tokens, ordered by id."""
        by_id = sorted(self._tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        return [token for token, _ in by_id]

    @property
    def backend(self) -> Tokenizer:
        """The wrapped `tokenizers.Tokenizer`."""
        return self._tok


def truncate(seq: Sequence[T], *, max_tokens: int | None, truncation: Truncation) -> Sequence[T]:
    """`seq` cut to `max_tokens` items: its first (head), last (tail), or first half and last half
    (head+tail, the odd one to the head); unchanged when short enough, or with `max_tokens` None
    or truncation none."""
    if max_tokens is None or truncation == "none" or len(seq) <= max_tokens:
        return seq
    if truncation == "head":
        return seq[:max_tokens]
    if truncation == "tail":
        return seq[len(seq) - max_tokens:]
    head = (max_tokens + 1) // 2
    return seq[:head] + seq[len(seq) - (max_tokens - head):]


def kim_words_cut(text: str, *, lowercase: bool = True, max_tokens: int | None = None,
                  truncation: Truncation = "none") -> list[str]:
    """`truncate(kim_words(text), ...)`, reading only the ends of a long text.

    Kim's rules turn every character outside `[A-Za-z0-9(),!?'\\`]` into a space and never join
    words across one, so the words of a text cut at a space or line break are the words of the
    whole up to that point. The first (and last) few characters are read, twice as many each
    time, until they hold the words kept: a 50,000-word document cut to 1,000 words costs what
    those 1,000 words cost."""
    if max_tokens is None or truncation == "none":
        return kim_words(text, lowercase=lowercase)
    head = {"head": max_tokens, "tail": 0}.get(truncation, (max_tokens + 1) // 2)
    tail = max_tokens - head
    size = 8 * max_tokens + 256  # characters from each end: most words and their space are shorter
    while 2 * size < len(text):
        # the prefix ends, and the suffix starts, at a separator; -1: none within reach yet
        end = max(text.rfind(" ", 0, size), text.rfind("\n", 0, size)) if head else 0
        found = [i for i in (text.find(" ", len(text) - size), text.find("\n", len(text) - size)) if i >= 0]
        start = len(text) if not tail else min(found) if found else -1
        if end >= 0 and start >= 0:
            first = kim_words(text[:end], lowercase=lowercase) if head else []
            last = kim_words(text[start:], lowercase=lowercase) if tail else []
            if len(first) >= head and len(last) >= tail:
                return first[:head] + last[len(last) - tail:]
        size *= 2
    return list(truncate(kim_words(text, lowercase=lowercase), max_tokens=max_tokens, truncation=truncation))


class _WordIds(dict):
    """Word -> id, the separator of `kim_words_joined` -> `_SEPARATOR_ID` (unless the vocabulary
    holds it as a word: a text's words never do), and the unknown word's id for any other word:
    `map` over its `__getitem__` is a third faster than a `get(word, unk)` per word."""

    def __init__(self, vocab: dict[str, int], *, unk_id: int | None) -> None:
        super().__init__(vocab)
        self.setdefault(_TEXT_SEPARATOR, _SEPARATOR_ID)
        self.unk_id = unk_id

    def __missing__(self, word: str) -> int | None:
        return self.unk_id


def _kim_pipeline(tok: Tokenizer) -> bool | None:
    """Whether `tok` is exactly the pipeline `WordTokenizer.train` builds (Kim's normalizer,
    whitespace split, a word-level vocabulary with [UNK], no added tokens): its `lowercase`
    setting if so, else None."""
    spec = json.loads(tok.to_str())
    model = spec.get("model") or {}
    if spec.get("added_tokens") or model.get("type") != "WordLevel" or model.get("unk_token") != UNK_TOKEN \
            or model.get("vocab", {}).get(UNK_TOKEN) is None or spec.get("pre_tokenizer") != {"type": "WhitespaceSplit"}:
        return None
    for lowercase in (True, False):
        reference = json.loads(WordTokenizer._word_level_tokenizer({PAD_TOKEN: 0, UNK_TOKEN: 1}, lowercase).to_str())
        if spec.get("normalizer") == reference["normalizer"]:
            return lowercase
    return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a bulk build of token-id lists.

    Tens of thousands of new lists trigger collections that walk every live object of the
    process (torch's included): about 0.2 s for MR's training set. Lists of ints form no cycles,
    so nothing is lost by pausing it meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _split(tok: Tokenizer, text: str) -> list[tuple[str, tuple[int, int]]]:
    normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
    if tok.pre_tokenizer is None:
        return [(normalized, (0, len(normalized)))] if normalized else []
    return tok.pre_tokenizer.pre_tokenize_str(normalized)
