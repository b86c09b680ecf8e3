"""ONNX export (`textcnn export`, `textcnn.onnx`): the exported graphs give the torch models'
probabilities, for every Kim variant and for LeNet-5 and ResNet-18; int8 quantization; the
exported directory is written and checked like a model directory."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime) is not installed")

from textcnn import TextCNNClassifier  # noqa: E402
from textcnn.cli import main  # noqa: E402
from textcnn.core.errors import TextCNNError  # noqa: E402
from textcnn.data import read_table  # noqa: E402
from textcnn.onnx import OnnxClassifier, export_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (2, 3, 5)  # the widest filter is 5 words
# every word kept, so that the graph itself sees the 5,000-word probe (the cut is tested apart)
SMALL = dict(maps=4, embedding_dim=8, widths=WIDTHS, epochs=1, batch_size=25, seed=0,
             max_tokens=None, truncation="none")


@pytest.fixture(scope="module")
def sample():
    train = read_table(ROOT / "data" / "sample" / "train.csv")
    return list(train["text"]), list(train["label"])


def write_vectors(path: Path, texts: list[str], dim: int = 8) -> Path:
    """A tiny word2vec text file: a seeded random vector for every word of `texts` but two (so
    some words have none and get the random initialisation)."""
    words = sorted({w for t in texts for w in t.lower().split()})[2:]
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {dim}"] + [" ".join([w, *(f"{v:.5f}" for v in rng.normal(size=dim))])
                                       for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def probe_texts(words: list[str]) -> list[str]:
    """Texts of 0, 1, 3 (< the widest filter) and 5,000 of `words`, and 60 shorter ones."""
    long = " ".join(words[i % len(words)] for i in range(5000))
    return ["", words[0], " ".join(words[:3]), long] + [" ".join(words[i:i + 1 + i % 12]) for i in range(60)]


def test_an_exported_model_cuts_long_texts_as_the_model_does(sample, tmp_path):
    X, y = sample
    clf = TextCNNClassifier(**{**SMALL, "max_tokens": 7, "truncation": "head+tail"}).fit(X, y)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    words = clf.tokenizer_.vocab()[2:40]
    long, kept = " ".join(words), " ".join(words[:4] + words[-3:])  # head+tail of 7: 4 first, 3 last
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    np.testing.assert_allclose(onnx_clf.predict_proba([long]), onnx_clf.predict_proba([kept]), atol=1e-6)
    np.testing.assert_allclose(onnx_clf.predict_proba([long, kept]), clf.predict_proba([long, kept]), atol=1e-5)


@pytest.mark.parametrize("variant", ["rand", "static", "non-static", "multichannel"])
def test_every_kim_variant_exports_to_the_torch_probabilities(variant, sample, tmp_path):
    X, y = sample
    vectors = None if variant == "rand" else str(write_vectors(tmp_path / "vectors.txt", X))
    clf = TextCNNClassifier(**SMALL, variant=variant, vectors=vectors).fit(X, y)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    texts = probe_texts(clf.tokenizer_.vocab()[2:] + ["unseenword"])
    assert len(texts) == 64
    assert [len(ids) for ids in clf.tokenizer_.encode_batch(texts[:4])] == [0, 1, 3, 5000]
    # batch 64 (lengths 0 to 5,000 together), and each text alone (batch 1)
    np.testing.assert_allclose(onnx_clf.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    for text in texts[:4] + texts[-3:]:
        np.testing.assert_allclose(onnx_clf.predict_proba([text]), clf.predict_proba([text]), atol=1e-5)
    np.testing.assert_array_equal(onnx_clf.predict(texts), clf.predict(texts))
    assert list(onnx_clf.classes_) == list(clf.classes_)


MENU = [dict(activation="tanh"), dict(activation="prelu"), dict(activation="softmax", pooling="avg"),
        dict(pooling="l2"), dict(batch_norm=True), dict(weight_norm=True, pooling="avg", activation="selu")]


@pytest.mark.parametrize("menu", MENU, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
def test_the_models_menu_exports_to_the_torch_probabilities(menu, sample, tmp_path):
    X, y = sample
    clf = TextCNNClassifier(**SMALL, **menu).fit(X, y)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    texts = probe_texts(clf.tokenizer_.vocab()[2:])
    np.testing.assert_allclose(onnx_clf.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    for text in texts[:4]:  # 0, 1, 3 and 5,000 words alone
        np.testing.assert_allclose(onnx_clf.predict_proba([text]), clf.predict_proba([text]), atol=1e-5)


def test_kmax_pooling_is_refused(sample, tmp_path):
    X, y = sample
    TextCNNClassifier(**SMALL, pooling="kmax", k=2).fit(X, y).save(tmp_path / "model")
    with pytest.raises(TextCNNError, match="pooling 'kmax' is not exported to ONNX"):
        export_model(tmp_path / "model", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_the_graph_takes_any_batch_and_length(sample, tmp_path):
    """The graph itself, fed token ids directly: batch 64 x 5,000 and batch 1 x 1 give the
    torch model's logits."""
    X, y = sample
    clf = TextCNNClassifier(**SMALL).fit(X, y)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    graph = OnnxClassifier(tmp_path / "onnx")._scorer.graph
    generator = torch.Generator().manual_seed(0)
    for shape in ((64, 5000), (1, 1), (3, 4)):
        ids = torch.randint(0, clf.model_config_.vocab_size, shape, generator=generator)
        ids[0, shape[1] // 2:] = clf.model_config_.pad_id  # a right-padded row
        with torch.no_grad():
            expected = clf.model_.eval()(ids).numpy()
        np.testing.assert_allclose(graph(ids.numpy()), expected, atol=1e-4, rtol=1e-5)


def test_int8_quantization_stores_the_embeddings_in_8_bits(sample, tmp_path):
    import onnx

    X, y = sample
    clf = TextCNNClassifier(**{**SMALL, "embedding_dim": 256}).fit(X, y)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx", quantize="int8")
    fp32, int8 = tmp_path / "onnx" / "model.onnx", tmp_path / "onnx" / "model.int8.onnx"
    table = clf.model_.embeddings[0].weight
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    stored = {tuple(t.dims): t.data_type for t in onnx.load(str(int8)).graph.initializer}
    assert stored[tuple(table.shape)] in eight_bit  # the embedding table, in 8 bits
    # a byte instead of four per table entry saves 3/4 of the table's bytes; the quantization
    # parameters and the graph's other weights take back a little of that
    assert fp32.stat().st_size - int8.stat().st_size > 0.65 * 4 * table.numel()
    texts = X[:50]
    full, quantized = OnnxClassifier(tmp_path / "onnx"), OnnxClassifier(tmp_path / "onnx", int8=True)
    # one int8 step of the table (its range / 255) moves each probability by little
    np.testing.assert_allclose(quantized.predict_proba(texts), full.predict_proba(texts), atol=0.02)
    export_model(tmp_path / "model", tmp_path / "plain")  # no --quantize: no int8 graph
    with pytest.raises(TextCNNError, match="export with --quantize int8"):
        OnnxClassifier(tmp_path / "plain", int8=True)


def save_image_model(tmp_path: Path, name: str, channels: int) -> tuple[torch.nn.Module, dict, Path]:
    from vision.pipeline import save_image_model as save
    from vision.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=channels).eval()
    meta = {"kind": "image-classifier", "model": name, "kwargs": {}, "num_classes": 3,
            "in_channels": channels, "classes": ["circle", "square", "star"], "input_size": [channels, 32, 32],
            "normalize": {"mean": [0.4] * channels, "std": [0.2] * channels}}
    return model, meta, save(model, tmp_path / name, meta=meta)


