"""The paper's nine datasets, and MNIST / CIFAR-10 / CIFAR-100 for the biased-data
learners: download, verify and convert each to the taml store.

One module per dataset, each with ``prepare(data_root, force=False, ...) -> Path`` that
writes ``<data_root>/<name>/<split>.npz`` (see :mod:`taml.data.store`) with the original's
splits and image sizes, keeping raw downloads under ``<data_root>/<name>/raw/``. A store
whose every split loads is left alone unless ``force``; ``force`` rebuilds it from the raw
files, which are reused when they still verify (delete ``raw/`` to download again).

Each source's base URL can be replaced with the environment variable
``TAML_MIRROR_<NAME>`` (``TAML_MIRROR_CIFAR``, ``TAML_MIRROR_FASHION_MNIST``, ...): for a
local mirror, and for the tests, which serve tiny fixtures from 127.0.0.1.

``data/<name>/get_data.py`` calls :func:`main`; nothing here imports learn2learn or
torchvision until a dataset that uses them is prepared.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from taml.data.download import fetch_json
from taml.data.registry import DatasetError, dataset_dir, default_data_root, get_spec
from taml.data.store import SplitData, load_split, make_split, save_split, split_path
from taml.run.progress import bar as progress_bar

SOURCES = {
    "cifar": "cifar",
    "svhn": "svhn",
    "mimgnet": "mimgnet",
    "cub": "cub",
    "aircraft": "aircraft",
    "quickdraw": "quickdraw",
    "vgg_flower": "vgg_flower",
    "traffic": "traffic",
    "fashion-mnist": "fashion_mnist",
    # the classification datasets of the biased-data learners (train/test, shared classes)
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
}


def mirror(name: str, default: str) -> str:
    """The base URL of ``name``'s source: ``$TAML_MIRROR_<NAME>`` if set, else ``default``."""
    variable = "TAML_MIRROR_" + name.upper().replace("-", "_")
    value = os.environ.get(variable)
    if value is None:
        return default.rstrip("/")
    if not value.lower().startswith(("http://", "https://")):  # requests reads only HTTP(S)
        folder = value[len("file://"):] if value.lower().startswith("file://") else value
        raise DatasetError(
            f"{variable}={value}: a mirror must be an http:// or https:// URL. To use a "
            f"local folder, serve it (python -m http.server 8000 --directory {folder}) and "
            f"set {variable}=http://127.0.0.1:8000"
        )
    return value.rstrip("/")


def redownload(raw: Path | str) -> str:
    """The fix for raw files that verified but do not hold the dataset (a wrong archive
    from a mirror without checksums): ``--force`` would reuse them, so they must go."""
    return f"delete {raw} and run the command again to download the files afresh"


def raw_dir(name: str, data_root: Path | str | None) -> Path:
    return dataset_dir(name, data_root) / "raw"


def store_ready(name: str, data_root: Path | str | None) -> bool:
    """True when every split of ``name`` exists and loads with the right image size."""
    spec = get_spec(name)
    directory = dataset_dir(name, data_root)
    for split in spec.splits:
        if not split_path(directory, split).is_file():
            return False
        try:
            load_split(directory, split, fix_hint=spec.get_data_command,
                       image_size=spec.image_size)
        except DatasetError:
            return False
    return True


def write_store(name: str, data_root: Path | str | None, splits: dict[str, SplitData]) -> Path:
    """Saves every split of ``name`` (exactly the registry's splits) and returns the folder."""
    spec = get_spec(name)
    if set(splits) != set(spec.splits):
        raise DatasetError(f"{name}: made splits {sorted(splits)}, the registry expects "
                           f"{sorted(spec.splits)}")
    directory = dataset_dir(name, data_root)
    for split in spec.splits:
        data = splits[split]
        if data.image_size != spec.image_size:
            raise DatasetError(f"{name}/{split}: images are {data.image_size} px, "
                               f"expected {spec.image_size}")
        save_split(directory, split, data)
        print(f"{name}/{split}: {data.n_classes} classes, {len(data.labels)} images "
              f"-> {split_path(directory, split)}")
    return directory


def check_disjoint(name: str, splits: dict[str, SplitData]) -> None:
    seen: dict[str, str] = {}
    for split, data in splits.items():
        for class_name in data.class_names:
            if class_name in seen:
                raise DatasetError(f"{name}: class '{class_name}' is in both the "
                                   f"{seen[class_name]} and {split} splits")
            seen[class_name] = split


