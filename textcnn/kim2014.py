"""The Kim (2014) datasets by name, their protocol (10-fold CV or the given splits) and the
paper's Table 2 (speed benchmarks are `scripts/bench_*.py`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.data import read_kim_file, read_sst_trees
from textcnn.data.splits import TextSplits, cv_fold, examples
from textcnn.documents import DOCUMENT_DATASETS
from textcnn.recipe import DataSection, TextRecipe, default_data_dir


@dataclass(frozen=True)
class Benchmark:
    """One of the paper's datasets and its protocol."""

    name: str  # short name used in recipes
    title: str  # as in the paper's Table 2
    classes: int  # number of labels
    files: tuple[str, ...]  # the whole corpus (CV) or train, [dev,] test
    cv: bool  # 10-fold cross-validation, else the given split
    sst_classes: int | None = None  # SST: classes of the tree reader, for phrase training


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("mr", "MR", 2, ("rt-polarity.all",), cv=True),
    Benchmark("sst1", "SST-1", 5, ("stsa.fine.train", "stsa.fine.dev", "stsa.fine.test"), cv=False,
              sst_classes=5),
    Benchmark("sst2", "SST-2", 2, ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"), cv=False,
              sst_classes=2),
    Benchmark("subj", "Subj", 2, ("subj.all",), cv=True),
    Benchmark("trec", "TREC", 6, ("TREC.train.all", "TREC.test.all"), cv=False),
    Benchmark("cr", "CR", 2, ("custrev.all",), cv=True),
    Benchmark("mpqa", "MPQA", 2, ("mpqa.all",), cv=True),
]}

PAPER_TABLE2: dict[str, dict[str, float]] = {
    "CNN-rand": {"mr": 76.1, "sst1": 45.0, "sst2": 82.7, "subj": 89.6, "trec": 91.2, "cr": 79.8, "mpqa": 83.4},
    "CNN-static": {"mr": 81.0, "sst1": 45.5, "sst2": 86.8, "subj": 93.0, "trec": 92.8, "cr": 84.7, "mpqa": 89.6},
    "CNN-non-static": {"mr": 81.5, "sst1": 48.0, "sst2": 87.2, "subj": 93.4, "trec": 93.6, "cr": 84.3,
                       "mpqa": 89.5},
    "CNN-multichannel": {"mr": 81.1, "sst1": 47.4, "sst2": 88.1, "subj": 93.2, "trec": 92.2, "cr": 85.0,
                         "mpqa": 89.4},
    "NBSVM": {"mr": 79.4, "subj": 93.2, "cr": 81.8, "mpqa": 86.3},
}
"""Kim (2014) Table 2, as listed in the project's reference notes (accuracy, %)."""


def paper_figure(model: str, dataset: str) -> float | None:
    """Kim (2014)'s accuracy (%) for a table row (a `model_label`) on a dataset, if the paper has it."""
    base = model.split(" ")[0]
    if "[" in model:  # sentences only, or a choice of the menu: rows the paper does not have
        return None
    return PAPER_TABLE2.get(base, {}).get(dataset)


def model_label(recipe: TextRecipe) -> str:
    """The table row a run belongs to, e.g. 'CNN-static (word2vec)' or 'NBSVM'."""
    arch = recipe.model.arch
    if arch != "kim-cnn":
        return {"nbsvm": "NBSVM", "tfidf-logreg": "TF-IDF+LR", "fasttext": "fastText"}[arch]
    label = f"CNN-{recipe.model.variant}"
    if recipe.model.variant != "rand":
        source = recipe.embeddings.path or "?"
        label += f" ({source if source in ('word2vec', 'minilm') else Path(source).name})"
    if recipe.data.dataset in ("sst1", "sst2") and not recipe.data.phrases:
        label += " [sentences only]"
    menu = menu_choices(recipe)
    return label + (f" [{menu}]" if menu else "")


MENU = ("activation", "pooling", "batch_norm", "weight_norm", "input_noise", "word_dropout")
"""The model settings beyond Kim's paper: a run that changes one is a row of its own."""


def menu_choices(recipe: TextRecipe) -> str:
    """The model's choices that differ from Kim's, e.g. 'activation=tanh, pooling=kmax k=3' ('' for
    Kim's own model)."""
    model = recipe.model
    changed = [key for key in MENU if getattr(model, key) != getattr(type(model), key)]  # the defaults
    return ", ".join(f"{key}={getattr(model, key)}" + (f" k={model.k}" if key == "pooling" and
                                                         model.pooling == "kmax" else "")
                     for key in changed)


SST_TREE_FILES = ("train.txt", "dev.txt", "test.txt")


def get_benchmark(name: str) -> Benchmark:
    """Look a benchmark up by name, with a hint for typos."""
    key = name.lower().replace("-", "")
    if key not in BENCHMARKS:
        raise TextCNNError(f"data.dataset: expected one of {', '.join((*BENCHMARKS, *DOCUMENT_DATASETS))}, got '{name}'"
                           f"{did_you_mean(key, BENCHMARKS)}")
    return BENCHMARKS[key]


def _existing(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise TextCNNError(f"{path}: benchmark file not found; {hint}")
    return path


def benchmark_files(section: DataSection) -> list[Path]:
    """The files a named benchmark's splits are read from: Kim's files under the data
    directory, or with `phrases` on SST the tree files under the SST directory."""
    bench = get_benchmark(section.dataset or "")
    root = default_data_dir(section.data_dir)
    if bench.sst_classes is not None and section.phrases:
        sst = Path(section.sst_dir or os.environ.get("TEXTCNN_SST_DIR") or root.parent / "sst")
        return [sst / f for f in SST_TREE_FILES]
    return [root / f for f in bench.files]


def benchmark_splits(section: DataSection, *, seed: int) -> TextSplits:
    """Splits of a named benchmark under the paper's protocol (CV fold, or the given split).

    The folds are drawn with `section.split_seed`, or with `seed` when that is None.
    """
    bench = get_benchmark(section.dataset or "")
    paths = benchmark_files(section)
    if bench.sst_classes is not None and section.phrases:
        sst_hint = (f"run `textcnn data fetch sst --dest {paths[0].parent}` or set data.sst_dir / "
                    "TEXTCNN_SST_DIR")
        train, dev, test = (_existing(p, sst_hint) for p in paths)
        return TextSplits(examples(read_sst_trees(train, classes=bench.sst_classes, phrases=True)),
                      examples(read_sst_trees(dev, classes=bench.sst_classes)),
                      examples(read_sst_trees(test, classes=bench.sst_classes)))
    hint = (f"run `textcnn data fetch kim2014 --dest {paths[0].parent}` or set data.data_dir / "
            "TEXTCNN_DATA_DIR")
    files = [_existing(p, hint) for p in paths]
    if bench.cv:
        texts, labels = examples(read_kim_file(files[0]))
        split_seed = seed if section.split_seed is None else section.split_seed
        train, test = cv_fold(texts, labels, folds=section.folds, fold=section.fold, seed=split_seed)
        return TextSplits(train, None, test)
    loaded = [examples(read_kim_file(f)) for f in files]
    if len(loaded) == 3:
        return TextSplits(*loaded)
    return TextSplits(loaded[0], None, loaded[1])
