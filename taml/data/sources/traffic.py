"""GTSRB traffic signs (Stallkamp et al. 2012), OOD for the multi-dataset experiment: one
``test`` split of 43 classes, as the original, made of GTSRB's training images (39,209)
resized to 32x32 without cropping.

Source: ``GTSRB-Training_fixed.zip`` from the benchmark's archive at sid.erda.dk, with the
md5 that torchvision publishes for it; the original used ``GTSRB_Final_Training_Images.zip``
from the same archive, the same images before a fix to their annotation files. Parsing:
torchvision's ``GTSRB`` (split ``train``), handed the extracted folder. Classes are named
by their GTSRB number (``00`` .. ``42``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taml.data.download import ZIP_MAGIC, download, extract
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    mirror,
    raw_dir,
    redownload,
    to_rgb,
    write_store,
)
from taml.data.store import make_split
from taml.run.progress import bar as progress_bar

NAME = "traffic"
BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370"
ARCHIVE = "GTSRB-Training_fixed.zip"
ARCHIVE_MD5 = "513f3c79a4c5141765e10e952eaa2478"  # torchvision.datasets.GTSRB's checksum
IMAGE_SIZE = 32


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    from torchvision.datasets import GTSRB

    raw = raw_dir(NAME, data_root)
    folder = raw / "gtsrb"  # torchvision's GTSRB reads <root>/gtsrb/GTSRB/Training/
    archive = download(f"{mirror(NAME, BASE_URL)}/{ARCHIVE}", folder / ARCHIVE,
                       md5=ARCHIVE_MD5, magic=ZIP_MAGIC, reserve=300_000_000)
    extract(archive, folder, force=force)
    try:
        dataset = GTSRB(root=str(raw), split="train", download=False)
    except (RuntimeError, OSError) as error:
        raise DatasetError(f"{folder} does not hold GTSRB as expected ({error}); "
                           f"{redownload(raw)}") from error
    images = np.empty((len(dataset), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty(len(dataset), dtype=np.int64)
    for i in progress_bar(range(len(dataset)), desc=f"{NAME} test", unit="img", leave=False):
        try:
            image, labels[i] = dataset[i]
        except OSError as error:
            raise DatasetError(f"cannot read GTSRB image {i} in {folder} ({error}); "
                               f"{redownload(raw)}") from error
        images[i] = to_rgb(image, IMAGE_SIZE)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    split = make_split(images, labels, [f"{c:02d}" for c in range(n_classes)])
    return write_store(NAME, data_root, {"test": split})