def to_rgb(image, size: int) -> np.ndarray:
    """A PIL image as uint8 ``[size, size, 3]``: made RGB, resized (Pillow's default
    filter, as the original's ``img.resize``) without cropping, like the original."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size))
    return np.asarray(image, dtype=np.uint8)


def grey_to_rgb(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    """uint8 ``[n, h, w]`` greyscale -> ``[n, size, size, 3]``, the grey copied to R, G and B
    (the original's ``convert('RGB').resize``; resizing one channel gives the same)."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(progress_bar(images, desc=desc, unit="img", leave=False)):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size)))[..., None]
    return out


def load_image_files(
    paths: Iterable[Path | str], size: int, desc: str, *, rgb_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Reads images as uint8 ``[N, size, size, 3]`` with a progress bar.

    Returns the images and a bool mask over ``paths`` of those kept: with ``rgb_only``,
    images that are not RGB (greyscale, CMYK) are skipped, as the original did for CUB.
    """
    from PIL import Image

    paths = list(paths)
    images, kept = [], np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(progress_bar(paths, desc=desc, unit="img", leave=False)):
        try:
            with Image.open(path) as image:
                if rgb_only and image.mode != "RGB":
                    continue
                images.append(to_rgb(image, size))
        except OSError as error:
            raise DatasetError(f"cannot read image {path} ({error}); the extracted files are "
                               "damaged: run again with --force") from error
        kept[i] = True
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return stacked, kept


def split_from_groups(groups: dict[str, np.ndarray]) -> SplitData:
    """One split from ``{class name: uint8 [n, H, W, 3]}``, classes in the given order."""
    names = list(groups)
    images = np.concatenate([groups[n] for n in names])
    labels = np.repeat(np.arange(len(names)), [len(groups[n]) for n in names])
    return make_split(images, labels, names)


@contextlib.contextmanager
def quiet_import():
    """Silences import-time chatter: ``import learn2learn`` imports gym, which prints a
    deprecation notice to stderr and warns about numpy 2; neither concerns these scripts."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def learn2learn_module(name: str):
    """``learn2learn.vision.datasets.<name>``, imported lazily (it is slow: gym)."""
    try:
        with quiet_import():
            return importlib.import_module(f"learn2learn.vision.datasets.{name}")
    except ImportError as error:
        raise DatasetError(
            f"this dataset uses learn2learn, which is not installed ({error}). Install it "
            "with scripts/install.sh (docs/install.md)."
        ) from error


def zenodo_file(base: str, record: str, filename: str) -> tuple[str, int | None, str | None]:
    """The URL of ``filename`` in Zenodo record ``record``, and the size and md5 that the
    record's API listing publishes for it (None, None when the listing cannot be read:
    the download is then checked for its format only)."""
    url = f"{base}/records/{record}/files/{filename}?download=1"
    try:
        listing = fetch_json(f"{base}/api/records/{record}")
    except DatasetError as error:
        print(f"note: no checksum for {filename} ({error}); checking its format only")
        return url, None, None
    entries = listing.get("files", [])
    if isinstance(entries, dict):  # InvenioRDM's own format, rather than Zenodo's legacy one
        entries = list(entries.get("entries", {}).values())
    for entry in entries:
        if entry.get("key", entry.get("filename")) == filename:
            checksum = str(entry.get("checksum", ""))
            md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
            size = entry.get("size", entry.get("filesize"))
            return url, (int(size) if size is not None else None), md5
    print(f"note: Zenodo record {record} does not list {filename}; checking its format only")
    return url, None, None


def prepare(name: str, data_root: Path | str | None = None, force: bool = False,
            **options) -> Path:
    """Downloads, verifies and converts dataset ``name``; returns its store folder."""
    if name not in SOURCES:
        raise DatasetError(f"no download script for '{name}'. Known: {', '.join(SOURCES)}")
    module = importlib.import_module(f"taml.data.sources.{SOURCES[name]}")
    root = Path(data_root) if data_root is not None else default_data_root()
    return module.prepare(root, force=force, **options)


def already_prepared(name: str, data_root: Path, force: bool) -> bool:
    """The no-op check every ``prepare`` starts with; says so when it skips."""
    if force or not store_ready(name, data_root):
        return False
    print(f"{name}: the store in {dataset_dir(name, data_root)} is complete; nothing to do "
          "(--force rebuilds it)")
    return True


def main(name: str, argv: list[str] | None = None) -> int:
    """The command line of ``data/<name>/get_data.py``; returns the exit status."""
    spec = get_spec(name)
    module = importlib.import_module(f"taml.data.sources.{SOURCES[name]}")
    parser = argparse.ArgumentParser(
        prog=spec.get_data_command,
        description=f"Download {spec.description} and write taml's store "
                    f"<data_root>/{name}/{{{','.join(spec.splits)}}}.npz.",
    )
    parser.add_argument("--data_root", type=Path, default=default_data_root(),
                        help="where stores live (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the store even if it is complete (raw downloads are "
                             "reused when they verify)")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = vars(parser.parse_args(argv))
    data_root, force = args.pop("data_root"), args.pop("force")
    try:
        directory = module.prepare(data_root, force=force, **args)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the command again to resume", file=sys.stderr)
        return 130
    print(f"{name}: done, store in {directory}")
    return 0
