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
from textcnn.core.errors import TextCNNError
from textcnn.documents import NEWSGROUPS_SPLITS
from textcnn.fetch import FetchError, fetch, verify
from textcnn.kim2014 import BENCHMARKS, SST_TREE_FILES

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
def loopback():
    """loopback(handler, **attributes) -> the base URL of a loopback HTTP server running
    `handler` (with `attributes` set on the server), stopped at teardown."""
    servers = []

    def start(handler, **attributes) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        for name, value in attributes.items():
            setattr(server, name, value)
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


@pytest.fixture
def serve(loopback):
    """serve(folder) -> the base URL of a loopback HTTP server for `folder`, stopped at teardown."""
    return lambda folder: loopback(functools.partial(_QuietHandler, directory=str(folder)))


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


# -- size caps and safe extraction ----------------------------------------------------------------


def test_sizes_cover_every_file_and_match_the_shared_copies(shared_data):
    for fileset in fetch_mod.FILESETS.values():
        assert set(fileset.sizes) == set(fileset.sha256)
    for name, sizes in [("kim2014", fetch_mod.KIM2014_SIZES), ("sst", fetch_mod.SST_SIZES)]:
        present = [f for f in sizes if (shared_data / name / f).is_file()]
        for f in present:
            assert sizes[f] == (shared_data / name / f).stat().st_size, f
        assert name != "kim2014" or set(sizes) - set(present) <= {"custrev.all", "mpqa.all"}


class _Endless(http.server.BaseHTTPRequestHandler):
    """Answers every GET with up to 64 MiB of zeros (no Content-Length unless the server sets
    `declared`), counting what it sent."""

    def do_GET(self):  # noqa: N802 (the base class's name)
        self.send_response(200)
        if self.server.declared is not None:
            self.send_header("Content-Length", str(self.server.declared))
        self.end_headers()
        chunk = b"\0" * (1 << 16)
        try:
            while self.server.sent < 64 << 20:
                self.wfile.write(chunk)
                self.server.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def endless(loopback):
    """endless(declared=None) -> the base URL of a loopback server that never stops sending."""
    return lambda declared=None: loopback(_Endless, declared=declared, sent=0)


