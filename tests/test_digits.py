"""``--dataset digits``: the UCI handwritten digits bundled with scikit-learn as a base
dataset of the biased family (taml/data/classification.py), every bias built on it, a tiny
training run end to end, and Colored digits for Learning Not to Learn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taml.biased.config import parse_biased_config
from taml.data import classification, colored
from taml.data.bias_profiles import long_tail_counts
from taml.data.classification import (
    digits_split_rows,
    load_base_dataset,
    uci_digits,
    upsample_digits,
)
from taml.data.recipes import BiasedDataError, BiasSpec, build_biased_data


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """A data root where the digits store is written once for this file's tests."""
    root = tmp_path_factory.mktemp("digits_data")
    classification.generate_digits(root)
    return root


@pytest.fixture
def one_thread():
    """torch on one thread for the training tests: with the two cores shared, two threads
    can make a step of these tiny batches ten times slower (restored afterwards)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def build(root, bias, **flags):
    return build_biased_data(BiasSpec("digits", bias, **flags), root)


def test_the_base_dataset_is_the_uci_digits_at_28_px_grey(digits_root):
    train, test, names = load_base_dataset("digits", digits_root)
    assert train.images.shape == (1497, 28, 28, 1) and test.images.shape == (300, 28, 28, 1)
    assert train.images.dtype == test.images.dtype == np.uint8
    assert names == tuple(f"{d} - {w}" for d, w in enumerate(
        "zero one two three four five six seven eight nine".split()))
    assert test.class_sizes.tolist() == [30] * 10  # balanced test split
    assert train.class_sizes.tolist() == [148, 152, 147, 153, 151, 152, 151, 149, 144, 150]
    ink, labels = uci_digits()
    assert ink.shape == (1797, 8, 8) and ink.max() == 16
    train_rows, test_rows = digits_split_rows(labels)
    # the stores hold exactly the upsampled images of those rows, with their labels
    assert np.array_equal(train.images, upsample_digits(ink[train_rows]))
    assert np.array_equal(test.images, upsample_digits(ink[test_rows]))
    assert np.array_equal(train.labels, labels[train_rows])
    assert test.images.max() > 200 and (test.images == 0).mean() > 0.3  # ink on black


def test_upsampling_rescales_0_16_to_0_255_and_keeps_the_background_black():
    ink = np.zeros((2, 8, 8))
    ink[0] = 16
    ink[1, 3:5, 3:5] = 16
    images = upsample_digits(ink)
    assert images.shape == (2, 28, 28, 1)
    assert (images[0] == 255).all()
    assert images[1].max() == 255 and images[1][:6].max() == 0 and images[1][22:].max() == 0


def test_train_and_test_rows_are_disjoint_and_the_test_set_is_the_same_for_every_seed(
        digits_root):
    _, labels = uci_digits()
    train_rows, test_rows = digits_split_rows(labels)
    assert not set(train_rows) & set(test_rows)
    assert sorted([*train_rows, *test_rows]) == list(range(1797))
    assert np.bincount(labels[test_rows]).tolist() == [30] * 10
    runs = [build(digits_root, "none", seed=seed) for seed in (0, 1, 2)]
    for run in runs[1:]:
        assert np.array_equal(run.test.images, runs[0].test.images)
        assert run.manifest["source_indices"]["test"] == runs[0].manifest["source_indices"][
            "test"]
    assert runs[1].manifest["source_indices"]["meta"] != runs[0].manifest["source_indices"][
        "meta"]  # the run's seed picks the meta set (and the order), not the test set


def test_a_partial_or_stale_cache_is_rebuilt(tmp_path):
    directory = classification.generate_digits(tmp_path)
    good = (directory / "test.npz").read_bytes()
    (directory / "test.npz").unlink()  # a killed writer
    classification.generate_digits(tmp_path)
    assert (directory / "test.npz").read_bytes() == good
    manifest = directory / classification.MANIFEST
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 0'))
    (directory / "train.npz").write_bytes(b"stale")
    train, _, _ = load_base_dataset("digits", tmp_path)
    assert len(train.labels) == 1497


def test_long_tail_counts_fall_by_the_formula(digits_root):
    data = build(digits_root, "long_tail", imbalance_factor=100, meta_per_class=10)
    counts = data.manifest["counts"]
    # n_max: the smallest class's remainder, 144 eights - 10 meta
    assert data.manifest["long_tail"]["n_max"] == 134
    assert counts["train"] == long_tail_counts(134, 10, 100) == [134, 80, 48, 28, 17, 10, 6,
                                                                  3, 2, 1]
    assert counts["meta"] == [10] * 10 and counts["test"] == [30] * 10
    assert data.train.images.shape[1:] == (28, 28, 1)


@pytest.mark.parametrize("noise_type, expected", [("uniform", 0.4 * 0.9), ("flip", 0.4)])
def test_noise_corrupts_about_the_asked_share_and_keeps_the_meta_set_clean(
        digits_root, noise_type, expected):
    data = build(digits_root, "noise", noise_type=noise_type, noise_rate=0.4)
    assert len(data.train) == 1497 - 100 and len(data.meta) == 100 and len(data.test) == 300
    realised = data.manifest["noise"]["realised_rate"]
    assert abs(realised - expected) < 0.04, realised
    assert np.mean(data.train.labels != data.train.true_labels) == realised
    assert np.array_equal(data.meta.labels, data.meta.true_labels)


def test_binary_with_a_small_n_train(digits_root):
    data = build(digits_root, "binary", n_train=140, ratio=0.95)  # tml: 133 threes, 6 twos
    assert data.manifest["counts"] == {"train": [6, 133], "meta": [10, 10], "test": [30, 30]}
    assert data.class_names == ("2 - two", "3 - three")
    data = build(digits_root, "binary", n_train=150, ratio=0.9, binary_protocol="l2rw",
                 meta_per_class=5)  # l2rw: floor(150 * 0.1) - 5, floor(150 * 0.9) - 5
    assert data.manifest["counts"]["train"] == [10, 130]


@pytest.mark.parametrize("flags, message", [
    (dict(bias="binary"), "needs 4975: lower --n_train and --ratio"),  # TML's 5000
    (dict(bias="binary", ratio=0.95), "needs 238: lower --n_train to 151 or less"),
    (dict(bias="binary", n_train=150), "leaves the minority class empty (tml formula): "
                                       "lower --ratio"),
    (dict(bias="long_tail", imbalance_factor=200), "use --imbalance_factor 134 or less"),
    (dict(bias="none", meta_per_class=150), "lower --meta_per_class"),
])
def test_a_request_the_digits_cannot_meet_is_one_line_naming_the_flag(digits_root, flags,
                                                                     message):
    bias = flags.pop("bias")
    with pytest.raises(BiasedDataError) as error:
        build(digits_root, bias, **flags)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_digits_default_to_the_small_lenet():
    cfg = parse_biased_config(["--dataset", "digits"])
    assert cfg.resolved_network == "lenet_tml" and cfg.resolved_augment == "none"


def run_main(capsys, *argv):
    from main import main

    code = main(["--device", "cpu", "--no_progress", *argv])
    return code, capsys.readouterr()


def test_a_tiny_training_run_end_to_end(one_thread, digits_root, tmp_path, capsys):
    savedir = tmp_path / "erm"
    code, out = run_main(capsys, "--mode", "train", "--dataset", "digits", "--method", "erm",
                         "--steps", "2", "--batch_size", "20", "--eval_every", "2",
                         "--data_root", str(digits_root), "--savedir", str(savedir))
    assert code == 0, out.err
    report = json.loads((savedir / "test.json").read_text())
    assert report["dataset"] == "digits" and report["n_test"] == 300
    config = json.loads((savedir / "config.json").read_text())
    assert config["network"] == "lenet_tml"


def test_a_meta_method_runs_on_noisy_digits(one_thread, digits_root, tmp_path, capsys):
    savedir = tmp_path / "mwnet"
    code, out = run_main(capsys, "--mode", "train", "--dataset", "digits", "--method", "mwnet",
                         "--bias", "noise", "--steps", "2", "--batch_size", "20",
                         "--meta_batch_size", "20", "--data_root", str(digits_root),
                         "--savedir", str(savedir))
    assert code == 0, out.err
    assert json.loads((savedir / "test.json").read_text())["n_test"] == 300


def test_main_refuses_a_too_large_binary_request_in_one_line(digits_root, tmp_path, capsys):
    code, out = run_main(capsys, "--mode", "train", "--dataset", "digits", "--bias", "binary",
                         "--steps", "1", "--data_root", str(digits_root),
                         "--savedir", str(tmp_path / "run"))
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, out.err
    assert lines[0].startswith("error: ") and "--n_train" in lines[0]
    assert not (tmp_path / "run").exists()


def test_colored_digits_follow_the_lnl_protocol(digits_root):
    data = colored.build_colored("digits", 0.02, seed=0, data_root=digits_root)
    assert data.train.images.shape == (1497, 28, 28, 3)
    assert data.test.images.shape == (300, 28, 28, 3)
    train_alpha = data.train_gray.images[..., 0]
    # the background stays black; the ink is painted (exact polarity, as MNIST)
    assert (data.train.images[train_alpha == 0] == 0).all()
    base_train, _, _ = load_base_dataset("digits", digits_root)
    assert np.array_equal(train_alpha, base_train.images[..., 0])
    # each image's colour, the least-squares fit of image = alpha x colour over its ink,
    # and the nearest of the ten mean colours to it
    hits = {}
    for split, images, gray in (("train", data.train.images, data.train_gray.images),
                                ("test", data.test.images, data.test_gray.images)):
        alpha = gray[..., :1].astype(np.float64)
        colours = (images * alpha).sum((1, 2)) / (alpha ** 2).sum((1, 2))
        nearest = ((colours[:, None] - colored.MEAN_COLOURS[None]) ** 2).sum(-1).argmin(1)
        labels = (data.train if split == "train" else data.test).labels
        hits[split] = np.mean(nearest == labels)
    assert hits["train"] > 0.65  # the colour gives the label away in training (78% here)
    assert abs(hits["test"] - 0.1) < 0.06  # and not at test


def test_lnl_trains_on_colored_digits_for_a_few_steps(one_thread, digits_root, tmp_path):
    from taml.biased import train_lnl
    from taml.biased.config import BiasedConfig

    cfg = BiasedConfig(mode="train", method="lnl", dataset="digits", color_var=0.02,
                       batch_size=10, lr=0.05, lr_schedule=(), pretrain_epochs=1, epochs=1,
                       log_every=1, eval_every=4, save_every=4, seed=0,
                       data_root=str(digits_root), savedir=str(tmp_path / "lnl"),
                       progress=False, device="cpu")
    report = train_lnl.train(cfg, train_per_class=2, probe_steps=3)  # 20 images: 2 + 2 steps
    assert 0 <= report["accuracy"] <= 1 and {"probe_accuracy", "gray_accuracy"} <= set(report)
    assert json.loads((tmp_path / "lnl" / "config.json").read_text())["dataset"] == "digits"


def test_without_scikit_learn_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from taml.data.registry import DatasetError

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(DatasetError, match=r"pip install scikit-learn==1\.9\.1"):
        load_base_dataset("digits", tmp_path)
