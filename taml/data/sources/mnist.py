"""MNIST (LeCun et al. 1998) for the biased-data learners (TML's 2-vs-3, L2RW's 4-vs-9):
``train`` (60,000) and ``test`` (10,000) splits of the same 10 digit classes, kept 28x28
with their one grey channel (uint8 ``[N, 28, 28, 1]``), as LeNet reads them.

Source: the four ``*-idx*-ubyte.gz`` files at torchvision's first MNIST mirror, verified with
torchvision's md5 checksums. Parsing: torchvision's ``MNIST``, handed the decompressed files.
"""

from __future__ import annotations

from pathlib import Path

from taml.data.download import GZIP_MAGIC, download, gunzip
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import already_prepared, mirror, raw_dir, write_store
from taml.data.store import make_split

NAME = "mnist"
BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    from torchvision.datasets import MNIST

    raw = raw_dir(NAME, data_root)
    folder = raw / "MNIST" / "raw"  # where torchvision reads the idx files
    base = mirror(NAME, BASE_URL)
    for filename, md5 in MNIST.resources:
        archive = download(f"{base}/{filename}", folder / filename, md5=md5, magic=GZIP_MAGIC)
        gunzip(archive, folder / Path(filename).stem)
    splits = {}
    for split in ("train", "test"):
        try:
            dataset = MNIST(root=str(raw), train=split == "train", download=False)
        except (RuntimeError, ValueError, OSError, AssertionError) as error:
            raise DatasetError(f"torchvision cannot read MNIST in {folder} ({error}); run again "
                               "with --force") from error
        images = dataset.data.numpy()[..., None]  # [N, 28, 28, 1]: LeNet's one channel
        splits[split] = make_split(images, dataset.targets.numpy(), list(dataset.classes))
    return write_store(NAME, data_root, splits)