@pytest.mark.parametrize(("name", "channels"), [("lenet5", 1), ("resnet18", 3)])
def test_image_classifiers_export_to_the_torch_probabilities(name, channels, tmp_path):
    from vision.pipeline import class_probabilities, image_tensor, prepare

    model, meta, model_dir = save_image_model(tmp_path, name, channels)
    export_model(model_dir, tmp_path / "onnx")
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    rng = np.random.default_rng(0)
    images = [rng.random((20 + i % 7, 24, 3)).astype(np.float32) for i in range(64)]
    expected = class_probabilities(model, torch.cat([prepare(image_tensor(i), meta) for i in images])).numpy()
    np.testing.assert_allclose(onnx_clf.predict_proba(images), expected, atol=1e-5)  # batch 64
    np.testing.assert_allclose(onnx_clf.predict_proba(images[:1]), expected[:1], atol=1e-5)  # batch 1
    assert list(onnx_clf.predict(images[:5])) == [meta["classes"][i] for i in expected[:5].argmax(1)]


def test_image_files_and_bytes_are_read_as_the_arrays_they_hold(tmp_path):
    from PIL import Image

    _, _, model_dir = save_image_model(tmp_path, "lenet5", 1)
    export_model(model_dir, tmp_path / "onnx", quantize="int8")
    pixels = (np.random.default_rng(1).random((28, 28)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    (tmp_path / "digit.png").write_bytes(buffer.getvalue())
    for int8 in (False, True):
        clf = OnnxClassifier(tmp_path / "onnx", int8=int8)
        from_array = clf.predict_proba([pixels])
        np.testing.assert_allclose(clf.predict_proba([buffer.getvalue()]), from_array, atol=1e-6)
        np.testing.assert_allclose(clf.predict_proba([str(tmp_path / "digit.png")]), from_array, atol=1e-6)
    with pytest.raises(TextCNNError, match="readable image"):
        clf.predict_proba([b"not an image"])


def test_the_exported_directory_is_checked_like_a_model_directory(sample, tmp_path):
    X, y = sample
    TextCNNClassifier(**SMALL).fit(X, y).save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert config["kind"] == "onnx-classifier" and config["task"] == "text"
    assert config["onnx"]["opset"] >= 17 and set(config["sha256"]) == {
        "model.onnx", "tokenizer.json", "labels.json", "metrics.json"}
    # an export never replaces a model directory (the one exported, say), only an older export
    with pytest.raises(TextCNNError, match="older export"):
        export_model(tmp_path / "model", tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx", quantize="int8")  # replaces the export
    assert (tmp_path / "onnx" / "model.int8.onnx").is_file()
    graph = tmp_path / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    with pytest.raises(TextCNNError, match="model.onnx: the file is corrupted"):
        OnnxClassifier(tmp_path / "onnx")
    with pytest.raises(TextCNNError, match="expected kind 'onnx-classifier'"):
        OnnxClassifier(tmp_path / "model")


def test_detectors_are_not_exported_and_missing_packages_say_how_to_install(tmp_path, monkeypatch):
    from vision.detection.pipeline import KIND

    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "config.json").write_text(json.dumps({"kind": KIND}))
    with pytest.raises(TextCNNError, match="detectors are not exported"):
        export_model(tmp_path / "det", tmp_path / "out")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(TextCNNError, match=r"pip install 'textcnn\[onnx\]'"):
        OnnxClassifier(tmp_path / "out")


def test_cli_export_writes_the_directory_and_refuses_bad_options(sample, tmp_path, capsys):
    X, y = sample
    TextCNNClassifier(**SMALL).fit(X, y).save(tmp_path / "model")
    for args, code in (([str(tmp_path / "model"), "--out", str(tmp_path / "onnx"), "--quantize", "int8"], 0),
                       ([str(tmp_path / "model"), "--out", str(tmp_path / "x"), "--format", "tflite"], 2),
                       ([str(tmp_path / "model"), "--out", str(tmp_path / "x"), "--opset", "12"], 2)):
        with pytest.raises(SystemExit) as exit_info:
            main(["export", *args])
        assert exit_info.value.code == code
    out = capsys.readouterr()
    assert "model.int8.onnx" in out.out and "tflite" in out.err
    clf = OnnxClassifier(tmp_path / "onnx")
    assert clf.predict_proba(X[:3]).shape == (3, 2)


def test_a_multi_label_model_exports_its_sigmoid_probabilities(sample, tmp_path):
    X, y = sample
    labels = [[label, "any"] if i % 3 == 0 else [label] for i, label in enumerate(y)]
    clf = TextCNNClassifier(**SMALL, multi_label=True, threshold=0.4).fit(X, labels)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    texts = X[:20] + [""]
    np.testing.assert_allclose(onnx_clf.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    np.testing.assert_array_equal(onnx_clf.predict(texts), clf.predict(texts))  # at the model's 0.4
    np.testing.assert_array_equal(onnx_clf.predict(texts, threshold=0.7), clf.predict(texts, threshold=0.7))


def test_tuned_thresholds_travel_with_the_export_and_the_server(sample, tmp_path):
    from textcnn.serve import ServeSettings, load_predictor

    X, y = sample
    labels = [[label, "any"] if i % 3 == 0 else [label] for i, label in enumerate(y)]
    clf = TextCNNClassifier(**SMALL, multi_label=True, tune_thresholds=True, dev_fraction=0.2).fit(X, labels)
    assert clf.thresholds_ is not None and not np.allclose(clf.thresholds_, clf.threshold)
    clf.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "onnx")
    onnx_clf = OnnxClassifier(tmp_path / "onnx")
    np.testing.assert_allclose(onnx_clf.threshold, clf.thresholds_)
    texts = X[:40]
    np.testing.assert_array_equal(onnx_clf.predict(texts), clf.predict(texts))  # each label at its own cut
    for path in (tmp_path / "model", tmp_path / "onnx"):
        np.testing.assert_allclose(load_predictor(ServeSettings(model=str(path))).threshold, clf.thresholds_)
