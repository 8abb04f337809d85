"""The one on-disk format of every dataset split.

A split is one uncompressed ``.npz`` file, ``<data_root>/<name>/<split>.npz``, holding

- ``images``: uint8 ``[N, H, W, 3]``, sorted by label (``[N, H, W, 1]`` for the greyscale
  classification datasets, MNIST, which keep their one channel for LeNet);
- ``labels``: int64 ``[N]``, values ``0..C-1``, non-decreasing;
- ``class_names``: unicode ``[C]``;
- ``format_version``: int scalar.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``), so a
killed writer leaves either the old file or none, never one that loads. Zip members carry
CRC-32 checksums that numpy verifies on read, so flipped bytes are caught on load too.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taml.data.registry import DatasetError
from taml.run.folder import atomic_writer, check_writable, disk_full_message, write_text_atomic

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitData:
    """One split in memory. ``class_offsets[c]:class_offsets[c+1]`` are class c's rows."""

    images: np.ndarray  # uint8 [N, H, W, 3], or [N, H, W, 1] for greyscale (MNIST)
    labels: np.ndarray  # int64 [N]
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def class_offsets(self) -> np.ndarray:
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def class_sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes).astype(np.int64)


def make_split(images: np.ndarray, labels: np.ndarray, class_names) -> SplitData:
    """Builds a validated, label-sorted :class:`SplitData` from arrays in any order."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub" and np.any(labels != np.round(labels)):
        raise DatasetError(f"labels must be whole class indices, got e.g. "
                           f"{labels[labels != np.round(labels)][0]}")
    labels = labels.astype(np.int64)
    order = np.argsort(labels, kind="stable")
    split = SplitData(np.ascontiguousarray(images[order]), labels[order], tuple(class_names))
    _validate(split, source="the arrays given")
    return split


def _validate(split: SplitData, source: str, image_size: int | None = None) -> None:
    images, labels = split.images, split.labels
    # one channel is allowed for the greyscale classification stores (MNIST); the episodic
    # few-shot datasets are all RGB, which config checks by the registry's role
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(
            f"{source}: images must be uint8 [N, H, W, 3] (or [N, H, W, 1] greyscale), got "
            f"{images.dtype} {images.shape}"
        )
    if images.shape[1] != images.shape[2]:
        raise DatasetError(f"{source}: images must be square, got {images.shape[1:3]}")
    if image_size is not None and images.shape[1] != image_size:
        raise DatasetError(
            f"{source}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{image_size}x{image_size}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{source}: {len(labels)} labels for {len(images)} images")
    n_classes = len(split.class_names)
    if n_classes == 0 or len(labels) == 0:
        raise DatasetError(f"{source}: the split is empty")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DatasetError(f"{source}: labels outside 0..{n_classes - 1}")
    if np.any(np.diff(labels) < 0):
        raise DatasetError(f"{source}: labels are not sorted (write it with save_split)")
    empty = np.flatnonzero(np.bincount(labels, minlength=n_classes) == 0)
    if len(empty):
        raise DatasetError(f"{source}: class '{split.class_names[empty[0]]}' has no images")


def split_path(directory: Path | str, split: str) -> Path:
    return Path(directory) / f"{split}.npz"


def check_not_folder(path: Path) -> None:
    """A folder where a store file belongs would make every write fail after the work."""
    if path.is_dir():
        raise DatasetError(f"{path} is a folder where a store file belongs: remove it "
                           f"(rm -r '{path}') and run again")


def save_split(directory: Path | str, split: str, data: SplitData) -> Path:
    """Writes ``data`` atomically to ``<directory>/<split>.npz`` and returns the path."""
    _validate(data, source=f"split '{split}'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = split_path(directory, split)
    check_not_folder(final)
    with atomic_writer(final) as handle:
        np.savez(
            handle,
            images=data.images,
            labels=data.labels,
            class_names=np.array(data.class_names, dtype=np.str_),
            format_version=np.int64(FORMAT_VERSION),
        )
    return final


def load_split(
    directory: Path | str,
    split: str,
    *,
    fix_hint: str,
    image_size: int | None = None,
    rebuild_hint: str | None = None,
) -> SplitData:
    """Loads and validates ``<directory>/<split>.npz``.

    ``fix_hint`` is the command that (re)creates the file; every error names it (a bad file:
    the command with ``--force``). ``rebuild_hint``, when given, is what to do instead for
    a store that no command with ``--force`` remakes (a folder's cache: delete it, rerun).
    """
    path = split_path(directory, split)
    check_not_folder(path)
    recreate = rebuild_hint or f"{fix_hint} --force"
    if not path.is_file():
        raise DatasetError(f"{path} not found. Create it with: {rebuild_hint or fix_hint}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"images", "labels", "class_names", "format_version"} - set(archive.files)
            if missing:
                raise DatasetError(
                    f"{path} lacks {sorted(missing)}; it is not a taml store. "
                    f"Recreate it with: {recreate}"
                )
            version = int(archive["format_version"])
            if version != FORMAT_VERSION:
                raise DatasetError(
                    f"{path} has format version {version}, this taml reads {FORMAT_VERSION}. "
                    f"Recreate it with: {recreate}"
                )
            labels = archive["labels"]
            if labels.dtype.kind not in "iu":  # a cast would truncate 0.5 to class 0
                raise DatasetError(
                    f"{path}: labels are {labels.dtype}, not integers; it is not a taml "
                    f"store. Recreate it with: {recreate}"
                )
            data = SplitData(
                images=archive["images"],
                labels=labels.astype(np.int64, copy=False),
                class_names=tuple(str(n) for n in archive["class_names"]),
            )
    except DatasetError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        # numpy's own text can advise allow_pickle=True, which is no fix for a bad store
        reason = str(error).splitlines()[0] if str(error) else ""
        if "pickle" in reason.lower():
            reason = "its header cannot be read"
        raise DatasetError(
            f"{path} is corrupt or incomplete ({type(error).__name__}: {reason}). "
            f"Recreate it with: {recreate}"
        ) from None
    try:
        _validate(data, source=str(path), image_size=image_size)
    except DatasetError as error:
        raise DatasetError(f"{error}. Recreate it with: {recreate}") from error
    return data


@contextlib.contextmanager
def writing_store(directory: Path | str, flag_name: str = "--data_root"):
    """Around the writes of a store taml makes itself (generated, imported, coloured): the
    folder is checked first (under a file, under /proc, read-only: one line before any work)
    and a write that fails midway (a full disk, a quota) is a :class:`DatasetError` naming
    ``flag_name`` instead of numpy's traceback. Both families' data go through it."""
    check_writable(directory, flag_name)
    try:
        yield
    except OSError as error:
        raise DatasetError(disk_full_message(error, error.filename or directory,
                                             flag_name)) from None


def recipe_matches(directory: Path | str, manifest_name: str, recipe: dict,
                   splits) -> bool:
    """Whether ``directory`` holds every split in ``splits`` and a manifest ``manifest_name``
    equal to ``recipe``: the cache check of the datasets taml makes itself (generated,
    imported). Their writers delete the manifest first and write it last, so a run killed
    halfway never passes this check."""
    directory = Path(directory)
    manifest = directory / manifest_name
    if not manifest.is_file() or not all(split_path(directory, s).is_file() for s in splits):
        return False
    try:
        return json.loads(manifest.read_text()) == recipe
    except (OSError, ValueError):
        return False


def write_recipe(directory: Path | str, manifest_name: str, recipe: dict) -> None:
    """The manifest :func:`recipe_matches` reads; written after the last split."""
    write_text_atomic(Path(directory) / manifest_name, json.dumps(recipe, indent=1) + "\n")
