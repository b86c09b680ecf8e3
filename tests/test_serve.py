"""The prediction server (`textcnn serve`): a real process on a loopback port, called over HTTP
(predictions equal the model's, malformed and oversized requests, SIGTERM with a request in
flight); image models, both runtimes and the micro-batcher in process, through ASGI calls."""

import asyncio
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra (fastapi, uvicorn) is not installed")

from textcnn import TextCNNClassifier  # noqa: E402
from textcnn.data import read_table  # noqa: E402
from textcnn.serve import MicroBatcher, ServeSettings, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    train = read_table(ROOT / "data" / "sample" / "train.csv")
    clf = TextCNNClassifier(maps=4, embedding_dim=8, epochs=2, seed=0).fit(list(train["text"]), list(train["label"]))
    path = tmp_path_factory.mktemp("serve") / "model"
    clf.save(path)
    return clf, path


def serving_port(server: subprocess.Popen, deadline: float) -> int:
    """The port in the server's first line ("serving ... on http://HOST:PORT ..."), read from its
    stderr as it comes."""
    import re
    import select

    while time.monotonic() < deadline:
        if select.select([server.stderr], [], [], 0.2)[0]:
            line = server.stderr.readline()
            assert line, f"the server exited early: {server.communicate()[1][-2000:]}"
            found = re.search(r"^serving .* on http://127\.0\.0\.1:(\d+) ", line)
            if found:
                return int(found.group(1))
    raise AssertionError("the server did not say where it serves within 120 s")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def post(port: int, payload: object) -> tuple[int, object]:
    return request(port, "POST", "/predict", json.dumps(payload).encode())


