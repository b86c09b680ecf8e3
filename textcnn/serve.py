"""The prediction server behind `textcnn serve`: a text or image classifier over HTTP, on FastAPI
and uvicorn (`pip install 'textcnn[serve]'`).

    POST /predict  {"texts": ["a gripping film", ""], "top_k": 2}    (image models: "images",
                   base64-encoded image files) -> {"predictions": [{"label": ..., "labels":
                   [{"label": ..., "probability": ...}, ...]}, ...]}
    GET  /health   {"status": "ok"}
    GET  /info     labels, task, runtime, model settings, version, micro-batch counts
    GET  /docs     the OpenAPI page FastAPI writes (/openapi.json the schema)

Requests that arrive together are predicted together: the first input of a micro-batch waits at
most `batch_wait_ms` (2 ms) for others (a lone request, the only /predict the server has open,
does not wait); the batch then runs in one worker thread while the next one gathers. A body over `max_bytes` or more than `max_items` inputs gets 413, a body that is
not the JSON above 422; an empty text is a valid input. A failure while predicting answers 500
to the requests of that batch and the server goes on. SIGTERM (or Ctrl-C) stops accepting
connections, finishes the requests in flight, and exits with status 0.

A top-layer module: it serves the torch model of a model directory (text: `TextCNNClassifier`;
image: the vision pipeline's model) or an exported ONNX directory (`textcnn.onnx`).
"""

# No `from __future__ import annotations`: FastAPI reads the request model from the handler's
# annotation, which must be the class itself (it is defined inside `create_app`).
import asyncio
import base64
import binascii
import json
import os
import signal
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textcnn.core.errors import TextCNNError

