"""A user's own images as a taml dataset: ``--id_dataset folder:PATH``.

``PATH`` holds one sub-folder per class of PNG/JPEG images (``.png .jpg .jpeg``, any case;
hidden files and other files are ignored, as are images in deeper folders). The images are
converted to RGB (transparency over white), resized to ``image_size`` x ``image_size`` (the
aspect ratio is not kept, as in miniImageNet) and the CLASSES are split 64:16:20 into
meta-train / meta-val / meta-test, deterministically from ``seed``: the sorted class names are
shuffled by ``default_rng(seed)``. The result is three ordinary stores under the cache folder,
plus ``manifest.json`` saying what they were made from.

Adding or removing a class reshuffles the split, so a run records each split's class names
in its checkpoint and refuses to resume or meta-test on a changed folder
(:func:`taml.episodic.resume.check_classes`). A split by a stable hash of each class name would not
move classes, but only keeps 64:16:20 on average: a 32-class folder would often get fewer
than 5 meta-val classes (binomial, sd ~2), too few for a 5-way task, and the documented
proportions would no longer hold; the exact proportions plus a refusal keep both promises.

The cache check only lists the folder and reads file sizes and modification times, so it is
cheap enough to run on every load; adding, removing or changing an image rebuilds the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from taml.data.registry import ALL_SPLITS, DatasetError
from taml.data.store import make_split, recipe_matches, save_split, write_recipe
from taml.run.folder import check_writable
from taml.run.progress import bar as progress_bar

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_IGNORED_FOLDERS = {"__MACOSX"}  # macOS zip archives add it beside the real classes


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def scan_folder(source: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), for every class sub-folder of ``source``."""
    if not source.exists():
        raise DatasetError(
            f"image folder {source} does not exist. Give folder:PATH an existing folder with "
            "one sub-folder of PNG/JPEG images per class."
        )
    if not source.is_dir():
        raise DatasetError(
            f"{source} is a file, not a folder. Give folder:PATH a folder with one sub-folder "
            "of PNG/JPEG images per class."
        )
    entries = sorted(source.iterdir())
    classes = {
        folder.name: sorted(f for f in folder.iterdir() if _visible(f) and f.is_file()
                            and f.suffix.lower() in IMAGE_EXTENSIONS)
        for folder in entries
        if folder.is_dir() and _visible(folder) and folder.name not in _IGNORED_FOLDERS
    }
    if not classes:
        loose = sum(f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS for f in entries)
        found = f" (it has {loose} images directly inside)" if loose else ""
        raise DatasetError(
            f"{source} has no class sub-folders{found}. Put each class's images in its own "
            f"sub-folder: {source}/<class name>/<image>.png"
        )
    return classes


def split_counts(n_classes: int, split_ratio: tuple[int, ...]) -> tuple[int, ...]:
    """Classes per split in proportion to ``split_ratio`` (largest remainders), each >= 1."""
    ratio = np.asarray(split_ratio, dtype=np.float64)
    if len(ratio) != len(ALL_SPLITS) or np.any(ratio <= 0):
        raise ValueError(f"split_ratio needs {len(ALL_SPLITS)} positive numbers: {split_ratio}")
    if n_classes < len(ALL_SPLITS):
        raise DatasetError(
            f"a folder dataset needs at least {len(ALL_SPLITS)} classes (one each for "
            f"{'/'.join(ALL_SPLITS)}), found {n_classes}: add class sub-folders. For 5-way "
            "tasks every split needs 5 classes, i.e. about 32 classes at 64:16:20."
        )
    exact = n_classes * ratio / ratio.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n_classes - counts.sum()]] += 1
    while counts.min() == 0:  # few classes: a tiny split borrows from the largest
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return tuple(int(c) for c in counts)


def _has_nested_images(folder: Path) -> bool:
    return any(path.suffix.lower() in IMAGE_EXTENSIONS for path in folder.rglob("*")
               if _visible(path) and path.parent != folder)


