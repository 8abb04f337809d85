"""The embedded datasets: the documented size, deterministic, cached, learnable yet not trivial."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from taml.data.loading import load_dataset_split
from taml.data.store import load_split, split_path
from taml.data.synthetic import (
    MANIFEST,
    generate_synthetic,
    glyph_class,
    texture_class,
)

SMALL = {"splits": {"train": 3, "valid": 2, "test": 2}, "images_per_class": 6,
         "progress": False}


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    """A data root where loading ``synthetic`` generated the real dataset (once per module)."""
    root = tmp_path_factory.mktemp("data")
    load_dataset_split("synthetic", "train", data_root=root)
    return root


def _load(directory, split):
    return load_split(directory, split, fix_hint="python -m taml.data.synthetic --force")


def test_first_load_generates_the_documented_dataset(full_root):
    seen = set()
    for split, n_classes in (("train", 64), ("valid", 16), ("test", 20)):
        data = load_dataset_split("synthetic", split, data_root=full_root)
        assert data.n_classes == n_classes
        assert data.images.dtype == np.uint8 and data.images.shape[1:] == (32, 32, 3)
        assert data.class_sizes.min() >= 65  # max_shot 50 + query 15
        assert all(name.startswith("glyph_") for name in data.class_names)
        assert seen.isdisjoint(data.class_names)  # meta-train, -val, -test classes differ
        seen.update(data.class_names)
    assert len(seen) >= 100
    assert (full_root / "synthetic" / "preview.png").is_file()


def test_ood_companion_has_only_valid_and_test(tmp_path):
    for split in ("valid", "test"):
        data = load_dataset_split("synthetic_ood", split, data_root=tmp_path)
        assert data.n_classes >= 10 and data.class_sizes.min() >= 65
        assert data.images.shape[1:] == (32, 32, 3)
        assert all(name.startswith("texture_") for name in data.class_names)
    assert not split_path(tmp_path / "synthetic_ood", "train").exists()


def test_preview_is_a_grid_of_classes_by_instances(full_root):
    with Image.open(full_root / "synthetic" / "preview.png") as preview:
        assert preview.mode == "RGB" and preview.size == (8 * 64, 10 * 64)


@pytest.mark.parametrize("make_class", [glyph_class, texture_class])
def test_same_seed_same_bytes_other_seed_other_images(make_class):
    first = make_class(0, 7, n_images=5)
    assert first.dtype == np.uint8 and first.shape == (5, 32, 32, 3)
    assert np.array_equal(first, make_class(0, 7, n_images=5))
    assert not np.array_equal(first, make_class(1, 7, n_images=5))
    assert not np.array_equal(first, make_class(0, 8, n_images=5))


def test_generated_stores_are_identical_for_a_seed(tmp_path):
    a = generate_synthetic("synthetic", tmp_path / "a", seed=3, **SMALL)
    b = generate_synthetic("synthetic", tmp_path / "b", seed=3, **SMALL)
    c = generate_synthetic("synthetic", tmp_path / "c", seed=4, **SMALL)
    for split in SMALL["splits"]:
        assert np.array_equal(_load(a, split).images, _load(b, split).images)
        assert not np.array_equal(_load(a, split).images, _load(c, split).images)


def test_a_class_is_its_own_generator_whatever_the_split_sizes(tmp_path):
    # class c draws from default_rng([seed, family, c]): growing a split keeps every class
    directory = generate_synthetic("synthetic", tmp_path, seed=2, **SMALL)
    test = _load(directory, "test")
    assert test.class_names == ("glyph_005", "glyph_006")
    assert np.array_equal(test.images[test.labels == 1], glyph_class(2, 6, n_images=6))


def _age(paths):
    for path in paths:
        os.utime(path, ns=(10**18, 10**18))


def test_second_call_is_cached_and_force_or_a_new_recipe_rebuilds(tmp_path):
    directory = generate_synthetic("synthetic", tmp_path, **SMALL)
    files = [split_path(directory, s) for s in SMALL["splits"]]
    _age(files)
    generate_synthetic("synthetic", tmp_path, **SMALL)
    assert all(f.stat().st_mtime_ns == 10**18 for f in files)

    generate_synthetic("synthetic", tmp_path, force=True, **SMALL)
    assert all(f.stat().st_mtime_ns != 10**18 for f in files)

    _age(files)
    generate_synthetic("synthetic", tmp_path, seed=1, **SMALL)  # another seed is not a hit
    assert all(f.stat().st_mtime_ns != 10**18 for f in files)
    assert json.loads((directory / MANIFEST).read_text())["seed"] == 1


def test_a_run_killed_before_its_manifest_is_regenerated(tmp_path):
    directory = generate_synthetic("synthetic", tmp_path, **SMALL)
    (directory / MANIFEST).unlink()
    _age([split_path(directory, "train")])
    generate_synthetic("synthetic", tmp_path, **SMALL)
    assert split_path(directory, "train").stat().st_mtime_ns != 10**18
    assert (directory / MANIFEST).is_file()


def test_unknown_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="synthetic or synthetic_ood"):
        generate_synthetic("glyphs", tmp_path)


def stroke_map(images: np.ndarray) -> np.ndarray:
    """Colour-free features: each pixel's grey distance from the image's median (background),
    scaled to [0, 1] per image. ``[N, H, W, 3]`` -> ``[N, H*W]``."""
    grey = images.astype(np.float32).mean(-1).reshape(len(images), -1)
    contrast = np.abs(grey - np.median(grey, axis=1, keepdims=True))
    return contrast / (contrast.max(axis=1, keepdims=True) + 1e-6)


def nearest_centroid_accuracy(features, offsets, rng, way=5, shot=5, query=15, episodes=200):
    """Mean accuracy of 5-way 5-shot episodes classified by the nearest class mean."""
    correct = 0
    for _ in range(episodes):
        classes = rng.choice(len(offsets) - 1, way, replace=False)
        rows = [rng.choice(np.arange(offsets[c], offsets[c + 1]), shot + query, replace=False)
                for c in classes]
        centroids = np.stack([features[r[:shot]].mean(0) for r in rows])
        queries = np.concatenate([features[r[shot:]] for r in rows])
        distance = ((queries[:, None] - centroids[None]) ** 2).sum(-1)
        correct += np.sum(distance.argmin(1) == np.repeat(np.arange(way), query))
    return correct / (episodes * way * query)


def test_glyph_classes_are_learnable_yet_not_trivial(full_root):
    test = _load(full_root / "synthetic", "test")
    offsets, rng = test.class_offsets, np.random.default_rng(0)
    shapes = nearest_centroid_accuracy(stroke_map(test.images), offsets, rng)
    pixels = test.images.reshape(len(test.images), -1, 3).astype(np.float32)
    background = nearest_centroid_accuracy(np.median(pixels, axis=1), offsets, rng)
    tint = nearest_centroid_accuracy(pixels.mean(1) / pixels.mean((1, 2))[:, None], offsets, rng)
    # a class's shape is shared by its images (chance is 0.2), but pose, clutter and noise
    # keep a template matcher far from perfect; colour alone says nothing about the class
    assert 0.4 < shapes < 0.85, shapes
    assert background < 0.3 and tint < 0.3, (background, tint)
