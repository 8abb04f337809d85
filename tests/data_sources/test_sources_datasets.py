"""Each of the nine datasets end to end, on tiny fixtures in the upstream's own format served
from 127.0.0.1: download through the real code path, verification, conversion to the store,
the original's splits and image sizes, and a second run that does nothing."""

from __future__ import annotations

import io
import itertools
import pickle
import zipfile
from urllib.parse import quote

import numpy as np
import pytest
import upstream_files as upstream
from PIL import Image

from taml.data.registry import DatasetError, dataset_dir, get_spec
from taml.data.sources import prepare, store_ready
from taml.data.store import load_split


def load_store(name, root):
    spec = get_spec(name)
    return {split: load_split(dataset_dir(name, root), split, fix_hint="-",
                              image_size=spec.image_size) for split in spec.splits}


def check_store(name, root, n_classes: dict[str, int], per_class: int | None = None,
                class_disjoint: bool = True):
    """The store has exactly the registry's splits, with ``n_classes`` classes (disjoint
    across splits, except where splits share classes as SVHN's) of uint8 RGB images at the
    registry's size; returns the loaded splits."""
    splits = load_store(name, root)
    size = get_spec(name).image_size
    assert {s: d.n_classes for s, d in splits.items()} == n_classes
    for data in splits.values():
        assert data.images.dtype == np.uint8 and data.images.shape[1:] == (size, size, 3)
        if per_class is not None:
            assert (data.class_sizes == per_class).all()
    for a, b in itertools.combinations(splits.values(), 2):
        assert class_disjoint != bool(set(a.class_names) & set(b.class_names))
    return splits


def store_mtimes(name, root):
    return {p.name: p.stat().st_mtime_ns for p in dataset_dir(name, root).glob("*.npz")}


def assert_second_run_does_nothing(name, root, server, **options):
    requests_before, mtimes = len(server.log), store_mtimes(name, root)
    prepare(name, root, **options)
    assert len(server.log) == requests_before
    assert store_mtimes(name, root) == mtimes


def serve_zenodo(server, monkeypatch, name, record, files, *modes):
    server.add(f"/zenodo/api/records/{record}", upstream.zenodo_listing(files))
    for filename, data in files.items():
        server.add(f"/zenodo/records/{record}/files/{filename}", data, *modes)
    monkeypatch.setenv(f"TAML_MIRROR_{name.upper()}", server.url + "/zenodo")


@pytest.mark.usefixtures("learn2learn_installed")
def test_cifar_fs_has_the_original_64_16_20_split(server, tmp_path, monkeypatch):
    from taml.data.sources import cifar

    archive = upstream.cifarfs_zip(cifar.ORIGINAL_CLASSES, per_class=3)
    serve_zenodo(server, monkeypatch, "cifar", cifar.RECORD, {cifar.ARCHIVE: archive}, "drop")
    prepare("cifar", tmp_path)
    splits = check_store("cifar", tmp_path, {"train": 64, "valid": 16, "test": 20}, 3)
    assert set(splits["test"].class_names) == set(cifar.ORIGINAL_CLASSES["test"])
    with zipfile.ZipFile(io.BytesIO(archive)) as z:  # pixels pass through unchanged
        png = np.asarray(Image.open(io.BytesIO(z.read("cifar100/data/baby/baby_s_000000.png"))))
    test = splits["test"]
    first_baby = test.class_offsets[test.class_names.index("baby")]
    np.testing.assert_array_equal(test.images[first_baby], png)

    assert_second_run_does_nothing("cifar", tmp_path, server)
    mtimes = store_mtimes("cifar", tmp_path)
    archive_requests = len(server.requests_to("/zenodo/records"))
    prepare("cifar", tmp_path, force=True)  # rebuilt from the verified zip: no re-download
    assert store_mtimes("cifar", tmp_path) != mtimes
    assert len(server.requests_to("/zenodo/records")) == archive_requests


