"""Every known bad input and fault, run through the real command line; writes docs/reliability.md.

The script builds its own fixtures in a temporary folder (a tiny text model trained on
data/sample, a tiny LeNet-5 on digits, a tiny YOLO detector on shapes, damaged copies of their
model folders, bad CSV and Kim files, bad recipes), runs each case of `CASES` as a
`python -m textcnn.cli ...` subprocess from the repository root, and records its exit code and
standard error. To spare each command the 3 s of importing torch, scikit-learn and datasets, it
is forked from a Python that has imported them (`WARM`; textcnn itself is imported afresh);
`--fresh` starts a new Python for every command instead. A case behaves when it exits with its expected code (2: bad input), prints exactly
one line on standard error, `Error: ...` naming its file, key or option, and no traceback. Then it
plays the fault scenarios (`FAULTS`): kill -9 and resume, Ctrl-C, two writers, a torn results
line and a full disk, and checks what they leave behind.

    python scripts/check_bad_inputs.py                      # everything -> docs/reliability.md
    python scripts/check_bad_inputs.py --only 'model*'      # cases and faults matching a pattern
    python scripts/check_bad_inputs.py --jobs 4 --out /tmp/reliability.md

With --only the results are printed and no file is written unless --out is given. The exit
status is 1 when any case or fault did not behave. Faults are injected without root: a
`sitecustomize.py` put first on the subprocess's PYTHONPATH makes `os.mkdir` fail with EROFS
under a folder (a read-only mount) or the second `safetensors` save fail with ENOSPC after
writing half its bytes (a full disk).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
COMMAND = "python scripts/check_bad_inputs.py"
CASE_TIMEOUT = 300  # seconds; a case that trains a full recipe instead of failing is a bug

QS = "recipes/quickstart.yaml"
LENET = "recipes/vision/lenet5-digits.yaml"
YOLO = "recipes/vision/yolo-shapes.yaml"
# tiny.yaml, the recipe of most text cases: a tiny Kim CNN on data/sample (seconds, most of them
# imports); its 10-epoch form, long enough (about 0.2 s an epoch) to interrupt from outside
TINY_SETTINGS = {"model.maps": 4, "model.embedding_dim": 8, "model.widths": [2, 3], "train.epochs": 2,
                 "train.progress": False, "train.threads": 1}
TINY = "<tiny>"
SLOW = ("--set", "train.epochs=10", "--set", "train.batch_size=4")
TINY_LENET = ("--set", "data.max_examples=100", "--set", "train.epochs=1")
TINY_YOLO = ("--set", "data.train_images=4", "--set", "data.val_images=2", "--set", "data.test_images=2",
             "--set", "data.size=64", "--set", "train.epochs=1", "--set", "train.batch_size=2",
             "--set", "train.threads=1", "--set", "train.progress=false")

# Tokens in a case's arguments, replaced by real paths when it runs and by these names in the doc.
CASE_DIR = "<case>"  # the case's own fresh folder (shown as the current folder)
FIXTURES = {"<model>": "MODEL", "<image-model>": "IMAGE_MODEL", "<detector>": "DETECTOR", TINY: "tiny.yaml"}

FAULT_SITE = '''"""Faults injected into a textcnn process by scripts/check_bad_inputs.py ($TEXTCNN_FAULT)."""
import errno
import os

_kind, _, _arg = os.environ.get("TEXTCNN_FAULT", "").partition(":")
if _kind == "readonly":  # every folder made under _arg fails as on a read-only mount
    _real_mkdir = os.mkdir

    def _mkdir(path, *args, **kwargs):
        if os.path.abspath(os.fspath(path)).startswith(_arg):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return _real_mkdir(path, *args, **kwargs)

    os.mkdir = _mkdir
elif _kind == "enospc":  # safetensors save number _arg writes half its bytes, then the disk is full
    import safetensors.torch

    _real_save, _calls = safetensors.torch.save_file, []

    def _save_file(tensors, filename, metadata=None):
        _calls.append(filename)
        if len(_calls) == int(_arg):
            with open(filename, "wb") as half:
                half.write(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(filename))
        return _real_save(tensors, filename, metadata=metadata)

    safetensors.torch.save_file = _save_file
'''


# A Python that imports the slow third-party libraries once (about 3 s of every command's start)
# and forks a child per command. The child runs `textcnn.cli` as `python -m textcnn.cli ARGS`
# would (runpy, with textcnn itself imported fresh), its standard streams on files, and exits
# with the command's exit code. Commands with an injected fault always start a fresh Python.
WARM = r"""
import atexit, json, os, runpy, signal, sys, traceback
import click, datasets, numpy, PIL.Image, safetensors.torch, scipy.stats, sklearn.metrics, tokenizers, torch, tqdm, yaml
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(job["cwd"])
            for fd, (path, flags) in enumerate([(job["stdin"], os.O_RDONLY),
                                                (job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                                (job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)]):
                opened = os.open(path, flags, 0o644)
                os.dup2(opened, fd)
                os.close(opened)
            sys.stdin, sys.stdout, sys.stderr = (open(0, closefd=False), open(1, "w", closefd=False),
                                                 open(2, "w", closefd=False))
            sys.argv = ["-m", *job["args"]]  # runpy puts the module's path first, as `python -m` does
            signal.alarm(job["timeout"])
            try:
                runpy.run_module("textcnn.cli", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class WarmPython:
    """One warm Python (see WARM); `run` is `subprocess.run([python, -m, textcnn.cli, *args])`."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.scratch = scratch
        self.proc = subprocess.Popen([sys.executable, "-c", WARM], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def run(self, args: Sequence[str], *, stdin: bytes | None, timeout: float) -> subprocess.CompletedProcess:
        self.scratch.mkdir(parents=True, exist_ok=True)
        files = {name: self.scratch / name for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_bytes(stdin or b"")
        job = {"args": list(args), "cwd": str(REPO), "timeout": max(1, int(timeout)),
               **{name: str(path) for name, path in files.items()}}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the warm Python ended")
        code = int(reply)
        err = files["stderr"].read_bytes() + (b"\n(timed out)" if code == -signal.SIGALRM else b"")
        return subprocess.CompletedProcess(args, code, files["stdout"].read_bytes(), err)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def tiny_recipe() -> str:
    """tiny.yaml: recipes/quickstart.yaml with TINY_SETTINGS."""
    import yaml

    recipe = yaml.safe_load((REPO / QS).read_text(encoding="utf-8"))
    recipe["name"] = "tiny"
    for key, value in TINY_SETTINGS.items():
        section, name = key.split(".")
        recipe[section][name] = value
    return yaml.safe_dump(recipe, sort_keys=False)


# -- the workspace: fixtures built once, on first use ------------------------------------------------


class Workspace:
    """A temporary folder with the fixtures the cases share, each built on first use (thread-safe)."""

    def __init__(self, root: Path, *, warm: int = 0) -> None:
        """`warm`: how many warm Pythons run commands without a fault (0: a fresh Python each)."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "faults").mkdir(exist_ok=True)
        (self.root / "faults" / "sitecustomize.py").write_text(FAULT_SITE, encoding="utf-8")
        self.tiny = self.root / "tiny.yaml"
        self.tiny.write_text(tiny_recipe(), encoding="utf-8")
        self._locks = {name: threading.Lock() for name in ("text", "image", "detector", "reference")}
        self._built: dict[str, Path] = {}
        self._warm: queue.Queue[WarmPython] = queue.Queue()
        for i in range(warm):
            self._warm.put(WarmPython(self.env(), self.root / "io" / str(i)))
        self._warm_count = warm

    def close(self) -> None:
        """End the warm Pythons."""
        for _ in range(self._warm_count):
            self._warm.get().close()
        self._warm_count = 0

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, fault: str | None = None) -> dict[str, str]:
        """The environment of a CLI subprocess: this checkout first on the path, offline, its own
        caches, and an injected fault if asked."""
        paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "HF_HOME": str(self.root / "hf"), "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_OFFLINE": "1"}
        env.pop("TEXTCNN_FAULT", None)
        if fault:
            paths.insert(0, str(self.root / "faults"))
            env["TEXTCNN_FAULT"] = fault
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return env

    def cli(self, *args: str | Path, fault: str | None = None, timeout: float = CASE_TIMEOUT,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """Run `textcnn ARGS` from the repository root (in a warm Python when there is one)."""
        if self._warm_count and fault is None:
            warm = self._warm.get()
            try:
                return warm.run([str(a) for a in args], stdin=stdin, timeout=timeout)
            finally:
                self._warm.put(warm)
        return subprocess.run([sys.executable, "-m", "textcnn.cli", *map(str, args)], cwd=REPO,
                              env=self.env(fault), input=stdin, capture_output=True, timeout=timeout)

    def popen(self, *args: str | Path) -> subprocess.Popen:
        """Start `textcnn ARGS` from the repository root, without waiting."""
        return subprocess.Popen([sys.executable, "-m", "textcnn.cli", *map(str, args)], cwd=REPO,
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _build(self, name: str, make: Callable[[Path], None]) -> Path:
        with self._locks[name]:
            if name not in self._built:
                folder = self.root / "fixtures" / name
                shutil.rmtree(folder, ignore_errors=True)
                make(folder)
                self._built[name] = folder
        return self._built[name]

    def _train(self, out: Path, recipe: str | Path, *args: str) -> None:
        done = self.cli("train", recipe, "--out", out, *args)
        if done.returncode != 0:
            raise RuntimeError(f"fixture {out.name}: textcnn train failed:\n{done.stderr.decode()[-3000:]}")

    def text_run(self) -> Path:
        """A finished tiny text run (its model in model/)."""
        return self._build("text", lambda out: self._train(out, self.tiny))

    def image_run(self) -> Path:
        return self._build("image", lambda out: self._train(out, LENET, *TINY_LENET))

    def detector_run(self) -> Path:
        return self._build("detector", lambda out: self._train(out, YOLO, *TINY_YOLO))

    def reference_run(self) -> Path:
        """An uninterrupted SLOW run: what every interrupted and resumed run must end as."""
        return self._build("reference", lambda out: self._train(out, self.tiny, *SLOW))

    def fixture(self, token: str) -> Path:
        run = {"<model>": self.text_run, "<image-model>": self.image_run,
               "<detector>": self.detector_run}[token]()
        return run / "model"

    def copy_run(self, dest: Path) -> Path:
        """A copy of the tiny text run folder (cases that write into a run get their own)."""
        return Path(shutil.copytree(self.text_run(), dest))

    def copy_model(self, dest: Path, kind: str = "text") -> Path:
        """A copy of a fixture model folder (to damage)."""
        source = self.fixture({"text": "<model>", "image": "<image-model>", "detector": "<detector>"}[kind])
        return Path(shutil.copytree(source, dest))


# -- cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: a command and what its one-line error must name."""

    name: str  # unique; what --only matches and the table's first column shows
    group: str  # the table the case is listed in
    args: tuple[str, ...]  # arguments after `textcnn`; <case>, <model>, ... name fixture paths
    expect: str  # a fragment of the error line as the doc shows it (the file, key or option)
    setup: Callable[[Workspace, Path], None] | None = None  # writes the case's files into its folder
    code: int = 2  # expected exit code
    fault: str | None = None  # an injected fault ($TEXTCNN_FAULT, <case> replaced)
    stdin: str | None = None  # a file fed to standard input (<case> replaced)
    fast: bool = False  # in the representative subset (`pytest -m "not slow"` runs only those)
    needs: tuple[str, ...] = ()  # modules of an optional extra the command imports first (tests skip without them)


@dataclass
class Outcome:
    """What a case's command did, and the doc's view of it."""

    case: Case
    code: int | None  # exit code (-N: killed by signal N; None: timed out)
    raw_stderr: str  # standard error as the command wrote it
    stderr: list[str]  # standard error lines, as the doc shows them
    stdout: str  # standard output, as the doc shows it (the last 2,000 characters)
    command: str  # the command as the doc shows it
    seconds: float

    @property
    def message(self) -> str:
        return self.stderr[-1] if self.stderr else ""

    @property
    def problems(self) -> list[str]:
        """Why the case did not behave (empty: it did)."""
        found = []
        if self.code != self.case.code:
            found.append(f"exit code {self.code}, expected {self.case.code}")
        if any("Traceback" in line for line in self.stderr):
            found.append("a traceback")
        if len(self.stderr) != 1:
            found.append(f"{len(self.stderr)} lines on stderr, expected 1")
        if not self.message.startswith("Error: "):
            found.append("no 'Error: ' line")
        if self.case.expect not in self.message:
            found.append(f"the message does not name {self.case.expect!r}")
        return found


def shown(text: str, ws: Workspace, case_dir: Path) -> str:
    """`text` with temporary paths as short names, so that the doc stays the same run to run."""
    text = text.replace("python -m textcnn.cli", "textcnn")
    for real, name in [(f"{case_dir}/", ""), (str(case_dir), "."),
                       *[(str(ws.root / "fixtures" / kind / "model"), name) for kind, name in
                         (("text", "MODEL"), ("image", "IMAGE_MODEL"), ("detector", "DETECTOR"))],
                       (str(ws.tiny), "tiny.yaml"), (f"{ws.root}/", "TMP/"), (f"{REPO}/", "")]:
        text = text.replace(real, name)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<sha256>", text)  # of trained weights: machine-dependent
    text = re.sub(r"\(pid \d+\)", "(pid N)", text)
    text = re.sub(r"\(\d+ bytes without a newline", "(N bytes without a newline", text)  # a torn row
    return re.sub(r"\.[A-Za-z0-9_]{6,}\.tmp\b", ".XXXXXXXX.tmp", text)  # a temporary file's random name


def command_of(case: Case) -> str:
    """The case's command as the doc shows it."""
    names = {f"{CASE_DIR}/": "", CASE_DIR: ".", **FIXTURES}
    args = []
    for arg in case.args:
        for token, name in names.items():
            arg = arg.replace(token, name)
        args.append(arg)
    fed = f" < {shlex.quote(case.stdin.replace(f'{CASE_DIR}/', ''))}" if case.stdin else ""
    return "textcnn " + shlex.join(args) + fed


def case_args(case: Case, ws: Workspace, case_dir: Path) -> list[str]:
    """The case's arguments with its tokens replaced by real paths (fixtures built as needed)."""
    args = []
    for arg in case.args:
        arg = arg.replace(TINY, str(ws.tiny))
        for token in FIXTURES:
            if token in arg:
                arg = arg.replace(token, str(ws.fixture(token)))
        args.append(arg.replace(CASE_DIR, str(case_dir)))
    return args


def run_case(case: Case, ws: Workspace) -> Outcome:
    """Set up `case` in a fresh folder of `ws`, run its command, and record what it did."""
    case_dir = ws.root / "cases" / re.sub(r"[^A-Za-z0-9.=_-]+", "-", case.name).strip("-")
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    if case.setup is not None:
        case.setup(ws, case_dir)
    args = case_args(case, ws, case_dir)
    fault = case.fault.replace(CASE_DIR, str(case_dir)) if case.fault else None
    start = time.monotonic()
    try:
        stdin = Path(case.stdin.replace(CASE_DIR, str(case_dir))).read_bytes() if case.stdin else None
        done = ws.cli(*args, fault=fault, stdin=stdin)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, exc.stdout or b"", (exc.stderr or b"") + b"\n(timed out)"
    seconds = time.monotonic() - start
    raw_stderr = err.decode("utf-8", errors="replace")
    stderr = [line for line in shown(raw_stderr, ws, case_dir).replace("\r", "\n").splitlines() if line.strip()]
    stdout = shown(out.decode("utf-8", errors="replace"), ws, case_dir)[-2000:]
    return Outcome(case, code, raw_stderr, stderr, stdout, command_of(case), seconds)


# setups: each writes what its case reads into the case's folder ------------------------------------


def write(name: str, content: str | bytes) -> Callable[[Workspace, Path], None]:
    def setup(ws: Workspace, here: Path) -> None:
        path = here / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return setup


def both(*setups: Callable[[Workspace, Path], None]) -> Callable[[Workspace, Path], None]:
    def setup(ws: Workspace, here: Path) -> None:
        for one in setups:
            one(ws, here)
    return setup


def model_copy(change: Callable[[Path], None], kind: str = "text") -> Callable[[Workspace, Path], None]:
    """A copy of a fixture model as `M`, then `change(M)`."""
    def setup(ws: Workspace, here: Path) -> None:
        change(ws.copy_model(here / "M", kind))
    return setup


def run_copy(change: Callable[[Path], None] = lambda run: None) -> Callable[[Workspace, Path], None]:
    """A copy of the finished tiny text run as `run`, then `change(run)`."""
    def setup(ws: Workspace, here: Path) -> None:
        change(ws.copy_run(here / "run"))
    return setup


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        change(data)
        (folder / name).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return edit


def damage_weights(how: str) -> Callable[[Path], None]:
    """Damage M/model.safetensors: flip a bit of its tensor data, cut it in half, empty it, or
    overwrite its header."""
    def damage(folder: Path) -> None:
        path = folder / "model.safetensors"
        raw = bytearray(path.read_bytes())
        data_start = 8 + int.from_bytes(raw[:8], "little")
        if how == "flipped":
            raw[(data_start + len(raw)) // 2] ^= 0x40
        elif how == "truncated":
            raw = raw[: len(raw) // 2]
        elif how == "zero-byte":
            raw = bytearray()
        else:
            raw[8:24] = b"#garbled#header#"
        path.write_bytes(bytes(raw))
    return damage


def bomb_png(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes that declares `width` x `height` grey pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def zip_of(name: str, members: dict[str, bytes]) -> Callable[[Workspace, Path], None]:
    def setup(ws: Workspace, here: Path) -> None:
        with zipfile.ZipFile(here / name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(member, data)
    return setup


def sample_copy(name: str = "train.csv") -> Callable[[Workspace, Path], None]:
    return write(name, (REPO / "data" / "sample" / "train.csv").read_bytes())


def batch_recipe(name: str = "s", extra: str = "", *, test: bool = True) -> Callable[[Workspace, Path], None]:
    """An NBSVM recipe (fast to fit) on a copy of the sample data, repeated for seeds 1 and 2."""
    def setup(ws: Workspace, here: Path) -> None:
        sample_copy()(ws, here)
        test_line = f"  test: {REPO / 'data/sample/test.csv'}\n" if test else ""
        (here / f"{name}.yaml").write_text(
            f"name: {name}\ndata:\n  train: {here / 'train.csv'}\n{test_line}model:\n  arch: nbsvm\n"
            f"expand:\n  train.seed: [1, 2]\n{extra}", encoding="utf-8")
    return setup


def finished_batch(ws: Workspace, here: Path) -> None:
    batch_recipe()(ws, here)
    done = ws.cli("batch", here / "s.yaml", "--out", here / "b")
    if done.returncode != 0:
        raise RuntimeError(f"setup batch failed:\n{done.stderr.decode()[-3000:]}")


def trained_on_a_copy_then_rewritten(ws: Workspace, here: Path) -> None:
    """A run on a copy of train.csv, whose content then changes with its size and mtime kept."""
    sample_copy("t.csv")(ws, here)
    data = here / "t.csv"
    ws._train(here / "run", ws.tiny, "--set", f"data.train={data}")
    stat = data.stat()
    data.write_text(data.read_text(encoding="utf-8").replace(",positive", ",POSITIVE"), encoding="utf-8")
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def unfinished_with_a_truncated_checkpoint(run: Path) -> None:
    """The run as a kill during training would leave it (no model yet), its checkpoint cut."""
    shutil.rmtree(run / "model")
    (run / "results.json").unlink()
    checkpoint = run / "train" / "checkpoint" / "last.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])


def _settings(recipe: str, group: str, items: Sequence[tuple[str, str]], *, extra: tuple[str, ...] = (),
              fast: Sequence[str] = ()) -> list[Case]:
    """`textcnn train RECIPE --set KEY=VALUE` for each (KEY=VALUE, expected fragment)."""
    short = Path(recipe).stem
    return [Case(f"{short}: {kv}", group, ("train", recipe, "--out", "<case>/run", *extra, "--set", kv),
                 expect, fast=kv in fast) for kv, expect in items]


TEXT_SETTINGS = [
    ("train.epochs=0", "train.epochs: expected an integer >= 1, got 0"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.maps=0", "model.maps"),
    ("model.widths=[]", "model.widths"),
    ("model.widths=[3,0]", "model.widths"),
    ("model.dropout=1.0", "model.dropout: expected a number in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout: expected a number in [0, 1)"),
    ("model.dropout=high", "model.dropout"),
    ("model.dropot=0.3", "did you mean 'dropout'"),
    ("train.lr=.nan", "train.lr"),
    ("train.lr=-1", "train.lr"),
    ("train.optimizer=adm", "did you mean 'adam'"),
    ("tokenizer.min_frequency=0", "tokenizer.min_frequency"),
    ("tokenizer.max_size=0", "tokenizer.max_size"),
    ("model.dev_fraction=1", "model.dev_fraction"),
    ("model.label_smoothing=1", "model.label_smoothing"),
    ("model.max_norm=0", "model.max_norm"),
    ("model.embedding_dim=0", "model.embedding_dim"),
    ("model.class_weight={positive: -1}", "model.class_weight.positive"),
    ("model.threshold=0.3", "model.threshold"),
    ("model.activation=rleu", "model.activation: expected one of"),
    ("model.pooling=mean", "model.pooling"),
    ("model.k=3", "model.k: used with model.pooling kmax only"),
    ("model.batch_norm=maybe", "model.batch_norm"),
    ("model.input_noise=-1", "model.input_noise"),
    ("model.word_dropout=1", "model.word_dropout: expected a number in [0, 1)"),
    ("data.label_separator=;", "data.label_separator: used with model.multi_label only"),
    ("train.tune_thresholds=true", "train.tune_thresholds: used with model.multi_label only"),
    ("data.weight_column=", "data.weight_column"),
    ("model.variant=static", "embeddings.path"),
    ("model.variant=foo", "model.variant"),
    ("train.patience=0", "train.patience"),
    ("train.l1=-1", "train.l1"),
    ("train.grad_clip=0", "train.grad_clip"),
    ("train.warmup_steps=-1", "train.warmup_steps"),
    ("train.max_seconds=0", "train.max_seconds"),
    ("train.threads=0", "train.threads"),
    ("train.seed=-1", "train.seed"),
    ("train.device=gpu", "train.device"),
    ("train.metric=acc", "train.metric"),
    ("train.mode=min", "train.mode"),
    ("data.folds=1", "data.folds"),
    ("data.fold=-1", "data.fold"),
    ("tokenizer.max_tokens=0", "tokenizer.max_tokens"),
    ("tokenizer.truncation=middle", "tokenizer.truncation"),
    ("tokenizer.truncation=none", "tokenizer.max_tokens: expected null with tokenizer.truncation none"),
    ("tokenizer.max_tokens=null", "tokenizer.truncation: expected none with tokenizer.max_tokens null"),
    ("train.max_batch_tokens=0", "train.max_batch_tokens"),
    ("data.encoding=klingon", "data.encoding: expected a text encoding"),
    ("data.encoding=latin-1", "data.encoding: used with document files only"),
    ("data.dataset=20newsgroups", "data.dataset: expected one of"),
    ("oops", "expected KEY=VALUE"),
]
IMAGE_SETTINGS = [
    ("data.dev_fraction=1", "data.dev_fraction"),
    ("data.dev_fraction=0.8", "data.dev_fraction"),
    ("data.size=0", "data.size"),
    ("data.channels=2", "data.channels"),
    ("model.name=lenet6", "did you mean"),
    ("model.aux_weight=0.5", "model.aux_weight"),
    ("train.metric=map_50", "train.metric"),
]
DETECTION_SETTINGS = [
    ("train.metric=accuracy", "train.metric"),
    ("data.size=4", "data.size"),
    ("data.train_images=0", "data.train_images"),
    ("data.val_fraction=1", "data.val_fraction"),
    ("model.name=yolo", "model.name"),
    ("augment.hflip=2", "augment.hflip"),
    ("augment.scale_range=[1.2,0.8]", "augment.scale_range"),
]

NON_UTF8 = b"a warm film\na dull film\nna\xefve \xe9l\xe8ve\nfine\n"
ONNX_EXTRA = ("onnx", "onnxruntime")  # pip install 'textcnn[onnx]'
SERVE_EXTRA = ("fastapi", "uvicorn")  # pip install 'textcnn[serve]'

CASES: list[Case] = [
    *_settings(QS, "Recipe settings (text)", TEXT_SETTINGS, fast=["train.epochs=0"]),
    *_settings(LENET, "Recipe settings (image)", IMAGE_SETTINGS, fast=["model.name=lenet6"]),
    *_settings(YOLO, "Recipe settings (detection)", DETECTION_SETTINGS, fast=["augment.hflip=2"]),
    # -- data ---------------------------------------------------------------------------------------
    Case("one class in the training labels", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/one.csv", "--set", "data.test=null"),
         "one.csv: expected at least 2 classes",
         setup=write("one.csv", "text,label\n" + "".join(f"text {i},pos\n" for i in range(20)))),
    Case("a class weight for a label the data does not have", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "model.class_weight={2: 1.5}"),
         "model.class_weight: key 2: expected a label of the training data"),
    Case("a list of labels for a single-label model", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/lists.jsonl", "--set", "data.test=null"),
         "lists.jsonl: row 1: expected one label per text",
         setup=write("lists.jsonl", "".join(f'{{"text": "t {i}", "label": ["a", "b"]}}\n' for i in range(6)))),
    Case("a weight column the file does not have", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.weight_column=importance"),
         "expected a column 'importance'"),
    Case("a negative weight in the weight column", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/w.csv", "--set", "data.test=null",
          "--set", "data.weight_column=w"), "w.csv: column 'w' (data.weight_column): sample_weight: expected "
         "finite weights >= 0", setup=write("w.csv", "text,label,w\na fine film,pos,1\na dull film,neg,-2\n")),
    Case("--thresholds for a single-label model", "Data",
         ("predict", "<model>", "a gem", "--thresholds", "<case>/t.json"), "thresholds: for multi-label models",
         setup=write("t.json", '{"positive": 0.4}'), fast=True),
    Case("--thresholds file that is not JSON", "Data",
         ("predict", "<model>", "a gem", "--thresholds", "<case>/t.json"), "t.json: expected a JSON object",
         setup=write("t.json", "positive: 0.4\n"), fast=True),
    Case("--label-separator for a single-label model", "Data",
         ("evaluate", "<model>", "--data", "data/sample/test.csv", "--label-separator", "|"),
         "--label-separator: for multi-label models", fast=True),
    Case("CSV row with more fields than the header (train)", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/shifted.csv"),
         "shifted.csv:2", setup=write("shifted.csv", "text,label\na good film,pos,extra\nbad,neg\n")),
    Case("CSV row with more fields than the header (evaluate)", "Data",
         ("evaluate", "<model>", "--data", "<case>/shifted.csv"), "shifted.csv:2",
         setup=write("shifted.csv", "text,label\na good, fine film,positive\nbad,negative\n"), fast=True),
    Case("a folder where a data file is expected (train)", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/some_dir"),
         "some_dir: expected a data file", setup=write("some_dir/a.txt", "not data\n")),
    Case("a folder where a data file is expected (evaluate)", "Data",
         ("evaluate", "<model>", "--data", "<case>/some_dir"), "some_dir: expected a data file",
         setup=write("some_dir/a.txt", "not data\n")),
    Case("a document that does not decode (folders)", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/docs", "--set", "data.test=null"),
         "docs/b/2.txt: expected utf-8 text", setup=both(write("docs/a/1.txt", "a fine film\n"),
                                                          write("docs/b/2.txt", b"na\xefve\n"))),
    Case("20ng absent from data.data_dir", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "data.dataset=20ng", "--set", "data.data_dir=<case>/none"),
         "none: expected 20news-bydate.tar.gz or its folders"),
    Case("Kim file with an empty line", "Data",
         ("evaluate", "<model>", "--data", "<case>/k.all", "--format", "kim"), "k.all:2",
         setup=write("k.all", "1 a good film\n\n0 a dull film\n")),
    Case("Kim line without an integer label", "Data",
         ("evaluate", "<model>", "--data", "<case>/bad.all", "--format", "kim"), "bad.all:2",
         setup=write("bad.all", "1 a fine line\nnot-a-label text\n")),
    Case("a label never seen in training", "Data",
         ("evaluate", "<model>", "--data", "<case>/unseen.csv"), "'neutral' was never seen in training",
         setup=write("unseen.csv", "text,label\ngood,positive\nmeh,neutral\n")),
    Case("a data file that does not exist", "Data",
         ("evaluate", "<model>", "--data", "<case>/missing.csv"), "missing.csv"),
    Case("a training set of one class in batch", "Data",
         ("batch", "<case>/s.yaml", "--out", "<case>/b"), "train.csv: expected at least 2 classes",
         setup=both(batch_recipe(), write("train.csv", "text,label\n" + "".join(f"text {i},pos\n" for i in range(20))))),
    Case("NaN training loss", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "train.optimizer=sgd", "--set", "train.lr=1.0e+30"),
         "the training loss became nan"),
    Case("gensim .kv (pickle) vectors in a recipe", "Data",
         ("train", TINY, "--out", "<case>/run", "--set", "model.variant=static",
          "--set", "embeddings.path=<case>/v.kv"), "v.kv: expected word2vec, GloVe or fastText vectors",
         setup=write("v.kv", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")),
    # -- model folders ------------------------------------------------------------------------------
    Case("model.safetensors: a flipped bit", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors: the file is corrupted", setup=model_copy(damage_weights("flipped")), fast=True),
    Case("model.safetensors: truncated", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors", setup=model_copy(damage_weights("truncated"))),
    Case("model.safetensors: zero bytes", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors", setup=model_copy(damage_weights("zero-byte"))),
    Case("model.safetensors: garbled header", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors", setup=model_copy(damage_weights("garbled"))),
    Case("model.safetensors: missing", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors: expected the model's model.safetensors, found none",
         setup=model_copy(lambda m: (m / "model.safetensors").unlink())),
    Case("config.json: not JSON", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/config.json: expected JSON", setup=model_copy(lambda m: (m / "config.json").write_text('{"kind": "text-cl'))),
    Case("config.json: no kind", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/config.json: expected kind", setup=model_copy(edit_json("config.json", lambda c: c.pop("kind")))),
    Case("config.json: a key missing", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/config.json: expected a key 'params'", setup=model_copy(edit_json("config.json", lambda c: c.pop("params")))),
    Case("config.json: shapes other than the weights'", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/model.safetensors", setup=model_copy(edit_json("config.json", lambda c: c["model"].update(maps=5)))),
    Case("config.json: a format from a newer version", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/config.json: expected format", setup=model_copy(edit_json("config.json", lambda c: c.update(format=3)))),
    Case("labels.json: missing", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/labels.json: expected the model's labels.json, found none",
         setup=model_copy(lambda m: (m / "labels.json").unlink())),
    Case("labels.json: one class short", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/labels.json", setup=model_copy(edit_json("labels.json", lambda c: c["classes"].pop()))),
    Case("labels.json: classes swapped", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/labels.json", setup=model_copy(edit_json("labels.json", lambda c: c["classes"].reverse()))),
    Case("tokenizer.json: missing", "Model folders", ("predict", "<case>/M", "a gem"),
         "M/tokenizer.json", setup=model_copy(lambda m: (m / "tokenizer.json").unlink())),
    Case("a folder that is no model", "Model folders", ("predict", "<case>/empty", "a gem"),
         "empty", setup=write("empty/notes.txt", "hello\n")),
    Case("image config.json: class names short", "Model folders", ("predict", "<case>/M", "<case>/x.png"),
         "M/config.json: expected 'classes'",
         setup=both(model_copy(edit_json("config.json", lambda c: c["classes"].pop()), "image"),
                    write("x.png", bomb_png(8, 8)))),
    Case("detector model.safetensors: zero bytes", "Model folders", ("predict", "<case>/M", "<case>/x.png"),
         "M/model.safetensors", setup=both(model_copy(damage_weights("zero-byte"), "detector"),
                                           write("x.png", bomb_png(64, 64)))),
    # -- prediction ---------------------------------------------------------------------------------
    Case("--input that is not UTF-8", "Prediction", ("predict", "<model>", "--input", "<case>/reviews.txt"),
         "reviews.txt:3: expected utf-8 text", setup=write("reviews.txt", NON_UTF8), fast=True),
    Case("standard input that is not UTF-8", "Prediction", ("predict", "<model>", "--input", "-"),
         "<stdin>:3: expected utf-8 text", setup=write("reviews.txt", NON_UTF8), stdin="<case>/reviews.txt"),
    Case("--encoding that does not exist", "Prediction",
         ("predict", "<model>", "--input", "<case>/reviews.txt", "--encoding", "klingon"), "--encoding",
         setup=write("reviews.txt", NON_UTF8)),
    Case("--encoding without --input", "Prediction", ("predict", "<model>", "a film", "--encoding", "latin-1"),
         "--encoding: applies to --input FILE"),
    Case("no texts and no --input", "Prediction", ("predict", "<model>"), "predict: expected TEXT arguments"),
    Case("classifier with --score-threshold", "Prediction",
         ("predict", "<model>", "a film", "--score-threshold", "0.3"), "--score-threshold: is for detectors"),
    Case("classifier with --out", "Prediction", ("predict", "<model>", "a film", "--out", "<case>/drawn"),
         "--out: is for detectors"),
    Case("--abstain without --threshold", "Prediction", ("predict", "<model>", "a film", "--abstain", "unsure"),
         "abstain"),
    Case("detector with --threshold", "Prediction", ("predict", "<detector>", "<case>/x.png", "--threshold", "0.5"),
         "--threshold: is for classifiers", setup=write("x.png", bomb_png(64, 64))),
    Case("detector with --top-k", "Prediction", ("predict", "<detector>", "<case>/x.png", "--top-k", "2"),
         "--top-k: is for classifiers", setup=write("x.png", bomb_png(64, 64))),
    Case("detector evaluate --plot", "Prediction", ("evaluate", "<detector>", "--plot", "<case>/cm.png"),
         "--plot: a detector has no confusion matrix"),
    # -- deployment ---------------------------------------------------------------------------------
    Case("export a detector", "Deployment", ("export", "<detector>", "--out", "<case>/onnx"),
         "detectors are not exported", needs=ONNX_EXTRA),
    Case("export over a model directory", "Deployment", ("export", "<model>", "--out", "<model>"),
         "expected an empty folder or an older export", needs=ONNX_EXTRA),
    Case("export --format that does not exist", "Deployment",
         ("export", "<model>", "--out", "<case>/onnx", "--format", "tflite"), "--format", fast=True),
    Case("export --opset older than 17", "Deployment",
         ("export", "<model>", "--out", "<case>/onnx", "--opset", "12"), "--opset"),
    Case("serve --runtime onnx on a torch model", "Deployment", ("serve", "<model>", "--runtime", "onnx"),
         "export it first", needs=SERVE_EXTRA),
    Case("serve --int8 on a torch model", "Deployment", ("serve", "<model>", "--int8"), "--int8",
         needs=SERVE_EXTRA),
    Case("serve a detector", "Deployment", ("serve", "<detector>"), "detectors are not served",
         needs=SERVE_EXTRA),
    Case("serve on an address this machine lacks", "Deployment",
         ("serve", "<model>", "--host", "192.0.2.1", "--port", "8000"), "cannot listen there",
         needs=SERVE_EXTRA),
    # -- images -------------------------------------------------------------------------------------
    Case("a decompression-bomb PNG", "Images", ("predict", "<image-model>", "<case>/bomb.png"),
         "bomb.png: expected an image of at most", setup=write("bomb.png", bomb_png(30000, 30000))),
    Case("a text file named .png", "Images", ("predict", "<image-model>", "<case>/x.png"), "x.png",
         setup=write("x.png", "not an image\n")),
    Case("an image that does not exist", "Images", ("predict", "<image-model>", "<case>/missing.png"),
         "missing.png"),
    Case("visualize an image model --maps 999", "Images",
         ("visualize", "<image-model>", "--out", "<case>/viz", "--maps", "999"), "maps: expected first-layer filter"),
    Case("visualize a text model --maps 999", "Images",
         ("visualize", "<model>", "--out", "<case>/viz", "--data", "data/sample/train.csv", "--maps", "999"),
         "maps: expected feature-map indices"),
    Case("visualize --maps not integers", "Images",
         ("visualize", "<model>", "--out", "<case>/viz", "--data", "data/sample/train.csv", "--maps", "a,b"),
         "--maps"),
    # -- output folders and runs --------------------------------------------------------------------
    Case("--out under a file", "Output folders and runs", ("train", TINY, "--out", "<case>/afile/run"),
         "afile/run: cannot read or write it: Not a directory", setup=write("afile", "a file\n"), fast=True),
    Case("--out on a read-only file system", "Output folders and runs",
         ("train", TINY, "--out", "<case>/ro/run"), "ro/run: cannot read or write it: Read-only file system",
         setup=write("ro/.keep", ""), fault=f"readonly:{CASE_DIR}/ro"),
    Case("a full disk while a checkpoint is written", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run"), "No space left on device", fault="enospc:2"),
    Case("a full disk while the model is saved", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run"), "No space left on device", fault="enospc:3"),
    Case("--out holding another run (a recipe key)", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run", "--set", "model.dropout=0.0"), "model.dropout: 0.5 -> 0.0",
         setup=run_copy(), fast=True),
    Case("--out holding another run (the seed)", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run", "--seed", "4"), "train.seed: 1 -> 4", setup=run_copy()),
    Case("--out holding another run (data rewritten, same size and mtime)", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run", "--set", "data.train=<case>/t.csv"),
         "data.train (t.csv): content changed", setup=trained_on_a_copy_then_rewritten),
    Case("--out holding a run without run.json", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run"), "run: holds a run without run.json",
         setup=run_copy(lambda run: (run / "run.json").unlink())),
    Case("--out holding an unreadable run.json", "Output folders and runs",
         ("train", TINY, "--out", "<case>/run"), "run/run.json: expected the JSON record of a run",
         setup=run_copy(lambda run: (run / "run.json").write_text("{not json"))),
    Case("--out holding other files", "Output folders and runs",
         ("train", TINY, "--out", "<case>/notes", "--overwrite"), "notes: expected an empty folder or a run folder",
         setup=write("notes/a.txt", "my notes\n")),
    Case("a truncated checkpoint", "Output folders and runs", ("train", TINY, "--out", "<case>/run"),
         "run/train/checkpoint/last.safetensors: expected a training checkpoint",
         setup=run_copy(unfinished_with_a_truncated_checkpoint)),
    Case("a recipe name with '..' (train)", "Output folders and runs", ("train", "<case>/bad.yaml"),
         "bad.yaml: name: expected a run name without", setup=write("bad.yaml", "name: ../../etc\n")),
    Case("evaluate --plot under a file", "Output folders and runs",
         ("evaluate", "<model>", "--data", "data/sample/test.csv", "--plot", "<case>/afile/cm.png"),
         "afile", setup=write("afile", "a file\n")),
    # -- batch --------------------------------------------------------------------------------------
    Case("batch rerun with other settings", "Batch",
         ("batch", "<case>/s.yaml", "--out", "<case>/b", "--set", "tokenizer.min_frequency=2"),
         "batch: 2 run(s) in b differ from the recipes now", setup=finished_batch),
    Case("batch --only matching no run", "Batch", ("batch", "<case>/s.yaml", "--out", "<case>/b", "--only", "x/*"),
         "--only 'x/*': expected a pattern matching", setup=batch_recipe(), fast=True),
    Case("batch recipe name with '..'", "Batch", ("batch", "<case>/e.yaml", "--out", "<case>/b"),
         "e.yaml: name: expected a run name without", setup=both(batch_recipe("e"), lambda ws, here: (
             here / "e.yaml").write_text((here / "e.yaml").read_text().replace("name: e", "name: ../escape")))),
    Case("batch expand label with an absolute path", "Batch", ("batch", "<case>/l.yaml", "--out", "<case>/b"),
         "l.yaml: expand.data.train: expected a run name", setup=batch_recipe("l", "  data.train: [/tmp/x.csv]\n")),
    Case("batch --seeds not integers", "Batch", ("batch", "<case>/s.yaml", "--out", "<case>/b", "--seeds", "1,x"),
         "--seeds", setup=batch_recipe()),
    # -- downloads ----------------------------------------------------------------------------------
    Case("fetch from a mirror with a wrong file", "Downloads",
         ("data", "fetch", "kim2014", "--dest", "<case>/kim", "--from", "<case>/mirror"), "TREC.test.all",
         setup=write("mirror/TREC.test.all", "1 not the real file\n")),
    Case("fetch from a folder that does not exist", "Downloads",
         ("data", "fetch", "sst", "--dest", "<case>/sst", "--from", "<case>/nowhere"), "nowhere"),
    Case("fetch a zip whose member declares too many bytes", "Downloads",
         ("data", "fetch", "sst", "--dest", "<case>/sst", "--from", "<case>/sst.zip"),
         "trees/train.txt declares", setup=zip_of("sst.zip", {"trees/train.txt": b"\0" * (40 << 20)})),
    Case("fetch a zip with a member outside its folder", "Downloads",
         ("data", "fetch", "sst", "--dest", "<case>/sst", "--from", "<case>/sst.zip"),
         "member '../trees/train.txt'", setup=zip_of("sst.zip", {"../trees/train.txt": b"(1 (1 x))\n"}),
         fast=True),
    # -- click's own usage errors -------------------------------------------------------------------
    Case("--threshold out of range", "Usage", ("predict", "<model>", "a film", "--threshold", "1.5"),
         "Invalid value for '--threshold'", fast=True),
    Case("--top-k 0", "Usage", ("predict", "<model>", "a film", "--top-k", "0"), "Invalid value for '--top-k'"),
    Case("--input a folder", "Usage", ("predict", "<model>", "--input", "<case>/dir"),
         "Invalid value for '--input'", setup=write("dir/a.txt", "x\n")),
    Case("an unknown option", "Usage", ("train", QS, "--bogus"), "No such option '--bogus'"),
    Case("a missing argument", "Usage", ("predict",), "Missing argument 'MODEL'"),
    Case("an unknown command", "Usage", ("trian", QS), "No such command 'trian'", fast=True),
    Case("a model folder that does not exist", "Usage", ("evaluate", "<case>/nothing"), "nothing"),
    Case("batch --jobs 0", "Usage", ("batch", QS, "--out", "<case>/b", "--jobs", "0"), "Invalid value for '--jobs'"),
    Case("batch --address without --executor ray", "Usage",
         ("batch", QS, "--out", "<case>/b", "--address", "ray://head:10001"),
         "--address: applies to --executor ray"),
    Case("train --nproc 2 with a misspelt key (refused before any process starts)", "Usage",
         ("train", QS, "--out", "<case>/run", "--nproc", "2", "--set", "model.dropot=0.3"),
         "did you mean 'dropout'"),
    Case("train --nproc 0", "Usage", ("train", QS, "--nproc", "0"), "Invalid value for '--nproc'"),
    Case("data fetch of an unknown set", "Usage", ("data", "fetch", "kim2015"), "'kim2015' is not one of"),
]


# -- faults ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A fault played against the real CLI, and what it must leave behind."""

    name: str  # what --only matches and the doc's heading shows
    what: str  # what the script does, for the doc
    play: Callable[[Workspace, Path], list[tuple[str, bool]]]  # observations: (line, as expected)


@dataclass
class FaultOutcome:
    fault: Fault
    observed: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [line for line, ok in self.observed if not ok]


def epochs_logged(run: Path) -> list[int]:
    log = run / "train" / "metrics.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["epoch"] for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for_epochs(proc: subprocess.Popen, run: Path, count: int, timeout: float = 180) -> bool:
    """Wait until `count` epochs are logged; False when the process ended (or time ran out) first."""
    deadline = time.monotonic() + timeout
    while len(epochs_logged(run)) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def same_weights(a: Path, b: Path) -> bool:
    """Bit-identical tensors in two run folders' model.safetensors."""
    import numpy as np
    from safetensors.numpy import load_file

    wa, wb = (load_file(str(run / "model" / "model.safetensors")) for run in (a, b))
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def resumed_as_uninterrupted(ws: Workspace, run: Path) -> list[tuple[str, bool]]:
    """Rerun the same command into `run`: it must finish as the uninterrupted reference run."""
    again = ws.cli("train", ws.tiny, "--out", run, *SLOW)
    logged = epochs_logged(run)
    identical = again.returncode == 0 and same_weights(run, ws.reference_run())
    return [(f"the same command again: exit {again.returncode}", again.returncode == 0),
            (f"metrics.jsonl holds epochs {logged[0] if logged else '-'}..{logged[-1] if logged else '-'}, "
             f"each once" if logged == sorted(set(logged)) else f"metrics.jsonl holds epochs {logged}",
             logged == list(range(1, 11))),
            ("its weights are bit-identical to an uninterrupted run's" if identical
             else "its weights differ from an uninterrupted run's", identical)]


def stderr_line(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def signal_mid_run(ws: Workspace, run: Path, signum: int) -> tuple[bool, int, str]:
    """Start the SLOW run into `run` and send it `signum` once it has logged epoch 3; return
    whether it got that far, its exit code and its standard error."""
    proc = ws.popen("train", ws.tiny, "--out", run, *SLOW)
    try:
        started = wait_for_epochs(proc, run, 3)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return started, proc.returncode, err


def play_kill_9(ws: Workspace, here: Path) -> list[tuple[str, bool]]:
    started, code, _ = signal_mid_run(ws, here / "run", signal.SIGKILL)
    return [(f"killed once epoch 3 was logged: exit {code} (SIGKILL)", started and code == -signal.SIGKILL),
            *resumed_as_uninterrupted(ws, here / "run")]


def play_ctrl_c(ws: Workspace, here: Path) -> list[tuple[str, bool]]:
    started, code, err = signal_mid_run(ws, here / "run", signal.SIGINT)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    return [(f"SIGINT once epoch 3 was logged: exit {code}", started and code == 130),
            (f"standard error: `{stderr_line(err)}`" + ("" if len(lines) == 1 else f" ({len(lines)} lines)"),
             len(lines) == 1 and "Traceback" not in err and lines[0].startswith("Error: interrupted")),
            *resumed_as_uninterrupted(ws, here / "run")]


def play_two_writers(ws: Workspace, here: Path) -> list[tuple[str, bool]]:
    run = here / "run"
    first = ws.popen("train", ws.tiny, "--out", run, *SLOW)
    try:
        started = wait_for_epochs(first, run, 1)
        first.send_signal(signal.SIGSTOP)  # paused mid-run, however slow the second one starts
        try:
            second = ws.cli("train", ws.tiny, "--out", run, *SLOW)
            still_training = first.poll() is None
        finally:
            first.send_signal(signal.SIGCONT)
        first.communicate(timeout=300)
    finally:
        first.kill()
    err = second.stderr.decode("utf-8", errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    identical = first.returncode == 0 and same_weights(run, ws.reference_run())
    return [(f"a second `train` into the same --out while the first is mid-run (paused with SIGSTOP "
             f"once it has logged epoch 1): exit {second.returncode}", started and still_training
             and second.returncode == 2),
            (f"standard error: `{shown(stderr_line(err), ws, here)}`",
             len(lines) == 1 and f"another process (pid {first.pid})" in err),
            (f"the first run, continued (SIGCONT): exit {first.returncode}, its weights "
             + ("bit-identical to an uninterrupted run's" if identical else "not an uninterrupted run's"),
             identical)]


def play_torn_results_line(ws: Workspace, here: Path) -> list[tuple[str, bool]]:
    finished_batch(ws, here)
    results = here / "b" / "results.jsonl"
    first, second = results.read_text(encoding="utf-8").splitlines()
    results.write_text(first + "\n" + second[: len(second) // 2], encoding="utf-8")
    again = ws.cli("batch", here / "s.yaml", "--out", here / "b")
    err, out = again.stderr.decode("utf-8", errors="replace"), again.stdout.decode("utf-8", errors="replace")
    warnings = [shown(line[line.index("results.jsonl"):], ws, here) for line in err.splitlines()
                if "UserWarning" in line and "results.jsonl" in line]
    rows = [json.loads(line)["run"] for line in results.read_text(encoding="utf-8").splitlines()]
    redone = "1 already done, 1 to run" in out
    return [(f"results.jsonl's last row cut in half, then the same `batch`: exit {again.returncode}",
             again.returncode == 0),
            ("warnings: " + "; ".join(f"`{w}`" for w in warnings) if warnings else "no warning",
             any("dropped a torn last line" in w for w in warnings)),
            ("the torn row's run is redone (`1 already done, 1 to run`)" if redone
             else "the torn row's run is not redone", redone),
            (f"results.jsonl then holds {len(rows)} whole rows: {', '.join(rows)}",
             rows == [json.loads(first)["run"], "s/seed=2"])]


def play_full_disk(ws: Workspace, here: Path) -> list[tuple[str, bool]]:
    run = here / "run"
    full = ws.cli("train", ws.tiny, "--out", run, *SLOW, fault="enospc:2")
    err = full.stderr.decode("utf-8", errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    left = sorted(p.name for p in (run / "train" / "checkpoint").iterdir()) \
        if (run / "train" / "checkpoint").is_dir() else []
    half_done = (run / "model").exists() or (run / "results.json").exists()
    return [(f"ENOSPC while epoch 2's checkpoint is written: exit {full.returncode}", full.returncode == 2),
            (f"standard error: `{shown(stderr_line(err), ws, here)}`",
             len(lines) == 1 and "No space left on device" in err and "Traceback" not in err),
            (f"left in train/checkpoint/: {', '.join(left) or 'nothing'}; no model/ and no results.json"
             if not half_done else "a model/ or results.json was written", left == ["last.safetensors"]
             and not half_done),
            *resumed_as_uninterrupted(ws, run)]


TRAIN_SLOW = f"`textcnn train tiny.yaml --out run {shlex.join(SLOW)}`"
FAULTS: list[Fault] = [
    Fault("kill -9 and resume", f"{TRAIN_SLOW} is killed with SIGKILL once it has logged epoch 3, then "
          "the same command is run again.", play_kill_9),
    Fault("Ctrl-C (SIGINT) and resume", f"{TRAIN_SLOW} gets SIGINT once it has logged epoch 3, then the "
          "same command is run again.", play_ctrl_c),
    Fault("two writers", f"{TRAIN_SLOW} runs; once it has logged epoch 1 it is paused (SIGSTOP), the "
          "same command starts in a second process, and then the first continues (SIGCONT).",
          play_two_writers),
    Fault("a torn results line", "`textcnn batch s.yaml --out b` (NBSVM, seeds 1 and 2) finishes; its "
          "results.jsonl's last line is cut in half (a crash mid-write), and the same command runs again.",
          play_torn_results_line),
    Fault("a full disk", f"{TRAIN_SLOW} runs with the second safetensors save failing with ENOSPC after "
          "writing half its bytes (injected with a sitecustomize.py), then the same command runs again "
          "without the fault.", play_full_disk),
]


def run_fault(fault: Fault, ws: Workspace) -> FaultOutcome:
    here = ws.root / "faults" / re.sub(r"[^A-Za-z0-9]+", "-", fault.name).strip("-")
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    try:
        return FaultOutcome(fault, fault.play(ws, here))
    except Exception as exc:  # a fault that breaks the script is a result too
        return FaultOutcome(fault, [(f"the scenario failed: {type(exc).__name__}: {exc}", False)])


# -- the document ----------------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text as a code span in a Markdown table cell."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def para(text: str, *, bullet: bool = False) -> str:
    """A paragraph (or a list item) of the doc, wrapped at 100 characters."""
    return textwrap.fill(text, width=100, initial_indent="- " if bullet else "",
                         subsequent_indent="  " if bullet else "", break_long_words=False,
                         break_on_hyphens=False)


def fixture_lines() -> list[str]:
    tiny = ", ".join(f"{key} {json.dumps(value)}" for key, value in TINY_SETTINGS.items())
    items = [f"tiny.yaml: {QS} with {tiny}",
             "MODEL: `textcnn train tiny.yaml --out RUN`, then RUN/model",
             f"IMAGE_MODEL: `textcnn train {LENET} --out RUN {shlex.join(TINY_LENET)}`, then RUN/model",
             f"DETECTOR: `textcnn train {YOLO} --out RUN {shlex.join(TINY_YOLO)}`, then RUN/model"]
    return [para(item, bullet=True) for item in items]


def render(outcomes: Sequence[Outcome], faults: Sequence[FaultOutcome]) -> str:
    """docs/reliability.md."""
    behaved = sum(not o.problems for o in outcomes)
    lines = [
        "# Reliability: bad input and faults",
        "",
        para(f"Generated by `{COMMAND}`, which runs every case below through the real command line "
             "(`python -m textcnn.cli`, from the repository root) and writes this file; do not edit it "
             "by hand. `tests/test_reliability.py` runs the cases again and checks that this file lists "
             "them all. To spare each command the 3 s of importing torch, scikit-learn and datasets, it "
             "runs in a process forked from a Python that has imported them (textcnn itself is imported "
             "afresh); `--fresh` starts a new Python for every command instead."),
        "",
        para("Bad input, a damaged file or an output folder that cannot be written ends a command with "
             "exit code 2 and one line on standard error, `Error: ...`, that names the file, line, key or "
             "option, what was expected and what arrived, and no traceback. Nothing already finished is "
             "lost."),
        "",
        para("Each case runs in a fresh folder; its own files are shown without that folder's path. The "
             "models the cases use are tiny ones the script trains first:"),
        "",
        *fixture_lines(),
        "",
        para("`<sha256>` stands for a checksum of trained weights (it differs between machines), `pid N` "
             "for a process id. Faults are injected without root: a `sitecustomize.py` first on the "
             "subprocess's `PYTHONPATH` makes `mkdir` fail with EROFS (a read-only file system) or a "
             "`safetensors` save fail with ENOSPC after writing half its bytes (a full disk)."),
        "",
        f"{len(outcomes)} cases; {behaved} behave as expected.",
    ]
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.case.group, []).append(outcome)
    for group, members in groups.items():
        lines += ["", f"## {group}", "", "| case | command | exit | message |", "|---|---|---|---|"]
        for o in members:
            code = str(o.code) if not o.problems else f"**{o.code}** ({'; '.join(o.problems)})"
            message = " / ".join(o.stderr) if o.problems else o.message
            lines.append(f"| {o.case.name.replace('|', chr(92) + '|')} | {cell(o.command)} | {code} | "
                         f"{cell(message)} |")
    if faults:
        lines += ["", "## Faults", "", para("Each scenario plays against the real command line; an "
                                            "uninterrupted run of the same command is the reference for "
                                            "the weights."), ""]
        for f in faults:
            lines += [f"### {f.fault.name}", "", para(f.fault.what), ""]
            lines += [para(line + ("" if ok else " (**not as expected**)"), bullet=True)
                      for line, ok in f.observed]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def selected(names: Sequence[str], patterns: Sequence[str]) -> list[bool]:
    return [not patterns or any(fnmatch.fnmatch(n.lower(), p.lower()) for p in patterns) for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help=f"the document to write [{DOC.relative_to(REPO)}; "
                        "with --only: none]")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only the cases and faults whose name matches (fnmatch, any case; repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time [2]")
    parser.add_argument("--keep", type=Path, help="build the fixtures here and keep them")
    parser.add_argument("--fresh", action="store_true", help="start a fresh Python for every command "
                        "(slower) instead of forking warm ones")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    cases = [c for c, keep in zip(CASES, selected([c.name for c in CASES], args.only)) if keep]
    faults = [f for f, keep in zip(FAULTS, selected([f.name for f in FAULTS], args.only)) if keep]
    if not cases and not faults:
        parser.error(f"--only {' '.join(args.only)}: matches none of the {len(CASES)} cases and {len(FAULTS)} faults")
    out = args.out if args.out is not None else (None if args.only else DOC)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="textcnn-reliability-") as tmp:
        ws = Workspace(args.keep or Path(tmp), warm=0 if args.fresh else max(1, args.jobs))
        done: dict[int, Outcome] = {}
        with ws, ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool, \
                tqdm(total=len(cases) + len(faults), desc="cases", unit="case") as bar:
            futures = {pool.submit(run_case, c, ws): i for i, c in enumerate(cases)}
            for future in as_completed(futures):
                done[futures[future]] = outcome = future.result()
                bar.update()
                if outcome.problems:
                    bar.write(f"NOT AS EXPECTED: {outcome.case.name}: {'; '.join(outcome.problems)}\n"
                              f"  {outcome.command}\n  " + "\n  ".join(outcome.stderr[-8:]))
            outcomes = [done[i] for i in range(len(cases))]
            bar.set_description("faults")
            fault_outcomes = []
            for fault in faults:  # one at a time: they time their signals against training
                fault_outcomes.append(run_fault(fault, ws))
                bar.update()
                for problem in fault_outcomes[-1].problems:
                    bar.write(f"NOT AS EXPECTED: {fault.name}: {problem}")
    seconds = time.monotonic() - start
    text = render(outcomes, fault_outcomes)
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)  # a reader never sees half a document
    slowest = sorted(outcomes, key=lambda o: -o.seconds)[:5]
    print("slowest cases: " + ", ".join(f"{o.case.name} {o.seconds:.1f} s" for o in slowest), file=sys.stderr)
    bad = [o.case.name for o in outcomes if o.problems] + [f.fault.name for f in fault_outcomes if f.problems]
    print(f"{len(outcomes)} cases and {len(fault_outcomes)} faults in {seconds:.0f} s; "
          f"{len(bad)} not as expected{': ' + ', '.join(bad) if bad else ''}"
          + (f"; wrote {out}" if out else ""), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
