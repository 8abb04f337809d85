"""Fashion-MNIST (Xiao et al. 2017), OOD for the multi-dataset experiment: one ``test``
split, as the original, of Fashion-MNIST's 10,000 test images (10 classes), greyscale
28x28 made 32x32 RGB.

Source: the ``t10k-*-idx*-ubyte.gz`` files at torchvision's Fashion-MNIST mirror (the
original's), verified with torchvision's md5 checksums. Parsing: torchvision's
``FashionMNIST`` (``train=False``), handed the decompressed files.
"""

from __future__ import annotations

import os
from pathlib import Path

from taml.data.download import GZIP_MAGIC, download, gunzip
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    grey_to_rgb,
    mirror,
    raw_dir,
    redownload,
    write_store,
)
from taml.data.store import make_split

NAME = "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
IMAGE_SIZE = 32


def _torchvision_test_set():
    """torchvision's FashionMNIST, asking only for the test files (its stock class also
    requires the training files to exist, which the original never used)."""
    from torchvision.datasets import FashionMNIST

    class TestFilesOnly(FashionMNIST):
        resources = [(f, md5) for f, md5 in FashionMNIST.resources if f.startswith("t10k")]

        @property
        def raw_folder(self) -> str:
            return os.path.join(self.root, FashionMNIST.__name__, "raw")

    return TestFilesOnly


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    library = _torchvision_test_set()
    raw = raw_dir(NAME, data_root)
    folder = raw / "FashionMNIST" / "raw"  # where torchvision reads the idx files
    base = mirror(NAME, BASE_URL)
    for filename, md5 in library.resources:
        archive = download(f"{base}/{filename}", folder / filename, md5=md5, magic=GZIP_MAGIC)
        gunzip(archive, folder / Path(filename).stem)
    try:
        dataset = library(root=str(raw), train=False, download=False)
    except (RuntimeError, ValueError, OSError, AssertionError) as error:
        raise DatasetError(f"torchvision cannot read Fashion-MNIST in {folder} ({error}); "
                           f"{redownload(raw)}") from error
    images = grey_to_rgb(dataset.data.numpy(), IMAGE_SIZE, desc=f"{NAME} test")
    split = make_split(images, dataset.targets.numpy(), list(dataset.classes))
    return write_store(NAME, data_root, {"test": split})