@pytest.mark.usefixtures("learn2learn_installed")
def test_cifar_refuses_a_mirror_whose_split_differs(server, tmp_path, monkeypatch):
    from taml.data.sources import cifar

    swapped = {k: list(v) for k, v in cifar.ORIGINAL_CLASSES.items()}
    swapped["train"][0], swapped["test"][0] = swapped["test"][0], swapped["train"][0]
    archive = upstream.cifarfs_zip(swapped, per_class=1)
    serve_zenodo(server, monkeypatch, "cifar", cifar.RECORD, {cifar.ARCHIVE: archive})
    with pytest.raises(DatasetError, match="differs from the original"):
        prepare("cifar", tmp_path)
    assert not store_ready("cifar", tmp_path)


def serve_svhn(server, monkeypatch, files, md5s):
    from torchvision.datasets import SVHN

    for split, data in files.items():
        server.add(f"/svhn/{split}_32x32.mat", data)
        entry = SVHN.split_list[split]
        monkeypatch.setitem(SVHN.split_list, split, [entry[0], entry[1], md5s[split]])
    monkeypatch.setenv("TAML_MIRROR_SVHN", server.url + "/svhn")


def test_svhn_valid_is_a_fixed_per_class_draw_and_test_is_all(server, tmp_path, monkeypatch):
    import scipy.io

    files = {"train": upstream.svhn_mat(8, seed=1), "test": upstream.svhn_mat(4, seed=2)}
    serve_svhn(server, monkeypatch, files, {k: upstream.md5(v) for k, v in files.items()})
    prepare("svhn", tmp_path, valid_per_class=5)
    splits = check_store("svhn", tmp_path, {"valid": 10, "test": 10}, class_disjoint=False)
    assert (splits["valid"].class_sizes == 5).all() and (splits["test"].class_sizes == 4).all()
    # label 10 is the digit 0, and the test images are SVHN's own pixels
    mat = scipy.io.loadmat(io.BytesIO(files["test"]))
    zeros = mat["X"].transpose(3, 0, 1, 2)[mat["y"][:, 0] == 10]
    test = splits["test"]
    start = test.class_offsets[test.class_names.index("0")]
    np.testing.assert_array_equal(test.images[start:start + 4], zeros)

    valid = splits["valid"].images.copy()
    prepare("svhn", tmp_path, force=True, valid_per_class=5)
    np.testing.assert_array_equal(load_store("svhn", tmp_path)["valid"].images, valid)
    assert_second_run_does_nothing("svhn", tmp_path, server)


def test_svhn_checksum_failure_writes_nothing(server, tmp_path, monkeypatch):
    files = {"train": upstream.svhn_mat(8, seed=1), "test": upstream.svhn_mat(4, seed=2)}
    serve_svhn(server, monkeypatch, files, {"train": "f" * 32, "test": "f" * 32})
    with pytest.raises(DatasetError, match="md5"):
        prepare("svhn", tmp_path, valid_per_class=5)
    assert not (tmp_path / "svhn" / "valid.npz").exists()
    assert not (tmp_path / "svhn" / "raw" / "train_32x32.mat").exists()


def test_mini_imagenet_from_the_zenodo_pickles(server, tmp_path, monkeypatch):
    from taml.data.sources import mimgnet

    counts = {"train": 64, "validation": 16, "test": 20}
    names = {mode: [f"n{mode[:2]}{i:06d}" for i in range(n)] for mode, n in counts.items()}
    files = {f"mini-imagenet-cache-{mode}.pkl": upstream.mini_imagenet_pickle(names[mode], 2, i)
             for i, mode in enumerate(counts)}
    serve_zenodo(server, monkeypatch, "mimgnet", mimgnet.RECORD, files)
    prepare("mimgnet", tmp_path)
    splits = check_store("mimgnet", tmp_path, {"train": 64, "valid": 16, "test": 20}, 2)
    assert list(splits["valid"].class_names) == names["validation"]
    assert_second_run_does_nothing("mimgnet", tmp_path, server)


