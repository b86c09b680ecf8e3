"""Documents: the folder-per-class reader, the 20 Newsgroups archive and folders, a recipe's
document splits, and the one-line errors of each."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from sklearn.datasets import load_files

from textcnn.core.errors import TextCNNError
from textcnn.data import detect_format, load_data
from textcnn.data.folders import read_archive_folders, read_folders
from textcnn.documents import NEWSGROUPS_SPLITS
from textcnn.pipeline import cross_validated, recipe_data_files, recipe_splits
from textcnn.recipe import DataSection, text_recipe

DOCS = {  # class -> {file name: bytes}; line breaks, a blank line and a Latin-1 byte in one post
    "sci.space": {"101": b"From: a@b\nSubject: orbit\n\nThe shuttle\r\nflew.\n", "7": b"moon rocks"},
    "rec.autos": {"55": b"Subject: engine\n\nV8 caf\xe9 torque", "9": b"tyres and brakes\n"},
    "alt.atheism": {"3": b"no god\n\n-- sig\n"},
}


def write_tree(root: Path, docs: dict[str, dict[str, bytes]]) -> Path:
    for label, files in docs.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (root / label / name).write_bytes(data)
    return root


def expected(docs: dict[str, dict[str, bytes]], encoding: str = "latin-1") -> tuple[list[str], list[str]]:
    """The reference: scikit-learn's `load_files` (classes, then files, sorted by name)."""
    texts, labels = [], []
    for label in sorted(docs):
        for name in sorted(docs[label]):
            texts.append(docs[label][name].decode(encoding))
            labels.append(label)
    return texts, labels


def test_read_folders_keeps_each_file_whole_with_its_line_breaks(tmp_path):
    root = write_tree(tmp_path / "train", DOCS)
    (root / "sci.space" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: not a document
    (root / "README").write_text("beside the class folders: not a document")
    ds = read_folders(root, encoding="latin-1")
    assert (list(ds["text"]), list(ds["label"])) == expected(DOCS)
    assert "The shuttle\r\nflew.\n" in ds["text"][-2]  # line breaks kept for the tokenizer
    bunch = load_files(str(root), encoding="latin-1", shuffle=False)
    assert [t for t in bunch.data if t != "\x00\x01"] == list(ds["text"])


def test_a_file_that_does_not_decode_is_named(tmp_path):
    root = write_tree(tmp_path / "train", DOCS)
    with pytest.raises(TextCNNError) as info:
        read_folders(root)  # utf-8 by default; rec.autos/55 holds the Latin-1 byte 0xe9
    message = str(info.value)
    assert "\n" not in message and str(root / "rec.autos" / "55") in message
    assert "expected utf-8 text" in message and "data.encoding" in message


@pytest.mark.parametrize("make, match", [
    (lambda p: p, "no such folder"),
    (lambda p: (p.mkdir(), p)[1], "got no sub-folders"),
    (lambda p: (p.mkdir(), (p / "a").mkdir(), p)[2], "got none"),
    (lambda p: (p.write_text("x"), p)[1], "got a file"),
])
def test_folder_errors_are_one_line(tmp_path, make, match):
    with pytest.raises(TextCNNError, match=match) as info:
        read_folders(make(tmp_path / "docs"))
    assert "\n" not in str(info.value)


def test_an_unknown_encoding_names_the_key(tmp_path):
    with pytest.raises(TextCNNError, match=r"data.encoding: expected a text encoding .* got 'klingon'"):
        read_folders(write_tree(tmp_path / "t", DOCS), encoding="klingon")


def test_load_data_takes_a_class_folder_as_folders(tmp_path):
    root = write_tree(tmp_path / "train", DOCS)
    assert detect_format(root) == "folders"
    ds = load_data(root, encoding="latin-1")
    assert list(ds["label"]) == expected(DOCS)[1]
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "train.csv").write_text("text,label\n")
    with pytest.raises(TextCNNError, match="a folder with a sub-folder per class"):
        detect_format(tmp_path / "flat")


