"""The embedded datasets: procedural few-shot images that taml generates itself.

- ``synthetic``: 100 classes of glyphs (64 meta-train / 16 meta-val / 20 meta-test), 80
  images each, 32x32 RGB. A class is a fixed set of 2-4 random strokes (quadratic Bezier
  curves); an image of it draws those strokes under a random pose (rotation, scale,
  translation), stroke width and control-point wobble, with random foreground and
  background colours (colour never identifies a class), a distractor stroke and pixel noise.
  Like Omniglot: learnable from a few examples, far from trivial.
- ``synthetic_ood``: the out-of-distribution companion from another family, textures
  (gratings, checkerboards, rings and blob fields with a class-specific orientation,
  frequency and palette), 20 meta-val and 20 meta-test classes.

Everything is deterministic from ``--seed``: class c of a dataset draws from
``default_rng([seed, family, c])``, so a class never depends on how many others exist.

    python -m taml.data.synthetic [--data_root DIR] [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from taml.data.registry import dataset_dir, default_data_root
from taml.data.store import make_split, save_split, split_path

IMAGE_SIZE = 32
IMAGES_PER_CLASS = 80
GLYPH_SPLITS = {"train": 64, "valid": 16, "test": 20}
TEXTURE_SPLITS = {"valid": 20, "test": 20}
_POINTS_PER_STROKE = 20
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


def _compose(alpha: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Blend a foreground over a background with random, well-separated colours, add noise.
    ``alpha`` ``[n, H, W]`` in [0, 1] -> uint8 ``[n, H, W, 3]``."""
    background = rng.uniform(0, 255, (n, 1, 1, 3))
    offset = rng.uniform(90, 160, (n, 1, 1, 3)) * rng.choice([-1, 1], (n, 1, 1, 3))
    foreground = np.clip(background + offset, 0, 255)
    image = background + (foreground - background) * alpha[..., None]
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def glyph_class(seed: int, index: int, n_images: int = IMAGES_PER_CLASS,
                size: int = IMAGE_SIZE) -> np.ndarray:
    """The images ``[n, size, size, 3]`` of glyph class ``index``."""
    rng = np.random.default_rng([seed, _GLYPH, index])
    n_strokes = rng.integers(2, 5)
    strokes = rng.uniform(0.18, 0.82, (n_strokes, 3, 2))  # the class's structure

    wobble = rng.normal(0, 0.025, (n_images, n_strokes, 3, 2))
    curves = _bezier(strokes[None] + wobble).reshape(n_images, -1, 2)  # [n, S*P, 2]
    angle = rng.normal(0, 0.25, n_images)  # radians, about 15 degrees
    scale = rng.uniform(0.85, 1.15, n_images)
    shift = rng.normal(0, 0.05, (n_images, 1, 2))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    points = (curves - 0.5) @ rotation.transpose(0, 2, 1) + 0.5 + shift

    # one thinner distractor stroke per image: clutter that carries no class information
    distractor = _bezier(rng.uniform(0.0, 1.0, (n_images, 1, 3, 2))).reshape(n_images, -1, 2)
    pixels = _grid(size)
    alpha = _stroke_alpha(pixels, points, rng.uniform(0.035, 0.065, (n_images, 1)), size)
    clutter = _stroke_alpha(pixels, distractor, np.full((n_images, 1), 0.025), size)
    alpha = np.maximum(alpha, 0.5 * clutter * (rng.random((n_images, 1, 1)) < 0.7))
    return _compose(alpha, rng, n_images)


def _stroke_alpha(pixels: np.ndarray, points: np.ndarray, width: np.ndarray,
                  size: int) -> np.ndarray:
    """Anti-aliased coverage of strokes through ``points`` ``[n, K, 2]`` -> ``[n, H, W]``."""
    diff = pixels[None, :, None, :] - points[:, None, :, :]  # [n, H*W, K, 2]
    distance = np.sqrt(np.min(np.sum(diff * diff, axis=-1), axis=-1))  # [n, H*W]
    alpha = np.clip((width - distance) * size + 0.5, 0.0, 1.0)
    return alpha.reshape(-1, size, size)


def texture_class(seed: int, index: int, n_images: int = IMAGES_PER_CLASS,
                  size: int = IMAGE_SIZE) -> np.ndarray:
    """The images of texture class ``index``: a pattern kind with its own orientation,
    frequency and palette, varied per image in phase, orientation and frequency."""
    rng = np.random.default_rng([seed, _TEXTURE, index])
    kind = index % 4
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
        centres = rng.uniform(-0.5, 0.5, (n_images, 6, 2))
        d2 = np.sum((pixels[None, :, None, :] - centres[:, None]) ** 2, axis=-1)
        value = np.exp(-d2 * (freq[:, :, None] * 6) ** 2).sum(-1) * 2 - 1
    alpha = (np.clip(value, -1, 1) + 1) / 2  # [n, H*W]
    jitter = rng.normal(0, 12, (n_images, 2, 1, 3))
    colours = np.clip(palette[None, :, None, :] + jitter, 0, 255)
    image = colours[:, 0] + (colours[:, 1] - colours[:, 0]) * alpha[..., None]
    image = image + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8).reshape(n_images, size, size, 3)


def _families(name: str):
    if name == "synthetic":
        return glyph_class, "glyph", GLYPH_SPLITS
    if name == "synthetic_ood":
        return texture_class, "texture", TEXTURE_SPLITS
    raise ValueError(f"no embedded dataset called {name!r}: synthetic or synthetic_ood")


def generate_synthetic(name: str, data_root: Path | str | None = None, seed: int = 0,
                       force: bool = False, images_per_class: int = IMAGES_PER_CLASS,
                       progress: bool = True) -> Path:
    """Writes ``<data_root>/<name>/{split}.npz`` (skipped when all exist, unless ``force``)."""
    make_class, prefix, splits = _families(name)
    directory = dataset_dir(name, data_root if data_root is not None else default_data_root())
    if not force and all(split_path(directory, s).is_file() for s in splits):
        return directory
    first = 0
    total = sum(splits.values())
    bar = tqdm(total=total, desc=f"generating {name}", unit="class", disable=not progress)
    for split, n_classes in splits.items():
        classes = range(first, first + n_classes)
        parts = []
        for c in classes:
            parts.append(make_class(seed, c, images_per_class))
            bar.update(1)
        images = np.concatenate(parts)
        labels = np.repeat(np.arange(n_classes), images_per_class)
        names = [f"{prefix}_{c:03d}" for c in classes]
        save_split(directory, split, make_split(images, labels, names))
        first += n_classes
    bar.close()
    return directory


def save_preview(directory: Path, split: str = "train", n_classes: int = 10,
                 per_class: int = 8) -> Path:
    """A PNG grid of the first classes (rows) and their first images (columns)."""
    from PIL import Image

    from taml.data.store import load_split

    data = load_split(directory, split, fix_hint="python -m taml.data.synthetic --force")
    offsets = data.class_offsets
    rows = [np.concatenate(list(data.images[offsets[c]:offsets[c] + per_class]), axis=1)
            for c in range(min(n_classes, data.n_classes))]
    path = Path(directory) / "preview.png"
    Image.fromarray(np.concatenate(rows, axis=0)).resize(
        (per_class * 64, len(rows) * 64), Image.NEAREST).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate taml's embedded datasets.")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name in ("synthetic", "synthetic_ood"):
        directory = generate_synthetic(name, args.data_root, args.seed, args.force)
        first_split = "train" if name == "synthetic" else "valid"
        print(f"{name}: {directory} (preview: {save_preview(directory, first_split)})")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