def test_mini_imagenet_pickles_cannot_run_code(server, tmp_path, monkeypatch):
    from taml.data.sources import mimgnet

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = {f"mini-imagenet-cache-{m}.pkl": pickle.dumps(Exploit(), protocol=4)
            for m in ("train", "validation", "test")}
    serve_zenodo(server, monkeypatch, "mimgnet", mimgnet.RECORD, evil)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        prepare("mimgnet", tmp_path)


def test_cub_has_the_original_50_50_split_and_drops_grey_images(server, tmp_path, monkeypatch):
    from taml.data.sources import cub

    classes = cub.CLASSES["valid"] + cub.CLASSES["test"] + ["001.Black_footed_Albatross"]
    archive = upstream.cub_tgz(classes, per_class=2, grey_in=cub.CLASSES["valid"][0])
    serve_zenodo(server, monkeypatch, "cub", cub.RECORD, {cub.ARCHIVE: archive}, "drop")
    prepare("cub", tmp_path)
    splits = check_store("cub", tmp_path, {"valid": 50, "test": 50}, 2)  # grey one left out
    archive_requests = server.requests_to(f"/zenodo/records/{cub.RECORD}/files")
    assert [r for _, r in archive_requests] == [None, f"bytes={len(archive) // 2}-"]  # resumed
    assert list(splits["valid"].class_names) == cub.CLASSES["valid"]
    assert "001.Black_footed_Albatross" not in splits["valid"].class_names + \
        splits["test"].class_names
    assert_second_run_does_nothing("cub", tmp_path, server)


