"""Model directories (textcnn.core.modeldir): written as a whole, checked as a whole.

The first part uses a plain torch module; the second corrupts the directories of three tiny
trained models (a text CNN, LeNet-5, a detector) one way at a time and checks that each load
fails with one line naming the damaged file, through the library and the CLI."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from textcnn.core import modeldir
from textcnn.core.config import apply_overrides, read_yaml
from textcnn.core.errors import TextCNNError
from textcnn.core.modeldir import CONFIG, FORMAT, WEIGHTS, open_model_dir, write_model_dir

REPO = Path(__file__).resolve().parents[2]


def linear(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def save_linear(path: Path, seed: int = 0, **files) -> nn.Linear:
    model = linear(seed)
    write_model_dir(path, config={"kind": "toy", "in": 4, "out": 3}, state=model.state_dict(),
                    files={"notes.txt": "hello", **files})
    return model


def load_linear(path: Path) -> nn.Linear:
    folder = open_model_dir(path, kind="toy", keys=("in", "out"))
    return folder.load_into(folder.build(lambda: nn.Linear(folder.get("in", int), folder.get("out", int))))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> list[str]:
    """Everything beside `path` in its folder, hidden entries included."""
    return sorted(p.name for p in path.parent.iterdir())


def one_line_error(call, *names: str) -> str:
    with pytest.raises(TextCNNError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    return message


# -- writing and reading a directory --------------------------------------------------------------


def test_round_trip_records_every_files_checksum(tmp_path):
    path = tmp_path / "m"
    model = save_linear(path)
    config = json.loads((path / CONFIG).read_text())
    assert config["format"] == FORMAT and config["kind"] == "toy"
    assert config["sha256"] == {p.name: sha(p) for p in path.iterdir() if p.name != CONFIG}
    assert set(config["sha256"]) == {WEIGHTS, "notes.txt"}
    loaded = load_linear(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert siblings(path) == ["m"]  # no temporary folder left


def test_an_older_model_is_replaced_as_a_whole(tmp_path):
    path = tmp_path / "m"
    save_linear(path, seed=0, **{"old-only.txt": "x"})
    new = save_linear(path, seed=1)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG, WEIGHTS, "notes.txt"]
    assert torch.equal(load_linear(path).weight, new.weight)
    assert siblings(path) == ["m"]


def test_a_failed_write_keeps_the_old_model_and_leaves_nothing_else(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old = save_linear(path, seed=0)

    def disk_full(tensors, filename):
        Path(filename).write_bytes(b"\0" * 10)  # part of the file made it to disk
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(modeldir, "save_file", disk_full)
    message = one_line_error(lambda: save_linear(path, seed=1), str(path), "No space left")
    assert "nothing there was replaced" in message
    assert torch.equal(load_linear(path).weight, old.weight)
    assert siblings(path) == ["m"]
    fresh = tmp_path / "fresh"
    one_line_error(lambda: save_linear(fresh, seed=1), str(fresh))
    assert not fresh.exists() and siblings(path) == ["m"]


def test_a_folder_with_other_files_is_never_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    one_line_error(lambda: save_linear(folder), str(folder), "thesis.tex")
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]
    (tmp_path / "afile").write_text("x")
    one_line_error(lambda: save_linear(tmp_path / "afile"), "got a file")
    empty = tmp_path / "empty"
    empty.mkdir()
    save_linear(empty)
    assert (empty / CONFIG).is_file()


def test_a_directory_saved_before_checksums_loads_with_a_warning(tmp_path):
    path = tmp_path / "m"
    model = save_linear(path)
    config = json.loads((path / CONFIG).read_text())
    del config["sha256"]
    config["format"] = 1
    (path / CONFIG).write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="saved without checksums"):
        loaded = load_linear(path)
    assert torch.equal(loaded.weight, model.weight)
    config["format"] = 2  # a current directory must carry its checksums
    (path / CONFIG).write_text(json.dumps(config))
    one_line_error(lambda: load_linear(path), CONFIG, "'sha256'")
    config["format"] = FORMAT + 1
    (path / CONFIG).write_text(json.dumps(config))
    one_line_error(lambda: load_linear(path), CONFIG, f"expected format 1..{FORMAT}")


# -- three tiny trained models, damaged one way at a time -----------------------------------------

TEXTS = ["a warm , funny film", "dull and lifeless", "a gem", "a mess", "sharp , moving work",
         "tedious and flat"] * 6
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg"] * 6
TINY_DETECTOR = {
    "task": "detection", "name": "tiny",
    "data": {"source": "shapes", "size": 48, "train_images": 6, "val_images": 3, "test_images": 3},
    "model": {"name": "ssd", "kwargs": {"image_size": 48, "extra_channels": [16, 16, 16],
                                        "backbone_kwargs": {"widths": [8, 8, 16, 16]}}},
    "train": {"epochs": 1, "batch_size": 3, "optimizer": "adam", "lr": 0.001, "progress": False,
              "threads": 1},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A saved model directory of each kind."""
    from textcnn import TextCNNClassifier
    from vision.detection.pipeline import train_detection_recipe
    from vision.pipeline import train_image_recipe

    root = tmp_path_factory.mktemp("models")
    text = TextCNNClassifier(maps=4, embedding_dim=8, widths=(2, 3), epochs=2, seed=0)
    text.fit(TEXTS, LABELS).save(root / "text")
    recipe = apply_overrides(read_yaml(REPO / "recipes" / "vision" / "lenet5-digits.yaml"),
                             ["data.max_examples=200", "train.epochs=1"])
    image = train_image_recipe(recipe, source="lenet5-digits.yaml", out_dir=root / "image")
    detector = train_detection_recipe(TINY_DETECTOR, source="tiny.yaml", out_dir=root / "det")
    return {"text": root / "text", "image": image.model_dir, "detector": detector.model_dir}


