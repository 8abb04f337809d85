"""The dataset store: one format, atomic writes, validation and corruption detection."""

from __future__ import annotations

import numpy as np
import pytest

from taml.data.loading import load_dataset_split
from taml.data.registry import REGISTRY, DatasetError, get_spec
from taml.data.store import load_split, make_split, save_split, split_path

from .conftest import colour_split

HINT = "python data/cifar/get_data.py"


def test_round_trip_preserves_images_labels_and_names(tmp_path):
    split = colour_split(5, 7, seed=3)
    save_split(tmp_path, "train", split)
    loaded = load_split(tmp_path, "train", fix_hint=HINT, image_size=32)
    np.testing.assert_array_equal(loaded.images, split.images)
    np.testing.assert_array_equal(loaded.labels, split.labels)
    assert loaded.class_names == split.class_names
    assert loaded.class_sizes.tolist() == [7] * 5
    assert loaded.class_offsets.tolist() == [0, 7, 14, 21, 28, 35]


def test_make_split_sorts_by_label():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(3), 4))
    images = np.zeros((12, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = labels  # remember each image's label in a pixel
    split = make_split(images, labels, ["a", "b", "c"])
    assert np.all(np.diff(split.labels) >= 0)
    np.testing.assert_array_equal(split.images[:, 0, 0, 0], split.labels)


def test_missing_store_names_the_get_data_command(tmp_path):
    with pytest.raises(DatasetError, match="python data/cifar/get_data.py"):
        load_split(tmp_path, "train", fix_hint=HINT)


def test_missing_dataset_via_loader_names_command_and_data_root(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset_split("cifar", "train", data_root=tmp_path)
    assert "data/cifar/get_data.py" in str(info.value)
    assert f"--data_root {tmp_path}" in str(info.value)


def test_truncated_file_is_detected(tmp_path):
    save_split(tmp_path, "train", colour_split(3, 4))
    path = split_path(tmp_path, "train")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="corrupt or incomplete.*--force"):
        load_split(tmp_path, "train", fix_hint=HINT)


def test_flipped_bytes_are_detected_by_checksum(tmp_path):
    save_split(tmp_path, "train", colour_split(3, 40))
    path = split_path(tmp_path, "train")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # inside the images member
    raw[middle : middle + 64] = bytes(255 - b for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="corrupt"):
        load_split(tmp_path, "train", fix_hint=HINT)


def test_wrong_image_size_is_rejected(tmp_path):
    save_split(tmp_path, "train", colour_split(3, 4, size=16))
    with pytest.raises(DatasetError, match="16x16, expected 32x32"):
        load_split(tmp_path, "train", fix_hint=HINT, image_size=32)


def test_invalid_arrays_are_rejected_before_writing(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.float32)
    with pytest.raises(DatasetError, match="uint8"):
        make_split(images, np.zeros(4, int), ["a"])
    with pytest.raises(DatasetError, match="labels outside"):
        make_split(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 2, 3]), ["a", "b"])
    with pytest.raises(DatasetError, match="class 'b' has no images"):
        make_split(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 2]), ["a", "b", "c"])
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    good = colour_split(3, 4)
    save_split(tmp_path, "train", good)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError):
        save_split(tmp_path, "train", colour_split(4, 4))
    loaded = load_split(tmp_path, "train", fix_hint=HINT)
    assert loaded.n_classes == 3
    assert [p.name for p in tmp_path.iterdir()] == ["train.npz"]  # no temporary left


def test_registry_covers_the_paper_and_the_embedded_datasets():
    expected = {"cifar", "svhn", "mimgnet", "cub", "aircraft", "quickdraw", "vgg_flower",
                "traffic", "fashion-mnist", "synthetic", "synthetic_ood"}
    classification = {"mnist", "cifar10", "cifar100", "glyphs", "digits"}  # biased learners'
    assert set(REGISTRY) == expected | classification
    assert {n for n, s in REGISTRY.items() if s.role == "classification"} == classification
    assert get_spec("mimgnet").image_size == 84 and get_spec("cub").image_size == 84
    assert get_spec("svhn").splits == ("valid", "test")
    assert get_spec("traffic").splits == ("test",)
    assert get_spec("folder:/x", image_size=84).image_size == 84


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'cifra'.*cifar"):
        get_spec("cifra")


def test_ood_only_dataset_has_no_train_split(data_root):
    with pytest.raises(DatasetError, match="no 'train' split.*--ood_dataset"):
        load_dataset_split("svhn", "train", data_root=data_root)