def test_cub_unreachable_mirror_is_a_clear_error(closed_port, tmp_path, monkeypatch):
    monkeypatch.setenv("TAML_MIRROR_CUB", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(DatasetError, match="internet connection"):
        prepare("cub", tmp_path)


@pytest.mark.usefixtures("learn2learn_installed")
def test_aircraft_crops_to_the_bounding_box(server, tmp_path, monkeypatch):
    from taml.data.sources import aircraft, learn2learn_module

    library = learn2learn_module("fgvc_aircraft")
    variants = [v for mode in ("train", "valid", "test") for v in library.SPLITS[mode]]
    archive = upstream.aircraft_tgz(variants, per_class=2, box_colour=(255, 0, 0))
    url = server.add("/vgg/fgvc-aircraft-2013b.tar.gz", archive)
    monkeypatch.setenv("TAML_MIRROR_AIRCRAFT", server.url + "/vgg")
    prepare("aircraft", tmp_path)
    splits = check_store("aircraft", tmp_path, aircraft.EXPECTED_CLASSES, 2)
    mean = splits["train"].images.reshape(-1, 3).mean(axis=0)
    assert mean[0] > 200 and mean[2] < 60  # only the red box is left, not the blue frame
    assert [entry[0] for entry in server.log] == [url[len(server.url):]]
    assert_second_run_does_nothing("aircraft", tmp_path, server)


@pytest.mark.usefixtures("learn2learn_installed")
def test_quickdraw_downloads_only_the_first_drawings(server, tmp_path, monkeypatch):
    from taml.data.sources import learn2learn_module, quickdraw

    library = learn2learn_module("quickdraw")
    names = [n for mode in ("train", "validation", "test") for n in library.SPLITS[mode]]
    for i, name in enumerate(names):
        server.add(f"/qd/{quote(name)}.npy", upstream.quickdraw_npy(rows=10, seed=i))
    monkeypatch.setenv("TAML_MIRROR_QUICKDRAW", server.url + "/qd")
    prepare("quickdraw", tmp_path, per_class=3)
    splits = check_store("quickdraw", tmp_path, quickdraw.EXPECTED_CLASSES, 3)
    images = splits["train"].images
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    prefix = quickdraw.HEADER_BYTES + 3 * quickdraw.ROW_BYTES
    assert server.log[0][1] == f"bytes=0-{prefix - 1}"
    assert all(p.stat().st_size == prefix for p in (tmp_path / "quickdraw" / "raw").iterdir())
    assert_second_run_does_nothing("quickdraw", tmp_path, server, per_class=3)


@pytest.mark.usefixtures("learn2learn_installed")
def test_vgg_flowers_has_the_71_15_16_split(server, tmp_path, monkeypatch):
    from torchvision.datasets import Flowers102

    from taml.data.sources import vgg_flower

    images, labels = upstream.flowers_files(per_class=2)
    server.add("/flowers/102flowers.tgz", images)
    server.add("/flowers/imagelabels.mat", labels, "html")  # an error page first
    monkeypatch.setattr(Flowers102, "_file_dict", {
        "image": ("102flowers.tgz", upstream.md5(images)),
        "label": ("imagelabels.mat", upstream.md5(labels)),
    })
    monkeypatch.setenv("TAML_MIRROR_VGG_FLOWER", server.url + "/flowers")
    with pytest.raises(DatasetError, match="web page"):
        prepare("vgg_flower", tmp_path)
    prepare("vgg_flower", tmp_path)  # the next run gets the real file
    splits = check_store("vgg_flower", tmp_path, vgg_flower.EXPECTED_CLASSES, 2)
    assert "001" in splits["train"].class_names
    assert len(server.requests_to("/flowers/102flowers.tgz")) == 1  # kept across the runs
    assert_second_run_does_nothing("vgg_flower", tmp_path, server)


def test_gtsrb_is_one_test_split_of_43_classes(server, tmp_path, monkeypatch):
    from taml.data.sources import traffic

    archive = upstream.gtsrb_zip(n_classes=43, per_class=2)
    server.add("/gtsrb/GTSRB-Training_fixed.zip", archive)
    monkeypatch.setattr(traffic, "ARCHIVE_MD5", upstream.md5(archive))
    monkeypatch.setenv("TAML_MIRROR_TRAFFIC", server.url + "/gtsrb")
    prepare("traffic", tmp_path)
    check_store("traffic", tmp_path, {"test": 43}, 2)
    assert_second_run_does_nothing("traffic", tmp_path, server)


def serve_fashion(server, monkeypatch, per_class: int, md5_ok: bool = True):
    from torchvision.datasets import FashionMNIST

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), per_class)
    files = {
        "t10k-images-idx3-ubyte.gz": upstream.idx_gz(
            images=rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte.gz": upstream.idx_gz(labels=labels),
    }
    for filename, data in files.items():
        server.add(f"/fashion/{filename}", data)
    if md5_ok:
        monkeypatch.setattr(FashionMNIST, "resources",
                            [(f, upstream.md5(d)) for f, d in files.items()])
    monkeypatch.setenv("TAML_MIRROR_FASHION_MNIST", server.url + "/fashion")


def test_fashion_mnist_is_one_test_split_made_rgb(server, tmp_path, monkeypatch):
    serve_fashion(server, monkeypatch, per_class=3)
    prepare("fashion-mnist", tmp_path)
    test = check_store("fashion-mnist", tmp_path, {"test": 10}, 3)["test"]
    assert "Ankle boot" in test.class_names
    assert (test.images[..., 0] == test.images[..., 2]).all()
    assert_second_run_does_nothing("fashion-mnist", tmp_path, server)


def test_fashion_mnist_checksum_failure(server, tmp_path, monkeypatch):
    serve_fashion(server, monkeypatch, per_class=3, md5_ok=False)  # torchvision's real sums
    with pytest.raises(DatasetError, match="md5 is .* the source publishes"):
        prepare("fashion-mnist", tmp_path)
    assert not store_ready("fashion-mnist", tmp_path)