@pytest.mark.slow
def test_serve_as_a_process_answers_rejects_and_stops_on_sigterm(text_model):
    clf, model_dir = text_model
    server = subprocess.Popen(  # port 0: the system picks a free one, which the first line names
        [sys.executable, "-m", "textcnn.cli", "serve", str(model_dir), "--port", "0", "--max-items", "8",
         "--max-bytes", "4096"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        port = serving_port(server, deadline)
        while True:  # wait until it listens
            assert server.poll() is None, f"the server exited early: {server.communicate()[1][-2000:]}"
            try:
                if request(port, "GET", "/health") == (200, {"status": "ok"}):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 120 s"
            time.sleep(0.2)

        texts = ["a warm , funny film", "", "dull", "the plot is not gripping at all"]
        status, body = post(port, {"texts": texts, "top_k": 2})
        assert status == 200
        expected = clf.predict_proba(texts)
        for row, prediction in zip(expected, body["predictions"]):
            order = np.argsort(-row)
            assert [p["label"] for p in prediction["labels"]] == [clf.classes_[j] for j in order]
            np.testing.assert_allclose([p["probability"] for p in prediction["labels"]], row[order], atol=1e-6)
            assert prediction["label"] == clf.classes_[order[0]]
        status, info = request(port, "GET", "/info")
        assert status == 200 and info["labels"] == list(clf.classes_) and info["task"] == "text"
        assert info["runtime"] == "torch" and info["version"]
        assert "/predict" in request(port, "GET", "/openapi.json")[1]["paths"]

        assert request(port, "POST", "/predict", b'{"texts": ["unclosed"')[0] == 422  # bad JSON
        assert post(port, {"texts": "not a list"})[0] == 422
        assert post(port, {"texts": ["ok"], "top_k": 0})[0] == 422
        assert post(port, {"images": ["aGk="]})[0] == 422  # images to a text model
        assert post(port, {"texts": ["x"] * 9})[0] == 413  # over --max-items
        assert post(port, {"texts": ["word " * 1000]})[0] == 413  # over --max-bytes
        assert post(port, {"texts": []}) == (200, {"predictions": []})
        assert request(port, "GET", "/health")[0] == 200  # none of them hurt the server

        # SIGTERM while a request is in flight (its headers in, its body not yet): the server
        # finishes it, then exits 0
        body = json.dumps({"texts": texts}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body[:10])
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.send(body[10:])
        response = conn.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 4
        conn.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


# -- in process -------------------------------------------------------------------------------------


async def call(app, method: str, path: str, payload: object = None, raw: bytes | None = None):
    """One HTTP request through the ASGI app, as uvicorn would pass it."""
    body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def running(app, requests):
    """Start the app's lifespan, run the coroutine function `requests`, then shut it down."""
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        return await requests()
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


def png(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_an_image_model_serves_base64_images(runtime, tmp_path):
    import torch

    from vision.pipeline import class_probabilities, image_tensor, prepare
    from vision.pipeline import save_image_model as save
    from vision.registry import create_model

    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=3, in_channels=1).eval()
    meta = {"kind": "image-classifier", "model": "lenet5", "kwargs": {}, "num_classes": 3, "in_channels": 1,
            "classes": ["a", "b", "c"], "input_size": [1, 32, 32], "normalize": {"mean": [0.5], "std": [0.3]}}
    served = save(model, tmp_path / "model", meta=meta)
    if runtime == "onnx":
        pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
        from textcnn.onnx import export_model

        served = export_model(served, tmp_path / "onnx")
    app = create_app(ServeSettings(model=str(served), max_items=4))
    rng = np.random.default_rng(0)
    images = [(rng.random((28, 28)) * 255).astype(np.uint8) for _ in range(3)]
    expected = class_probabilities(model, torch.cat([prepare(image_tensor(i), meta) for i in images])).numpy()

    async def requests():
        ok = await call(app, "POST", "/predict", {"images": [png(i) for i in images], "top_k": 3})
        bad = [await call(app, "POST", "/predict", payload) for payload in (
            {"images": ["not base64 !"]}, {"images": [base64.b64encode(b"not an image").decode()]},
            {"texts": ["a text"]}, {"images": [png(images[0])] * 5})]
        info = await call(app, "GET", "/info")
        return ok, bad, info

    (status, body), bad, (_, info) = asyncio.run(running(app, requests))
    assert status == 200
    for row, prediction in zip(expected, body["predictions"]):
        got = {p["label"]: p["probability"] for p in prediction["labels"]}
        np.testing.assert_allclose([got[c] for c in meta["classes"]], row, atol=1e-5)
    assert [s for s, _ in bad] == [422, 422, 422, 413]
    assert "images[0]" in bad[1][1]["detail"] and "readable image" in bad[1][1]["detail"]
    assert info["runtime"] == runtime and info["task"] == "image" and info["labels"] == meta["classes"]


def test_the_micro_batcher_predicts_concurrent_requests_together():
    seen = []

    def predict(inputs):
        seen.append(len(inputs))
        return np.asarray([[float(len(x)), 1.0] for x in inputs])

    async def main():
        batcher = MicroBatcher(predict, wait_s=0.0, max_batch=100)
        await batcher.start()
        requests = [["a" * i, "b"] for i in range(10)]
        # queued before the batcher runs again: one batch takes them all, then splits the results
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = asyncio.run(main())
    assert seen == [20]
    for inputs, probs in zip(requests, results):
        np.testing.assert_array_equal(probs[:, 0], [len(x) for x in inputs])


def test_a_failed_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def predict(inputs):
        calls.append(list(inputs))
        if "boom" in inputs:
            raise RuntimeError("boom")
        return np.zeros((len(inputs), 2))

    async def main():
        batcher = MicroBatcher(predict, wait_s=0.0, max_batch=100)
        await batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["boom"])
        after = await batcher.submit(["fine", "too"])
        await batcher.stop()
        return after

    assert asyncio.run(main()).shape == (2, 2) and calls == [["boom"], ["fine", "too"]]


def test_a_lone_request_does_not_wait_for_others():
    """With `open_requests`, a batch stops gathering once every open request has joined: a
    lone request runs at once even with a wait of an hour."""
    async def main():
        batcher = MicroBatcher(lambda inputs: np.ones((len(inputs), 2)), wait_s=3600.0, max_batch=100,
                               open_requests=lambda: 1)
        await batcher.start()
        result = await asyncio.wait_for(batcher.submit(["alone"]), timeout=60)
        await batcher.stop()
        return result

    assert asyncio.run(main()).shape == (1, 2)


def test_a_port_in_use_is_a_one_line_error(text_model):
    from textcnn.core.errors import TextCNNError
    from textcnn.serve import serve

    _, model_dir = text_model
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(TextCNNError, match=f"--port {port}: cannot listen there"):
            serve(ServeSettings(model=str(model_dir)), host="127.0.0.1", port=port, echo=lambda _: None)


def test_served_connections_send_without_delay():
    """The socket `textcnn serve` listens on gives connections with TCP_NODELAY (asyncio sets it
    only where the socket's protocol is TCP); without it each response waited out the client's
    delayed ACK, about 40 ms a request."""
    from textcnn.serve import _listen

    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        listener = _listen("127.0.0.1", 0)
        accepted = loop.create_future()

        class Record(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                                socket.TCP_NODELAY))

        server = await loop.create_server(Record, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        try:
            return await asyncio.wait_for(accepted, 30)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accept_one()) == 1
