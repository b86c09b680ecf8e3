"""textcnn.data: Kim files, SST trees, tables, hub datasets, labels and splits."""

from __future__ import annotations

import codecs
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest

from textcnn.core.errors import TextCNNError
from textcnn.data import (
    LabelMap,
    detect_format,
    load_data,
    load_hub,
    read_kim_file,
    read_sst_trees,
    read_table,
    unescape_ptb,
)

KIM_COUNTS = {
    "rt-polarity.all": 10662,
    "subj.all": 10000,
    "TREC.train.all": 5452,
    "TREC.test.all": 500,
    "stsa.fine.train": 8544,
    "stsa.fine.dev": 1101,
    "stsa.fine.test": 2210,
    "stsa.binary.train": 6920,
    "stsa.binary.dev": 872,
    "stsa.binary.test": 1821,
}
KIM_CLASSES = {"rt": 2, "su": 2, "TR": 6, "stsa.f": 5, "stsa.b": 2}
SST_TREES = {"train": 8544, "dev": 1101, "test": 2210}


def pairs(ds: datasets.Dataset) -> list[tuple[str, int]]:
    """(text, label) rows; `to_dict` is fast where iterating a `Column` is not."""
    columns = ds.to_dict()
    return list(zip(columns["text"], columns["label"], strict=True))


def data_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent from the benchmark data")
    return path


# -- Kim's format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KIM_COUNTS))
def test_kim_file_counts_match_readme(shared_data, name):
    ds = read_kim_file(data_file(shared_data, f"kim2014/{name}"))
    assert len(ds) == KIM_COUNTS[name]
    assert ds.column_names == ["text", "label"]
    n_classes = next(n for prefix, n in KIM_CLASSES.items() if name.startswith(prefix))
    assert set(ds["label"]) == set(range(n_classes))
    assert all(ds["text"])


