"""The biased-data builders give the papers' class counts, a balanced meta set disjoint from
training, the noise they promise, and one-line errors. The big datasets are stood in for by
label arrays with their exact per-class counts (one 1x1 "image" per row, its pixel bytes
encoding the row number), so that no download is needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import taml.data.recipes as biased
from taml.data.bias_profiles import long_tail_counts
from taml.data.recipes import BiasedDataError, BiasSpec, build_biased_data, write_manifest
from taml.data.store import SplitData

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_NAMES = tuple(f"{d} - {w}" for d, w in enumerate(
    "zero one two three four five six seven eight nine".split()))


def fake_split(per_class: list[int], names) -> SplitData:
    """Labels with these per-class counts; image i is [1, 1, 3] holding i in base 256."""
    labels = np.repeat(np.arange(len(per_class)), per_class)
    rows = np.arange(len(labels))
    images = np.stack([rows % 256, rows // 256 % 256, rows // 65536], -1).astype(np.uint8)
    return SplitData(images.reshape(-1, 1, 1, 3), labels, tuple(names))


def row_of(images: np.ndarray) -> np.ndarray:
    pixels = images.reshape(-1, 3).astype(np.int64)
    return pixels[:, 0] + 256 * pixels[:, 1] + 65536 * pixels[:, 2]


@pytest.fixture
def fake_datasets(monkeypatch):
    """mnist / cifar10 / cifar100 as label arrays shaped like the real ones."""
    shapes = {
        "mnist": (MNIST_TRAIN, MNIST_TEST, MNIST_NAMES),
        "cifar10": ([5000] * 10, [1000] * 10, tuple(f"c{i}" for i in range(10))),
        "cifar100": ([500] * 100, [100] * 100, tuple(f"f{i:02d}" for i in range(100))),
    }

    def load(name, data_root=None, image_size=None):
        train, test, names = shapes[name]
        return fake_split(train, names), fake_split(test, names), names

    monkeypatch.setattr(biased, "load_base_dataset", load)


def counts(data, split):
    return data.manifest["counts"][split]


@pytest.mark.usefixtures("fake_datasets")
def test_tml_mnist_2_vs_3_has_4975_threes_and_24_twos():
    data = build_biased_data(BiasSpec("mnist", "binary", ratio=0.995, binary_classes=(2, 3),
                                      n_train=5000, meta_per_class=10))
    assert counts(data, "train") == [24, 4975]  # minority relabelled 0, majority 1
    assert counts(data, "meta") == [10, 10] and counts(data, "test") == [500, 500]
    assert data.class_names == ("2 - two", "3 - three") and data.num_classes == 2
    source = data.manifest["source_indices"]
    train_rows = np.asarray(source["train"])
    assert set(np.repeat(np.arange(10), MNIST_TRAIN)[train_rows]) == {2, 3}


@pytest.mark.usefixtures("fake_datasets")
def test_l2rw_mnist_4_vs_9_has_20_fours_and_4970_nines():
    data = build_biased_data(BiasSpec("mnist", "binary", ratio=0.995, binary_classes=(4, 9),
                                      meta_per_class=5, binary_protocol="l2rw"))
    assert counts(data, "train") == [20, 4970]
    assert counts(data, "meta") == [5, 5] and counts(data, "test") == [250, 250]


@pytest.mark.parametrize("factor, cifar10, tail10, cifar100, tail100", [
    (200, 11177, 24, 9304, 2), (100, 12380, 49, 10626, 4), (50, 13967, 99, 12354, 9),
    (20, 16989, 249, 15594, 24), (10, 20391, 499, 19183, 49), (1, 49900, 4990, 49000, 490)])
def test_mwnet_long_tail_profiles_match_the_paper(factor, cifar10, tail10, cifar100, tail100):
    ten, hundred = long_tail_counts(4990, 10, factor), long_tail_counts(490, 100, factor)
    assert (sum(ten), ten[-1], sum(hundred), hundred[-1]) == (cifar10, tail10, cifar100, tail100)


@pytest.mark.usefixtures("fake_datasets")
@pytest.mark.parametrize("name, total, head, tail", [("cifar10", 12380, 4990, 49),
                                                     ("cifar100", 10626, 490, 4)])
def test_long_tail_builder_removes_the_meta_set_first(name, total, head, tail):
    data = build_biased_data(BiasSpec(name, "long_tail", imbalance_factor=100))
    train = counts(data, "train")
    assert (sum(train), train[0], train[-1]) == (total, head, tail)
    assert train == sorted(train, reverse=True)
    assert set(counts(data, "meta")) == {10} and len(data.test) == 10000


@pytest.mark.usefixtures("fake_datasets")
@pytest.mark.parametrize("bias", ["long_tail", "binary", "noise", "none"])
def test_meta_set_is_balanced_and_disjoint_from_train(bias):
    data = build_biased_data(BiasSpec("cifar10", bias, n_train=2000, meta_per_class=7))
    meta_counts = counts(data, "meta")
    assert len(set(meta_counts)) == 1 and meta_counts[0] == 7
    train_rows, meta_rows = row_of(data.train.images), row_of(data.meta.images)
    assert not set(train_rows) & set(meta_rows)
    assert len(set(train_rows)) == len(train_rows)  # no image twice
    # the images are the rows the manifest names, and carry their rows' labels
    assert train_rows.tolist() == data.manifest["source_indices"]["train"]
    assert np.bincount(data.meta.true_labels).tolist() == meta_counts


@pytest.mark.usefixtures("fake_datasets")
def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    spec = BiasSpec("cifar10", "noise", noise_rate=0.3, seed=3)
    first, again = build_biased_data(spec), build_biased_data(spec)
    assert first.manifest == again.manifest
    np.testing.assert_array_equal(first.train.images, again.train.images)
    np.testing.assert_array_equal(first.train.labels, again.train.labels)
    other = build_biased_data(BiasSpec("cifar10", "noise", noise_rate=0.3, seed=4))
    assert other.manifest["source_indices"]["meta"] != first.manifest["source_indices"]["meta"]
    assert other.manifest["noise"]["corrupted_indices"] != first.manifest["noise"][
        "corrupted_indices"]


@pytest.mark.usefixtures("fake_datasets")
def test_noise_leaves_the_split_as_it_is_and_the_manifest_lists_every_corruption():
    clean = build_biased_data(BiasSpec("cifar10", "none", seed=1))
    noisy = build_biased_data(BiasSpec("cifar10", "noise", noise_type="flip", seed=1))
    assert noisy.manifest["source_indices"] == clean.manifest["source_indices"]
    np.testing.assert_array_equal(noisy.train.true_labels, clean.train.labels)
    np.testing.assert_array_equal(noisy.meta.labels, noisy.meta.true_labels)  # meta is clean
    report = noisy.manifest["noise"]
    corrupted = np.flatnonzero(noisy.train.labels != noisy.train.true_labels)
    assert report["corrupted_indices"] == corrupted.tolist()
    assert report["true_labels"] == noisy.train.true_labels[corrupted].tolist()
    assert report["noisy_labels"] == noisy.train.labels[corrupted].tolist()


@pytest.mark.usefixtures("fake_datasets")
def test_uniform_noise_keeps_a_label_with_probability_one_minus_p_plus_p_over_c():
    p = 0.4
    data = build_biased_data(BiasSpec("cifar10", "noise", noise_type="uniform", noise_rate=p))
    kept = np.mean(data.train.labels == data.train.true_labels)
    expected = 1 - p + p / 10
    sigma = np.sqrt(expected * (1 - expected) / len(data.train))
    assert abs(kept - expected) < 4 * sigma
    # the wrong labels spread over all nine other classes
    wrong = data.train.labels != data.train.true_labels
    assert len(set(data.train.labels[wrong & (data.train.true_labels == 0)])) == 9


@pytest.mark.usefixtures("fake_datasets")
@pytest.mark.parametrize("kind, targets", [("flip", 1), ("flip2", 2)])
def test_flip_noise_puts_its_mass_on_exactly_its_other_classes(kind, targets):
    p = 0.4
    data = build_biased_data(BiasSpec("cifar10", "noise", noise_type=kind, noise_rate=p))
    matrix = np.asarray(data.manifest["noise"]["transition"])
    for c in range(10):
        row = data.train.labels[data.train.true_labels == c]
        others = set(row.tolist()) - {c}
        assert len(others) == targets
        assert set(np.flatnonzero(matrix[c] > 0).tolist()) == others | {c}
        share = np.mean(row != c)
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(row))
        for other in others:  # p / targets on each
            assert abs(np.mean(row == other) - p / targets) < 4 * np.sqrt(0.25 / len(row))


ONE_LINE_ERRORS = [
    (dict(bias="binary", ratio=1.0), "--ratio must be in \\(0, 1\\)"),
    (dict(bias="binary", ratio=0.0), "--ratio must be in \\(0, 1\\)"),
    (dict(bias="binary", ratio=0.9999, n_train=5000), "leaves the minority class empty"),
    (dict(bias="binary", ratio=0.001, meta_per_class=10, binary_protocol="l2rw"),
     "leaves the majority class empty"),
    (dict(bias="binary", binary_classes=(2, 12)), "--binary_classes 2,12"),
    (dict(bias="binary", binary_classes=(3, 3)), "two different labels"),
    (dict(bias="binary", n_train=20000), "lower --n_train"),
    (dict(bias="binary", binary_protocol="ren"), "--binary_protocol"),
    (dict(bias="long_tail", imbalance_factor=0.5), "--imbalance_factor must be .* >= 1"),
    (dict(bias="long_tail", imbalance_factor=6000), "leaves the last class empty"),
    (dict(bias="noise", noise_rate=1.0), "--noise_rate must be in \\[0, 1\\)"),
    (dict(bias="noise", noise_rate=-0.1), "--noise_rate must be in \\[0, 1\\)"),
    (dict(bias="noise", noise_type="pair"), "--noise_type"),
    (dict(bias="none", meta_per_class=0), "meta \\(target\\) set without some class"),
    (dict(bias="long_tail", meta_per_class=5421), "leaves none to train on"),
    (dict(bias="skewed"), "--bias must be one of"),
    (dict(bias="none", image_size=32), "--image_size applies to folder:PATH"),
    (dict(dataset="folder:", bias="long_tail"), "folder: needs a path"),
]


@pytest.mark.usefixtures("fake_datasets")
@pytest.mark.parametrize("fields, message", ONE_LINE_ERRORS)
def test_bad_input_is_one_line_naming_the_fix(fields, message):
    with pytest.raises(BiasedDataError, match=message) as error:
        build_biased_data(BiasSpec(**{"dataset": "mnist", **fields}))
    assert "\n" not in str(error.value)


def test_a_missing_dataset_names_its_get_data_command(tmp_path):
    with pytest.raises(BiasedDataError, match="python data/cifar100/get_data.py") as error:
        build_biased_data(BiasSpec("cifar100", "long_tail"), tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(BiasedDataError, match="not a classification dataset"):
        build_biased_data(BiasSpec("cifar", "long_tail"), tmp_path)  # CIFAR-FS, few-shot


def test_a_folder_of_classes_is_made_long_tailed(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "images" / f"class_{c}").mkdir(parents=True)
        for i in range(12):
            pixels = np.full((10, 10, 3), 40 * c, np.uint8) + rng.integers(0, 30, (10, 10, 3),
                                                                           dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / f"class_{c}" / f"{i}.png")
    spec = BiasSpec(f"folder:{tmp_path / 'images'}", "long_tail", imbalance_factor=4,
                    meta_per_class=1, image_size=8)
    data = build_biased_data(spec, tmp_path / "root")
    # 12 images: 2 held out for test (20%), 1 for the meta set, n_max 9 -> 9, 4, 2
    assert counts(data, "train") == [9, 4, 2] and counts(data, "meta") == [1, 1, 1]
    assert counts(data, "test") == [2, 2, 2]
    assert data.train.images.shape[1:] == (8, 8, 3) and data.image_size == 8
    assert data.class_names == ("class_0", "class_1", "class_2")
    again = build_biased_data(spec, tmp_path / "root")  # from the cache, the same draw
    np.testing.assert_array_equal(again.train.images, data.train.images)


def test_glyphs_are_generated_once_balanced_and_written_with_a_manifest(tmp_path):
    data = build_biased_data(BiasSpec("glyphs", "long_tail", imbalance_factor=10), tmp_path)
    assert data.num_classes == 10 and data.in_channels == 3 and data.image_size == 32
    assert counts(data, "test") == [100] * 10
    assert counts(data, "train")[0] == 490 and counts(data, "train")[-1] == 49
    store = tmp_path / "glyphs" / "train.npz"
    mtime = store.stat().st_mtime_ns
    build_biased_data(BiasSpec("glyphs", "none"), tmp_path)
    assert store.stat().st_mtime_ns == mtime  # the cache is reused
    write_manifest(data, tmp_path / "run" / "data_manifest.json")
    written = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
    assert written["counts"]["train"] == counts(data, "train")
    assert written["recipe"]["imbalance_factor"] == 10


@pytest.mark.parametrize("flag", ["--id_dataset", "--ood_dataset"])
@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "glyphs"])
def test_meta_learning_refuses_the_classification_datasets(flag, name, capsys):
    from taml.episodic.config import parse_config

    with pytest.raises(SystemExit):
        parse_config([flag, name])
    assert f"'{name}' is a classification dataset" in capsys.readouterr().err


@pytest.mark.usefixtures("fake_datasets")
@pytest.mark.parametrize("bias", ["long_tail", "noise", "none", "binary"])
def test_the_val_split_is_balanced_clean_and_disjoint_from_train_meta_and_test(bias):
    spec = BiasSpec("cifar10", bias, binary_classes=(2, 3), n_train=2000, val_per_class=20)
    data = build_biased_data(spec)
    n_classes = 2 if bias == "binary" else 10
    assert counts(data, "val") == [20] * n_classes
    assert (data.val.labels == data.val.true_labels).all()  # clean even under noise
    rows = {name: set(row_of(getattr(data, name).images)) for name in ("train", "meta", "val")}
    assert not rows["val"] & rows["train"] and not rows["val"] & rows["meta"]
    assert sorted(rows["val"]) == sorted(data.manifest["source_indices"]["val"])


@pytest.mark.usefixtures("fake_datasets")
def test_no_val_split_leaves_every_other_set_as_it_was():
    spec = BiasSpec("cifar10", "long_tail")
    before = build_biased_data(spec)
    assert before.val is None and "val" not in before.manifest["sizes"]
    with_val = build_biased_data(BiasSpec("cifar10", "long_tail", val_per_class=20))
    assert counts(with_val, "meta") == counts(before, "meta")
    # the val rows come out of each class's pool before the tail is cut
    assert sum(counts(with_val, "train")) < sum(counts(before, "train"))


@pytest.mark.usefixtures("fake_datasets")
def test_a_val_split_that_leaves_no_training_image_names_the_flag():
    with pytest.raises(BiasedDataError, match="--val_per_class"):
        build_biased_data(BiasSpec("cifar100", "long_tail", val_per_class=495))
    with pytest.raises(BiasedDataError, match="--val_per_class"):
        build_biased_data(BiasSpec("cifar10", "none", val_per_class=-1))
