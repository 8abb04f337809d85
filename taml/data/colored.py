"""Colored MNIST (Kim et al., "Learning Not to Learn", CVPR 2019), re-created from MNIST.

The paper's protocol: ten mean colours, one per class. A TRAINING image's foreground is
painted with a colour drawn from N(mean_colour(y), sigma^2 I); a TEST image's mean colour is
drawn uniformly among the ten, independently of its label, then jittered the same way; the
background stays black. With small sigma^2 colour predicts the label almost perfectly in
training and not at all in test. A grayscale copy (foreground intensity in all three
channels) serves the "Gray" baseline of the paper's table.

**Not bit-identical with the authors' files** (``mnist_10color_jitter_var_*.npy``): their
generation script was never released (their issue #4), so the ten mean colours and the random
draws here are our own. The protocol is the paper's; the numbers of the paper's table are for
their files, not these.

Bases (``base`` argument):

- ``mnist``: MNIST digits, light on an exactly black background: the foreground intensity is
  the pixel value / 255, as in the protocol (needs ``python data/mnist/get_data.py``).
- ``digits``: the UCI digits bundled with scikit-learn (no download; 1,497 train / 300 test,
  28x28, :mod:`taml.data.classification`): like MNIST, light ink on an exactly black
  background, so the same 'exact' rule (intensity = value / 255) applies.
- ``glyphs``: taml's embedded 10-class glyphs (no download). They are light strokes on a dark
  background of random colour with pixel noise, so the foreground is taken relative to each
  image: r = (luminance - median) / (max - median), mapped linearly from ``DEAD_ZONE`` (0:
  background noise stays unpainted) to ``SATURATION`` (1: stroke interiors are solid, like
  MNIST's saturated strokes, so a stroke carries one colour, not one per noise level).
- ``folder:PATH``: a user's class folders of DARK-on-light images (ink on paper): the same
  relative rule on the inverted luminance, so the dark pixels are the foreground.

Everything is deterministic from ``seed``; the result is cached under
``<data_root>/colored/<base>-<size>px/var_<sigma^2>-seed<seed>/`` ({train,test}.npz, taml's
store format) and ``.../<base>-<size>px/gray/`` ({train,test}.npz), each with a recipe
manifest written last (a changed base, e.g. a folder's new images, rebuilds them).

    python -m taml.data.colored --base mnist --color_var 0.02      # one variance
    python -m taml.data.colored --base mnist --all                 # the table's seven
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taml.data.registry import DatasetError, default_data_root, is_folder_dataset
from taml.data.store import (
    SplitData,
    load_split,
    make_split,
    recipe_matches,
    save_split,
    write_recipe,
    writing_store,
)

# sigma^2 of the paper's table (the value in the authors' file names, e.g. var_0.020)
PAPER_VARIANCES = (0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05)
# Ten hues at equal brightness, one per class (ours: the authors' are unpublished): evenly
# spaced on the colour circle of the plane R + G + B = 1.5, so the classes differ in hue, not
# in intensity. A colour-blind feature (equal weights on R, G, B) then exists and learns
# nothing of the label from brightness; with unequal brightness, intensity alone would stay
# a shortcut that no colour-removal can take away without also removing the shape.
_HUES = 2 * np.pi * np.arange(10) / 10
MEAN_COLOURS = 0.5 + 0.45 * np.stack(
    [np.cos(_HUES), np.cos(_HUES - 2 * np.pi / 3), np.cos(_HUES + 2 * np.pi / 3)], axis=1)
DEAD_ZONE, SATURATION = 0.3, 0.4
GENERATOR_VERSION = 1
MANIFEST = "colored.json"
COLOURED_BASES = ("mnist", "glyphs", "digits")  # and folder:PATH
_TRAIN_DRAW, _TEST_DRAW = 0, 1  # part of each split's random seed


@dataclass(frozen=True)
class ColoredData:
    """The four splits LNL and its baselines read; images uint8 ``[N, H, W, 3]``."""

    train: SplitData       # colour drawn around the label's mean colour
    test: SplitData        # colour independent of the label ("colour-shuffled")
    train_gray: SplitData  # the same digits in gray (the "Gray" baseline trains on it)
    test_gray: SplitData
    colour_var: float
    directory: Path


def variance_name(colour_var: float) -> str:
    """``0.02 -> '0.020'``: the authors' file-name spelling, used in folder names."""
    return f"{colour_var:.3f}" if round(colour_var, 3) == colour_var else repr(colour_var)


def check_colour_var(colour_var: float) -> float:
    if not np.isfinite(colour_var) or colour_var < 0 or colour_var > 1:
        table = ", ".join(variance_name(v) for v in PAPER_VARIANCES)
        raise DatasetError(
            f"--color_var {colour_var} is not a colour variance in [0, 1]; the paper's table "
            f"uses {table}"
        )
    return float(colour_var)