def make_archive(path: Path, splits: dict[str, dict[str, dict[str, bytes]]], *, extra=()) -> Path:
    """A .tar.gz of `<split>/<class>/<file>` members (folders first, as tar writes them)."""
    with tarfile.open(path, "w:gz") as tar:
        for split, docs in splits.items():
            for label, files in docs.items():
                for name, data in files.items():
                    info = tarfile.TarInfo(f"{split}/{label}/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


TEST_DOCS = {"sci.space": {"2": b"mars"}, "rec.autos": {"1": b"sedan"}, "alt.atheism": {"8": b"faith"}}
SPLITS = {NEWSGROUPS_SPLITS[0]: DOCS, NEWSGROUPS_SPLITS[1]: TEST_DOCS}


def test_the_archive_reads_as_its_extracted_folders(tmp_path):
    link = tarfile.TarInfo(f"{NEWSGROUPS_SPLITS[0]}/sci.space/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    deep = tarfile.TarInfo(f"{NEWSGROUPS_SPLITS[0]}/sci.space/sub/deeper")
    deep.size = 1
    archive = make_archive(tmp_path / "20news-bydate.tar.gz", SPLITS, extra=[(link, None), (deep, b"x")])
    read = read_archive_folders(archive, NEWSGROUPS_SPLITS, encoding="latin-1")
    for split, docs in SPLITS.items():
        assert (list(read[split]["text"]), list(read[split]["label"])) == expected(docs)
    with pytest.raises(TextCNNError, match=r"20news-bydate.tar.gz:20news-bydate-train/rec.autos/55: expected utf-8"):
        read_archive_folders(archive, NEWSGROUPS_SPLITS, encoding="utf-8")
    with pytest.raises(TextCNNError, match="expected documents under missing/<class>/"):
        read_archive_folders(archive, ["missing"])
    (tmp_path / "broken.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(TextCNNError, match="expected a readable .tar.gz archive"):
        read_archive_folders(tmp_path / "broken.tar.gz", NEWSGROUPS_SPLITS)


@pytest.mark.parametrize("layout", ["archive", "folders", "archive_path"])
def test_20ng_recipe_reads_train_and_test_from_archive_or_folders(tmp_path, layout):
    root = tmp_path / "20ng"
    root.mkdir()
    if layout == "folders":
        for split, docs in SPLITS.items():
            write_tree(root / split, docs)
        files = [root / split for split in NEWSGROUPS_SPLITS]
    else:
        files = [make_archive(root / "20news-bydate.tar.gz", SPLITS)]
    data_dir = files[0] if layout == "archive_path" else root
    recipe = text_recipe({"data": {"dataset": "20ng", "data_dir": str(data_dir)}})
    splits = recipe_splits(recipe.data, seed=0)
    assert splits.train == expected(DOCS) and splits.test == expected(TEST_DOCS) and splits.dev is None
    assert list(recipe_data_files(recipe).values()) == files + [None]  # rand: no vectors
    assert not cross_validated(recipe.data)


def test_20ng_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.delenv("TEXTCNN_20NG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TextCNNError, match=r"data/20ng: expected 20news-bydate.tar.gz .*textcnn data fetch 20ng"):
        recipe_splits(DataSection(dataset="20ng"), seed=0)


def test_one_folder_is_cross_validated_and_two_are_train_and_test(tmp_path):
    many = {label: {f"{i}": f"{label} post {i}".encode() for i in range(10)} for label in ("a", "b")}
    root = write_tree(tmp_path / "all", many)
    everything = expected(many)
    tests = []
    for fold in range(5):
        section = DataSection(train=str(root), folds=5, fold=fold, split_seed=3)
        assert cross_validated(section)
        splits = recipe_splits(section, seed=0)
        assert sorted(splits.train[0] + splits.test[0]) == sorted(everything[0])
        assert sorted(splits.test[1]) == ["a", "a", "b", "b"]  # stratified
        tests += splits.test[0]
    assert sorted(tests) == sorted(everything[0])  # the test folds partition the documents
    write_tree(tmp_path / "test", TEST_DOCS)
    section = DataSection(train=str(root), test=str(tmp_path / "test"), format="folders")
    assert not cross_validated(section)
    assert recipe_splits(section, seed=0).test == expected(TEST_DOCS)


def test_encoding_is_refused_for_data_that_is_not_documents(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nok,a\nno,b\n")
    with pytest.raises(TextCNNError, match=r"data.encoding: used with document files only .* got 'latin-1' for csv"):
        recipe_splits(DataSection(train=str(tmp_path / "t.csv"), format="csv", encoding="latin-1"), seed=0)
    with pytest.raises(TextCNNError, match="data.encoding: expected a text encoding"):
        DataSection(train="x", encoding="no-such-codec")


@pytest.mark.slow
def test_the_shared_20ng_copy_reads_the_same_from_archive_and_folders(shared_data, tmp_path):
    archive = shared_data / "20news" / "20news-bydate.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    read = read_archive_folders(archive, NEWSGROUPS_SPLITS, encoding="latin-1")
    assert [len(read[s]) for s in NEWSGROUPS_SPLITS] == [11314, 7532]
    assert len(set(read[NEWSGROUPS_SPLITS[0]]["label"])) == 20
    with tarfile.open(archive) as tar:  # the reference: the test posts unpacked, then read by folder
        tar.extractall(tmp_path, members=[m for m in tar if m.name.startswith(NEWSGROUPS_SPLITS[1])],
                       filter="data")
    folders = read_folders(tmp_path / NEWSGROUPS_SPLITS[1], encoding="latin-1")
    assert folders["text"] == read[NEWSGROUPS_SPLITS[1]]["text"]
    assert folders["label"] == read[NEWSGROUPS_SPLITS[1]]["label"]


def test_the_20ng_recipe_points_at_your_own_folders_with_set(tmp_path):
    """recipes/docs/20ng.yaml's comment: `--set data.dataset=null --set data.train=... --set
    data.test=...` makes every run of it read the user's folders, with the recipe's defaults."""
    from textcnn.batch_runner import plan_runs

    write_tree(tmp_path / "train", DOCS)
    write_tree(tmp_path / "test", TEST_DOCS)
    repo = Path(__file__).resolve().parents[2]
    runs = plan_runs([repo / "recipes" / "docs" / "20ng.yaml"],
                     overrides=["data.dataset=null", f"data.train={tmp_path / 'train'}",
                                f"data.test={tmp_path / 'test'}", "data.encoding=latin-1"])
    assert len(runs) >= 11  # every CNN seed and the baselines (fastText where it is installed)
    for run in runs:
        checked = run.checked()
        assert checked.data.dataset is None and not cross_validated(checked.data)
        assert (checked.tokenizer.max_tokens, checked.tokenizer.truncation) == (512, "head")
    splits = recipe_splits(runs[0].checked().data, seed=0)
    assert splits.train == expected(DOCS) and splits.test == expected(TEST_DOCS)
