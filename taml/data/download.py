"""Getting raw dataset files onto disk safely: download, verify, extract.

- :func:`download` streams a URL to ``<file>.partial`` with a progress bar, resumes a partial
  file with an HTTP Range request (and starts over when the server ignores Range), retries a
  dropped connection from where it stopped, checks free disk space first, verifies size,
  magic bytes and the md5/sha256 the source publishes, and only then renames the file to its
  final name. A file at the final name has therefore always been verified once.
- :func:`extract` unpacks a tar or zip archive with a progress bar and writes a completion
  marker last, so an interrupted extraction is redone rather than taken as complete.

Every failure is a :class:`DatasetError` that names the URL or file and what to do next.
The most common failure of dataset downloads is an HTML error page (quota, login, moved
mirror) saved under the data file's name; :func:`verify_file` rejects those explicitly.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import requests
import urllib3

from taml.data.registry import DatasetError
from taml.run import progress

# Magic bytes at the start of the formats we download.
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
MAT_MAGIC = b"MATLAB 5.0 MAT-file"
NPY_MAGIC = b"\x93NUMPY"

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30  # per connect and per read, not for the whole file
RETRIES = 3  # reconnections after a connection dropped mid-file
SPACE_MARGIN = 1.05  # free space asked for beyond the bytes themselves
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<?xml", b"<body")


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def check_free_space(directory: Path | str, needed_bytes: int, what: str) -> None:
    """Raises when ``directory``'s disk has less than ``needed_bytes`` (plus 5%) free."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes * SPACE_MARGIN:
        raise DatasetError(
            f"not enough disk space for {what}: it needs about {_gb(needed_bytes)} in "
            f"{directory}, the disk has {_gb(free)} free. Free some space, or pass "
            "--data_root on a larger disk."
        )


def looks_like_html(head: bytes) -> bool:
    return head.lstrip().lower().startswith(_HTML_STARTS)


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    size = path.stat().st_size
    with open(path, "rb") as handle, progress.bar(
        total=size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"{algorithm} {path.name}", enabled=size >= 64 * CHUNK_BYTES, leave=False,
    ) as bar:
        while block := handle.read(CHUNK_BYTES):
            hasher.update(block)
            bar.update(len(block))
    return hasher.hexdigest()


def verify_file(
    path: Path | str,
    *,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    magic: bytes | None = None,
    source: str | None = None,
) -> None:
    """Checks a downloaded file; on failure deletes it and raises :class:`DatasetError`.

    The order is cheapest first: size, HTML error page, magic bytes, then the checksums.
    """
    path = Path(path)
    where = f" (from {source})" if source else ""
    with open(path, "rb") as handle:
        head = handle.read(512)
    actual_size = path.stat().st_size
    problem = None
    if looks_like_html(head):
        problem = (
            "it is a web page, not the data file: the server sent an error, login or quota "
            "page instead"
        )
    elif size is not None and actual_size != size:
        problem = f"it has {actual_size} bytes, {size} expected (incomplete or changed file)"
    elif magic is not None and not head.startswith(magic):
        problem = f"it does not start with the expected bytes {magic!r} (got {head[:16]!r})"
    else:
        for algorithm, expected in (("md5", md5), ("sha256", sha256)):
            if expected is not None:
                actual = _digest(path, algorithm)
                if actual != expected.lower():
                    problem = f"its {algorithm} is {actual}, the source publishes {expected}"
                    break
    if problem is not None:
        path.unlink(missing_ok=True)
        raise DatasetError(
            f"{path.name}{where} failed verification: {problem}. The file was deleted; run "
            f"the command again to download it afresh. If this repeats, the mirror has "
            f"changed or is broken: get the file elsewhere and place it at {path}."
        )


class _Dropped(Exception):
    """The connection broke mid-file; what arrived is kept in the partial file."""


def _reason(error: Exception) -> str:
    """The OS's reason inside requests' message, which nests three layers of urllib3's."""
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
    return errno.group(0) if errno else f"{type(error).__name__}: {error}"


def _unreachable(url: str, dest: Path, error: Exception) -> DatasetError:
    return DatasetError(
        f"cannot reach {url} ({_reason(error)}). Check your internet "
        "connection and proxy settings (HTTP_PROXY/HTTPS_PROXY), or download the file by "
        f"hand and place it at {dest}, then run the command again."
    )