def load(kind: str, path: Path):
    """Load a model directory of `kind` through its own loader."""
    if kind == "text":
        from textcnn import TextCNNClassifier

        return TextCNNClassifier.load(path).model_
    if kind == "image":
        from vision.pipeline import load_image_model

        return load_image_model(path)[0]
    from vision.detection.pipeline import load_detector

    return load_detector(path)[0]


def copy(models: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(models[kind], tmp_path / kind))


def edit_config(path: Path, change) -> None:
    config = json.loads((path / CONFIG).read_text())
    change(config)
    (path / CONFIG).write_text(json.dumps(config))


def without_checksums(path: Path) -> None:
    """Make `path` look like a directory saved before checksums existed (format 1)."""
    def strip(config):
        del config["sha256"]
        config["format"] = 1

    edit_config(path, strip)


def data_start(raw: bytes) -> int:
    """Where a safetensors file's tensor data begins (after the 8-byte length and the header)."""
    return 8 + int.from_bytes(raw[:8], "little")


def flip_tensor_byte(path: Path, tensor: str | None = None) -> None:
    """Flip one bit in the tensor data (not the header): in the middle of the data, or in the
    exponent of the first value of `tensor` (which multiplies that float32 by 4 or 1/4)."""
    raw = bytearray(path.read_bytes())
    start = data_start(raw)
    if tensor is None:
        raw[(start + len(raw)) // 2] ^= 0x40
    else:
        header = json.loads(raw[8:start])
        raw[start + header[tensor]["data_offsets"][0] + 3] ^= 0x01
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garble_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[8:24] = b"#garbled#header#"
    path.write_bytes(bytes(raw))


DAMAGE = {"flipped": flip_tensor_byte, "truncated": truncate, "zero-byte": empty,
          "garbled": garble_header}
KINDS = ["text", "image", "detector"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_weights_fail_their_checksum(models, tmp_path, kind, damage):
    path = copy(models, kind, tmp_path)
    DAMAGE[damage](path / WEIGHTS)
    message = one_line_error(lambda: load(kind, path), str(path / WEIGHTS), "corrupted or was changed")
    assert json.loads((path / CONFIG).read_text())["sha256"][WEIGHTS] in message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage, expected", [("truncated", "unreadable file"),
                                              ("zero-byte", "an empty file"),
                                              ("garbled", "unreadable file")])
