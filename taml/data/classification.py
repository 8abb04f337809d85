"""The unbiased classification datasets the biased-data builders start from: ``train`` and
``test`` splits sharing the same classes.

- ``mnist``, ``cifar10``, ``cifar100``: stores written by ``data/<name>/get_data.py``
  (MNIST keeps its one grey channel: uint8 ``[N, 28, 28, 1]``).
- ``glyphs``, the embedded default that needs no download: the first 10 classes of
  :mod:`taml.data.synthetic`'s glyphs (the same strokes as ``synthetic``'s glyph_000..009),
  500 train and 100 test images each, 32x32 RGB, generated on first use and cached in
  ``<data_root>/glyphs/`` under a recipe manifest (rebuilt when the generator changes).
- ``digits``, real and embedded too: the UCI handwritten digits (1,797 images of 8x8 ink
  counts 0..16, 10 classes, 174-183 per class) that scikit-learn's wheel ships
  (``sklearn.datasets.load_digits``, no download). Test split: 30 images per class (300),
  picked by a fixed permutation (seed 0, never the run's seed, so every run tests on the
  same images); train: the other 1,497 (144-153 per class). Upsampled to MNIST's 28x28,
  one grey channel, values 0..16 -> 0..255 (:func:`upsample_digits` says why), cached in
  ``<data_root>/digits/`` under a recipe manifest like the glyphs.
- ``folder:PATH``: one sub-folder of PNG/JPEG images per class, read by
  :mod:`taml.data.folder`'s reader; each class's images are split 80:20 into train/test by a
  fixed permutation (seed 0, so every run's test set is the same), cached under
  ``<data_root>/folders/<name>-<hash>-<size>px-classification/``.

    python -m taml.data.classification glyphs|digits [--data_root DIR] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from taml.data.registry import (
    CLASSIFICATION_SPLITS,
    FOLDER_PREFIX,
    DatasetError,
    dataset_dir,
    default_data_root,
    get_spec,
    is_folder_dataset,
)
from taml.data.store import (
    SplitData,
    load_split,
    make_split,
    recipe_matches,
    save_split,
    write_recipe,
    writing_store,
)
from taml.run.progress import bar as progress_bar

GLYPH_CLASSES = 10
GLYPH_TRAIN_PER_CLASS = 500
GLYPH_TEST_PER_CLASS = 100
GLYPH_SEED = 0  # the dataset is fixed; BiasSpec.seed only picks subsets of it
MANIFEST = "generator.json"
FOLDER_MANIFEST = "manifest.json"
FOLDER_TEST_FRACTION = 0.2
FOLDER_VERSION = 1
DIGITS_TEST_PER_CLASS = 30
DIGITS_SEED = 0  # the split is fixed; BiasSpec.seed only picks subsets of the train split
DIGITS_SIZE = 28  # MNIST's size (upsample_digits)
DIGITS_VERSION = 1  # bump when the upsampling or the split changes: the cache is rebuilt
# torchvision's MNIST class names, so that reports on digits and on MNIST read alike
DIGITS_NAMES = tuple(f"{d} - {w}" for d, w in enumerate(
    "zero one two three four five six seven eight nine".split()))
DATASETS = ("glyphs", "digits", "mnist", "cifar10", "cifar100")
EMBEDDED = ("glyphs", "digits")  # made by taml on first use, no download


def generate_glyphs(data_root: Path | str | None = None, force: bool = False,
                    progress: bool = False) -> Path:
    """Writes ``<data_root>/glyphs/{train,test}.npz`` (a no-op when the recipe matches)."""
    from taml.data.synthetic import GENERATOR_VERSION

    recipe = {"name": "glyphs", "seed": GLYPH_SEED, "classes": GLYPH_CLASSES,
              "train_per_class": GLYPH_TRAIN_PER_CLASS, "test_per_class": GLYPH_TEST_PER_CLASS,
              "generator_version": GENERATOR_VERSION}
    directory = dataset_dir("glyphs", data_root)
    if not force and recipe_matches(directory, MANIFEST, recipe, CLASSIFICATION_SPLITS):
        return directory
    with writing_store(directory):
        _write_glyphs(directory, recipe, progress)
    return directory


def _write_glyphs(directory: Path, recipe: dict, progress: bool) -> None:
    from taml.data.synthetic import glyph_class

    (directory / MANIFEST).unlink(missing_ok=True)  # a run killed halfway is never a cache
    n_train, n_test = GLYPH_TRAIN_PER_CLASS, GLYPH_TEST_PER_CLASS
    train, test = [], []
    for c in progress_bar(range(GLYPH_CLASSES), desc="generating glyphs", unit="class",
                          enabled=progress):
        # one call per class: a class's images depend on how many are drawn at once
        images = glyph_class(GLYPH_SEED, c, n_train + n_test)
        train.append(images[:n_train])
        test.append(images[n_train:])
    names = [f"glyph_{c:03d}" for c in range(GLYPH_CLASSES)]
    for split, parts, per_class in (("train", train, n_train), ("test", test, n_test)):
        labels = np.repeat(np.arange(GLYPH_CLASSES), per_class)
        save_split(directory, split, make_split(np.concatenate(parts), labels, names))
    write_recipe(directory, MANIFEST, recipe)


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's copy of the UCI digits: ink counts float ``[1797, 8, 8]`` (0..16) and
    labels int64 ``[1797]``, in the file's order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("--dataset digits reads the UCI digits bundled with scikit-learn, "
                           "which is not installed: pip install scikit-learn==1.9.1 (or run "
                           "scripts/install.sh)") from None
    digits = load_digits()
    return np.asarray(digits.images, dtype=np.float64), np.asarray(digits.target, np.int64)


def digits_split_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, test_rows)`` into :func:`uci_digits`' arrays, in the stores' order (by
    label, then row): per class, the first ``DIGITS_TEST_PER_CLASS`` of a permutation seeded
    by ``DIGITS_SEED`` (fixed, whatever the run's seed) are test, the rest train."""
    rng = np.random.default_rng(DIGITS_SEED)
    test = []
    for c in range(len(DIGITS_NAMES)):
        rows = np.flatnonzero(labels == c)
        if len(rows) <= DIGITS_TEST_PER_CLASS:
            raise DatasetError(f"the UCI digits have {len(rows)} images of class {c}; "
                               f"{DIGITS_TEST_PER_CLASS} test images would leave none to train")
        test.append(rng.permutation(rows)[:DIGITS_TEST_PER_CLASS])
    test_rows = np.sort(np.concatenate(test))
    train_rows = np.setdiff1d(np.arange(len(labels)), test_rows)
    return tuple(rows[np.argsort(labels[rows], kind="stable")] for rows in (train_rows,
                                                                            test_rows))


