"""The download machinery: a file reaches its final name only whole and verified."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections import namedtuple

import numpy as np
import pytest
from upstream_files import md5, tgz_bytes, zip_bytes

from taml.data import download as dl
from taml.data.registry import DatasetError

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(dl, "CHUNK_BYTES", 16_384)  # many chunks even for small files


def test_download_verifies_then_renames(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD)
    dest = dl.download(url, tmp_path / "f.bin", size=len(PAYLOAD), md5=md5(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "f.bin.partial").exists()


def test_a_verified_file_is_not_downloaded_again(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD)
    dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    assert len(server.log) == 1


def test_checksum_mismatch_deletes_the_file_and_names_both_sums(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD)
    with pytest.raises(DatasetError) as error:
        dl.download(url, tmp_path / "f.bin", md5="0" * 32)
    assert md5(PAYLOAD) in str(error.value) and "0" * 32 in str(error.value)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.partial").exists()


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD, "drop")
    dest = dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.log[0] == ("/f.bin", None)
    assert server.log[1] == ("/f.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_a_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD)
    (tmp_path / "f.bin.partial").write_bytes(PAYLOAD[:1000])
    dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.log == [("/f.bin", "bytes=1000-")]


def test_a_server_ignoring_range_means_starting_over(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD, "ignore_range")
    (tmp_path / "f.bin.partial").write_bytes(b"x" * 1000)  # would corrupt an append
    dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_repeated_drops_keep_the_partial_file_for_the_next_run(server, tmp_path):
    url = server.add("/f.bin", PAYLOAD, *["drop"] * (dl.RETRIES + 1))
    with pytest.raises(DatasetError, match="run the command again to resume"):
        dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    kept = (tmp_path / "f.bin.partial").stat().st_size
    assert 0 < kept < len(PAYLOAD) and not (tmp_path / "f.bin").exists()
    dl.download(url, tmp_path / "f.bin", md5=md5(PAYLOAD))
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.log[-1] == ("/f.bin", f"bytes={kept}-")


def test_an_html_error_page_is_never_taken_as_data(server, tmp_path):
    url = server.add("/f.zip", zip_bytes({"a": b"1"}), "html")
    with pytest.raises(DatasetError, match="web page"):
        dl.download(url, tmp_path / "f.zip", magic=dl.ZIP_MAGIC)
    assert not (tmp_path / "f.zip").exists() and not (tmp_path / "f.zip.partial").exists()


def test_wrong_magic_bytes_are_refused(server, tmp_path):
    url = server.add("/f.zip", b"not a zip at all" * 10)
    with pytest.raises(DatasetError, match="expected bytes"):
        dl.download(url, tmp_path / "f.zip", magic=dl.ZIP_MAGIC)


def test_http_errors_name_the_url(server, tmp_path):
    with pytest.raises(DatasetError, match=r"missing\.bin answered HTTP 404"):
        dl.download(server.url + "/missing.bin", tmp_path / "missing.bin")


def test_unreachable_network_says_what_to_check_and_where_to_put_the_file(
        closed_port, tmp_path):
    url = f"http://127.0.0.1:{closed_port}/data.tgz"
    with pytest.raises(DatasetError) as error:
        dl.download(url, tmp_path / "data.tgz")
    message = str(error.value)
    assert url in message and "internet connection" in message and "proxy" in message
    assert str(tmp_path / "data.tgz") in message


def test_a_full_disk_is_reported_before_downloading(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    url = server.add("/f.bin", PAYLOAD)
    with pytest.raises(DatasetError, match="not enough disk space.*--data_root"):
        dl.download(url, tmp_path / "f.bin")
    assert not (tmp_path / "f.bin.partial").exists()


def test_max_bytes_fetches_only_the_prefix(server, tmp_path):
    url = server.add("/big.npy", PAYLOAD)
    dest = dl.download(url, tmp_path / "head.npy", max_bytes=5000)
    assert dest.read_bytes() == PAYLOAD[:5000]
    assert server.log == [("/big.npy", "bytes=0-4999")]


def test_extraction_is_marked_complete_only_at_the_end(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tgz_bytes({"top/one.txt": b"1", "top/two.txt": b"2"}))
    out = dl.extract(archive, tmp_path / "out")
    assert (out / "top" / "two.txt").read_bytes() == b"2"
    (out / "top" / "two.txt").unlink()
    dl.extract(archive, out)  # marked complete: not redone
    assert not (out / "top" / "two.txt").exists()
    (out / ".a.tar.gz.extracted").unlink()  # as if killed before the end
    dl.extract(archive, out)
    assert (out / "top" / "two.txt").read_bytes() == b"2"


def test_zip_extraction_and_force(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"d/x.txt": b"x"}))
    out = dl.extract(archive, tmp_path / "out")
    (out / "d" / "x.txt").write_bytes(b"changed")
    dl.extract(archive, out, force=True)
    assert (out / "d" / "x.txt").read_bytes() == b"x"


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_escaping_the_folder_are_refused(tmp_path, kind):
    archive = tmp_path / f"evil.{kind}"
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("../escaped.txt", b"!")
        archive.write_bytes(buffer.getvalue())
    else:
        with tarfile.open(archive, "w") as t:
            info = tarfile.TarInfo("../escaped.txt")
            info.size = 1
            t.addfile(info, io.BytesIO(b"!"))
    with pytest.raises(DatasetError):
        dl.extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / f".evil.{kind}.extracted").exists()


def test_a_damaged_archive_says_to_delete_it(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tgz_bytes({"f": b"1" * 10_000})[:-40])
    with pytest.raises(DatasetError, match="delete it"):
        dl.extract(archive, tmp_path / "out")