def foreground_alpha(images: np.ndarray, polarity: str) -> np.ndarray:
    """Foreground intensity in [0, 1]: uint8 ``[N, H, W, C]`` -> float32 ``[N, H, W]``.

    ``polarity``: 'exact' (MNIST: light on pure black, intensity = value / 255), 'light'
    (light on a dark, noisy, coloured background) or 'dark' (dark ink on light paper); the
    last two are relative to each image's median (the background) and maximum, ramped from
    0 at ``DEAD_ZONE`` of that range to 1 at ``SATURATION`` (module docstring).
    """
    luminance = images.astype(np.float32).mean(axis=-1) / 255.0
    if polarity == "exact":
        return luminance
    if polarity == "dark":
        luminance = 1.0 - luminance
    elif polarity != "light":
        raise ValueError(f"polarity must be exact, light or dark, not {polarity!r}")
    background = np.median(luminance, axis=(1, 2), keepdims=True)
    peak = luminance.max(axis=(1, 2), keepdims=True)
    relative = (luminance - background) / np.maximum(peak - background, 1e-6)
    return np.clip((relative - DEAD_ZONE) / (SATURATION - DEAD_ZONE), 0.0, 1.0)


def draw_colours(labels: np.ndarray, colour_var: float, rng: np.random.Generator,
                 label_bound: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each image's colour before clipping, float ``[N, 3]``, and its mean's index ``[N]``.

    ``label_bound``: the mean is the label's (training); otherwise drawn uniformly among
    the ten, independent of the label (test). The jitter is N(0, colour_var I) either way.
    """
    n = len(labels)
    if label_bound:
        means = np.asarray(labels, dtype=np.int64) % len(MEAN_COLOURS)
    else:
        means = rng.integers(0, len(MEAN_COLOURS), n)
    jitter = rng.normal(0.0, np.sqrt(colour_var), (n, 3))
    return MEAN_COLOURS[means] + jitter, means


def paint(alpha: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Foreground ``alpha`` ``[N, H, W]`` painted with ``colours`` ``[N, 3]`` (clipped to
    [0, 1]) on black -> uint8 ``[N, H, W, 3]``."""
    colours = np.clip(colours, 0.0, 1.0).astype(np.float32)
    image = alpha[..., None] * colours[:, None, None, :] * 255.0
    return np.rint(image).astype(np.uint8)


def gray(alpha: np.ndarray) -> np.ndarray:
    """The grayscale copy: ``alpha`` ``[N, H, W]`` -> uint8 ``[N, H, W, 3]``."""
    return np.repeat(np.rint(alpha * 255.0).astype(np.uint8)[..., None], 3, axis=-1)


def _polarity(base: str) -> str:
    if is_folder_dataset(base):
        return "dark"
    return "exact" if base in ("mnist", "digits") else "light"  # ink on exact black: exact


def _slug(base: str) -> str:
    if not is_folder_dataset(base):
        return base
    source = Path(base.split(":", 1)[1]).expanduser().resolve()
    return f"folder-{source.name}-{hashlib.sha1(str(source).encode()).hexdigest()[:10]}"


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha1()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_base(base: str, data_root: Path | str | None, image_size: int | None = None):
    """The uncoloured base: ``(train, test, class_names)`` of taml's classification data
    (:func:`taml.data.classification.load_base_dataset`), images uint8 ``[N, H, W, C]``;
    ``image_size`` is the import size of a folder (others are resized after, in alpha)."""
    if base not in COLOURED_BASES and not is_folder_dataset(base):
        raise DatasetError(
            f"cannot colour dataset {base!r}: --method lnl takes --dataset mnist, glyphs, digits "
            "or folder:PATH (class sub-folders of dark-on-light images)"
        )
    from taml.data.classification import load_base_dataset

    size = image_size if is_folder_dataset(base) else None
    train, test, class_names = load_base_dataset(base, data_root, size)
    if len(class_names) > len(MEAN_COLOURS):
        raise DatasetError(
            f"{base} has {len(class_names)} classes; colouring has {len(MEAN_COLOURS)} mean "
            "colours, so classes would share one. Use a dataset of at most 10 classes."
        )
    return train, test, tuple(class_names)


def resize_alpha(alpha: np.ndarray, image_size: int | None) -> np.ndarray:
    """``alpha`` ``[N, H, W]`` resized to ``image_size`` (area average when shrinking, so a
    thin stroke fades rather than vanishes); unchanged when None or already that size."""
    if image_size is None or image_size == alpha.shape[1]:
        return alpha
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[:, None]
    mode = "area" if image_size < alpha.shape[1] else "bilinear"
    resized = F.interpolate(tensor, size=(image_size, image_size), mode=mode)
    return resized[:, 0].clamp_(0, 1).numpy()


def build_colored(base: str, colour_var: float, seed: int = 0,
                  data_root: Path | str | None = None, force: bool = False,
                  image_size: int | None = None) -> ColoredData:
    """Colours ``base`` with variance ``colour_var`` (cached; ``force`` rebuilds).
    ``image_size``: the images' size (default: the base's own)."""
    colour_var = check_colour_var(colour_var)
    root = Path(data_root) if data_root is not None else default_data_root()
    train, test, names = load_base(base, root, image_size)
    train_x, train_y, test_x, test_y = train.images, train.labels, test.images, test.labels
    base_print = _fingerprint(train_x, train_y, test_x, test_y)
    size = image_size or train_x.shape[1]
    home = root / "colored" / f"{_slug(base)}-{size}px"
    # the command that remakes exactly this store: its seed, size and data root included
    hint = (f"python -m taml.data.colored --base {base} --color_var "
            f"{variance_name(colour_var)}" + (f" --seed {seed}" if seed else "")
            + (f" --image_size {size}" if image_size else "")
            + (f" --data_root {root}" if root != default_data_root() else ""))

    gray_dir = home / "gray"
    gray_recipe = {"base": base, "base_fingerprint": base_print, "polarity": _polarity(base),
                   "ramp": [DEAD_ZONE, SATURATION], "image_size": size,
                   "generator_version": GENERATOR_VERSION}
    coloured_dir = home / f"var_{variance_name(colour_var)}-seed{seed}"
    recipe = dict(gray_recipe, colour_var=colour_var, seed=seed,
                  mean_colours=MEAN_COLOURS.tolist())
    train_alpha = test_alpha = None
    if force or not recipe_matches(gray_dir, MANIFEST, gray_recipe, ("train", "test")):
        train_alpha = resize_alpha(foreground_alpha(train_x, _polarity(base)), size)
        test_alpha = resize_alpha(foreground_alpha(test_x, _polarity(base)), size)
        with writing_store(gray_dir):  # a full disk or unwritable root: one line
            (gray_dir / MANIFEST).unlink(missing_ok=True)  # written last: never half a cache
            save_split(gray_dir, "train", make_split(gray(train_alpha), train_y, names))
            save_split(gray_dir, "test", make_split(gray(test_alpha), test_y, names))
            write_recipe(gray_dir, MANIFEST, gray_recipe)
    if force or not recipe_matches(coloured_dir, MANIFEST, recipe, ("train", "test")):
        if train_alpha is None:
            train_alpha = resize_alpha(foreground_alpha(train_x, _polarity(base)), size)
            test_alpha = resize_alpha(foreground_alpha(test_x, _polarity(base)), size)
        train_colours, _ = draw_colours(
            train_y, colour_var, np.random.default_rng([seed, _TRAIN_DRAW]), label_bound=True)
        test_colours, _ = draw_colours(
            test_y, colour_var, np.random.default_rng([seed, _TEST_DRAW]), label_bound=False)
        with writing_store(coloured_dir):
            (coloured_dir / MANIFEST).unlink(missing_ok=True)
            save_split(coloured_dir, "train", make_split(paint(train_alpha, train_colours),
                                                         train_y, names))
            save_split(coloured_dir, "test", make_split(paint(test_alpha, test_colours),
                                                        test_y, names))
            write_recipe(coloured_dir, MANIFEST, recipe)
    return ColoredData(
        train=load_split(coloured_dir, "train", fix_hint=hint),
        test=load_split(coloured_dir, "test", fix_hint=hint),
        train_gray=load_split(gray_dir, "train", fix_hint=hint),
        test_gray=load_split(gray_dir, "test", fix_hint=hint),
        colour_var=colour_var,
        directory=coloured_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create Colored MNIST (LNL's protocol; not "
                                     "bit-identical with the authors' files).")
    parser.add_argument("--base", default="mnist", help="mnist | glyphs | digits | folder:PATH")
    parser.add_argument("--color_var", type=float, default=0.02, help="sigma^2 of the jitter")
    parser.add_argument("--all", action="store_true", help="the paper's seven sigma^2 values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=None, help="default: the base's")
    parser.add_argument("--data_root", default=None, help="default: data/ or $TAML_DATA_ROOT")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        for colour_var in PAPER_VARIANCES if args.all else (args.color_var,):
            data = build_colored(args.base, colour_var, args.seed, args.data_root, args.force,
                                 args.image_size)
            print(f"{args.base} sigma^2={variance_name(colour_var)}: {data.directory} "
                  f"({len(data.train.labels)} train, {len(data.test.labels)} test)")
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