def _content_range(response: requests.Response) -> tuple[int, int | None] | None:
    """(first byte, total size or None) of a 206 response, None if unparsable."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    if not match:
        return None
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


def _fetch_once(
    url: str, partial: Path, dest: Path, max_bytes: int | None, reserve: int, desc: str
) -> None:
    """One request: appends to ``partial`` from its current size. Raises _Dropped."""
    have = partial.stat().st_size if partial.exists() else 0
    if max_bytes is not None and have >= max_bytes:
        return
    headers = {"Accept-Encoding": "identity"}  # the bytes as published, never re-encoded
    if have or max_bytes is not None:
        last = "" if max_bytes is None else str(max_bytes - 1)
        headers["Range"] = f"bytes={have}-{last}"
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    except (requests.ConnectionError, requests.Timeout) as error:
        if have:  # it answered before: a dropped connection, not an unreachable host
            raise _Dropped(str(error)) from error
        raise _unreachable(url, dest, error) from error
    except requests.RequestException as error:
        raise DatasetError(f"cannot download {url}: {error}") from error
    with response:
        if response.status_code == 416 and have:
            return  # nothing past what we have: the partial file is already whole
        if response.status_code not in (200, 206):
            raise DatasetError(
                f"{url} answered HTTP {response.status_code} {response.reason}. The mirror "
                f"may have moved or be down; try later, or download the file by hand and "
                f"place it at {dest}."
            )
        if response.status_code == 206:
            first, total = _content_range(response) or (None, None)
            if first != have and first != 0:
                partial.unlink(missing_ok=True)
                raise _Dropped(f"the server sent bytes from {first}, not {have}; starting over")
            have = first  # 0 when it sent the file from its start after all
        else:  # 200: the whole file, whatever Range asked for
            if have:
                progress.write(f"{url} ignored the resume request; downloading {desc} "
                               "from the start")
            have = 0
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        expected = total
        if max_bytes is not None and total is not None:
            expected = min(max_bytes, total)
        if expected is not None:
            check_free_space(dest.parent, expected - have + reserve, f"downloading {desc}")
        received = have
        with open(partial, "ab" if have else "wb") as handle, progress.bar(
            total=expected, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, leave=False,
        ) as bar:
            try:
                for block in response.raw.stream(CHUNK_BYTES, decode_content=False):
                    if max_bytes is not None and received + len(block) > max_bytes:
                        block = block[: max_bytes - received]
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
                    if max_bytes is not None and received >= max_bytes:
                        break
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
                raise _Dropped(f"{type(error).__name__}: {error}") from error
        if expected is not None and received < expected:
            raise _Dropped(f"the connection closed after {received} of {expected} bytes")


def download(
    url: str,
    dest: Path | str,
    *,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    magic: bytes | None = None,
    max_bytes: int | None = None,
    reserve: int = 0,
    retries: int = RETRIES,
) -> Path:
    """Downloads ``url`` to ``dest`` (resumable, verified) and returns ``dest``.

    A verified ``dest`` already there is kept (no network). ``max_bytes`` fetches only the
    file's first bytes (a prefix, e.g. the first rows of a large ``.npy``); ``reserve`` is
    disk space needed beyond the download itself (e.g. to extract it), checked up front.
    Pass the checksums the source publishes; without them at least the size (when known),
    HTML error pages and ``magic`` are checked.
    """
    dest = Path(dest)
    checks = dict(size=size, md5=md5, sha256=sha256, magic=magic, source=url)
    if dest.is_file():
        try:
            verify_file(dest, **checks)
            return dest
        except DatasetError as error:
            progress.write(f"{dest} is not valid, downloading it again ({error})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if partial.is_file():
        with open(partial, "rb") as handle:
            if looks_like_html(handle.read(512)):
                partial.unlink()  # an error page from an earlier attempt: never resume it
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, partial, dest, max_bytes, reserve, desc=dest.name)
            break
        except _Dropped as error:
            kept = partial.stat().st_size if partial.exists() else 0
            if attempt == retries:
                raise DatasetError(
                    f"the download of {url} broke off {retries + 1} times (last: {error}). "
                    f"The {kept} bytes received are kept in {partial}; run the command again "
                    "to resume."
                ) from error
            progress.write(f"connection dropped ({error}); resuming {dest.name} at byte {kept}")
    verify_file(partial, **checks)
    os.replace(partial, dest)
    return dest


def fetch_json(url: str) -> dict:
    """GETs a small JSON document (e.g. a mirror's checksum listing)."""
    try:
        response = requests.get(url, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as error:
        raise DatasetError(f"could not read {url}: {_reason(error)}") from error


def _marker(archive: Path, into: Path) -> Path:
    return into / f".{archive.name}.extracted"


def extract(archive: Path | str, into: Path | str, *, force: bool = False) -> Path:
    """Unpacks a tar (any compression) or zip ``archive`` into ``into``; returns ``into``.

    A marker file is written after the last member, so a killed extraction is redone on the
    next call; ``force`` redoes a completed one. Members that would land outside ``into``
    (absolute paths, ``..``, links out) are refused.
    """
    archive, into = Path(archive), Path(into)
    marker = _marker(archive, into)
    if marker.is_file() and not force:
        return into
    marker.unlink(missing_ok=True)
    into.mkdir(parents=True, exist_ok=True)
    check_free_space(into, archive.stat().st_size, f"extracting {archive.name}")
    bar = progress.bar(
        total=archive.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"extracting {archive.name}", leave=False,
    )
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, into, bar)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, into, bar)
        else:
            raise DatasetError(
                f"{archive} is neither a tar nor a zip archive; delete it and run the "
                "command again to download it afresh."
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DatasetError(
            f"extracting {archive} failed ({type(error).__name__}: {error}). If the archive "
            "is damaged, delete it and run the command again."
        ) from error
    finally:
        bar.close()
    marker.write_text(f"{archive.stat().st_size}\n")
    return into


def _extract_zip(archive: Path, into: Path, bar: progress.Bar) -> None:
    root = into.resolve()
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        scale = archive.stat().st_size / max(1, sum(m.compress_size for m in members))
        for member in members:
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise DatasetError(f"{archive} holds a member outside its folder: "
                                   f"{member.filename}; refusing to extract it")
            zipped.extract(member, into)
            bar.update(member.compress_size * scale)


def _extract_tar(archive: Path, into: Path, bar: progress.Bar) -> None:
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        done = 0
        for member in tar:
            # The "data" filter refuses absolute paths, "..", links out and device files.
            tar.extract(member, into, filter="data")
            position = raw.tell()
            bar.update(position - done)
            done = position


def gunzip(archive: Path | str, dest: Path | str) -> Path:
    """Decompresses a single-file ``.gz`` to ``dest`` (atomically) and returns ``dest``."""
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with gzip.open(archive, "rb") as source, open(tmp, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK_BYTES)
    except (OSError, EOFError) as error:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{archive} is not a valid gzip file ({error}); delete it and run "
                           "the command again") from error
    os.replace(tmp, dest)
    return dest