INSTALL = "pip install 'textcnn[serve]'"
SETTINGS_ENV = "TEXTCNN_SERVE_SETTINGS"  # the settings, as JSON, for worker processes (--workers)
RUNTIMES = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class ServeSettings:
    """What `textcnn serve` serves and its limits."""

    model: str  # a model directory (torch) or an exported directory (ONNX)
    runtime: str = "auto"  # torch, onnx, or auto: onnx for an exported directory, else torch
    int8: bool = False  # ONNX: serve model.int8.onnx
    max_items: int = 256  # inputs per request; more get 413
    max_bytes: int = 1 << 20  # request body bytes; more get 413
    batch_wait_ms: float = 2.0  # how long a micro-batch's first input waits for others
    max_batch: int = 512  # inputs per micro-batch
    threads: int | None = None  # torch / onnxruntime threads (None: their default)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise TextCNNError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        for name, value, low in (("max_items", self.max_items, 1), ("max_bytes", self.max_bytes, 1),
                                 ("max_batch", self.max_batch, 1), ("batch_wait_ms", self.batch_wait_ms, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
                raise TextCNNError(f"--{name.replace('_', '-')}: expected a number >= {low}, got {value!r}")


def require_server(what: str = "serve") -> None:
    """Check that fastapi and uvicorn import; else a one-line `TextCNNError` saying how to
    install them."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise TextCNNError(f"{what}: needs the fastapi and uvicorn packages ({err.name} is missing); "
                           f"install them with {INSTALL}") from None


# -- the model ------------------------------------------------------------------------------------


@dataclass
class Predictor:
    """A loaded classifier: what its inputs are and how to get their probabilities."""

    task: str  # 'text' or 'image'
    runtime: str  # 'torch' or 'onnx'
    classes: list[Any]  # labels, in the order of the probability columns
    probabilities: Callable[[list[Any]], np.ndarray]  # inputs -> [N, classes]
    multi_label: bool = False  # labels reaching `threshold` rather than the top one
    threshold: float = 0.5  # multi-label decision threshold
    details: dict[str, Any] | None = None  # the model's settings shown by /info

    def image_input(self, data: bytes, *, name: str) -> Any:
        """An image's bytes decoded into what `probabilities` takes (a `TextCNNError` naming
        `name` when they are not an image)."""
        from vision.data import read_image

        return read_image(data, name=name)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def load_predictor(settings: ServeSettings) -> Predictor:
    """Load the model `settings` names, on the runtime it asks for."""
    from textcnn.core.onnx import KIND as ONNX_KIND
    from textcnn.tasks import TASKS

    kinds = {task.model_kind: task.name for task in TASKS.values()}
    kind = _kind_of(settings.model, (*kinds, ONNX_KIND))  # the loaders below check the whole folder
    exported = kind == ONNX_KIND
    runtime = ("onnx" if exported else "torch") if settings.runtime == "auto" else settings.runtime
    if runtime == "onnx" and not exported:
        raise TextCNNError(f"--runtime onnx: {settings.model} is a torch model directory; export it "
                           f"first with `textcnn export {settings.model} --format onnx --out DIR`")
    if runtime == "torch" and exported:
        raise TextCNNError(f"--runtime torch: {settings.model} is an exported ONNX directory; serve "
                           "it with --runtime onnx (or auto)")
    if settings.int8 and runtime != "onnx":
        raise TextCNNError("--int8: serves an exported model.int8.onnx; the torch runtime has none")
    if exported:
        from textcnn.onnx import OnnxClassifier

        clf = OnnxClassifier(settings.model, int8=settings.int8, threads=settings.threads)
        shown = {k: clf.config[k] for k in ("model", "input_size") if k in clf.config}
        return Predictor(clf.task, "onnx", [_plain(c) for c in clf.classes_], clf.predict_proba,
                         clf.multi_label, clf.threshold,
                         {**shown, "opset": clf.config["onnx"].get("opset"), "int8": settings.int8})
    task = kinds[kind]
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    if task == "text":
        from textcnn.pipeline import load_model

        clf = load_model(settings.model)
        return Predictor("text", "torch", [_plain(c) for c in clf.classes_], clf.predict_proba,
                         clf.multi_label, clf.decision_thresholds() if clf.multi_label else clf.threshold,
                         {"model": asdict(clf.model_config_)})
    if task == "image":
        import torch

        from vision.pipeline import class_probabilities, image_tensor, load_image_model, prepare

        model, meta = load_image_model(settings.model)

        def image_probabilities(images: list[Any]) -> np.ndarray:
            if not images:
                return np.zeros((0, len(meta["classes"])), dtype=np.float32)
            batch = torch.cat([prepare(image_tensor(image), meta) for image in images])
            return class_probabilities(model, batch).numpy()

        return Predictor("image", "torch", list(meta["classes"]), image_probabilities,
                         details={"model": meta["model"], "input_size": meta["input_size"]})
    raise TextCNNError(f"{settings.model}: expected a text or image classifier, got a detector; "
                       "detectors are not served")


def _kind_of(path: str, kinds: Sequence[str]) -> str:
    """config.json's kind of the directory at `path`, one of `kinds` (else a one-line error)."""
    from textcnn.core.modeldir import CONFIG

    folder = Path(path)
    if not (folder / CONFIG).is_file():
        raise TextCNNError(f"{folder}: expected a model directory with {CONFIG}, found none")
    try:
        kind = json.loads((folder / CONFIG).read_text(encoding="utf-8")).get("kind")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise TextCNNError(f"{folder / CONFIG}: expected a JSON object, got an error: {err}") from None
    if kind not in kinds:
        raise TextCNNError(f"{folder / CONFIG}: expected kind {', '.join(kinds)}, got {kind!r}")
    return kind


# -- micro-batching -------------------------------------------------------------------------------