def _bilinear_matrix(source: int, target: int) -> np.ndarray:
    """``[target, source]`` weights of a 1-D bilinear resize with half-pixel centres (what
    PIL and torch's ``align_corners=False`` do), edges clamped; each row sums to 1."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    matrix = np.zeros((target, source))
    np.add.at(matrix, (np.arange(target), low), 1.0 - (position - low))
    np.add.at(matrix, (np.arange(target), high), position - low)
    return matrix


def upsample_digits(ink: np.ndarray, size: int = DIGITS_SIZE) -> np.ndarray:
    """Ink counts ``[N, 8, 8]`` (0..16) -> uint8 ``[N, size, size, 1]`` (0..255).

    Why 28x28: the biased family's LeNets are MNIST's (``lenet_tml``'s 'VALID' 5x5 convs
    need at least 12 px and give TML's 16 x 4 x 4 features at 28; at 8 px nothing is left),
    and LNL's network and colour grid are sized for MNIST; at MNIST's size every MNIST
    recipe runs on digits unchanged. Why bilinear: 28 / 8 = 3.5 is no whole factor, so
    nearest neighbour would make pixels 3 or 4 px wide; bilinear gives smooth strokes like
    MNIST's anti-aliased ones and keeps the background exactly 0 (LNL paints only the
    ink). A fixed separable matrix product in numpy, not an image library's resampler,
    whose filters and rounding differ between libraries and versions."""
    weights = _bilinear_matrix(ink.shape[1], size)
    resized = np.einsum("ij,njk,lk->nil", weights, np.asarray(ink, np.float64), weights)
    return np.rint(np.clip(resized * (255.0 / 16.0), 0, 255)).astype(np.uint8)[..., None]


def generate_digits(data_root: Path | str | None = None, force: bool = False) -> Path:
    """Writes ``<data_root>/digits/{train,test}.npz`` from scikit-learn's UCI digits (a
    no-op when the recipe matches)."""
    recipe = {"name": "digits", "source": "sklearn.datasets.load_digits (UCI optdigits)",
              "version": DIGITS_VERSION, "image_size": DIGITS_SIZE, "resize": "bilinear",
              "test_per_class": DIGITS_TEST_PER_CLASS, "split_seed": DIGITS_SEED}
    directory = dataset_dir("digits", data_root)
    if not force and recipe_matches(directory, MANIFEST, recipe, CLASSIFICATION_SPLITS):
        return directory
    ink, labels = uci_digits()
    with writing_store(directory):
        (directory / MANIFEST).unlink(missing_ok=True)  # a run killed halfway: no cache
        images = upsample_digits(ink)
        for split, rows in zip(CLASSIFICATION_SPLITS, digits_split_rows(labels), strict=True):
            save_split(directory, split, make_split(images[rows], labels[rows], DIGITS_NAMES))
        write_recipe(directory, MANIFEST, recipe)
    return directory


def folder_cache(name: str, data_root: Path | str | None, image_size: int) -> Path:
    few_shot_cache = dataset_dir(name, data_root, image_size)
    return few_shot_cache.with_name(few_shot_cache.name + "-classification")


def import_folder_classes(source: str | Path, out_dir: Path, image_size: int = 32,
                          progress: bool = False) -> Path:
    """Every class folder of ``source`` split per image into train/test stores in
    ``out_dir`` (a no-op when its manifest matches the folder's files)."""
    from taml.data.folder import _fingerprint, check_enough_images, scan_folder

    source = Path(source).expanduser().resolve()
    classes = scan_folder(source)
    if len(classes) < 2:  # one class: every prediction right, a 100 % that means nothing
        raise DatasetError(f"{source} has {len(classes)} class folder "
                           f"({', '.join(repr(c) for c in classes)}); a classifier needs at "
                           "least 2: add a sub-folder of images per class")
    recipe = {"version": FOLDER_VERSION, "source": str(source), "image_size": image_size,
              "test_fraction": FOLDER_TEST_FRACTION, "fingerprint": _fingerprint(classes)}
    if recipe_matches(out_dir, FOLDER_MANIFEST, recipe, CLASSIFICATION_SPLITS):
        return out_dir
    check_enough_images(source, classes, 2, " (one to train, one to test)")
    with writing_store(out_dir):
        _write_folder_classes(source, classes, out_dir, image_size, recipe, progress)
    return out_dir


def _write_folder_classes(source: Path, classes: dict, out_dir: Path, image_size: int,
                          recipe: dict, progress: bool) -> None:
    from taml.data.folder import read_image

    names = sorted(classes)
    rng = np.random.default_rng(0)
    parts = {split: ([], []) for split in CLASSIFICATION_SPLITS}
    bar = progress_bar(total=sum(len(f) for f in classes.values()),
                       desc=f"importing {source.name}", unit="image", enabled=progress)
    (out_dir / FOLDER_MANIFEST).unlink(missing_ok=True)
    for label, class_name in enumerate(names):
        files = classes[class_name]
        n_test = max(1, int(round(FOLDER_TEST_FRACTION * len(files))))
        order = rng.permutation(len(files))
        for rank, index in enumerate(order):
            images, labels = parts["test" if rank < n_test else "train"]
            images.append(read_image(files[index], image_size))
            labels.append(label)
            bar.update(1)
    bar.close()
    for split, (images, labels) in parts.items():
        save_split(out_dir, split, make_split(np.stack(images), np.array(labels), names))
    write_recipe(out_dir, FOLDER_MANIFEST, recipe)


def folder_listing(source: str | Path) -> dict:
    """What a ``folder:PATH`` dataset's labels and 80:20 split follow: its class names
    (sorted: a label is a class's rank) with their image counts, and a digest of every
    image's ``class/file`` name (the split permutes each class's sorted files). A run
    records it and refuses a folder whose listing changed; file contents and times are
    not part of it (a copy of the folder is the same dataset)."""
    from taml.data.folder import scan_folder

    classes = scan_folder(Path(source).expanduser().resolve())
    digest = hashlib.sha1()
    for name in sorted(classes):
        for path in classes[name]:
            digest.update(f"{name}/{path.name}\n".encode())
    return {"classes": {name: len(classes[name]) for name in sorted(classes)},
            "files_sha1": digest.hexdigest()}


def load_base_dataset(name: str, data_root: Path | str | None = None,
                      image_size: int | None = None
                      ) -> tuple[SplitData, SplitData, tuple[str, ...]]:
    """``(train, test, class_names)`` of a classification dataset; images uint8
    ``[N, H, W, C]`` (C = 1 for MNIST and digits, 3 otherwise), labels int64 ``[N]`` sorted.

    A missing store is a :class:`DatasetError` naming its ``get_data.py`` command.
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    if is_folder_dataset(name):
        size = image_size or 32
        directory = import_folder_classes(name[len(FOLDER_PREFIX):],
                                          folder_cache(name, root, size), size)
        # no command remakes a folder's cache with --force: deleting it re-imports the folder
        fix_hint = rebuild = (f"rm -r {directory}, then rerun the same command (it imports "
                              f"{name[len(FOLDER_PREFIX):]} again)")
        size_check = size
    else:
        if name not in DATASETS:
            raise DatasetError(f"'{name}' is not a classification dataset: choose one of "
                               f"{', '.join(DATASETS)} or folder:PATH")
        if image_size is not None:
            raise DatasetError(f"--image_size applies to folder:PATH datasets only; {name} has "
                               "its own size: leave the flag out")
        spec = get_spec(name)
        if name == "glyphs":
            generate_glyphs(root)
        elif name == "digits":
            generate_digits(root)
        directory, size_check = dataset_dir(name, root), spec.image_size
        fix_hint = spec.get_data_command
        if root != default_data_root():
            fix_hint += f" --data_root {root}"
        rebuild = None
    train, test = (load_split(directory, split, fix_hint=fix_hint, image_size=size_check,
                              rebuild_hint=rebuild) for split in CLASSIFICATION_SPLITS)
    if train.class_names != test.class_names:
        raise DatasetError(f"{directory}: train and test have different classes; rebuild it "
                           f"with: {rebuild or fix_hint + ' --force'}")
    return train, test, train.class_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make taml's embedded classification "
                                     "datasets: 'glyphs' (generated) or 'digits' (the UCI "
                                     "digits in scikit-learn); also made on first use.")
    parser.add_argument("name", choices=list(EMBEDDED))
    parser.add_argument("--data_root", default=None, help="default: data/ or $TAML_DATA_ROOT")
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    try:
        make = generate_glyphs if args.name == "glyphs" else generate_digits
        directory = make(args.data_root, args.force)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.name}: {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