class _Counted:
    """A response that counts the bytes read from it."""

    def __init__(self, response, counts: list[int]) -> None:
        self.response, self.counts = response, counts
        counts.append(0)

    def read(self, size: int = -1) -> bytes:
        data = self.response.read(size)
        self.counts[-1] += len(data)
        return data

    @property
    def headers(self):
        return self.response.headers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.response.close()


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Bytes read from each response `fetch` opens, in order."""
    counts: list[int] = []
    guarded = fetch_mod._open
    monkeypatch.setattr(fetch_mod, "_open", lambda url, timeout: _Counted(guarded(url, timeout), counts))
    return counts


LIMIT = 50_000


def random_bytes(n: int) -> bytes:
    """Bytes that do not compress."""
    return b"".join(
        hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(-(-n // 32)))[:n]


@pytest.mark.parametrize("declared", [None, 10 << 20])
def test_a_download_that_never_ends_is_cut_at_its_size(monkeypatch, tmp_path, endless, bytes_read,
                                                       declared):
    fake_set(monkeypatch, "kim2014", FAKE_KIM, sizes={f: LIMIT for f in FAKE_KIM})
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch("kim2014", dest=dest, source=endless(declared), timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert "\n" not in message and f"more than the {LIMIT} bytes expected" in message
    assert sorted(info.value.report.missing) == sorted(FAKE_KIM)
    assert len(bytes_read) == 2 and all(n <= LIMIT + 1 for n in bytes_read)
    if declared is not None:  # a Content-Length beyond the size is refused before any read
        assert bytes_read == [0, 0] and "declares 10485760 bytes" in message
    assert listing(dest) == []


def test_a_local_copy_larger_than_expected_is_refused(monkeypatch, tmp_path):
    fake_set(monkeypatch, "kim2014", FAKE_KIM, sizes={"custrev.all": 10, "mpqa.all": 1000})
    mirror = write_files(tmp_path / "m", FAKE_KIM)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=r"custrev.all: .*custrev.all declares 37 bytes, more "
                                         r"than the 10 bytes expected"):
        fetch("kim2014", dest=dest, source=mirror, progress=False)
    assert listing(dest) == ["mpqa.all"]


def test_a_zip_member_declaring_too_much_is_never_opened(monkeypatch, tmp_path, serve):
    bomb = b"\0" * (8 << 20)  # 8 MiB of zeros: a few kB once deflated
    archive = make_zip(tmp_path / "www" / "sst.zip", {**FAKE_TREES, "dev.txt": bomb})
    assert archive.stat().st_size < 100_000
    fake_set(monkeypatch, "sst", FAKE_TREES, sizes={f: 1000 for f in FAKE_TREES})
    opened: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(str(getattr(name, "filename", name)))
                        or real_open(self, name, *a, **k))
    for source in (archive, serve(archive.parent) + "/sst.zip"):
        dest = tmp_path / f"dest{len(opened)}"
        with pytest.raises(FetchError) as info:
            fetch("sst", dest=dest, source=source, timeout=TIMEOUT, progress=False)
        assert f"trees/dev.txt declares {len(bomb)} bytes, more than the 1000 bytes expected" in str(info.value)
        assert listing(dest) == ["test.txt", "train.txt"]
    assert "trees/dev.txt" not in opened and "trees/train.txt" in opened


def test_a_downloaded_zip_larger_than_its_files_is_cut(monkeypatch, tmp_path, serve, endless,
                                                       bytes_read):
    # the cap: the sizes of the set's files plus ZIP_SLACK
    fake_set(monkeypatch, "sst", FAKE_TREES, sizes={f: 100 for f in FAKE_TREES})
    monkeypatch.setattr(fetch_mod, "ZIP_SLACK", 1000)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match="sent more than the 1300 bytes expected"):
        fetch("sst", dest=dest, source=endless() + "/sst.zip", timeout=TIMEOUT, progress=False)
    assert bytes_read == [1301]
    assert listing(dest) == []  # the partial download is gone
    archive = make_zip(tmp_path / "www" / "sst.zip", {**FAKE_TREES, "other.bin": random_bytes(4000)})
    with pytest.raises(FetchError, match=f"declares {archive.stat().st_size} bytes, more than the "
                                         "1300 bytes expected; not read"):
        fetch("sst", dest=dest, source=serve(archive.parent) + "/sst.zip", timeout=TIMEOUT,
              progress=False)
    assert bytes_read == [1301, 0] and listing(dest) == []


@pytest.mark.parametrize("member", ["../trees/train.txt", "/tmp/trees/train.txt", "a/../../train.txt"])
def test_zip_members_with_unsafe_paths_are_refused(monkeypatch, tmp_path, member):
    archive = tmp_path / "src" / "sst.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, FAKE_TREES["train.txt"])
        for name in ("dev.txt", "test.txt"):
            zf.writestr(f"trees/{name}", FAKE_TREES[name])
    fake_set(monkeypatch, "sst", FAKE_TREES)
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(FetchError) as info:
        fetch("sst", dest=dest, source=archive, progress=False)
    assert f"member {member!r} has an absolute path or '..'; not extracted" in str(info.value)
    assert listing(dest) == ["dev.txt", "test.txt"]
    assert not (tmp_path / "deep" / "train.txt").exists() and not (tmp_path / "train.txt").exists()


# -- 20 Newsgroups: one .tar.gz, a repack also accepted, unpacked safely ---------------------------


def news_tarball(path: Path, members: list[tuple[str, bytes | None, str]]) -> bytes:
    """A .tar.gz of (name, data, kind) members: kind 'file', 'dir', 'symlink' (data: its target)
    or 'hardlink'; returns its bytes."""
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = data.decode()
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path.read_bytes()


NEWS = [("20news-bydate-train/", None, "dir"), ("20news-bydate-train/sci.space/", None, "dir"),
        ("20news-bydate-train/sci.space/1", b"From: a@b\n\norbit\n", "file"),
        ("20news-bydate-test/", None, "dir"), ("20news-bydate-test/sci.space/2", b"moon\n", "file")]


def fake_news(monkeypatch, archive: bytes, **changes) -> None:
    fake_set(monkeypatch, "20ng", {"20news-bydate.tar.gz": archive}, **changes)


def test_20ng_tables_match_the_readme(shared_data):
    readme = shared_data / "20news" / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} not found")
    text = readme.read_text()
    fileset = fetch_mod.FILESETS["20ng"]
    assert fileset.urls["20news-bydate.tar.gz"] in text and fileset.sha256["20news-bydate.tar.gz"] in text
    local = re.search(r"^([0-9a-f]{64})  20news-bydate.tar.gz$", text, re.MULTILINE).group(1)
    assert fileset.accepted("20news-bydate.tar.gz") == (fileset.sha256["20news-bydate.tar.gz"], local)
    assert (shared_data / "20news" / "20news-bydate.tar.gz").stat().st_size <= fileset.sizes["20news-bydate.tar.gz"]


@pytest.mark.slow
def test_20ng_from_the_shared_copy_is_placed_and_unpacked(shared_data, tmp_path):
    source = shared_data / "20news"
    if not (source / "20news-bydate.tar.gz").is_file():
        pytest.skip(f"{source} has no archive")
    report = fetch("20ng", dest=tmp_path / "d", source=source, progress=False)
    assert report.fetched == ["20news-bydate.tar.gz"] and report.extracted == list(NEWSGROUPS_SPLITS[::-1])
    assert sum(1 for _ in (tmp_path / "d" / "20news-bydate-test").rglob("*") if _.is_file()) == 7532
    again = fetch("20ng", dest=tmp_path / "d", source=source, progress=False)
    assert again.skipped == ["20news-bydate.tar.gz"] and again.extracted == []


def test_20ng_downloads_from_its_own_address_and_unpacks(monkeypatch, tmp_path, serve):
    archive = news_tarball(tmp_path / "www" / "files" / "5975967", NEWS)
    base = serve(tmp_path / "www")
    fake_news(monkeypatch, archive, urls={"20news-bydate.tar.gz": f"{base}/files/5975967"})
    report = fetch("20ng", dest=tmp_path / "dest", timeout=TIMEOUT, progress=False)
    assert report.fetched == ["20news-bydate.tar.gz"]
    assert (tmp_path / "dest" / "20news-bydate.tar.gz").read_bytes() == archive
    assert (tmp_path / "dest" / "20news-bydate-train" / "sci.space" / "1").read_bytes() == NEWS[2][1]
    assert listing(tmp_path / "dest") == ["20news-bydate-test", "20news-bydate-train", "20news-bydate.tar.gz"]


def test_20ng_accepts_a_known_repack_and_refuses_other_bytes(monkeypatch, tmp_path):
    canonical = news_tarball(tmp_path / "a" / "20news-bydate.tar.gz", NEWS)
    repack = news_tarball(tmp_path / "b" / "20news-bydate.tar.gz", NEWS[::-1])
    other = news_tarball(tmp_path / "c" / "20news-bydate.tar.gz", NEWS[:3])
    assert len({canonical, repack, other}) == 3
    fake_news(monkeypatch, canonical, also_accepted={"20news-bydate.tar.gz": (sha(repack),)})
    assert fetch("20ng", dest=tmp_path / "d1", source=tmp_path / "b", progress=False).fetched
    with pytest.raises(FetchError, match=f"expected {sha(canonical)} or {sha(repack)}, got {sha(other)}"):
        fetch("20ng", dest=tmp_path / "d2", source=tmp_path / "c", progress=False)
    assert listing(tmp_path / "d2") == []


@pytest.mark.parametrize("bad, why", [
    (("../evil", b"x", "file"), "absolute path or '..'"),
    (("/tmp/evil", b"x", "file"), "absolute path or '..'"),
    (("20news-bydate-train/sci.space/link", b"/etc/passwd", "symlink"), "link or special file"),
    (("20news-bydate-train/sci.space/hard", b"20news-bydate-train/sci.space/1", "hardlink"),
     "link or special file"),
])
def test_20ng_members_that_could_leave_dest_are_never_unpacked(monkeypatch, tmp_path, bad, why):
    archive = news_tarball(tmp_path / "src" / "20news-bydate.tar.gz", [*NEWS, bad])
    fake_news(monkeypatch, archive)
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(TextCNNError, match=why) as info:
        fetch("20ng", dest=dest, source=tmp_path / "src", progress=False)
    assert "is in place (checksum verified) but was not unpacked" in str(info.value)
    assert listing(dest) == ["20news-bydate.tar.gz"]  # nothing of the archive was unpacked
    assert not (tmp_path / "deep" / "evil").exists() and not Path("/tmp/evil").exists()


def test_20ng_unpacking_is_capped(monkeypatch, tmp_path):
    archive = news_tarball(tmp_path / "src" / "20news-bydate.tar.gz",
                           [*NEWS, ("20news-bydate-train/sci.space/big", b"0" * 4096, "file")])
    fake_news(monkeypatch, archive, extracted_bytes=4096)
    with pytest.raises(TextCNNError, match="unpack to more than the 4096 bytes expected"):
        fetch("20ng", dest=tmp_path / "dest", source=tmp_path / "src", progress=False)
    assert listing(tmp_path / "dest") == ["20news-bydate.tar.gz"]
