"""The embedded datasets: procedural few-shot images that taml generates itself.

- ``synthetic``: 100 classes of glyphs (64 meta-train / 16 meta-val / 20 meta-test), 80
  images each, 32x32 RGB. A class is a fixed set of 2-4 random strokes (quadratic Bezier
  curves); an image of it draws those strokes under a random pose (rotation, scale,
  translation), stroke width, per-stroke displacement and control-point wobble, light
  strokes on a dark background of random colours (colour never identifies a class),
  distractor strokes and pixel noise. Like Omniglot: learnable from a few examples, far from
  trivial.
- ``synthetic_ood``: the out-of-distribution companion from another family, textures
  (gratings, checkerboards, rings and blob fields with a class-specific orientation,
  frequency and palette), 20 meta-val and 20 meta-test classes.

Everything is deterministic from ``--seed``: class c of a dataset draws from
``default_rng([seed, family, c])``, so a class never depends on how many others exist.

    python -m taml.data.synthetic [--data_root DIR] [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from taml.data.registry import DatasetError, dataset_dir, default_data_root
from taml.data.store import (
    check_not_folder,
    make_split,
    recipe_matches,
    save_split,
    split_path,
    write_recipe,
)
from taml.run.folder import RunDirError, check_writable
from taml.run.progress import bar as progress_bar

IMAGE_SIZE = 32
IMAGES_PER_CLASS = 80
GLYPH_SPLITS = {"train": 64, "valid": 16, "test": 20}
TEXTURE_SPLITS = {"valid": 20, "test": 20}
# Bump when the images a seed gives change, so caches of an older generator are rebuilt.
GENERATOR_VERSION = 2
MANIFEST = "generator.json"
_POINTS_PER_STROKE = 9  # 8 segments per curve: smooth at 32 px
_GLYPH, _TEXTURE = 1, 2  # generator families, part of each class's seed


def _grid(size: int) -> np.ndarray:
    """Pixel centres in [0, 1]^2, ``[size*size, 2]`` (x, y)."""
    centres = (np.arange(size) + 0.5) / size
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _bezier(controls: np.ndarray) -> np.ndarray:
    """Points along quadratic Bezier curves: ``controls`` ``[..., 3, 2]`` -> ``[..., P, 2]``."""
    t = np.linspace(0.0, 1.0, _POINTS_PER_STROKE)[:, None]
    p0, p1, p2 = controls[..., 0:1, :], controls[..., 1:2, :], controls[..., 2:3, :]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _stroke_alpha(curves: np.ndarray, width: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased coverage of polylines ``curves`` ``[n, S, P, 2]`` (S curves of P points)
    with half-widths ``width`` ``[n, 1]`` -> ``[n, H, W]`` in [0, 1].

    The distance is to the polylines' segments, so long strokes stay solid; coverage ramps
    over one pixel around the stroke's edge, which anti-aliases without supersampling.
    float32 and plain broadcasting (no BLAS): fast, and the same bits on every machine.
    """
    curves = curves.astype(np.float32)
    n = len(curves)
    start = curves[:, :, :-1].reshape(n, -1, 1, 2)  # [n, K, 1, 2]: K segments
    along = curves[:, :, 1:].reshape(n, -1, 1, 2) - start
    ax, ay = along[..., 0], along[..., 1]  # [n, K, 1]
    pixels = _grid(size).astype(np.float32)
    dx = pixels[:, 0] - start[..., 0]  # [n, K, H*W]
    dy = pixels[:, 1] - start[..., 1]
    t = np.clip((dx * ax + dy * ay) / np.maximum(ax * ax + ay * ay, 1e-12), 0.0, 1.0)
    dx -= t * ax
    dy -= t * ay
    distance = np.sqrt(np.min(dx * dx + dy * dy, axis=1))  # [n, H*W]
    alpha = np.clip((width.astype(np.float32) - distance) * size + 0.5, 0.0, 1.0)
    return alpha.reshape(-1, size, size)


