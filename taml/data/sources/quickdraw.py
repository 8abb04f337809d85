"""Quick, Draw! (Jongejan et al. 2016) for the multi-dataset experiment: 345 classes split
241/52/52 (Meta-Dataset's split, from learn2learn's ``Quickdraw``), 28x28 greyscale
drawings made 32x32 RGB.

Source: Google's public bucket of per-class bitmaps,
``https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/<class>.npy`` (the
HTTPS face of the ``gs://`` bucket that learn2learn fetches with ``gsutil``, a tool we do
not want to require). There is no published checksum; the numpy header is checked.

Cap: the full set is 50 million drawings (about 37 GB). The original shipped its own
preprocessed copy and does not say how many drawings per class it kept; we keep the first
``--per_class`` drawings of each class (default 600, as many as CIFAR-FS and miniImageNet
have per class). Only those bytes are downloaded: a ``.npy`` file is a small header then
one 784-byte row per drawing, so an HTTP Range request for the file's first bytes gets
exactly the first drawings (about 170 MB in all instead of 37 GB).
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import numpy as np

from taml.data.download import NPY_MAGIC, check_free_space, download
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    grey_to_rgb,
    learn2learn_module,
    mirror,
    raw_dir,
    write_store,
)
from taml.data.store import make_split
from taml.run.progress import bar as progress_bar

NAME = "quickdraw"
BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap"
PER_CLASS = 600
ROW_BYTES = 28 * 28
HEADER_BYTES = 4096  # a .npy header is at most this long in practice (usually 128 bytes)
IMAGE_SIZE = 32
MODES = {"train": "train", "valid": "validation", "test": "test"}
EXPECTED_CLASSES = {"train": 241, "valid": 52, "test": 52}


def add_arguments(parser) -> None:
    parser.add_argument("--per_class", type=int, default=PER_CLASS,
                        help="drawings kept (and downloaded) per class (default: %(default)s); "
                             "add --force to change an existing store")


def read_prefix(path: Path, per_class: int) -> np.ndarray:
    """The first ``per_class`` drawings (uint8 ``[n, 28, 28]``) of a ``.npy`` file's prefix."""
    data = path.read_bytes()
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(handle)
    except ValueError as error:
        path.unlink(missing_ok=True)
        raise DatasetError(f"{path} is not a numpy file ({error}); it was deleted, run "
                           "again") from error
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != ROW_BYTES or fortran_order:
        raise DatasetError(f"{path}: expected uint8 rows of {ROW_BYTES} pixels, the header "
                           f"says {dtype} {shape}")
    wanted = min(per_class, shape[0])
    available = (len(data) - handle.tell()) // ROW_BYTES
    if available < wanted:
        path.unlink(missing_ok=True)
        raise DatasetError(f"{path} holds {available} drawings, {wanted} expected; it was "
                           "deleted, run again")
    rows = np.frombuffer(data, np.uint8, count=wanted * ROW_BYTES, offset=handle.tell())
    return rows.reshape(wanted, 28, 28)


def prepare(data_root: Path, force: bool = False, per_class: int = PER_CLASS) -> Path:
    if per_class < 1:
        raise DatasetError(f"--per_class must be at least 1, got {per_class}")
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    library = learn2learn_module("quickdraw")
    prefix_bytes = HEADER_BYTES + per_class * ROW_BYTES
    n_classes = sum(len(library.SPLITS[mode]) for mode in MODES.values())
    check_free_space(raw, n_classes * prefix_bytes, f"the first {per_class} drawings of "
                     f"{n_classes} Quickdraw classes")
    base = mirror(NAME, BASE_URL)
    splits = {}
    for split, mode in MODES.items():
        class_names = library.SPLITS[mode]
        if len(class_names) != EXPECTED_CLASSES[split]:
            raise DatasetError(f"learn2learn's Quickdraw {mode} split has {len(class_names)} "
                               f"classes, {EXPECTED_CLASSES[split]} expected")
        groups, labels = [], []
        for label, class_name in enumerate(progress_bar(class_names, desc=f"{NAME} {split}",
                                                        unit="class", leave=False)):
            path = download(f"{base}/{quote(class_name)}.npy",
                            raw / f"{class_name}.first{per_class}.npy",
                            magic=NPY_MAGIC, max_bytes=prefix_bytes)
            groups.append(grey_to_rgb(read_prefix(path, per_class), IMAGE_SIZE, class_name))
            labels.append(np.full(len(groups[-1]), label))
        splits[split] = make_split(np.concatenate(groups), np.concatenate(labels),
                                   class_names)
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
