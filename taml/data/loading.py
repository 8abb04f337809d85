"""Resolve a dataset name and split to a validated :class:`SplitData` in memory.

This is the boundary where a dataset enters: a missing store gets an error naming the
``get_data.py`` command; the embedded ``synthetic`` datasets are generated on first use and
``folder:PATH`` datasets imported on first use (both cached under ``--data_root``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from taml.data.registry import (
    FOLDER_PREFIX,
    DatasetError,
    dataset_dir,
    default_data_root,
    get_spec,
    is_folder_dataset,
)
from taml.data.store import SplitData, load_split, split_path
from taml.run.folder import disk_full_message


def load_dataset_split(
    name: str,
    split: str,
    data_root: Path | str | None = None,
    image_size: int | None = None,
) -> SplitData:
    """Loads split ``split`` (train/valid/test) of dataset ``name``."""
    spec = get_spec(name, image_size)
    if split not in spec.splits:
        role = "an out-of-distribution dataset" if "train" not in spec.splits else "this dataset"
        raise DatasetError(
            f"dataset '{name}' has no '{split}' split (it has {', '.join(spec.splits)}); "
            f"it is {role}. Use it as --ood_dataset, or choose another --id_dataset."
        )
    root = Path(data_root) if data_root is not None else default_data_root()
    directory = dataset_dir(name, root, spec.image_size)
    fix_hint = spec.get_data_command
    if root != default_data_root() and not is_folder_dataset(name):
        fix_hint += f" --data_root {root}"

    rebuild = None
    try:
        if name in ("synthetic", "synthetic_ood"):
            from taml.data.synthetic import ensure_synthetic

            ensure_synthetic(name, root)
        if is_folder_dataset(name):
            from taml.data.folder import import_folder

            source = name[len(FOLDER_PREFIX):]
            import_folder(source, directory, image_size=spec.image_size)
            # no command remakes a folder's cache with --force: deleting it re-imports it
            fix_hint = rebuild = (f"rm -r {directory}, then rerun the same command (it "
                                  f"imports {source} again)")
    except OSError as error:  # a full disk while a store is written
        raise DatasetError(disk_full_message(error, error.filename or directory,
                                             "--data_root")) from None
    return load_split(directory, split, fix_hint=fix_hint, image_size=spec.image_size,
                      rebuild_hint=rebuild)


def split_class_names(
    name: str,
    split: str,
    data_root: Path | str | None = None,
    image_size: int | None = None,
) -> list[str] | None:
    """The class names of a split's store, read without its images (an ``.npz`` loads
    members on access); None when the store is missing or unreadable (loading it reports
    why). A run records them to notice a dataset whose split changed."""
    import numpy as np

    spec = get_spec(name, image_size)
    root = Path(data_root) if data_root is not None else default_data_root()
    path = split_path(dataset_dir(name, root, spec.image_size), split)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return [str(n) for n in archive["class_names"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
