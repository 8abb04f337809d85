"""FGVC-Aircraft (Maji et al. 2013) for the multi-dataset experiment: 100 variants split
70/15/15 (Meta-Dataset's split, which the original used too), each image cropped to its
bounding box and resized to 32x32, as the original.

Source: the Oxford VGG archive ``fgvc-aircraft-2013b.tar.gz`` (2.6 GB; no published
checksum, so size, gzip magic and the absence of an HTML page are checked). Extraction,
indexing, splits and the bounding-box crop: learn2learn's ``FGVCAircraft``. We download the
archive ourselves (resumable, verified) to the path where that class looks for it; its own
download step then finds it, skips the network, extracts it, indexes the images and deletes
the archive.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from taml.data.download import GZIP_MAGIC, download
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    learn2learn_module,
    mirror,
    raw_dir,
    to_rgb,
    write_store,
)
from taml.data.store import make_split
from taml.run.progress import bar as progress_bar

NAME = "aircraft"
BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives"  # $TAML_MIRROR_AIRCRAFT
EXTRACTED_BYTES = 2_800_000_000
IMAGE_SIZE = 32
MODES = {"train": "train", "valid": "validation", "test": "test"}
EXPECTED_CLASSES = {"train": 70, "valid": 15, "test": 15}


def _ensure_extracted(library, raw: Path) -> None:
    data_path = raw / library.DATASET_DIR
    if (data_path / library.LABELS_PATH).is_file():
        return  # learn2learn writes its index last: its presence means a whole extraction
    archive_name = Path(library.DATASET_URL).name
    archive = download(f"{mirror(NAME, BASE_URL)}/{archive_name}", data_path / archive_name,
                       magic=GZIP_MAGIC, reserve=EXTRACTED_BYTES)
    if not archive.is_file():  # never let learn2learn fall back to its own download
        raise DatasetError(f"{archive} is missing after the download")
    print(f"{NAME}: learn2learn is extracting {archive_name} (minutes for the full archive)")
    try:
        library.FGVCAircraft(root=str(raw), mode="all", download=True)
    except (OSError, EOFError, tarfile.TarError) as error:
        raise DatasetError(f"extracting {archive} failed ({type(error).__name__}: {error}); "
                           f"delete {data_path} and run again") from error


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    library = learn2learn_module("fgvc_aircraft")
    _ensure_extracted(library, raw)
    splits = {}
    for split, mode in MODES.items():
        dataset = library.FGVCAircraft(root=str(raw), mode=mode, bounding_box_crop=True)
        class_names = library.SPLITS["valid" if mode == "validation" else mode]
        if len(class_names) != EXPECTED_CLASSES[split]:
            raise DatasetError(f"learn2learn's FGVCAircraft {mode} split has "
                               f"{len(class_names)} classes, {EXPECTED_CLASSES[split]} expected")
        images = np.empty((len(dataset), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        labels = np.empty(len(dataset), dtype=np.int64)
        for i in progress_bar(range(len(dataset)), desc=f"{NAME} {split}", unit="img", leave=False):
            try:
                image, labels[i] = dataset[i]
            except (OSError, KeyError) as error:
                raise DatasetError(f"cannot read aircraft image {dataset.data[i][0]} "
                                   f"({error}); delete {raw} and run again") from error
            images[i] = to_rgb(image, IMAGE_SIZE)
        splits[split] = make_split(images, labels, class_names)
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
