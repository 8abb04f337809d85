"""MNIST, CIFAR-10 and CIFAR-100 (the biased-data learners' datasets) end to end, on tiny
fixtures in the upstream layout served from 127.0.0.1: download (resumed after a dropped
connection), checksums, conversion to train/test stores that share their classes, pixels
passed through unchanged, and a second run that does nothing."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import upstream_files as upstream

from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import prepare, store_ready
from taml.data.store import load_split


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def load(name, root):
    return {s: load_split(dataset_dir(name, root), s, fix_hint="-") for s in ("train", "test")}


def mtimes(name, root):
    return {p.name: p.stat().st_mtime_ns for p in dataset_dir(name, root).glob("*.npz")}


def serve_mnist(server, monkeypatch, per_class: dict[str, int], *modes, md5_ok=True):
    from torchvision.datasets import MNIST

    rng = np.random.default_rng(0)
    files, pixels = {}, {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        labels = rng.permutation(np.repeat(np.arange(10), per_class[split]))
        pixels[split] = (rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8), labels)
        files[f"{prefix}-images-idx3-ubyte.gz"] = upstream.idx_gz(images=pixels[split][0])
        files[f"{prefix}-labels-idx1-ubyte.gz"] = upstream.idx_gz(labels=labels)
    for filename, data in files.items():
        server.add(f"/mnist/{filename}", data, *modes)
    if md5_ok:
        monkeypatch.setattr(MNIST, "resources", [(f, md5(d)) for f, d in files.items()])
    monkeypatch.setenv("TAML_MIRROR_MNIST", server.url + "/mnist")
    return pixels


def test_mnist_keeps_28x28_one_channel_train_and_test(server, tmp_path, monkeypatch):
    pixels = serve_mnist(server, monkeypatch, {"train": 4, "test": 2}, "drop")
    prepare("mnist", tmp_path)
    splits = load("mnist", tmp_path)
    assert splits["train"].images.shape == (40, 28, 28, 1)
    assert (splits["train"].class_sizes == 4).all() and (splits["test"].class_sizes == 2).all()
    assert splits["train"].class_names == splits["test"].class_names
    assert splits["train"].class_names[3] == "3 - three"
    images, labels = pixels["test"]  # the digits' own pixels, in label order
    order = np.argsort(labels, kind="stable")
    np.testing.assert_array_equal(splits["test"].images[..., 0], images[order])
    resumed = [r for path, r in server.requests_to("/mnist/") if r]
    assert resumed  # the dropped downloads went on from where they stopped

    requests, before = len(server.log), mtimes("mnist", tmp_path)
    prepare("mnist", tmp_path)
    assert len(server.log) == requests and mtimes("mnist", tmp_path) == before
    prepare("mnist", tmp_path, force=True)  # rebuilt from the verified raw files
    assert len(server.log) == requests and mtimes("mnist", tmp_path) != before


def test_mnist_checksum_failure_writes_no_store(server, tmp_path, monkeypatch):
    serve_mnist(server, monkeypatch, {"train": 2, "test": 1}, md5_ok=False)
    with pytest.raises(DatasetError, match="md5 is .* the source publishes"):
        prepare("mnist", tmp_path)
    assert not store_ready("mnist", tmp_path)


def pickled(entry: dict) -> bytes:
    return pickle.dumps(entry, protocol=2)


def cifar_archive(library, per_class: dict[str, int], n_classes: int, label_key: str,
                  names_key: str, seed: int = 0):
    """The python-version CIFAR tarball: ``<base_folder>/<batch>`` pickles of ``data``
    uint8 ``[n, 3072]`` (channel planes) and labels, plus the meta pickle of class names.
    Returns the archive, the md5 of every member, and the test images ``[n, 32, 32, 3]``."""
    rng = np.random.default_rng(seed)
    members, test_images = {}, None
    batches = [(name, "train") for name, _ in library.train_list]
    batches += [(name, "test") for name, _ in library.test_list]
    for name, split in batches:
        share = per_class[split] if split == "test" else per_class[split] // len(
            library.train_list)
        labels = rng.permutation(np.repeat(np.arange(n_classes), share))
        images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
        if split == "test":
            test_images = (images, labels)
        flat = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
        members[name] = pickled({"data": flat, label_key: labels.tolist()})
    members[library.meta["filename"]] = pickled(
        {names_key: [f"class_{c:03d}" for c in range(n_classes)]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{library.base_folder}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), {k: md5(v) for k, v in members.items()}, test_images


@pytest.fixture(params=["cifar10", "cifar100"])
def cifar(request, server, monkeypatch):
    """Serves a fixture CIFAR-10 or -100 under torchvision's checksums for it."""
    from torchvision.datasets import CIFAR10, CIFAR100

    name = request.param
    library, n_classes, label_key, names_key, per_class = {
        "cifar10": (CIFAR10, 10, "labels", "label_names", {"train": 5, "test": 2}),
        "cifar100": (CIFAR100, 100, "fine_labels", "fine_label_names", {"train": 1, "test": 1}),
    }[name]
    archive, sums, test = cifar_archive(library, per_class, n_classes, label_key, names_key)
    server.add(f"/kriz/{library.filename}", archive)
    monkeypatch.setattr(library, "tgz_md5", md5(archive))
    monkeypatch.setattr(library, "train_list", [[f, sums[f]] for f, _ in library.train_list])
    monkeypatch.setattr(library, "test_list", [[f, sums[f]] for f, _ in library.test_list])
    monkeypatch.setattr(library, "meta", dict(library.meta, md5=sums[library.meta["filename"]]))
    monkeypatch.setenv(f"TAML_MIRROR_{name.upper()}", server.url + "/kriz")
    return name, library, n_classes, per_class, test


def test_full_cifar_is_train_and_test_of_the_same_classes(cifar, server, tmp_path):
    name, library, n_classes, per_class, (images, labels) = cifar
    prepare(name, tmp_path)
    splits = load(name, tmp_path)
    for split in ("train", "test"):
        data = splits[split]
        assert data.n_classes == n_classes and (data.class_sizes == per_class[split]).all()
        assert data.images.shape[1:] == (32, 32, 3)
    assert splits["train"].class_names == splits["test"].class_names
    order = np.argsort(labels, kind="stable")  # each image's own pixels, in label order
    np.testing.assert_array_equal(splits["test"].images, images[order])

    requests, before = len(server.log), mtimes(name, tmp_path)
    prepare(name, tmp_path)
    assert len(server.log) == requests and mtimes(name, tmp_path) == before


def test_full_cifar_checksum_failure_writes_no_store(cifar, tmp_path, monkeypatch):
    name, library = cifar[:2]
    monkeypatch.setattr(library, "tgz_md5", "0" * 32)
    with pytest.raises(DatasetError, match="md5"):
        prepare(name, tmp_path)
    assert not store_ready(name, tmp_path)
    assert not (tmp_path / name / "raw" / library.filename).exists()
