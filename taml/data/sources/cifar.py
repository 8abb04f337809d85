"""CIFAR-FS (Bertinetto et al. 2019): CIFAR-100's 100 classes split 64/16/20, 600 images
of 32x32 each.

Source: learn2learn's Zenodo mirror of CIFAR-FS (``cifar100.zip``: per-class PNG folders
plus the Bertinetto split files). Parsing and splits: learn2learn's ``CIFARFS``, handed the
extracted zip (``download=False``). The original built the same split from CIFAR-100's
pickles; its class lists are recorded below, and a mirror whose split differs is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from taml.data.download import ZIP_MAGIC, download, extract
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    learn2learn_module,
    load_image_files,
    mirror,
    raw_dir,
    redownload,
    split_from_groups,
    write_store,
    zenodo_file,
)

NAME = "cifar"
ZENODO = "https://zenodo.org"  # $TAML_MIRROR_CIFAR replaces it
RECORD = "7978538"  # learn2learn's few-shot mirror (also miniImageNet's pickles)
ARCHIVE = "cifar100.zip"
IMAGE_SIZE = 32

# The original's split (data/cifar/get_data.py, after Bertinetto et al.).
ORIGINAL_CLASSES = {
    "train": (
        "train skyscraper turtle raccoon spider orange castle keyboard clock pear girl seal "
        "elephant apple aquarium_fish bus mushroom possum squirrel chair tank plate wolf road "
        "mouse boy shrew couch sunflower tiger caterpillar lion streetcar lawn_mower tulip "
        "forest dolphin cockroach bear porcupine bee hamster lobster bowl can bottle trout "
        "snake bridge pine_tree skunk lizard cup kangaroo oak_tree dinosaur rabbit orchid "
        "willow_tree ray palm_tree mountain house cloud"
    ).split(),
    "valid": (
        "otter motorcycle television lamp crocodile shark butterfly sea beaver beetle tractor "
        "flatfish maple_tree camel crab cattle"
    ).split(),
    "test": (
        "baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose "
        "snail sweet_pepper table telephone wardrobe whale woman worm"
    ).split(),
}
LIBRARY_MODES = {"train": "train", "valid": "validation", "test": "test"}


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    url, size, md5 = zenodo_file(mirror(NAME, ZENODO), RECORD, ARCHIVE)
    archive = download(url, raw / ARCHIVE, size=size, md5=md5, magic=ZIP_MAGIC,
                       reserve=3 * (size or 200_000_000))
    # learn2learn's CIFARFS reads <root>/cifarfs/cifar100/... and copies each split's class
    # folders to <root>/cifarfs/processed/ on first use. A half-made processed/ would be
    # taken as complete, so it is always rebuilt from the (marker-checked) extraction.
    extract(archive, raw / "cifarfs", force=force)
    shutil.rmtree(raw / "cifarfs" / "processed", ignore_errors=True)
    library = learn2learn_module("cifarfs")

    splits = {}
    for split, mode in LIBRARY_MODES.items():
        try:
            dataset = library.CIFARFS(root=str(raw), mode=mode, download=False)
        except OSError as error:
            raise DatasetError(f"{raw / 'cifarfs'} does not hold CIFAR-FS as expected "
                               f"({error}); {redownload(raw)}") from error
        if sorted(dataset.classes) != sorted(ORIGINAL_CLASSES[split]):
            raise DatasetError(
                f"the mirror's CIFAR-FS {mode} split differs from the original's "
                f"({len(dataset.classes)} classes, {len(ORIGINAL_CLASSES[split])} expected); "
                f"the mirror at {url} has changed"
            )
        paths = [path for path, _ in dataset.samples]
        labels = np.array([label for _, label in dataset.samples])
        images, _ = load_image_files(paths, IMAGE_SIZE, desc=f"{NAME} {split}")
        splits[split] = split_from_groups(
            {name: images[labels == c] for c, name in enumerate(dataset.classes)}
        )
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
