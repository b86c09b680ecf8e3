"""Load test of `textcnn serve` on the loopback interface: requests/s, p50 and p99 latency and
errors at 1, 8 and 64 concurrent clients, next to the same model called in-process and fastText.

    python scripts/bench_serve.py       # writes docs/results/deploy/serve.{json,md}

The server is started here (`textcnn serve MODEL --host 127.0.0.1 --port <free>`, --runtime,
--workers) and stopped with SIGTERM at the end; its exit status is recorded. Each client is a
thread with its own keep-alive connection that sends one MR test sentence per request
(`{"texts": [sentence], "top_k": 1}`), sentence after sentence, until the level has sent
--requests requests or run --seconds seconds, whichever comes first: the script always ends by
itself. The model is scripts/bench_deploy.py's CNN-rand on MR fold 0 (trained there if missing,
exported for --runtime onnx). In-process: `clf.predict([sentence])` one after another, and
fastText's `predict` on the cleaned sentence when the `fasttext` package is installed (for
benchmarks only; the script says so when it is not). The clients, the server and the model
share this machine's cores; the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import REPO, load_average, shown, test_split, trained_models  # noqa: E402
from bench_predict import fasttext_model, fasttext_one, percentile  # noqa: E402

HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(model: Path, args, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "textcnn.cli", "serve", str(model), "--host", HOST, "--port", str(port),
               "--workers", str(args.workers), "--threads", str(args.threads)]
    server = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            if get(port, "/health").get("status") == "ok":
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not start within 180 s")


def load_level(port: int, sentences: list[str], clients: int, *, requests: int, seconds: float) -> dict:
    """`clients` threads sending one sentence per request until `requests` were sent or
    `seconds` passed."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if state["next"] >= requests:
                    break
                i = state["next"]
                state["next"] += 1
            body = json.dumps({"texts": [sentences[i % len(sentences)]], "top_k": 1})
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 200 and len(json.loads(payload)["predictions"]) == 1
            except (OSError, http.client.HTTPException, ValueError) as err:
                ok, payload = False, repr(err).encode()
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                (latencies.append(elapsed) if ok else errors.append(payload[:200].decode(errors="replace")))
        conn.close()

    before = get(port, "/info")["micro_batches"]
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    after = get(port, "/info")["micro_batches"]
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
            "error_examples": errors[:3], "seconds": wall, "requests_per_s": len(latencies) / wall,
            "latency_ms_p50": 1000 * statistics.median(latencies) if latencies else None,
            "latency_ms_p99": 1000 * percentile(latencies, 0.99) if latencies else None,
            "mean_micro_batch": (after["inputs"] - before["inputs"]) / batches if batches else None}


def in_process(predict, items: list, *, requests: int, seconds: float) -> dict:
    latencies = []
    deadline = time.monotonic() + seconds
    start = time.perf_counter()
    for i in range(requests):
        if time.monotonic() > deadline:
            break
        t = time.perf_counter()
        predict(items[i % len(items)])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {"clients": 1, "requests": len(latencies), "errors": 0, "requests_per_s": len(latencies) / wall,
            "latency_ms_p50": 1000 * statistics.median(latencies),
            "latency_ms_p99": 1000 * percentile(latencies, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TEXTCNN_DATA_DIR", str(REPO.parent / "shared/data/kim2014")))
    parser.add_argument("--work", default=str(REPO / "runs/deploy"))
    parser.add_argument("--runtime", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads per worker")
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--requests", type=int, default=3000, help="requests per level, at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level, at most")
    parser.add_argument("--out", default=str(REPO / "docs/results/deploy/serve"))
    args = parser.parse_args()
    import torch

    from textcnn import TextCNNClassifier
    from textcnn.core.splits import kfold_splits
    from textcnn.data import read_kim_file
    from textcnn.tokenizer import clean_str

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    model = trained_models(work, args.data_dir)["mr"]
    texts, _ = test_split(model)
    served = model
    if args.runtime == "onnx":
        from textcnn.onnx import export_model

        served = export_model(model, work / "onnx" / "mr-serve")
    load_before = load_average()
    port = free_port()
    server = start_server(served, args, port)
    levels = []
    try:
        for clients in (int(c) for c in args.clients.split(",")):
            levels.append(load_level(port, texts, clients, requests=args.requests, seconds=args.seconds))
            print(json.dumps(levels[-1]), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            exit_status = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            exit_status = "killed after 60 s"
    clf = TextCNNClassifier.load(model)
    clf.predict(texts[:10])
    local = {"textcnn in-process (predict, one sentence)": in_process(
        lambda t: clf.predict([t]), texts, requests=args.requests, seconds=args.seconds)}
    corpus = read_kim_file(Path(args.data_dir) / "rt-polarity.all")
    all_texts, all_labels = list(corpus["text"]), list(corpus["label"])
    train_idx, _ = kfold_splits(all_labels, n_folds=10, seed=0)[0]
    ft = fasttext_model([all_texts[i] for i in train_idx], [all_labels[i] for i in train_idx], 1)
    if ft is not None:
        cleaned = [clean_str(t) for t in texts]
        local["fastText in-process (predict, one sentence)"] = in_process(
            fasttext_one(ft), cleaned, requests=args.requests, seconds=args.seconds)
    from textcnn.batch_runner import machine_description

    report = {"model": shown(served), "runtime": args.runtime, "workers": args.workers, "threads": args.threads,
              "machine": machine_description("cpu", args.threads),
              "fasttext": "installed" if ft is not None else "not installed: compared with textcnn alone",
              "server": levels, "in_process": local, "server_exit_status_after_sigterm": exit_status,
              "load_average_before": load_before, "load_average_after": load_average(),
              "command": "python scripts/bench_serve.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"`textcnn serve` ({args.runtime}, {args.workers} worker(s), {args.threads} thread(s) each) "
          f"of CNN-rand on MR, one sentence per request; {report['machine']}; load average "
          f"(1, 5, 15 min) {load_before} before, {report['load_average_after']} after; "
          f"exit status after SIGTERM: {exit_status}.", "",
          "| caller | clients | requests | errors | requests/s | p50 (ms) | p99 (ms) | mean micro-batch |",
          "|---|---|---|---|---|---|---|---|"]
    for row in levels:
        md.append(f"| HTTP | {row['clients']} | {row['requests']} | {row['errors']} | {row['requests_per_s']:.0f} | "
                  f"{row['latency_ms_p50']:.2f} | {row['latency_ms_p99']:.2f} | "
                  f"{row['mean_micro_batch'] or 0:.1f} |")
    for name, row in local.items():
        md.append(f"| {name} | 1 | {row['requests']} | 0 | {row['requests_per_s']:.0f} | "
                  f"{row['latency_ms_p50']:.3f} | {row['latency_ms_p99']:.3f} | |")
    if ft is None:
        md.append("\nfastText is not installed here: the in-process comparison is textcnn's alone.")
    md.append(f"\nCommand: `{report['command']}`")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