def _reference_decode(raw: bytes) -> str:
    """An independent statement of the decoding rule, via a codec error handler."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="textcnn-test-latin1")


codecs.register_error(
    "textcnn-test-latin1", lambda err: (err.object[err.start : err.end].decode("latin-1"), err.end)
)


@pytest.mark.parametrize("name", ["rt-polarity.all", "subj.all", "TREC.train.all"])
def test_kim_decoding_matches_reference(shared_data, name):
    path = data_file(shared_data, f"kim2014/{name}")
    expected = [
        _reference_decode(line).split(" ", 1)[1].strip(" ")
        for line in path.read_bytes().split(b"\n")
        if line
    ]
    texts = read_kim_file(path)["text"]
    assert texts == expected
    assert not any("\ufffd" in t for t in texts)
    if name != "TREC.train.all":  # MR and Subj hold byte 0x85, an ellipsis in cp1252
        assert any("…" in t for t in texts)


def test_kim_decoding_of_odd_bytes(tmp_path):
    path = tmp_path / "odd.all"
    path.write_bytes(b"1 caf\xe9 \x85 ok \n0 plain\r\n2 \xe2\x80\x94 utf8\n3 a\x85b\x81\n")
    ds = read_kim_file(path)
    # per line: UTF-8 when valid, else cp1252 (0x85 is an ellipsis, not a line break)
    assert ds["text"] == ["café … ok", "plain", "— utf8", "a…b\x81"]
    assert ds["label"] == [1, 0, 2, 3]


@pytest.mark.parametrize(
    ("content", "line", "got"),
    [
        (b"1 good\nbad line\n", 2, "'bad line'"),
        (b"1 good\n\n0 also good\n", 2, "an empty line"),
        (b"x1 good\n", 1, "'x1 good'"),
        (b"1\tgood\n", 1, "'1\\tgood'"),
        (b"0 ok\n   \n", 2, "an empty line"),
    ],
)
def test_kim_malformed_line_names_file_and_line(tmp_path, content, line, got):
    path = tmp_path / "bad.all"
    path.write_bytes(content)
    with pytest.raises(TextCNNError) as err:
        read_kim_file(path)
    message = str(err.value)
    assert f"{path}:{line}:" in message
    assert "expected '<integer label> <sentence>'" in message
    assert got in message


def test_kim_label_alone_is_an_empty_sentence(tmp_path):
    # Kim's CR and MPQA files hold lines like "1" and "0 ": their README counts include them
    path = tmp_path / "custrev.all"
    path.write_bytes(b"1 great zoom\n0\n1 \n0   \n1 fine\n")
    ds = read_kim_file(path)
    assert ds["text"] == ["great zoom", "", "", "", "fine"]
    assert ds["label"] == [1, 0, 1, 0, 1]


def test_kim_empty_sentences_train_and_predict(tmp_path):
    from textcnn.pipeline import train_recipe
    from textcnn.recipe import text_recipe

    path = tmp_path / "custrev.all"
    lines = [b"1 great zoom lens", b"0 the battery died", b"1", b"0 ", b"1 sharp pictures",
             b"0 it broke"] * 5
    path.write_bytes(b"\n".join(lines) + b"\n")
    recipe = text_recipe({"data": {"train": str(path), "test": str(path)},
                          "model": {"maps": 2, "widths": [2], "embedding_dim": 4},
                          "train": {"epochs": 1, "progress": False}})
    outcome = train_recipe(recipe, tmp_path / "run")
    assert outcome.metrics["test_examples"] == len(lines)
    from textcnn import TextCNNClassifier

    proba = TextCNNClassifier.load(outcome.model_dir).predict_proba(["", "great zoom"])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_missing_files_raise(tmp_path):
    for call in (read_kim_file, read_sst_trees, read_table, load_data):
        with pytest.raises(TextCNNError, match="no such file"):
            call(tmp_path / "nope.all")


# -- SST trees ------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", sorted(SST_TREES))
def test_sst_sentence_counts(shared_data, split):
    path = data_file(shared_data, f"sst/{split}.txt")
    fine = read_sst_trees(path)
    assert len(fine) == SST_TREES[split]
    roots = [int(line[1]) for line in path.read_text(encoding="utf-8").splitlines()]
    assert fine["label"] == roots
    binary = read_sst_trees(path, classes=2)
    assert binary["label"] == [int(r > 2) for r in roots if r != 2]
    expected_binary = {"train": 6920, "dev": 872, "test": 1821}[split]
    assert len(binary) == expected_binary  # the counts of stsa.binary.*


def test_sst_phrases_with_and_without_dedupe(shared_data):
    path = data_file(shared_data, "sst/train.txt")
    every = read_sst_trees(path, phrases=True, dedupe=False)
    assert len(every) == 318_582  # README; also one node per "(": PTB escapes hide the others
    assert path.read_text(encoding="utf-8").count("(") == 318_582
    rows = pairs(every)
    once = pairs(read_sst_trees(path, phrases=True))
    assert once == list(dict.fromkeys(rows))
    assert len({text for text, _ in once}) == len(once)  # one label per phrase throughout SST
    binary = pairs(read_sst_trees(path, classes=2, phrases=True))
    assert binary == list(dict.fromkeys((t, int(y > 2)) for t, y in rows if y != 2))
    assert set(pairs(read_sst_trees(path))) <= set(once)


def _normalized(text: str) -> str:
    """Lower-cased, PTB escapes undone (Kim's stsa files keep them, lower-cased: -lrb-)."""
    return " ".join(unescape_ptb(token.upper() if token.startswith("-") else token)
                    for token in text.lower().split())


@pytest.mark.parametrize("split", sorted(SST_TREES))
def test_sst_sentences_match_kim_stsa_files(shared_data, split):
    trees = read_sst_trees(data_file(shared_data, f"sst/{split}.txt"))
    kim = read_kim_file(data_file(shared_data, f"kim2014/stsa.fine.{split}"))
    ours = Counter((_normalized(text), label) for text, label in pairs(trees))
    theirs = Counter((_normalized(text), label) for text, label in pairs(kim))
    agreement = sum((ours & theirs).values()) / len(kim)
    assert agreement == 1.0  # measured: every (sentence, label) pair agrees, as multisets


def test_sst_unescapes_and_keeps_case(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(
        "(3 (2 -LRB-) (3 (2 A\\/B) (2 \\*\\*)) (2 -RRB-) (2 -LSB-) (2 -RSB-) (2 -LCB-) "
        "(2 -RCB-) (4 2\xa01\\/2))\n",
        encoding="utf-8",
    )
    ds = read_sst_trees(path, phrases=True, dedupe=False)
    assert ds["text"][0] == "( A/B ** ) [ ] { } 2\xa01/2"
    assert ds["label"][0] == 3
    assert ds["text"][1:4] == ["(", "A/B **", "A/B"]  # pre-order: root, then left to right
    assert len(ds) == 11


@pytest.mark.parametrize(
    "tree",
    ["(2 (3 a)", "(2 a))", "(x a)", "(7 a)", "(2 )", "a (2 b)", "(2 a) (3 b)", "", "(2 (3 a) ("],
)
def test_sst_malformed_tree_names_file_and_line(tmp_path, tree):
    path = tmp_path / "bad.txt"
    path.write_text(f"(2 (2 fine) (2 tree))\n{tree}\n", encoding="utf-8")
    with pytest.raises(TextCNNError, match=r"bad\.txt:2: expected .+, got "):
        read_sst_trees(path)


def test_sst_rejects_other_class_counts(tmp_path):
    with pytest.raises(TextCNNError, match="expected 5 .* or 2 .*, got 3"):
        read_sst_trees(tmp_path / "x.txt", classes=3)


# -- tables ---------------------------------------------------------------------------------------

ROWS = [
    {"sentence": "a fine film , truly", "y": "pos", "id": 1},
    {"sentence": 'quotes " and\ttabs', "y": "neg", "id": 2},
    {"sentence": "unicode … é", "y": "pos", "id": 3},
]


def _write_table(path: Path, fmt: str) -> Path:
    frame = datasets.Dataset.from_list(ROWS)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_read_table_formats(tmp_path, fmt):
    path = _write_table(tmp_path / f"data.{fmt}", fmt)
    cache = tmp_path / "cache"
    ds = read_table(path, text_column="sentence", label_column="y", cache_dir=cache)
    assert ds.column_names == ["text", "label"]
    assert ds["text"] == [r["sentence"] for r in ROWS]
    assert ds["label"] == [r["y"] for r in ROWS]
    assert cache.is_dir()
    again = load_data(path, text_column="sentence", label_column="y", cache_dir=cache)
    assert again["text"] == ds["text"]


def test_read_table_int_labels_and_swapped_columns(tmp_path):
    path = _write_table(tmp_path / "data.jsonl", "jsonl")
    ds = read_table(path, text_column="sentence", label_column="id", cache_dir=tmp_path / "c")
    assert ds["label"] == [1, 2, 3]
    path2 = tmp_path / "swap.jsonl"
    path2.write_text(json.dumps({"text": 5, "label": "hello"}) + "\n", encoding="utf-8")
    ds = read_table(path2, text_column="label", label_column="text", cache_dir=tmp_path / "c")
    assert (ds["text"], ds["label"]) == (["hello"], [5])


def test_read_table_missing_column_names_file_wanted_and_present(tmp_path):
    path = _write_table(tmp_path / "data.csv", "csv")
    with pytest.raises(TextCNNError) as err:
        read_table(path, text_column="sentense", label_column="y", cache_dir=tmp_path / "c")
    message = str(err.value)
    assert str(path) in message
    assert "'sentense'" in message and "did you mean 'sentence'" in message
    assert "sentence, y, id" in message


def test_read_table_rejects_empty_cells_and_bad_types(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("text,label\nfine,1\n,0\n", encoding="utf-8")
    with pytest.raises(TextCNNError, match="column 'text', got 1 empty"):
        read_table(path, cache_dir=tmp_path / "c")
    path = tmp_path / "floats.csv"
    path.write_text("text,label\nfine,0.5\n", encoding="utf-8")
    with pytest.raises(TextCNNError, match="integers or strings in column 'label'"):
        read_table(path, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("fmt, sep", [("csv", ","), ("tsv", "\t")])
def test_read_table_rows_with_more_fields_than_the_header(tmp_path, fmt, sep):
    # every row one field longer: pandas would make column 1 the index and shift the others
    path = tmp_path / f"shifted.{fmt}"
    rows = ["text,label", "a fine film,pos,x", "a dull film,neg,y"]
    path.write_text("\n".join(r.replace(",", sep) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(TextCNNError) as err:
        read_table(path, cache_dir=tmp_path / "c")
    message = str(err.value)
    assert "\n" not in message and f"{path}:2:" in message and "got 3" in message
    # a quoted field may hold the delimiter, and a record may span lines
    path.write_text(f'text{sep}label\n"a fine{sep} film"{sep}pos\n"two\nlines"{sep}neg\n'
                    f"one{sep}pos{sep}extra\n", encoding="utf-8")
    with pytest.raises(TextCNNError, match=f"{path}:5: expected at most 2 fields"):
        read_table(path, cache_dir=tmp_path / "c")


def test_read_table_is_not_served_from_a_stale_cache(tmp_path):
    import os

    path = tmp_path / "data.csv"
    path.write_text("text,label\nfirst version,pos\n", encoding="utf-8")
    stat = path.stat()
    assert read_table(path, cache_dir=tmp_path / "c")["text"] == ["first version"]
    path.write_text("text,label\nother version,neg\n", encoding="utf-8")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same times
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    ds = read_table(path, cache_dir=tmp_path / "c")
    assert (ds["text"], ds["label"]) == (["other version"], ["neg"])


def test_hub_folder_is_not_served_from_a_stale_cache(tmp_path):
    import os

    folder = tmp_path / "splits"
    folder.mkdir()
    path = folder / "train.csv"
    path.write_text("text,label\nfirst version,pos\n", encoding="utf-8")
    stat = path.stat()
    assert load_hub(folder, split="train", cache_dir=tmp_path / "c")["text"] == ["first version"]
    path.write_text("text,label\nother version,neg\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_hub(folder, split="train", cache_dir=tmp_path / "c")["text"] == ["other version"]


def test_read_table_unknown_format_suggests(tmp_path):
    path = _write_table(tmp_path / "data.csv", "csv")
    with pytest.raises(TextCNNError, match="did you mean 'csv'"):
        read_table(path, format="cvs", cache_dir=tmp_path / "c")
    other = tmp_path / "data.xlsx"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(TextCNNError, match="'.xlsx'"):
        read_table(other, cache_dir=tmp_path / "c")


# -- hub and local folders ------------------------------------------------------------------------


def test_load_hub_offline_raises_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read those variables at import time, so set their flags too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TextCNNError) as err:
        load_hub("someone/no-such-dataset", split="train", cache_dir=tmp_path / "c")
    message = str(err.value)
    assert "cannot reach the Hugging Face hub for dataset 'someone/no-such-dataset'" in message
    assert "download it or pass a local file" in message
    with pytest.raises(TextCNNError, match="cannot reach the Hugging Face hub"):
        load_data("someone/no-such-dataset", format="hub", cache_dir=tmp_path / "c")


def test_load_hub_from_save_to_disk_folder(tmp_path):
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_list(ROWS), test=datasets.Dataset.from_list(ROWS[:1])
    )
    splits.save_to_disk(tmp_path / "saved")
    ds = load_hub(tmp_path / "saved", split="test", text_column="sentence", label_column="y")
    assert (ds["text"], ds["label"]) == ([ROWS[0]["sentence"]], ["pos"])
    with pytest.raises(TextCNNError, match="split 'tset'.*did you mean 'test'"):
        load_hub(tmp_path / "saved", split="tset", text_column="sentence", label_column="y")
    datasets.Dataset.from_list(ROWS).save_to_disk(tmp_path / "one")
    ds = load_data(tmp_path / "one", text_column="sentence", label_column="y")
    assert len(ds) == 3


def test_load_hub_from_scriptless_folder(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    _write_table(folder / "train.csv", "csv")
    (folder / "test.csv").write_text("sentence,y,id\nonly one,neg,9\n", encoding="utf-8")
    ds = load_hub(folder, split="test", text_column="sentence", label_column="y",
                  cache_dir=tmp_path / "c")
    assert (ds["text"], ds["label"]) == (["only one"], ["neg"])
    ds = load_data(folder, split="train", text_column="sentence", label_column="y",
                   cache_dir=tmp_path / "c", format="hub")
    assert len(ds) == 3


def test_a_folder_where_a_file_is_expected_is_an_error(tmp_path):
    # without format hub, `datasets` would train on whichever files the folder holds
    folder = tmp_path / "some_dir"
    folder.mkdir()
    (folder / "notes.csv").write_text("text,label\nnot the data,1\n", encoding="utf-8")
    (folder / "train.csv").write_text("text,label\nthe data,0\n", encoding="utf-8")
    with pytest.raises(TextCNNError) as err:
        load_data(folder, cache_dir=tmp_path / "c")
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "format hub" in message
    with pytest.raises(TextCNNError, match="got a directory"):
        load_data(folder, format="csv", cache_dir=tmp_path / "c")


# -- load_data dispatch ---------------------------------------------------------------------------


def test_detect_format(tmp_path):
    cases = {
        "rt.all": b"1 hello\n",
        "stsa.fine.dev": b"1 hello\n",
        "TREC.train": b"1 hello\n",
        "mine.txt": b"\n3 some words\n",
        "trees.txt": b"(3 (2 a) (3 b))\n",
        "t.csv": b"text,label\n",
        "t.TSV": b"text\tlabel\n",
        "t.jsonl": b"{}\n",
        "t.parquet": b"",
    }
    expected = ["kim", "kim", "kim", "kim", "sst", "csv", "tsv", "jsonl", "parquet"]
    for (name, content), fmt in zip(cases.items(), expected, strict=True):
        (tmp_path / name).write_bytes(content)
        assert detect_format(tmp_path / name) == fmt, name
    with pytest.raises(TextCNNError, match="save_to_disk"):
        detect_format(tmp_path)
    datasets.Dataset.from_list(ROWS).save_to_disk(tmp_path / "saved")
    assert detect_format(tmp_path / "saved") == "hub"
    (tmp_path / "prose.txt").write_bytes(b"just some prose\n")
    with pytest.raises(TextCNNError, match="pass format="):
        detect_format(tmp_path / "prose.txt")


def test_load_data_dispatch_and_explicit_format(tmp_path):
    kim = tmp_path / "mine.txt"
    kim.write_bytes(b"1 hello there\n0 bye\n")
    assert load_data(kim)["label"] == [1, 0]
    trees = tmp_path / "trees.dat"
    trees.write_text("(4 (2 a) (4 b))\n(0 (1 c) (0 d))\n", encoding="utf-8")
    assert load_data(trees, format="sst")["text"] == ["a b", "c d"]
    assert load_data(trees, format="SST", classes=2)["label"] == [1, 0]
    assert len(load_data(trees, format="sst", phrases=True)) == 6
    with pytest.raises(TextCNNError, match="unknown data format 'kimm'.*did you mean 'kim'"):
        load_data(kim, format="kimm")
    with pytest.raises(TextCNNError, match="format='hub'"):
        load_data(tmp_path / "missing.csv")


# -- labels ---------------------------------------------------------------------------------------


def test_label_map_strings_and_ints():
    words = ["pos", "neg", "neutral", "neg", "pos"]
    labels = LabelMap.fit(words)
    assert labels.classes == sorted(set(words))
    reference = {c: i for i, c in enumerate(sorted(set(words)))}
    ids = labels.encode(words)
    assert ids.dtype == np.int64
    assert ids.tolist() == [reference[w] for w in words]
    assert labels.decode(ids) == words
    column = datasets.Dataset.from_dict({"label": words})["label"]  # a datasets Column
    assert LabelMap.fit(column) == labels and labels.encode(column).tolist() == ids.tolist()
    numbers = LabelMap.fit(np.array([5, 3, 3, 10]))
    assert numbers.classes == [3, 5, 10]
    assert all(type(c) is int for c in numbers.classes)
    assert numbers.decode(numbers.encode([10, 3])) == [10, 3]


def test_label_map_json_round_trip_keeps_types():
    for classes in (["1", "2", "b"], [0, 1, 7]):
        labels = LabelMap(classes)
        back = LabelMap.from_json(json.loads(json.dumps(labels.to_json())))
        assert back == labels and back.classes == classes
        assert [type(c) for c in back.classes] == [type(c) for c in classes]
        assert LabelMap.from_json(json.dumps(labels.to_json())) == labels
    with pytest.raises(TextCNNError, match="expected"):
        LabelMap.from_json({"labels": [1]})


def test_label_map_errors():
    labels = LabelMap.fit(["positive", "negative"])
    with pytest.raises(TextCNNError) as err:
        labels.encode(["positive", "postive"])
    message = str(err.value)
    assert "label 'postive' was never seen in training" in message
    assert "did you mean 'positive'" in message
    assert "known labels: 'negative', 'positive'" in message
    with pytest.raises(TextCNNError, match="label '1' was never seen"):
        LabelMap.fit([1, 2]).encode(["1"])
    with pytest.raises(TextCNNError, match="mix"):
        LabelMap.fit([1, "a"])
    with pytest.raises(TextCNNError, match="int or a string"):
        LabelMap.fit([1.5])
    with pytest.raises(TextCNNError, match="class id"):
        labels.decode([2])