class MicroBatcher:
    """Gathers the inputs of concurrent requests into batches: a batch starts with the first
    waiting request, takes others for at most `wait_s` (or until `max_batch` inputs; not at all
    when `open_requests`, which counts the requests the server has open, says it is alone), and
    runs in one worker thread while the next batch gathers."""

    def __init__(self, predict: Callable[[list[Any]], np.ndarray], *, wait_s: float, max_batch: int,
                 open_requests: Callable[[], int] | None = None) -> None:
        self.predict, self.wait_s, self.max_batch = predict, wait_s, max_batch
        self.open_requests = open_requests
        self.batches = 0  # batches run
        self.inputs = 0  # inputs predicted
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textcnn-predict")

    async def start(self) -> None:
        """Start gathering (in the server's event loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop after the requests already queued (uvicorn calls this once none is in flight)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, inputs: list[Any]) -> np.ndarray:
        """The probabilities of `inputs`, predicted within a micro-batch."""
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((inputs, future))
        return await future

    async def _gather(self) -> list[tuple[list[Any], asyncio.Future]]:
        loop = asyncio.get_running_loop()
        items = [await self._queue.get()]
        count = len(items[0][0])
        deadline = loop.time() + self.wait_s
        while count < self.max_batch:
            if self.open_requests is not None and self.open_requests() <= 1 and self._queue.empty():
                break  # a lone request: no other is on its way to wait for
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            items.append(item)
            count += len(item[0])
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            inputs = [x for batch, _ in items for x in batch]
            try:
                probs = await loop.run_in_executor(self._executor, self.predict, inputs)
            except Exception as err:  # the requests of this batch fail; the server goes on
                for _, future in items:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.batches += 1
            self.inputs += len(inputs)
            start = 0
            for batch, future in items:
                if not future.done():
                    future.set_result(probs[start:start + len(batch)])
                start += len(batch)


# -- the application ------------------------------------------------------------------------------


class _Gate:
    """ASGI middleware: a request body over `max_bytes` gets 413 (by its Content-Length, or once
    that many bytes have arrived); `open_predictions` counts the /predict requests in progress."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.open_predictions = 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        predicting = scope.get("path") == "/predict"
        self.open_predictions += predicting
        try:
            await self._limited(scope, receive, send)
        finally:
            self.open_predictions -= predicting

    async def _limited(self, scope: dict, receive: Callable, send: Callable) -> None:
        length = dict(scope.get("headers", [])).get(b"content-length")
        too_large = f"request body: expected at most {self.max_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_json(send, 413, {"detail": f"{too_large}, got {int(length)}"})
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    from fastapi import HTTPException

                    raise HTTPException(status_code=413, detail=f"{too_large}, got more")
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Callable, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(settings: ServeSettings, predictor: Predictor | None = None) -> Any:
    """The FastAPI application serving `settings.model` (loaded here unless `predictor` is
    given)."""
    require_server()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException
    from fastapi.concurrency import run_in_threadpool
    from pydantic import BaseModel, ConfigDict, Field

    from textcnn import __version__
    from textcnn.core.streaming import ranked_predictions

    predictor = predictor or load_predictor(settings)
    gate: _Gate | None = None
    batcher = MicroBatcher(predictor.probabilities, wait_s=settings.batch_wait_ms / 1000,
                           max_batch=settings.max_batch, open_requests=lambda: gate.open_predictions)

    class PredictRequest(BaseModel):
        """Inputs to classify: `texts` for a text model, `images` (base64 image files) for an
        image model."""

        model_config = ConfigDict(extra="forbid")
        texts: list[str] | None = Field(None, description="texts to classify (text models)")
        images: list[str] | None = Field(None, description="base64-encoded image files (image models)")
        top_k: int = Field(1, ge=1, description="the K most probable labels per input")

    class Ranked(BaseModel):
        label: Any
        probability: float

    class PredictionOut(BaseModel):
        label: Any = Field(description="the top label (multi-label: the labels reaching the threshold)")
        labels: list[Ranked] = Field(description="the top_k labels, most probable first")

    class PredictResponse(BaseModel):
        predictions: list[PredictionOut]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="textcnn", version=__version__, lifespan=lifespan,
                  description=f"Predictions of the {predictor.task} classifier {settings.model} "
                              f"({predictor.runtime}).")

    def inputs_of(request: PredictRequest) -> list[Any]:
        """The request's texts, or its images (base64, decoded later)."""
        field, other = ("texts", "images") if predictor.task == "text" else ("images", "texts")
        given = getattr(request, field)
        if getattr(request, other) is not None:
            raise HTTPException(status_code=422, detail=f"expected '{field}' for a {predictor.task} "
                                                        f"model, got '{other}'")
        if given is None:
            raise HTTPException(status_code=422, detail=f"expected '{field}', a list, got none")
        if len(given) > settings.max_items:
            raise HTTPException(status_code=413, detail=f"{field}: expected at most {settings.max_items} "
                                                        f"inputs per request, got {len(given)}")
        return given

    def decode_images(items: list[str]) -> list[Any]:
        decoded = []
        for i, item in enumerate(items):
            try:
                data = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raise TextCNNError(f"images[{i}]: expected a base64-encoded image file, got "
                                   "text that is not base64") from None
            decoded.append(predictor.image_input(data, name=f"images[{i}]"))
        return decoded

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> dict[str, Any]:
        """Labels with probabilities for each input, in order."""
        inputs = inputs_of(request)
        if predictor.task == "image":
            try:
                inputs = await run_in_threadpool(decode_images, inputs)
            except TextCNNError as err:
                raise HTTPException(status_code=422, detail=str(err)) from None
        if not inputs:
            return {"predictions": []}
        try:
            probs = await batcher.submit(inputs)
        except Exception as err:
            raise HTTPException(status_code=500, detail=f"prediction failed: "
                                                        f"{' '.join(str(err).split())[:300]}") from None
        ranked = ranked_predictions([list(range(len(inputs)))], lambda _: probs, predictor.classes,
                                    top_k=request.top_k, multi_label=predictor.multi_label,
                                    model_threshold=predictor.threshold)
        return {"predictions": [{"label": p.label, "labels": [{"label": label, "probability": prob}
                                                              for label, prob in p.ranked]}
                                for p in ranked]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        """'ok' once the model is loaded and the server accepts predictions."""
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The model: its labels, task, runtime and settings; the server's limits and counts."""
        return {"version": __version__, "model_dir": str(settings.model), "task": predictor.task,
                "kind": f"{predictor.task}-classifier", "runtime": predictor.runtime,
                "labels": predictor.classes, "multi_label": predictor.multi_label,
                "details": predictor.details or {},
                "limits": {"max_items": settings.max_items, "max_bytes": settings.max_bytes,
                           "batch_wait_ms": settings.batch_wait_ms, "max_batch": settings.max_batch},
                "micro_batches": {"batches": batcher.batches, "inputs": batcher.inputs},
                "pid": os.getpid()}

    gate = _Gate(app, max_bytes=settings.max_bytes)
    return gate


def app_from_environment() -> Any:
    """The application for a uvicorn worker process (`--workers N`): settings from SETTINGS_ENV."""
    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port` (port 0: one the system picks), or a one-line error
    now, rather than uvicorn's exit at start-up, when it cannot be (in use, or an address this
    machine does not have)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    listener = None
    try:
        socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)  # its own message
        # proto TCP, as uvicorn's own sockets have: asyncio sets TCP_NODELAY on a connection only
        # then, and without it each response waits out the client's delayed ACK (about 40 ms)
        listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen()
        return listener
    except OSError as err:  # the message would repeat the address: its errno says it all
        if listener is not None:
            listener.close()
        reason = os.strerror(err.errno) if (err.errno or 0) > 0 else err.strerror or str(err)
        raise TextCNNError(f"--host {host} --port {port}: cannot listen there ({reason})") from None


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          echo: Callable[[str], None] = print) -> None:
    """Load the model and serve it until SIGTERM or Ctrl-C, which finish the requests in flight;
    then return (the process exits 0). Port 0 serves on a free port, which the first line names."""
    require_server()
    import uvicorn

    predictor = load_predictor(settings)  # a bad model is an error before any socket opens
    listener = _listen(host, port)
    port = listener.getsockname()[1]
    echo(f"serving {settings.model} ({predictor.task} classifier, {predictor.runtime}) on "
         f"http://{host}:{port} with {workers} worker(s); docs at /docs")
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; handled here,
    # it ends the process with status 0 instead of killing it
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    options = {"host": host, "port": port, "access_log": False, "log_level": "warning",
               "timeout_graceful_shutdown": None}
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(settings, predictor), **options))
        with listener:  # served as bound: no other process can take the port meanwhile
            server.run(sockets=[listener])
        if not server.started:  # uvicorn has logged why
            raise TextCNNError(f"--host {host} --port {port}: the server did not start")
    else:
        # the worker processes share a socket uvicorn binds itself, to the port found above
        listener.close()
        os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
        uvicorn.run("textcnn.serve:app_from_environment", factory=True, workers=workers, **options)


__all__ = ["MicroBatcher", "Predictor", "ServeSettings", "create_app", "load_predictor", "serve"]
