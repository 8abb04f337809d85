"""Oxford 102 Flowers (Nilsback & Zisserman 2008) for the multi-dataset experiment: 102
classes split 71/15/16 (Meta-Dataset's split, which the original used too), resized to
32x32 without cropping, as the original.

Source: the Oxford VGG files ``102flowers.tgz`` and ``imagelabels.mat``, verified with the
md5 checksums torchvision publishes for them (``Flowers102``). Parsing and splits:
learn2learn's ``VGGFlower102``, handed the extracted files (``download=False``). Classes
are named by their number in the dataset (``001`` .. ``102``): the files carry no names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taml.data.download import GZIP_MAGIC, MAT_MAGIC, download, extract
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    learn2learn_module,
    load_image_files,
    mirror,
    raw_dir,
    redownload,
    write_store,
)
from taml.data.store import make_split

NAME = "vgg_flower"
BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102"  # $TAML_MIRROR_VGG_FLOWER
IMAGE_SIZE = 32
MODES = {"train": "train", "valid": "validation", "test": "test"}
EXPECTED_CLASSES = {"train": 71, "valid": 15, "test": 16}


def published_md5() -> dict[str, str]:
    """File name -> md5, as torchvision's ``Flowers102`` publishes them."""
    from torchvision.datasets import Flowers102

    return dict(Flowers102._file_dict.values())


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    library = learn2learn_module("vgg_flowers")
    folder = raw / library.DATA_DIR  # where VGGFlower102 looks for jpg/ and the labels
    md5 = published_md5()
    base = mirror(NAME, BASE_URL)
    archive_name, labels_name = Path(library.IMAGES_URL).name, Path(library.LABELS_URL).name
    archive = download(f"{base}/{archive_name}", folder / archive_name,
                       md5=md5.get(archive_name), magic=GZIP_MAGIC, reserve=400_000_000)
    download(f"{base}/{labels_name}", folder / labels_name, md5=md5.get(labels_name),
             magic=MAT_MAGIC)
    extract(archive, folder, force=force)
    splits = {}
    for split, mode in MODES.items():
        class_ids = library.SPLITS[mode]
        if len(class_ids) != EXPECTED_CLASSES[split]:
            raise DatasetError(f"learn2learn's VGGFlower102 {mode} split has "
                               f"{len(class_ids)} classes, {EXPECTED_CLASSES[split]} expected")
        try:
            dataset = library.VGGFlower102(root=str(raw), mode=mode, download=False)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{folder} does not hold the flowers as expected ({error}); "
                               f"{redownload(raw)}") from error
        paths = [path for path, _ in dataset.data]
        images, _ = load_image_files(paths, IMAGE_SIZE, desc=f"{NAME} {split}")
        labels = np.array([label for _, label in dataset.data])
        splits[split] = make_split(images, labels, [f"{i:03d}" for i in class_ids])
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
