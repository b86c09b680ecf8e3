"""Image data: digits against scikit-learn itself, image folders written with PIL, `datasets`
folders, the offline hub error and the seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits as sk_digits

from textcnn.core.errors import TextCNNError
from vision.data import (
    _read_with_matplotlib,
    load_digits,
    load_hf_images,
    load_image_folder,
    load_images,
    read_image,
    split_indices,
)


def test_digits_are_sklearns_scaled_to_unit_range() -> None:
    data, bunch = load_digits(), sk_digits()
    assert data.images.shape == (1797, 1, 8, 8) and len(data) == 1797
    assert data.classes == [str(d) for d in range(10)]
    np.testing.assert_allclose(data.images[:, 0].numpy(), bunch.images / 16.0, rtol=0, atol=1e-7)
    assert np.bincount(data.labels.numpy()).tolist() == np.bincount(bunch.target).tolist()
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert load_images("digits", size=32).images.shape == (1797, 1, 32, 32)


def test_splits_are_seeded_stratified_and_disjoint() -> None:
    labels = load_digits().labels
    a = split_indices(labels, dev_fraction=0.1, test_fraction=0.2, seed=0)
    b = split_indices(labels, dev_fraction=0.1, test_fraction=0.2, seed=0)
    c = split_indices(labels, dev_fraction=0.1, test_fraction=0.2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    train, dev, test = a
    assert sorted(np.concatenate(a).tolist()) == list(range(1797))
    assert (len(train), len(dev), len(test)) == (1257, 180, 360)
    for part, fraction in ((dev, 0.1), (test, 0.2)):
        counts = np.bincount(labels.numpy()[part], minlength=10)
        expected = np.bincount(labels.numpy()) * fraction
        assert np.abs(counts - expected).max() <= 1.5
    # The test split does not move when only the dev share changes.
    other = split_indices(labels, dev_fraction=0.15, test_fraction=0.2, seed=0)
    assert np.array_equal(other[2], test)


def write_folder(root, *, rgb=False, sizes=None) -> dict[str, list[np.ndarray]]:
    """Three classes of small PNGs; returns the uint8 arrays written per class."""
    rng = np.random.default_rng(0)
    written: dict[str, list[np.ndarray]] = {}
    for name in ("cat", "ant", "bee"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            h, w = (sizes or {}).get((name, i), (6, 5))
            array = rng.integers(0, 256, (h, w, 3) if rgb else (h, w), dtype=np.uint8)
            Image.fromarray(array).save(root / name / f"{i}.png")
            written.setdefault(name, []).append(array)
    (root / "notes.txt").write_text("not a class")
    return written


def test_image_folder_reads_classes_and_pixels(tmp_path) -> None:
    written = write_folder(tmp_path / "grey")
    data = load_image_folder(tmp_path / "grey")
    assert data.classes == ["ant", "bee", "cat"]
    assert data.images.shape == (9, 1, 6, 5) and data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for k, name in enumerate(data.classes):
        for i in range(3):
            np.testing.assert_allclose(data.images[3 * k + i, 0].numpy(), written[name][i] / 255.0,
                                       atol=1e-6)
    rgb = load_image_folder(tmp_path / "grey", channels=3, size=12)
    assert rgb.images.shape == (9, 3, 12, 12)
    written = write_folder(tmp_path / "rgb", rgb=True)
    colour = load_image_folder(tmp_path / "rgb")
    np.testing.assert_allclose(colour.images[0].permute(1, 2, 0).numpy(), written["ant"][0] / 255.0,
                               atol=1e-6)


def test_matplotlib_reader_agrees_with_pil(tmp_path) -> None:
    write_folder(tmp_path / "grey")
    write_folder(tmp_path / "rgb", rgb=True)
    for path in (tmp_path / "grey" / "ant" / "0.png", tmp_path / "rgb" / "bee" / "2.png"):
        np.testing.assert_allclose(_read_with_matplotlib(path), read_image(path), atol=1e-6)


def test_image_folder_errors_name_the_file(tmp_path) -> None:
    write_folder(tmp_path / "mixed", sizes={("bee", 1): (7, 5)})
    with pytest.raises(TextCNNError, match=r"bee/1.png: expected 6x5 .* got 7x5 \(set data.size"):
        load_image_folder(tmp_path / "mixed")
    assert load_image_folder(tmp_path / "mixed", size=8).images.shape == (9, 1, 8, 8)
    (tmp_path / "mixed" / "empty").mkdir()
    with pytest.raises(TextCNNError, match="empty: expected image files"):
        load_image_folder(tmp_path / "mixed")
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TextCNNError, match="broken.png: expected a readable image"):
        load_image_folder(tmp_path / "bad")
    with pytest.raises(TextCNNError, match="expected 'digits', an image folder or hf:"):
        load_images(tmp_path / "missing")


def bomb_png(path, width: int, height: int):
    """A PNG of a few hundred bytes that declares `width` x `height` grey pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4)  # the first rows only: enough to open
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30000, 12000])  # beyond Pillow's error; within its warning
def test_a_decompression_bomb_is_one_line_without_loading(tmp_path, side) -> None:
    import warnings

    path = bomb_png(tmp_path / "bomb.png", side, side)
    assert path.stat().st_size < 2000 and side * side > Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(TextCNNError) as err:
            read_image(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert f"at most {Image.MAX_IMAGE_PIXELS} pixels" in message
    (tmp_path / "folder" / "cls").mkdir(parents=True)
    bomb_png(tmp_path / "folder" / "cls" / "x.png", side, side)
    with pytest.raises(TextCNNError, match="x.png: expected an image of at most"):
        load_image_folder(tmp_path / "folder")


def test_hub_offline_gives_a_clear_error(monkeypatch) -> None:
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read those variables at import time, so set their flags too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TextCNNError, match="cannot reach the Hugging Face hub for dataset "
                                           "'someone/no-such-images' \\(offline\\?\\)"):
        load_images("hf:someone/no-such-images")


def test_datasets_folder_with_image_feature(tmp_path) -> None:
    import datasets

    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(4)]
    features = datasets.Features({"img": datasets.Image(),
                                  "y": datasets.ClassLabel(names=["no", "yes"])})
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in arrays], "y": [1, 0, 1, 1]},
                                    features=features)
    datasets.DatasetDict(train=ds, test=ds.select([0, 1])).save_to_disk(tmp_path / "saved")
    data = load_images(tmp_path / "saved", split="test", image_column="img", label_column="y")
    assert data.classes == ["no", "yes"] and data.labels.tolist() == [1, 0]
    np.testing.assert_allclose(data.images[:, 0].numpy(), np.stack(arrays[:2]) / 255.0, atol=1e-6)
    with pytest.raises(TextCNNError, match="expected a column 'image'"):
        load_hf_images(tmp_path / "saved", split="train")
    assert isinstance(data.images, torch.Tensor)
