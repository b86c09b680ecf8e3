"""Document-categorization benchmarks by name: 20 Newsgroups (`data.dataset: 20ng`), the by-date
split, read from its archive or its extracted folders; and the recipe's own folder-per-class
documents (`data.format: folders`), with their train/test folders or one folder cross-validated.

20 Newsgroups: 11,314 training and 7,532 test posts in 20 classes (the newsgroups, sorted), raw
Latin-1 text with headers. There is no dev split: model selection holds out `model.dev_fraction`
of the training posts (stratified, seeded), never the test posts.
"""

from __future__ import annotations

import os
from pathlib import Path

from textcnn.core.errors import TextCNNError
from textcnn.data.folders import DEFAULT_ENCODING, read_archive_folders, read_folders
from textcnn.data.splits import Examples, TextSplits, cv_fold, examples
from textcnn.recipe import DataSection

NEWSGROUPS = "20ng"
NEWSGROUPS_ARCHIVE = "20news-bydate.tar.gz"
NEWSGROUPS_SPLITS = ("20news-bydate-train", "20news-bydate-test")
NEWSGROUPS_ENCODING = "latin-1"  # the posts are not all valid UTF-8 (as scikit-learn reads them)
DOCUMENT_DATASETS = (NEWSGROUPS,)

# Published test accuracy (%) on the by-date split, as Yao et al. (2019, "Graph Convolutional
# Networks for Text Classification", Table 2) report them; their preprocessing differs (stop words
# and words seen fewer than 5 times removed), so each row here is measured on the same files.
PUBLISHED_20NG: dict[str, float] = {
    "TF-IDF+LR": 83.19, "CNN-rand": 76.93, "CNN-non-static": 82.15, "fastText": 79.38,
    "SWEM": 85.16, "Text GCN": 86.34,
}


def is_document_dataset(name: str | None) -> bool:
    """Whether `name` is a document benchmark of this module (20ng) rather than one of Kim's."""
    return name is not None and name.lower() in DOCUMENT_DATASETS


def newsgroups_source(section: DataSection) -> Path:
    """Where 20 Newsgroups is read from: `data.data_dir` (or $TEXTCNN_20NG_DIR, else data/20ng)
    holding the extracted `20news-bydate-train/` and `-test/` folders (used when present) or
    `20news-bydate.tar.gz`; `data.data_dir` may also name the archive itself."""
    root = Path(section.data_dir or os.environ.get("TEXTCNN_20NG_DIR") or "data/20ng")
    if root.is_file():
        return root
    if all((root / split).is_dir() for split in NEWSGROUPS_SPLITS):
        return root
    if (root / NEWSGROUPS_ARCHIVE).is_file():
        return root / NEWSGROUPS_ARCHIVE
    raise TextCNNError(f"{root}: expected {NEWSGROUPS_ARCHIVE} or its folders "
                       f"{' and '.join(NEWSGROUPS_SPLITS)}, got neither; run `textcnn data fetch 20ng "
                       f"--dest {root}` or set data.data_dir / TEXTCNN_20NG_DIR")


def newsgroups_files(section: DataSection) -> list[Path]:
    """The archive, or the two extracted folders, that a 20ng run reads (for its fingerprint)."""
    source = newsgroups_source(section)
    return [source] if source.is_file() else [source / split for split in NEWSGROUPS_SPLITS]


def newsgroups_splits(section: DataSection) -> TextSplits:
    """The by-date training and test posts; dev is held out of training by the estimator."""
    source = newsgroups_source(section)
    encoding = section.encoding or NEWSGROUPS_ENCODING
    if source.is_file():
        read = read_archive_folders(source, NEWSGROUPS_SPLITS, encoding=encoding)
        train, test = (read[split] for split in NEWSGROUPS_SPLITS)
    else:
        train, test = (read_folders(source / split, encoding=encoding) for split in NEWSGROUPS_SPLITS)
    return TextSplits(examples(train), None, examples(test))


def folder_splits(section: DataSection, *, seed: int) -> TextSplits:
    """`data.format: folders`: the train (and dev, test) folders of a class folder each; with a
    train folder alone, its stratified fold `data.fold` of `data.folds` is the test split (drawn
    with `data.split_seed`, else `seed`)."""
    encoding = section.encoding or DEFAULT_ENCODING

    def load(spec: str | None) -> Examples | None:
        return examples(read_folders(spec, encoding=encoding)) if spec else None

    train, dev, test = load(section.train), load(section.dev), load(section.test)
    if test is not None:
        return TextSplits(train, dev, test)
    split_seed = seed if section.split_seed is None else section.split_seed
    train, test = cv_fold(*train, folds=section.folds, fold=section.fold, seed=split_seed)
    return TextSplits(train, dev, test)
