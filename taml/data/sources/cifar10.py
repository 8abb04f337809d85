"""CIFAR-10 (Krizhevsky 2009), the full dataset (not CIFAR-FS) for the biased-data learners:
``train`` (50,000) and ``test`` (10,000) splits of the same 10 classes, 32x32 RGB.

Source: ``cifar-10-python.tar.gz`` from the authors' site, verified with torchvision's md5.
Parsing: torchvision's ``CIFAR10`` (which checks every batch file's md5 again), handed the
extracted archive. :func:`prepare_cifar` serves CIFAR-100 too.
"""

from __future__ import annotations

from pathlib import Path

from taml.data.download import GZIP_MAGIC, download, extract
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import already_prepared, mirror, raw_dir, write_store
from taml.data.store import make_split

NAME = "cifar10"
BASE_URL = "https://www.cs.toronto.edu/~kriz"
ARCHIVE_BYTES = 170_000_000  # about; for the free-space check before extracting


def prepare_cifar(name: str, library, data_root: Path, force: bool) -> Path:
    """Downloads, verifies and converts torchvision dataset class ``library`` (CIFAR10 or
    CIFAR100) into the store of ``name``."""
    if already_prepared(name, data_root, force):
        return dataset_dir(name, data_root)
    raw = raw_dir(name, data_root)
    archive = download(f"{mirror(name, BASE_URL)}/{library.filename}", raw / library.filename,
                       md5=library.tgz_md5, magic=GZIP_MAGIC, reserve=2 * ARCHIVE_BYTES)
    extract(archive, raw, force=force)  # -> raw/cifar-10[0]-*-py/, torchvision's layout
    splits = {}
    for split in ("train", "test"):
        try:
            dataset = library(root=str(raw), train=split == "train", download=False)
        except (RuntimeError, ValueError, OSError, KeyError, EOFError) as error:
            raise DatasetError(f"torchvision cannot read {name} in {raw / library.base_folder} "
                               f"({error}); run again with --force") from error
        splits[split] = make_split(dataset.data, dataset.targets, list(dataset.classes))
    return write_store(name, data_root, splits)


def prepare(data_root: Path, force: bool = False) -> Path:
    from torchvision.datasets import CIFAR10

    return prepare_cifar(NAME, CIFAR10, data_root, force)
