"""SVHN (Netzer et al. 2011): 10 digit classes, 32x32, used only as OOD data for CIFAR-FS.

Source: the Stanford files ``train_32x32.mat`` / ``test_32x32.mat`` (torchvision's URLs and
md5 checksums). Parsing: torchvision's ``SVHN`` (``download=False``), which maps label 10 to
digit 0.

Splits, as the original: ``valid`` is 600 images per class from SVHN's training set,
``test`` is all of SVHN's test set (26,032 images).

Deviation: the original fixed its 600 validation images per class by an index file
(``val_idx.npy``). Those indices follow no rule we could reproduce (numpy's legacy seeded
shuffles and permutations with the script's seed 222 and others do not give them), and we
do not copy the file; we draw 600 per class with ``numpy.random.default_rng(222)``
instead, a fixed selection of the same size. Numbers on ``svhn/valid`` are therefore not
image-for-image those of the original; ``svhn/test`` is identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taml.data.download import MAT_MAGIC, download
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    mirror,
    raw_dir,
    redownload,
    split_from_groups,
    write_store,
)

NAME = "svhn"
BASE_URL = "http://ufldl.stanford.edu/housenumbers"  # $TAML_MIRROR_SVHN replaces it
VALID_PER_CLASS = 600
VALID_SEED = 222  # the original script's seed


def _torchvision_svhn():
    from torchvision.datasets import SVHN

    return SVHN


def _load(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 32, 32, 3], int64 digit labels [N]) of one torchvision split."""
    try:
        dataset = _torchvision_svhn()(root=str(raw), split=split, download=False)
    except (RuntimeError, ValueError, OSError) as error:
        raise DatasetError(f"torchvision cannot read SVHN's {split} file in {raw} ({error}); "
                           f"{redownload(raw)}") from error
    return np.ascontiguousarray(dataset.data.transpose(0, 2, 3, 1)), dataset.labels


def _by_digit(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return {str(digit): images[labels == digit] for digit in range(10)}


def select_valid(groups: dict[str, np.ndarray], per_class: int, seed: int = VALID_SEED):
    """``per_class`` images of each class, drawn once with a fixed seed (see above)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, images in groups.items():
        if len(images) < per_class:
            raise DatasetError(f"SVHN's training set has {len(images)} images of digit "
                               f"{name}, fewer than {per_class}: the file is not SVHN")
        chosen[name] = images[np.sort(rng.permutation(len(images))[:per_class])]
    return chosen


def prepare(data_root: Path, force: bool = False,
            valid_per_class: int = VALID_PER_CLASS) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    table = _torchvision_svhn().split_list
    base = mirror(NAME, BASE_URL)
    for split in ("train", "test"):
        _, filename, md5 = table[split]
        download(f"{base}/{filename}", raw / filename, md5=md5, magic=MAT_MAGIC)
    train_images, train_labels = _load(raw, "train")
    test_images, test_labels = _load(raw, "test")
    splits = {
        "valid": split_from_groups(
            select_valid(_by_digit(train_images, train_labels), valid_per_class)),
        "test": split_from_groups(_by_digit(test_images, test_labels)),
    }
    return write_store(NAME, data_root, splits)
