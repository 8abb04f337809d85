"""miniImageNet (Vinyals et al. 2016) with Ravi & Larochelle's split: 64/16/20 classes of
600 images, 84x84.

Source: the ``mini-imagenet-cache-{train,validation,test}.pkl`` files on learn2learn's
Zenodo mirror. learn2learn 0.2.0 defines that mirror but downloads from Dropbox, then
Google Drive (both unreliable); we download the Zenodo files, with the md5 checksums the
Zenodo API publishes. We read the pickles ourselves rather than through
``learn2learn.vision.datasets.MiniImagenet``, which copies every image to float32 (3.3 GB
for the training split); the pickle holds ``image_data`` (uint8 ``[N, 84, 84, 3]``) and
``class_dict`` (class -> image indices), the fields that class reads.

Unpickling a downloaded file can run code, so only numpy arrays and plain containers are
allowed to load (:class:`_ArraysOnly`).
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np

from taml.data.download import download
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    mirror,
    raw_dir,
    write_store,
    zenodo_file,
)
from taml.data.store import SplitData, make_split
from taml.run.progress import bar as progress_bar

NAME = "mimgnet"
ZENODO = "https://zenodo.org"  # $TAML_MIRROR_MIMGNET replaces it
RECORD = "7978538"
FILES = {"train": "train", "valid": "validation", "test": "test"}  # our split -> file mode
IMAGE_SIZE = 84
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 or later
EXPECTED_CLASSES = {"train": 64, "valid": 16, "test": 20}


class _ArraysOnly(pickle.Unpickler):
    """Loads numpy arrays, dtypes and builtin containers; refuses any other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def read_cache(path: Path) -> SplitData:
    """One split from a ``mini-imagenet-cache-*.pkl`` (one copy of the images, not more:
    the training split alone is 0.8 GB)."""
    try:
        with open(path, "rb") as handle:
            # latin1: the only encoding that reads numpy arrays pickled by Python 2
            data = _ArraysOnly(handle, encoding="latin1").load()
        images, class_dict = np.asarray(data["image_data"]), data["class_dict"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        path.unlink(missing_ok=True)
        raise DatasetError(f"{path} is not a miniImageNet cache ({error}); it was deleted, "
                           "run the command again to download it afresh") from error
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DatasetError(f"{path}: images are {images.dtype} {images.shape}, expected uint8 "
                           f"[N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3]")
    labels = np.full(len(images), -1, dtype=np.int64)
    names = []
    for label, (name, indices) in enumerate(progress_bar(class_dict.items(), desc=path.name,
                                                         leave=False)):
        labels[np.asarray(indices, dtype=np.int64)] = label
        names.append(str(name))
    if (labels < 0).any():
        raise DatasetError(f"{path}: {(labels < 0).sum()} images belong to no class")
    return make_split(images, labels, names)


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    base = mirror(NAME, ZENODO)
    splits = {}
    for split, mode in FILES.items():
        filename = f"mini-imagenet-cache-{mode}.pkl"
        url, size, md5 = zenodo_file(base, RECORD, filename)
        path = download(url, raw / filename, size=size, md5=md5, magic=PICKLE_MAGIC)
        splits[split] = read_cache(path)
        if splits[split].n_classes != EXPECTED_CLASSES[split]:
            raise DatasetError(f"{path} holds {splits[split].n_classes} classes, miniImageNet's "
                               f"{mode} split has {EXPECTED_CLASSES[split]}")
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
