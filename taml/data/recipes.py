"""Biased training sets with a small balanced meta (target) set, for TML, L2RW and MW-Net.

:func:`build_biased_data` turns a classification dataset (:mod:`taml.data.classification`:
glyphs, digits, mnist, cifar10, cifar100, folder:PATH) into ``train`` (biased), ``meta`` (balanced,
disjoint from train, both from the dataset's train split) and ``test`` (from its test split),
deterministically from ``BiasSpec.seed``, with a manifest of what it did. The count formulas
and noise models are in :mod:`taml.data.bias_profiles`. Biases:

- ``binary``: two classes, relabelled minority = 0, majority = 1; counts by the formula
  ``binary_protocol`` picks (``tml``: 2-vs-3 gives 4975 threes / 24 twos; ``l2rw``: 4-vs-9 with
  5 meta images per class gives 20 fours / 4970 nines); test = min(500 (tml) / 250 (l2rw),
  what the test split has) images per class.
- ``long_tail``: ``meta_per_class`` images of each class go to the meta set first, then class
  c keeps n_c = int(n_max (1/IF)^(c/(C-1))) of the rest. n_max is the smallest class's
  remainder (MW-Net's (50000 - meta) / C on the balanced CIFARs; on unequal classes, MNIST or
  a folder, it guarantees every class its n_c). Test = the whole test split.
- ``noise``: the meta images are removed (clean), every remaining train label is resampled
  from the noise model; the manifest lists each corrupted index with its true and noisy label.
- ``none``: the meta images are removed, the rest is the training set.

``val_per_class`` > 0 first holds out that many images of each class (of the two classes,
binary) from the dataset's train split as a balanced, clean ``val`` set, drawn by a stream of
its own, before any of the above: the split on which settings are chosen (never the test set,
never the meta set that a method learns from). At 0 (the default) there is no val set and
every other set is what it was before the option existed.

Within a class, images are taken in the order of a seeded permutation, meta set first; the
training set is then shuffled, so ``manifest["noise"]["corrupted_indices"]`` index
``train.images`` as returned.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from taml.data.bias_profiles import (
    BINARY_TEST_PER_CLASS,
    BiasedDataError,
    binary_counts,
    corrupt_labels,
    long_tail_counts,
    transition_matrix,
)
from taml.data.classification import load_base_dataset
from taml.data.registry import DatasetError, is_folder_dataset

__all__ = ["BiasSpec", "ImageSet", "BiasedData", "BiasedDataError", "build_biased_data",
           "write_manifest", "load_base_dataset", "describe", "check_spec", "BIASES"]

BIASES = ("long_tail", "binary", "noise", "none")
MANIFEST_VERSION = 1
# independent generators: noise never moves the split, the val set draws on its own
_SPLIT_STREAM, _NOISE_STREAM, _VAL_STREAM = 1, 2, 3


@dataclass(frozen=True)
class BiasSpec:
    dataset: str            # 'glyphs' (default), 'digits', 'mnist', 'cifar10', 'cifar100',
                            # 'folder:PATH'
    bias: str               # 'long_tail' | 'binary' | 'noise' | 'none'
    imbalance_factor: float = 100.0       # long_tail: n_max / n_min
    ratio: float = 0.995                  # binary: share of the majority class in train
    binary_classes: tuple[int, int] = (2, 3)  # binary: (minority, majority) original labels
    n_train: int = 5000                   # binary: training images in all
    noise_type: str = "uniform"           # 'uniform' | 'flip' | 'flip2'
    noise_rate: float = 0.4
    meta_per_class: int = 10              # balanced target/meta set per class
    seed: int = 0
    image_size: int | None = None         # folder:PATH only
    binary_protocol: str = "tml"          # binary count formula: 'tml' | 'l2rw'
    val_per_class: int = 0                # balanced held-out val images per class (0: none)


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray        # uint8 [N, H, W, C] (C = 1 for MNIST and digits, 3 otherwise)
    labels: np.ndarray        # int64 [N], the labels training sees (noisy where noise)
    true_labels: np.ndarray   # int64 [N], the clean labels

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class BiasedData:
    train: ImageSet
    meta: ImageSet
    test: ImageSet
    class_names: tuple[str, ...]
    manifest: dict            # JSON-ready: recipe, class counts per split, corrupted indices
    val: ImageSet | None = None  # balanced, clean; only with val_per_class > 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])


def check_spec(spec: BiasSpec) -> None:
    """The checks that need no data, so a typo fails before any loading."""
    if spec.bias not in BIASES:
        raise BiasedDataError(f"--bias must be one of {', '.join(BIASES)}, got {spec.bias!r}")
    if spec.meta_per_class < 1:
        raise BiasedDataError(f"--meta_per_class {spec.meta_per_class} leaves the meta (target) "
                              "set without some class: give at least 1 image per class")
    if spec.seed < 0:
        raise BiasedDataError(f"--seed must be 0 or more, got {spec.seed}")
    if spec.val_per_class < 0:
        raise BiasedDataError(f"--val_per_class must be 0 (no val set) or more, got "
                              f"{spec.val_per_class}")
    if is_folder_dataset(spec.dataset) and not spec.dataset[len("folder:"):].strip():
        raise BiasedDataError("--dataset folder: needs a path, e.g. folder:/data/my_images "
                              "(one sub-folder of images per class)")
    if spec.image_size is not None and not is_folder_dataset(spec.dataset):
        raise BiasedDataError(f"--image_size applies to folder:PATH datasets only; "
                              f"{spec.dataset} has its own size: leave the flag out")
    if spec.bias == "binary":
        binary_counts(spec.n_train, spec.ratio, spec.meta_per_class, spec.binary_protocol)
        if len(spec.binary_classes) != 2 or spec.binary_classes[0] == spec.binary_classes[1]:
            raise BiasedDataError(f"--binary_classes needs two different labels MINORITY,MAJORITY"
                                  f", got {spec.binary_classes}")
    elif spec.bias == "long_tail":
        long_tail_counts(1 << 30, 2, spec.imbalance_factor)  # the factor alone
    elif spec.bias == "noise":
        transition_matrix(spec.noise_type, spec.noise_rate, 3, np.random.default_rng(0))


def _class_pools(labels: np.ndarray, n_classes: int, rng: np.random.Generator):
    """Per class, its row indices in a seeded random order: list of ``[n_c]`` arrays."""
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]


def _take_meta(pools, classes, names, meta_per_class: int):
    """The first ``meta_per_class`` of each class's pool; refuses a class that would keep
    no training image."""
    for c in classes:
        if len(pools[c]) <= meta_per_class:
            raise BiasedDataError(
                f"class '{names[c]}' has {len(pools[c])} training images: --meta_per_class "
                f"{meta_per_class} leaves none to train on; lower --meta_per_class")
    return np.concatenate([pools[c][:meta_per_class] for c in classes])


def _binary(spec, train_labels, test_labels, names, rng):
    """``(train_idx, meta_idx, test_idx, relabel, details)`` of a binary imbalance."""
    n_classes = len(names)
    minor, major = (int(c) for c in spec.binary_classes)
    for c in (minor, major):
        if not 0 <= c < n_classes:
            raise BiasedDataError(f"--binary_classes {minor},{major}: {spec.dataset} has labels "
                                  f"0..{n_classes - 1} ({', '.join(names[:10])}...)")
    m = spec.meta_per_class
    n_minor, n_major = binary_counts(spec.n_train, spec.ratio, m, spec.binary_protocol)
    pools = _class_pools(train_labels, n_classes, rng)
    meta = _take_meta(pools, (minor, major), names, m)
    available = (len(pools[minor]) - m, len(pools[major]) - m)
    for c, have, wanted in ((minor, available[0], n_minor), (major, available[1], n_major)):
        if have < wanted:
            largest = _largest_n_train(spec, available)
            advice = (f"lower --n_train to {largest} or less" if largest else
                      f"lower --n_train and --ratio: at --ratio {spec.ratio} every --n_train "
                      "that fits leaves the minority class empty")
            raise BiasedDataError(
                f"class '{names[c]}' has {have} training images besides the meta set; "
                f"--n_train {spec.n_train} at --ratio {spec.ratio} needs {wanted}: {advice}")
    train = np.concatenate([pools[minor][m:m + n_minor], pools[major][m:m + n_major]])
    test_pools = _class_pools(test_labels, n_classes, rng)
    per_class = min(BINARY_TEST_PER_CLASS[spec.binary_protocol],
                    len(test_pools[minor]), len(test_pools[major]))
    test = np.concatenate([test_pools[minor][:per_class], test_pools[major][:per_class]])
    relabel = np.full(n_classes, -1, dtype=np.int64)
    relabel[[minor, major]] = [0, 1]
    details = {"protocol": spec.binary_protocol, "original_labels": [minor, major],
               "minority": 0, "majority": 1, "test_per_class": per_class}
    return train, meta, test, relabel, details


def _largest_n_train(spec, available: tuple[int, int]) -> int | None:
    """The largest ``--n_train`` below ``spec.n_train`` whose counts fit ``available``
    ``(minority, majority)`` images at ``spec.ratio``; None when none does."""
    for n_train in range(spec.n_train - 1, 1, -1):
        try:
            counts = binary_counts(n_train, spec.ratio, spec.meta_per_class,
                                   spec.binary_protocol)
        except BiasedDataError:  # the minority (then every smaller n_train) is empty
            return None
        if counts[0] <= available[0] and counts[1] <= available[1]:
            return n_train
    return None


def _long_tail(spec, train_labels, names, rng):
    pools = _class_pools(train_labels, len(names), rng)
    m = spec.meta_per_class
    meta = _take_meta(pools, range(len(names)), names, m)
    n_max = min(len(pool) - m for pool in pools)
    counts = long_tail_counts(n_max, len(names), spec.imbalance_factor)
    train = np.concatenate([pool[m:m + n] for pool, n in zip(pools, counts, strict=True)])
    return train, meta, {"n_max": n_max, "counts": counts}


def build_biased_data(spec: BiasSpec, data_root: str | Path | None = None) -> BiasedData:
    """The biased train set, balanced meta set and test set of ``spec`` (module docstring).

    Raises :class:`BiasedDataError` (one line naming the flag or command) for bad input.
    """
    check_spec(spec)
    try:
        base_train, base_test, names = load_base_dataset(spec.dataset, data_root,
                                                         spec.image_size)
    except BiasedDataError:
        raise
    except DatasetError as error:
        raise BiasedDataError(str(error)) from error
    split_rng = np.random.default_rng([spec.seed, _SPLIT_STREAM])
    train_labels, test_labels = base_train.labels, base_test.labels
    val_idx = _hold_out_val(spec, train_labels, names)
    if len(val_idx):  # the bias recipes below never see the val rows
        train_labels = train_labels.copy()
        train_labels[val_idx] = -1
    relabel = np.arange(len(names), dtype=np.int64)
    test_idx = np.arange(len(test_labels))
    details: dict = {}
    if spec.bias == "binary":
        train_idx, meta_idx, test_idx, relabel, details = _binary(
            spec, train_labels, test_labels, names, split_rng)
        class_names = tuple(names[c] for c in spec.binary_classes)
    else:
        class_names = tuple(names)
        if spec.bias == "long_tail":
            train_idx, meta_idx, details = _long_tail(spec, train_labels, names, split_rng)
        else:  # noise, none: everything but the meta set
            pools = _class_pools(train_labels, len(names), split_rng)
            meta_idx = _take_meta(pools, range(len(names)), names, spec.meta_per_class)
            train_idx = np.concatenate([pool[spec.meta_per_class:] for pool in pools])
    train_idx = train_idx[split_rng.permutation(len(train_idx))]

    true_train = relabel[train_labels[train_idx]]
    observed = true_train
    if spec.bias == "noise":
        noise_rng = np.random.default_rng([spec.seed, _NOISE_STREAM])
        matrix = transition_matrix(spec.noise_type, spec.noise_rate, len(names), noise_rng)
        observed = corrupt_labels(true_train, matrix, noise_rng)
        corrupted = np.flatnonzero(observed != true_train)
        details = {"type": spec.noise_type, "rate": spec.noise_rate,
                   "transition": matrix.round(12).tolist(), "n_corrupted": len(corrupted),
                   "realised_rate": len(corrupted) / max(1, len(true_train)),
                   "corrupted_indices": corrupted.tolist(),
                   "true_labels": true_train[corrupted].tolist(),
                   "noisy_labels": observed[corrupted].tolist()}

    def image_set(base, indices, labels=None):
        true = relabel[base.labels[indices]]
        return ImageSet(base.images[indices], true if labels is None else labels, true)

    train = image_set(base_train, train_idx, observed)
    meta = image_set(base_train, meta_idx)
    test = image_set(base_test, test_idx)
    val = image_set(base_train, val_idx) if len(val_idx) else None
    n_classes = len(class_names)
    named = [("train", train), ("meta", meta), ("test", test)]
    named += [("val", val)] if val is not None else []
    counts = {name: np.bincount(s.true_labels, minlength=n_classes).tolist()
              for name, s in named}
    if spec.bias == "noise":
        counts["train_observed"] = np.bincount(observed, minlength=n_classes).tolist()
    recipe = asdict(spec)
    recipe["binary_classes"] = list(spec.binary_classes)
    manifest = {
        "version": MANIFEST_VERSION, "recipe": recipe, "dataset": spec.dataset,
        "bias": spec.bias, "class_names": list(class_names), "counts": counts,
        "sizes": {name: len(s) for name, s in named},
        spec.bias: details,
        # rows of the dataset's train / test split each set was taken from, in order (val:
        # rows of the train split)
        "source_indices": {"train": train_idx.tolist(), "meta": meta_idx.tolist(),
                           "test": test_idx.tolist(),
                           **({"val": val_idx.tolist()} if val is not None else {})},
    }
    return BiasedData(train, meta, test, class_names, manifest, val)


def _hold_out_val(spec: BiasSpec, train_labels: np.ndarray, names) -> np.ndarray:
    """The train-split rows of the balanced val set: the first ``val_per_class`` of each
    class (of the two, binary) in an order of the val stream; none at 0."""
    if spec.val_per_class == 0:
        return np.empty(0, dtype=np.int64)
    classes = (tuple(int(c) for c in spec.binary_classes) if spec.bias == "binary"
               else range(len(names)))
    rng = np.random.default_rng([spec.seed, _VAL_STREAM])
    pools = _class_pools(train_labels, len(names), rng)
    for c in classes:
        if not 0 <= c < len(names):
            break  # _binary names the bad label
        if len(pools[c]) <= spec.val_per_class + spec.meta_per_class:
            raise BiasedDataError(
                f"class '{names[c]}' has {len(pools[c])} training images: --val_per_class "
                f"{spec.val_per_class} and --meta_per_class {spec.meta_per_class} leave none "
                "to train on; lower --val_per_class")
    return np.concatenate([pools[c][:spec.val_per_class] for c in classes
                           if 0 <= c < len(names)]).astype(np.int64)


def write_manifest(data: BiasedData, path: Path | str) -> None:
    """``data.manifest`` as JSON at ``path``, written atomically (temporary file, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data.manifest, indent=1) + "\n")
    os.replace(temporary, path)


def describe(data: BiasedData) -> str:
    """One line for logs: ``glyphs long_tail: train 1234 (490..4), meta 100, test 1000``."""
    counts = data.manifest["counts"]["train"]
    return (f"{data.manifest['dataset']} {data.manifest['bias']}: train {len(data.train)} "
            f"(per class {max(counts)}..{min(counts)}), meta {len(data.meta)}, "
            f"test {len(data.test)}")