def _compose(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend a light foreground over a dark background, each of a random colour, and add
    noise: ``alpha`` ``[n, H, W]`` in [0, 1] -> uint8 ``[n, H, W, 3]``.

    Colours vary per image (they never identify a class) but the polarity is fixed, like
    ink on paper in Omniglot: with random polarity too, a 4-layer conv net needs thousands
    of iterations before shape beats colour, far beyond a CPU demo.
    """
    n = alpha.shape[0]
    background = rng.uniform(0, 90, (n, 1, 1, 3))
    foreground = rng.uniform(160, 255, (n, 1, 1, 3))
    image = background + (foreground - background) * alpha[..., None]
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def glyph_class(seed: int, index: int, n_images: int = IMAGES_PER_CLASS,
                size: int = IMAGE_SIZE) -> np.ndarray:
    """The images ``[n_images, size, size, 3]`` of glyph class ``index``."""
    rng = np.random.default_rng([seed, _GLYPH, index])
    n_strokes = int(rng.integers(2, 5))
    strokes = rng.uniform(0.18, 0.82, (n_strokes, 3, 2))  # the class's structure

    # handwriting-like variation: each stroke moves a little on its own, each control point
    # wobbles, then the whole glyph is rotated (std 17 degrees), scaled and shifted
    displacement = rng.normal(0, 0.025, (n_images, n_strokes, 1, 2))
    wobble = rng.normal(0, 0.03, (n_images, n_strokes, 3, 2))
    curves = _bezier(strokes[None] + displacement + wobble)  # [n, S, P, 2]
    angle = rng.normal(0, 0.3, n_images)
    scale = rng.uniform(0.8, 1.15, n_images)
    shift = rng.normal(0, 0.05, (n_images, 1, 2))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    curves = (curves - 0.5) @ rotation[:, None].transpose(0, 1, 3, 2) + 0.5 + shift[:, None]
    alpha = _stroke_alpha(curves, rng.uniform(0.03, 0.06, (n_images, 1)), size)

    # two thinner, fainter distractor strokes anywhere: clutter with no class information
    distractors = _bezier(rng.uniform(-0.1, 1.1, (n_images, 2, 3, 2)))
    clutter = _stroke_alpha(distractors, np.full((n_images, 1), 0.022), size)
    strength = rng.uniform(0.3, 0.7, (n_images, 1, 1)) * (rng.random((n_images, 1, 1)) < 0.8)
    return _compose(np.maximum(alpha, strength * clutter), rng)


def texture_class(seed: int, index: int, n_images: int = IMAGES_PER_CLASS,
                  size: int = IMAGE_SIZE) -> np.ndarray:
    """The images of texture class ``index``: a pattern kind with its own orientation,
    frequency and palette, varied per image in phase, orientation and frequency."""
    rng = np.random.default_rng([seed, _TEXTURE, index])
    kind = index % 4  # the four kinds take turns, so every split holds all of them
    orientation, frequency = rng.uniform(0, np.pi), rng.uniform(2.0, 6.0)
    palette = rng.uniform(0, 255, (2, 3))
    pixels = _grid(size) - 0.5  # [H*W, 2]

    theta = orientation + rng.normal(0, 0.15, (n_images, 1))
    freq = frequency * rng.uniform(0.9, 1.1, (n_images, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_images, 1))
    u = pixels[:, 0] * np.cos(theta) + pixels[:, 1] * np.sin(theta)
    v = -pixels[:, 0] * np.sin(theta) + pixels[:, 1] * np.cos(theta)
    if kind == 0:  # grating
        value = np.sin(2 * np.pi * freq * u + phase)
    elif kind == 1:  # checkerboard
        value = np.sin(2 * np.pi * freq * u + phase) * np.sin(2 * np.pi * freq * v)
    elif kind == 2:  # rings around a jittered centre
        centre = rng.normal(0, 0.1, (n_images, 1, 2))
        radius = np.linalg.norm(pixels[None] - centre, axis=-1)
        value = np.sin(2 * np.pi * freq * radius + phase)
    else:  # blob field: a sum of random bumps at the class's scale
        centres = rng.uniform(-0.55, 0.55, (n_images, 8, 2))
        d2 = np.sum((pixels[None, :, None, :] - centres[:, None]) ** 2, axis=-1)
        value = np.exp(-d2 * (freq[:, :, None] * 2.5) ** 2).sum(-1) * 2 - 1  # 2-8 px radii
    alpha = (np.clip(value, -1, 1) + 1) / 2  # [n, H*W]
    jitter = rng.normal(0, 12, (n_images, 2, 1, 3))
    colours = np.clip(palette[None, :, None, :] + jitter, 0, 255)
    image = colours[:, 0] + (colours[:, 1] - colours[:, 0]) * alpha[..., None]
    image = image + rng.normal(0, 10, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(n_images, size, size, 3)


def _family(name: str):
    if name == "synthetic":
        return glyph_class, "glyph", GLYPH_SPLITS
    if name == "synthetic_ood":
        return texture_class, "texture", TEXTURE_SPLITS
    raise ValueError(f"no embedded dataset called {name!r}: synthetic or synthetic_ood")


def generate_synthetic(name: str, data_root: Path | str | None = None, seed: int = 0,
                       force: bool = False, *, images_per_class: int = IMAGES_PER_CLASS,
                       splits: dict[str, int] | None = None, progress: bool = True) -> Path:
    """Writes ``<data_root>/<name>/{split}.npz`` and ``preview.png``; returns the folder.

    A no-op when the folder already holds this recipe (seed, counts, generator version),
    unless ``force``. ``images_per_class`` and ``splits`` (classes per split) exist for
    small test datasets; the defaults are the dataset taml documents.
    """
    make_class, prefix, default_splits = _family(name)
    splits = dict(splits or default_splits)
    recipe = {"name": name, "seed": seed, "images_per_class": images_per_class,
              "splits": splits, "generator_version": GENERATOR_VERSION}
    directory = dataset_dir(name, data_root if data_root is not None else default_data_root())
    if not force and recipe_matches(directory, MANIFEST, recipe, splits):
        return directory

    # the manifest goes first and comes back last: a run killed halfway is never a cache
    (directory / MANIFEST).unlink(missing_ok=True)
    bar = progress_bar(total=sum(splits.values()), desc=f"generating {name}", unit="class",
                       enabled=progress)
    first, preview = 0, None
    for split, n_classes in splits.items():
        classes = range(first, first + n_classes)
        parts = []
        for c in classes:
            parts.append(make_class(seed, c, images_per_class))
            bar.update(1)
        labels = np.repeat(np.arange(n_classes), images_per_class)
        data = make_split(np.concatenate(parts), labels, [f"{prefix}_{c:03d}" for c in classes])
        save_split(directory, split, data)
        preview = preview if preview is not None else parts
        first += n_classes
    bar.close()
    save_preview(preview, directory / "preview.png")
    write_recipe(directory, MANIFEST, recipe)
    return directory


def ensure_synthetic(name: str, data_root: Path | str | None = None) -> Path:
    """The store of an embedded dataset, generated on first use, and rebuilt (saying so)
    when an older generator made it or it is incomplete: only the files' existence would
    keep images from before a generator change forever. The recipe the folder records
    (seed, sizes) is kept; only the generator is new."""
    root = data_root if data_root is not None else default_data_root()
    directory = dataset_dir(name, root)
    for split in _family(name)[2]:
        check_not_folder(split_path(directory, split))
    try:
        recorded = json.loads((directory / MANIFEST).read_text())
        seed, per_class = int(recorded["seed"]), int(recorded["images_per_class"])
        splits = {str(k): int(v) for k, v in recorded["splits"].items()}
        version = recorded.get("generator_version")
        if recorded.get("name") != name or not splits:
            raise ValueError(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        recorded, seed, per_class, splits, version = None, 0, IMAGES_PER_CLASS, None, None
    recipe = {"name": name, "seed": seed, "images_per_class": per_class,
              "splits": splits or _family(name)[2], "generator_version": GENERATOR_VERSION}
    if recipe_matches(directory, MANIFEST, recipe, recipe["splits"]):
        return directory
    check_writable(directory, "--data_root")  # before minutes of generating, not after
    if recorded is not None and version != GENERATOR_VERSION:
        print(f"note: {directory} was made by generator version {version}, this taml's is "
              f"{GENERATOR_VERSION}: rebuilding it", file=sys.stderr)
    elif directory.exists():
        print(f"note: {directory} is incomplete: rebuilding it", file=sys.stderr)
    return generate_synthetic(name, root, seed, images_per_class=per_class, splits=splits)


def save_preview(classes: list[np.ndarray], path: Path, n_classes: int = 10,
                 per_class: int = 8, zoom: int = 2) -> Path:
    """A PNG grid for people: one row per class (the first ``n_classes``), its first
    ``per_class`` images across, each enlarged ``zoom`` times."""
    from PIL import Image

    rows = [np.concatenate(list(images[:per_class]), axis=1) for images in classes[:n_classes]]
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom),
                                         Image.NEAREST)
    image.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate taml's embedded datasets.")
    parser.add_argument("--data_root", default=None, help="default: data/ or $TAML_DATA_ROOT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name in ("synthetic", "synthetic_ood"):
        try:
            if not args.force:
                check_writable(dataset_dir(name, args.data_root or default_data_root()),
                               "--data_root")
            directory = generate_synthetic(name, args.data_root, args.seed, args.force)
        except (DatasetError, RunDirError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"{name}: {directory} (look at {directory / 'preview.png'})")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