def _fingerprint(classes: dict[str, list[Path]]) -> str:
    digest = hashlib.sha1()
    for name, files in classes.items():
        for path in files:
            stat = path.stat()
            digest.update(f"{name}/{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_image(path: Path, image_size: int) -> np.ndarray:
    """One image as uint8 ``[image_size, image_size, 3]``; a person is told which file failed."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))  # JPEG: decode at a smaller scale
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation there
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):
                # 16-bit greys: Image.convert would clip them to white instead of scaling
                grey = np.asarray(image, dtype=np.float64)
                if image.mode != "I" or grey.max() > 255:
                    grey = grey / 257.0
                image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            image = image.convert("RGB").resize((image_size, image_size),
                                                Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except Exception as error:  # a broken file can fail anywhere inside PIL
        raise DatasetError(
            f"cannot read image {path} ({type(error).__name__}: {error}). Remove or fix this "
            "file, then run again."
        ) from error


def check_enough_images(source: Path, classes: dict[str, list], minimum: int,
                        why: str = "") -> None:
    """A :class:`DatasetError` naming the classes of ``source`` with fewer than ``minimum``
    images, and, when a class keeps its images in sub-folders (which are not searched), that
    they should move up: shared by the few-shot and the classification imports."""
    small = [(name, len(files)) for name, files in classes.items() if len(files) < minimum]
    if not small:
        return
    listed = ", ".join(f"'{name}' has {count}" for name, count in small[:5])
    more = f" (and {len(small) - 5} more classes)" if len(small) > 5 else ""
    nested = [name for name, _ in small if _has_nested_images(source / name)]
    hint = (f" Images in sub-folders of a class (e.g. {source / nested[0]}/*/) are not "
            "searched: move them up into the class folder." if nested else
            " Add images to the class or remove its folder.")
    raise DatasetError(f"too few images in {source}: class {listed}{more}; each class needs "
                       f"at least {minimum} PNG/JPEG images{why}.{hint}")


def import_folder(
    source: str | Path,
    out_dir: Path,
    image_size: int = 32,
    split_ratio: tuple[int, int, int] = (64, 16, 20),
    seed: int = 0,
    min_images_per_class: int = 2,
    progress: bool = True,
) -> Path:
    """Imports the class folders of ``source`` into train/valid/test stores in ``out_dir``.

    A no-op when ``out_dir``'s manifest matches the folder's current files and these
    arguments; otherwise the three splits are rebuilt. Returns ``out_dir``.
    """
    source = Path(source).expanduser().resolve()
    out_dir = Path(out_dir)
    classes = scan_folder(source)
    manifest = {
        "version": MANIFEST_VERSION,
        "source": str(source),
        "image_size": image_size,
        "split_ratio": list(split_ratio),
        "seed": seed,
        "min_images_per_class": min_images_per_class,
        "n_images": sum(len(files) for files in classes.values()),
        "fingerprint": _fingerprint(classes),
    }
    if recipe_matches(out_dir, MANIFEST, manifest, ALL_SPLITS):
        return out_dir

    check_enough_images(source, classes, min_images_per_class)
    check_writable(out_dir, "--data_root")  # before importing, not at the first write
    counts = split_counts(len(classes), split_ratio)
    names = sorted(classes)
    order = np.random.default_rng(seed).permutation(len(names))
    bounds = np.cumsum((0,) + counts)

    # the manifest goes first and comes back last: a run killed halfway is never a cache
    (out_dir / MANIFEST).unlink(missing_ok=True)
    bar = progress_bar(total=manifest["n_images"], desc=f"importing {source.name}",
                       unit="image", enabled=progress)
    for split, start, stop in zip(ALL_SPLITS, bounds[:-1], bounds[1:], strict=True):
        split_names = sorted(names[i] for i in order[start:stop])
        images, labels = [], []
        for label, name in enumerate(split_names):
            for path in classes[name]:
                images.append(read_image(path, image_size))
                labels.append(label)
                bar.update(1)
        save_split(out_dir, split, make_split(np.stack(images), np.array(labels), split_names))
    bar.close()
    write_recipe(out_dir, MANIFEST, manifest)
    return out_dir
