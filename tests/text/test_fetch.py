"""textcnn.fetch: local mirrors, zips and a loopback HTTP server; nothing leaves 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import re
import socket
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from textcnn import fetch as fetch_mod
from textcnn.benchmarks import BENCHMARKS, SST_TREE_FILES
from textcnn.errors import TextCNNError
from textcnn.fetch import FetchError, fetch, verify

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail the test, rather than touch the internet, if any URL is not on 127.0.0.1."""
    real_open = fetch_mod._open

    def guarded(url: str, timeout: float):
        host = urllib.parse.urlsplit(url).hostname
        assert host == "127.0.0.1", f"test tried to reach {url}"
        assert timeout <= TIMEOUT
        return real_open(url, timeout)

    monkeypatch.setattr(fetch_mod, "_open", guarded)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def serve(tmp_path):
    """serve(folder) -> the base URL of a loopback HTTP server for `folder`, stopped at teardown."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (the port was just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_set(monkeypatch, name: str, files: dict[str, bytes], **changes) -> None:
    """Swap set `name`'s checksum table (and any other field) for one matching `files`."""
    fileset = dataclasses.replace(fetch_mod.FILESETS[name],
                                  sha256={f: sha(data) for f, data in files.items()}, **changes)
    monkeypatch.setitem(fetch_mod.FILESETS, name, fileset)


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def listing(folder: Path) -> list[str]:
    """Every entry of `folder`, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


FAKE_KIM = {"custrev.all": b"1 great zoom lens\n0 the battery died\n",
            "mpqa.all": b"1 support\n0 never again\n"}
FAKE_TREES = {"train.txt": b"(3 (2 a) (4 good))\n", "dev.txt": b"(1 (2 a) (0 bad))\n",
              "test.txt": b"(2 (2 a) (2 film))\n"}


def make_zip(path: Path, files: dict[str, bytes], prefix: str = "trees/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(prefix, b"")
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return path


@pytest.fixture
def kim_dir(shared_data) -> Path:
    folder = shared_data / "kim2014"
    if not (folder / "rt-polarity.all").is_file():
        pytest.skip(f"Kim (2014) files not found in {folder}")
    return folder


@pytest.fixture
def sst_dir(shared_data) -> Path:
    folder = shared_data / "sst"
    if not all((folder / f).is_file() for f in SST_TREE_FILES):
        pytest.skip(f"SST trees not found in {folder}")
    return folder


# -- the tables -----------------------------------------------------------------------------------


def test_tables_cover_the_benchmarks():
    kim_files = {f for b in BENCHMARKS.values() for f in b.files}
    assert set(fetch_mod.KIM2014_SHA256) == kim_files
    assert len(kim_files) == 12  # 10 in the shared folder, plus custrev.all and mpqa.all
    assert tuple(fetch_mod.SST_SHA256) == SST_TREE_FILES
    for digest in [*fetch_mod.KIM2014_SHA256.values(), *fetch_mod.SST_SHA256.values()]:
        assert re.fullmatch(r"[0-9a-f]{64}", digest)


@pytest.mark.parametrize("name, table", [("kim2014", fetch_mod.KIM2014_SHA256),
                                         ("sst", fetch_mod.SST_SHA256)])
def test_tables_match_the_data_readmes(shared_data, name, table):
    readme = shared_data / name / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} not found")
    listed = dict((f, d) for d, f in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme.read_text(),
                                                 re.MULTILINE))
    assert listed == table


# -- local sources --------------------------------------------------------------------------------


def test_copy_from_shared_mirror_keeps_what_it_placed_and_names_the_rest(kim_dir, tmp_path):
    dest = tmp_path / "kim2014"
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=dest, source=kim_dir, progress=False)
    report = info.value.report
    present = sorted(f for f in fetch_mod.KIM2014_SHA256 if (kim_dir / f).is_file())
    absent = sorted(set(fetch_mod.KIM2014_SHA256) - set(present))
    assert sorted(report.fetched) == present and sorted(report.missing) == absent
    assert absent == ["custrev.all", "mpqa.all"] or not absent
    for f in present:
        assert (dest / f).read_bytes() == (kim_dir / f).read_bytes()
    message = str(info.value)
    assert "\n" not in message
    for f in absent:
        assert f in message and f"{fetch_mod.KIM2014_BASE_URL}/<file>" in message
    assert str(dest) in message
    assert verify("kim2014", dest) == {f: "ok" if f in present else "missing"
                                       for f in fetch_mod.KIM2014_SHA256}
    assert listing(dest) == present  # no temporary file left over


def test_cr_and_mpqa_from_a_fake_mirror(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    mirror = write_files(tmp_path / "mirror", FAKE_KIM)
    report = fetch("kim2014", dest=tmp_path / "dest", source=mirror, progress=False)
    assert report.ok and sorted(report.fetched) == ["custrev.all", "mpqa.all"]
    for f, data in FAKE_KIM.items():
        assert (tmp_path / "dest" / f).read_bytes() == data


def test_upstream_layout_and_zip_in_the_source_folder(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    write_files(tmp_path / "clone" / "data", {"custrev.all": FAKE_KIM["custrev.all"]})
    make_zip(tmp_path / "clone" / "extra.zip", {"mpqa.all": FAKE_KIM["mpqa.all"]}, prefix="x/data/")
    report = fetch("kim2014", dest=tmp_path / "dest", source=tmp_path / "clone", progress=False)
    assert sorted(report.fetched) == ["custrev.all", "mpqa.all"]
    assert verify("kim2014", tmp_path / "dest") == {"custrev.all": "ok", "mpqa.all": "ok"}


def test_present_files_are_skipped_without_touching_the_source(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    dest = write_files(tmp_path / "dest", FAKE_KIM)
    report = fetch("kim2014", dest=dest, source=closed_port_url(), timeout=TIMEOUT, progress=False)
    assert report.ok and sorted(report.skipped) == sorted(FAKE_KIM) and not report.fetched


def test_a_present_file_with_a_wrong_checksum_is_replaced(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    dest = write_files(tmp_path / "dest", {**FAKE_KIM, "mpqa.all": b"1 truncated"})
    assert verify("kim2014", dest)["mpqa.all"] == "mismatch"
    report = fetch("kim2014", dest=dest, source=write_files(tmp_path / "m", FAKE_KIM),
                   progress=False)
    assert report.fetched == ["mpqa.all"] and report.skipped == ["custrev.all"]
    assert (dest / "mpqa.all").read_bytes() == FAKE_KIM["mpqa.all"]


def test_corrupt_local_copy_is_refused_and_leaves_nothing(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    bad = b"1 great zoom lens\n0 the battery lasted\n"
    mirror = write_files(tmp_path / "m", {**FAKE_KIM, "custrev.all": bad})
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=dest, source=mirror, progress=False)
    message = str(info.value)
    assert "custrev.all" in message and sha(FAKE_KIM["custrev.all"]) in message and sha(bad) in message
    assert listing(dest) == ["mpqa.all"]


@pytest.mark.parametrize("source", ["nowhere", "file.txt"])
def test_bad_source_path(tmp_path, source):
    (tmp_path / "file.txt").write_text("not a zip")
    with pytest.raises(TextCNNError, match="expected a folder, a .zip or an http"):
        fetch("kim2014", dest=tmp_path / "dest", source=tmp_path / source, progress=False)


def test_unknown_set_name(tmp_path):
    with pytest.raises(TextCNNError, match="did you mean 'kim2014'"):
        fetch("kim2041", dest=tmp_path)
    with pytest.raises(TextCNNError, match="expected one of kim2014, sst"):
        verify("imdb", tmp_path)


# -- HTTP -----------------------------------------------------------------------------------------


def test_download_from_a_mirror_url(monkeypatch, tmp_path, serve, capsys):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    base = serve(write_files(tmp_path / "www", FAKE_KIM))
    report = fetch("kim2014", dest=tmp_path / "dest", source=base + "/", timeout=TIMEOUT)
    assert report.ok and sorted(report.fetched) == sorted(FAKE_KIM)
    for f, data in FAKE_KIM.items():
        assert (tmp_path / "dest" / f).read_bytes() == data
    assert "custrev.all" in capsys.readouterr().err  # the progress bar


def test_public_address_is_used_when_no_source_is_given(monkeypatch, tmp_path, serve):
    base = serve(write_files(tmp_path / "www", FAKE_KIM))
    fake_set(monkeypatch, "kim2014", FAKE_KIM, public=base)
    report = fetch("kim2014", dest=tmp_path / "dest", timeout=TIMEOUT, progress=False)
    assert sorted(report.fetched) == sorted(FAKE_KIM)


def test_corrupt_download_is_refused_and_leaves_nothing(monkeypatch, tmp_path, serve):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    bad = FAKE_KIM["mpqa.all"][:-3] + b"!!\n"
    base = serve(write_files(tmp_path / "www", {**FAKE_KIM, "mpqa.all": bad}))
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=dest, source=base, timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert f"mpqa.all: SHA-256 of the copy from {base}/mpqa.all" in message
    assert f"expected {sha(FAKE_KIM['mpqa.all'])}, got {sha(bad)}" in message
    assert info.value.report.fetched == ["custrev.all"]
    assert listing(dest) == ["custrev.all"]


def test_a_file_absent_on_the_server_does_not_stop_the_others(monkeypatch, tmp_path, serve):
    fake_set(monkeypatch, "kim2014", FAKE_KIM)
    base = serve(write_files(tmp_path / "www", {"mpqa.all": FAKE_KIM["mpqa.all"]}))
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=tmp_path / "dest", source=base, timeout=TIMEOUT, progress=False)
    report = info.value.report
    assert report.fetched == ["mpqa.all"]
    assert list(report.missing) == ["custrev.all"] and "HTTP 404" in report.missing["custrev.all"]
    assert "1 of 2 files missing" in str(info.value) and "1 other files are in place" in str(info.value)


def test_unreachable_host_gives_one_error_listing_every_file(tmp_path):
    url = closed_port_url()
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=dest, source=url, timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert message.startswith(f"fetch kim2014: 12 of 12 files missing in {dest}")
    assert "\n" not in message
    for f in fetch_mod.KIM2014_SHA256:
        assert f in message
    assert f"could not download from {urllib.parse.urlsplit(url).netloc}" in message
    assert f"download each missing file from {fetch_mod.KIM2014_BASE_URL}/<file> into {dest}" in message
    assert sorted(info.value.report.missing) == sorted(fetch_mod.KIM2014_SHA256)
    assert listing(dest) == []


# -- SST ------------------------------------------------------------------------------------------


def test_sst_from_a_zip_of_the_shared_trees(sst_dir, tmp_path):
    trees = {f: (sst_dir / f).read_bytes() for f in SST_TREE_FILES}
    archive = make_zip(tmp_path / "src" / "trainDevTestTrees_PTB.zip", trees)
    for source in (archive, archive.parent):
        dest = tmp_path / f"dest-{source.name}"
        report = fetch("sst", dest=dest, source=source, progress=False)
        assert sorted(report.fetched) == sorted(SST_TREE_FILES)
        assert {f: (dest / f).read_bytes() for f in SST_TREE_FILES} == trees
        assert listing(dest) == sorted(SST_TREE_FILES)


def test_sst_from_a_trees_folder(monkeypatch, tmp_path):
    fake_set(monkeypatch, "sst", FAKE_TREES)
    source = tmp_path / "stanford"
    write_files(source / "trees", FAKE_TREES)
    report = fetch("sst", dest=tmp_path / "dest", source=source, progress=False)
    assert sorted(report.fetched) == sorted(FAKE_TREES)


def test_sst_public_zip_download(monkeypatch, tmp_path, serve):
    base = serve(make_zip(tmp_path / "www" / "trainDevTestTrees_PTB.zip", FAKE_TREES).parent)
    fake_set(monkeypatch, "sst", FAKE_TREES, public=f"{base}/trainDevTestTrees_PTB.zip")
    dest = tmp_path / "dest"
    report = fetch("sst", dest=dest, timeout=TIMEOUT, progress=False)
    assert sorted(report.fetched) == sorted(FAKE_TREES)
    assert listing(dest) == sorted(FAKE_TREES)  # the downloaded zip is gone


def test_sst_zip_with_a_wrong_tree_keeps_the_right_ones(monkeypatch, tmp_path, serve):
    www = make_zip(tmp_path / "www" / "sst.zip", {**FAKE_TREES, "dev.txt": b"(0 (0 changed))\n"}).parent
    fake_set(monkeypatch, "sst", FAKE_TREES)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=r"dev.txt: SHA-256 of the copy from .*sst.zip:trees/dev.txt"):
        fetch("sst", dest=dest, source=serve(www) + "/sst.zip", timeout=TIMEOUT, progress=False)
    assert listing(dest) == ["test.txt", "train.txt"]


def test_sst_unreachable_names_the_archive(tmp_path):
    url = closed_port_url() + "/trainDevTestTrees_PTB.zip"
    with pytest.raises(FetchError) as info:
        fetch("sst", dest=tmp_path / "dest", source=url, timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert "3 of 3 files missing" in message and "train.txt, dev.txt, test.txt" in message
    assert fetch_mod.SST_ZIP_URL in message
    assert listing(tmp_path / "dest") == []
