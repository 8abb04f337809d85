"""The unbiased classification datasets the biased-data builders start from: ``train`` and
``test`` splits sharing the same classes.

- ``mnist``, ``cifar10``, ``cifar100``: stores written by ``data/<name>/get_data.py``
  (MNIST keeps its one grey channel: uint8 ``[N, 28, 28, 1]``).
- ``glyphs``, the embedded default that needs no download: the first 10 classes of
  :mod:`taml.data.synthetic`'s glyphs (the same strokes as ``synthetic``'s glyph_000..009),
  500 train and 100 test images each, 32x32 RGB, generated on first use and cached in
  ``<data_root>/glyphs/`` under a recipe manifest (rebuilt when the generator changes).
- ``folder:PATH``: one sub-folder of PNG/JPEG images per class, read by
  :mod:`taml.data.folder`'s reader; each class's images are split 80:20 into train/test by a
  fixed permutation (seed 0, so every run's test set is the same), cached under
  ``<data_root>/folders/<name>-<hash>-<size>px-classification/``.

    python -m taml.data.classification glyphs [--data_root DIR] [--force]
"""

from __future__ import annotations

import argparse
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
DATASETS = ("glyphs", "mnist", "cifar10", "cifar100")


def generate_glyphs(data_root: Path | str | None = None, force: bool = False,
                    progress: bool = False) -> Path:
    """Writes ``<data_root>/glyphs/{train,test}.npz`` (a no-op when the recipe matches)."""
    from taml.data.synthetic import GENERATOR_VERSION, glyph_class

    recipe = {"name": "glyphs", "seed": GLYPH_SEED, "classes": GLYPH_CLASSES,
              "train_per_class": GLYPH_TRAIN_PER_CLASS, "test_per_class": GLYPH_TEST_PER_CLASS,
              "generator_version": GENERATOR_VERSION}
    directory = dataset_dir("glyphs", data_root)
    if not force and recipe_matches(directory, MANIFEST, recipe, CLASSIFICATION_SPLITS):
        return directory
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
    return directory


def folder_cache(name: str, data_root: Path | str | None, image_size: int) -> Path:
    few_shot_cache = dataset_dir(name, data_root, image_size)
    return few_shot_cache.with_name(few_shot_cache.name + "-classification")


def import_folder_classes(source: str | Path, out_dir: Path, image_size: int = 32,
                          progress: bool = False) -> Path:
    """Every class folder of ``source`` split per image into train/test stores in
    ``out_dir`` (a no-op when its manifest matches the folder's files)."""
    from taml.data.folder import _fingerprint, read_image, scan_folder

    source = Path(source).expanduser().resolve()
    classes = scan_folder(source)
    recipe = {"version": FOLDER_VERSION, "source": str(source), "image_size": image_size,
              "test_fraction": FOLDER_TEST_FRACTION, "fingerprint": _fingerprint(classes)}
    if recipe_matches(out_dir, FOLDER_MANIFEST, recipe, CLASSIFICATION_SPLITS):
        return out_dir
    small = [f"'{n}' has {len(f)}" for n, f in classes.items() if len(f) < 2]
    if small:
        raise DatasetError(f"too few images in {source}: class {', '.join(small[:3])}; each "
                           "class needs at least 2 PNG/JPEG images (one to train, one to test)")
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
    return out_dir


def load_base_dataset(name: str, data_root: Path | str | None = None,
                      image_size: int | None = None
                      ) -> tuple[SplitData, SplitData, tuple[str, ...]]:
    """``(train, test, class_names)`` of a classification dataset; images uint8
    ``[N, H, W, C]`` (C = 1 for MNIST, 3 otherwise), labels int64 ``[N]`` sorted.

    A missing store is a :class:`DatasetError` naming its ``get_data.py`` command.
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    if is_folder_dataset(name):
        size = image_size or 32
        directory = import_folder_classes(name[len(FOLDER_PREFIX):],
                                          folder_cache(name, root, size), size)
        fix_hint, size_check = f"check the folder {name[len(FOLDER_PREFIX):]}", size
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
        directory, size_check = dataset_dir(name, root), spec.image_size
        fix_hint = spec.get_data_command
        if root != default_data_root():
            fix_hint += f" --data_root {root}"
    train, test = (load_split(directory, split, fix_hint=fix_hint, image_size=size_check)
                   for split in CLASSIFICATION_SPLITS)
    if train.class_names != test.class_names:
        raise DatasetError(f"{directory}: train and test have different classes; rebuild it "
                           f"with: {fix_hint} --force")
    return train, test, train.class_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate taml's embedded classification "
                                     "dataset 'glyphs' (also made on first use).")
    parser.add_argument("name", choices=["glyphs"])
    parser.add_argument("--data_root", default=None, help="default: data/ or $TAML_DATA_ROOT")
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    try:
        directory = generate_glyphs(args.data_root, args.force)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"glyphs: {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