def test_damaged_weights_without_checksums_are_one_line_too(models, tmp_path, kind, damage, expected):
    path = copy(models, kind, tmp_path)
    without_checksums(path)
    DAMAGE[damage](path / WEIGHTS)
    with pytest.warns(UserWarning, match="saved without checksums"):
        one_line_error(lambda: load(kind, path), str(path / WEIGHTS), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_an_undamaged_directory_without_checksums_loads_the_same_model(models, tmp_path, kind):
    path = copy(models, kind, tmp_path)
    without_checksums(path)
    with pytest.warns(UserWarning, match="saved without checksums"):
        old = load(kind, path)
    new = load(kind, models[kind])
    for name, value in new.state_dict().items():
        assert torch.equal(old.state_dict()[name], value)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_weights(models, tmp_path, kind):
    path = copy(models, kind, tmp_path)
    (path / WEIGHTS).unlink()
    one_line_error(lambda: load(kind, path), str(path / WEIGHTS), "found none")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", ['{"kind": "text-cl', "", "[1, 2]", '{"kind": null}'])
def test_invalid_config_json(models, tmp_path, kind, text):
    path = copy(models, kind, tmp_path)
    (path / CONFIG).write_text(text)
    one_line_error(lambda: load(kind, path), str(path / CONFIG), "expected")


MISSING_KEY = {"text": "params", "image": "kwargs", "detector": "model"}


@pytest.mark.parametrize("kind", KINDS)
def test_config_json_missing_a_key(models, tmp_path, kind):
    path = copy(models, kind, tmp_path)
    edit_config(path, lambda config: config.pop(MISSING_KEY[kind]))
    one_line_error(lambda: load(kind, path), str(path / CONFIG), f"'{MISSING_KEY[kind]}', found none")


def one_more_class(config):
    config["num_classes"] += 1
    config["classes"].append("extra")


RESHAPE = {"text": lambda config: config["model"].update(maps=config["model"]["maps"] + 1),
           "image": one_more_class, "detector": one_more_class}


@pytest.mark.parametrize("kind", KINDS)
def test_config_json_with_other_shapes_than_the_weights(models, tmp_path, kind):
    path = copy(models, kind, tmp_path)
    edit_config(path, RESHAPE[kind])
    message = one_line_error(lambda: load(kind, path), str(path / WEIGHTS), CONFIG, "shape")
    assert "where config.json builds" in message


@pytest.mark.parametrize("kind", ["image", "detector"])
def test_config_json_with_too_few_class_names(models, tmp_path, kind):
    path = copy(models, kind, tmp_path)
    edit_config(path, lambda config: config["classes"].pop())
    one_line_error(lambda: load(kind, path), str(path / CONFIG), "'classes'")


def test_config_json_with_a_keyword_the_model_does_not_take(models, tmp_path):
    path = copy(models, "image", tmp_path)
    edit_config(path, lambda config: config["kwargs"].update(bogus=1))
    one_line_error(lambda: load("image", path), str(path / CONFIG), "bogus")


def test_text_labels_json_missing_or_short(models, tmp_path):
    path = copy(models, "text", tmp_path)
    labels = path / "labels.json"
    labels.write_text(json.dumps({"classes": ["neg"]}))
    message = one_line_error(lambda: load("text", path), str(labels), "corrupted or was changed")
    assert message.count(str(labels)) == 1
    # the same short list with its checksum updated (as if config.json were edited to match)
    edit_config(path, lambda config: config["sha256"].update({"labels.json": sha(labels)}))
    one_line_error(lambda: load("text", path), str(labels), "expected 2 classes", "got 1")
    labels.unlink()
    message = one_line_error(lambda: load("text", path), str(labels), "found none")
    assert message.count(str(labels)) == 1


def test_text_labels_json_swapped_is_caught(models, tmp_path):
    # swapped class names would flip every prediction while looking healthy
    path = copy(models, "text", tmp_path)
    labels = path / "labels.json"
    labels.write_text(json.dumps({"classes": ["pos", "neg"]}))
    one_line_error(lambda: load("text", path), str(labels), "corrupted or was changed")


def test_text_tokenizer_missing_or_of_another_size(models, tmp_path):
    path = copy(models, "text", tmp_path)
    edit_config(path, lambda config: config["model"].update(vocab_size=config["model"]["vocab_size"] + 5))
    one_line_error(lambda: load("text", path), str(path / CONFIG), "vocab_size")
    (path / "tokenizer.json").unlink()
    path = copy(models, "text", tmp_path / "again")
    (path / "tokenizer.json").unlink()
    one_line_error(lambda: load("text", path), str(path / "tokenizer.json"), "found none")


def test_flipped_bytes_no_longer_give_silent_predictions(models, tmp_path):
    from textcnn import TextCNNClassifier

    path = copy(models, "text", tmp_path)
    flip_tensor_byte(path / WEIGHTS, "fc.weight")
    with pytest.raises(TextCNNError, match="corrupted or was changed"):
        TextCNNClassifier.load(path)
    # the flip does change the model: without the check it would predict other numbers
    without_checksums(path)
    with pytest.warns(UserWarning):
        damaged = TextCNNClassifier.load(path)
    good = TextCNNClassifier.load(models["text"])
    assert not np.allclose(damaged.predict_proba(TEXTS[:6]), good.predict_proba(TEXTS[:6]))


# -- through the CLI: exit code 2 and one line ----------------------------------------------------


def cli(*args: str):
    from textcnn.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_predict_with_flipped_weights_exits_2(models, tmp_path):
    path = copy(models, "text", tmp_path)
    flip_tensor_byte(path / WEIGHTS)
    result = cli("predict", str(path), "a warm film")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "corrupted or was changed" in result.output and str(path / WEIGHTS) in result.output


def test_cli_evaluate_with_invalid_config_json_exits_2(models, tmp_path):
    path = copy(models, "image", tmp_path)
    (path / CONFIG).write_text("{not json")
    result = cli("evaluate", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path / CONFIG}: expected JSON" in result.output


def test_cli_predict_with_a_zero_byte_detector_exits_2(models, tmp_path):
    path = copy(models, "detector", tmp_path)
    empty(path / WEIGHTS)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(image)
    result = cli("predict", str(path), str(image))
    assert result.exit_code == 2 and str(path / WEIGHTS) in result.output
