"""The class-count formulas and label-noise models of the biased-data papers, as pure
functions of counts and label arrays (no images), so that the documented numbers can be
checked without any download. :mod:`taml.data.recipes` applies them to datasets.

- Binary imbalance, two formulas (``--binary_protocol``):
  ``tml`` (Kamani et al., KDD 2020, ``makeImbalanceDataset.py``): the target set is taken
  *besides* ``n_train``: n_maj = int(n_train / (1 + (1 - r))), n_min = int(n_maj * (1 - r));
  2-vs-3 at r = 0.995, n_train 5000: 4975 threes and 24 twos.
  ``l2rw`` (Ren et al., ICML 2018, ``mnist_train.py``): the validation images are carved
  *out of* ``n_train``: n_min = floor(n_train (1 - r)) - m, n_maj = floor(n_train r) - m for
  m meta images per class; 4-vs-9 at r = 0.995, m = 5: 20 fours and 4970 nines.
- Long tail (Cui et al.'s profile as MW-Net builds it, Shu et al., NeurIPS 2019): after the
  meta images are removed, n_c = int(n_max * (1/IF)^(c/(C-1))) for class c = 0..C-1.
- Label noise (MW-Net's ``load_corrupted_data.py``): a row-stochastic transition matrix T,
  every label resampled from T[y]: ``uniform`` T = p/C + (1-p) I (a label survives with
  probability 1 - p + p/C), ``flip`` all mass p on one random other class, ``flip2`` p/2 on
  each of two random other classes (the paper's "flip" noise).
"""

from __future__ import annotations

import math

import numpy as np

from taml.data.registry import DatasetError

BINARY_PROTOCOLS = ("tml", "l2rw")
NOISE_TYPES = ("uniform", "flip", "flip2")
# binary test images per class: TML tests on 500 + 500, L2RW on 250 + 250 (ntest 500)
BINARY_TEST_PER_CLASS = {"tml": 500, "l2rw": 250}
_EPS = 1e-9  # 5000 * (1 - 0.995) is 25.000000000000004 in floats: floor must give 25


class BiasedDataError(DatasetError):
    """A biased-data recipe that cannot be built; the one-line message names the flag."""


def binary_counts(n_train: int, ratio: float, meta_per_class: int,
                  protocol: str = "tml") -> tuple[int, int]:
    """Training images ``(n_minority, n_majority)`` of a binary imbalance (module docstring)."""
    if not 0.0 < ratio < 1.0:
        raise BiasedDataError(f"--ratio must be in (0, 1) (the majority's share of training), "
                              f"got {ratio}")
    if n_train < 2:
        raise BiasedDataError(f"--n_train must be at least 2, got {n_train}")
    if protocol == "tml":
        n_major = int(n_train / (1.0 + (1.0 - ratio)) + _EPS)
        n_minor = int(n_major * (1.0 - ratio) + _EPS)
    elif protocol == "l2rw":
        n_minor = math.floor(n_train * (1.0 - ratio) + _EPS) - meta_per_class
        n_major = math.floor(n_train * ratio + _EPS) - meta_per_class
    else:
        raise BiasedDataError(f"--binary_protocol must be one of {', '.join(BINARY_PROTOCOLS)}, "
                              f"got {protocol!r}")
    if n_minor < 1:
        raise BiasedDataError(
            f"--ratio {ratio} with --n_train {n_train} leaves the minority class empty "
            f"({protocol} formula): lower --ratio or raise --n_train")
    if n_major < 1:
        raise BiasedDataError(
            f"--ratio {ratio} with --n_train {n_train} leaves the majority class empty "
            f"({protocol} formula): raise --ratio or --n_train")
    return n_minor, n_major


def long_tail_counts(n_max: int, n_classes: int, imbalance_factor: float) -> list[int]:
    """MW-Net's per-class training counts, largest first: ``[C]``."""
    if not imbalance_factor >= 1.0 or not math.isfinite(imbalance_factor):
        raise BiasedDataError(f"--imbalance_factor must be a finite number >= 1 (largest class "
                              f"/ smallest), got {imbalance_factor}")
    if n_classes < 2:
        raise BiasedDataError(f"a long tail needs at least 2 classes, the dataset has {n_classes}")
    # (1/IF)^(c/(C-1)) as MW-Net writes it (its --imb_factor is 1/IF): the same floats, so
    # the same int() truncations as the documented 12380 / 10626 images
    counts = [int(n_max * (1.0 / imbalance_factor) ** (c / (n_classes - 1.0)))
              for c in range(n_classes)]
    if counts[-1] < 1:
        largest = n_max  # the tail keeps one image up to IF = n_max
        raise BiasedDataError(
            f"--imbalance_factor {imbalance_factor:g} leaves the last class empty (n_max is "
            f"{n_max}): use --imbalance_factor {largest} or less")
    return counts


def transition_matrix(noise_type: str, rate: float, n_classes: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The noise model ``T`` ``[C, C]`` (rows sum to 1); ``rng`` picks flip targets."""
    if not 0.0 <= rate < 1.0:
        raise BiasedDataError(f"--noise_rate must be in [0, 1), got {rate}")
    if noise_type not in NOISE_TYPES:
        raise BiasedDataError(f"--noise_type must be one of {', '.join(NOISE_TYPES)}, got "
                              f"{noise_type!r}")
    needed = {"uniform": 2, "flip": 2, "flip2": 3}[noise_type]
    if n_classes < needed:
        raise BiasedDataError(f"--noise_type {noise_type} needs at least {needed} classes, the "
                              f"dataset has {n_classes}")
    if noise_type == "uniform":
        return np.full((n_classes, n_classes), rate / n_classes) + (1.0 - rate) * np.eye(n_classes)
    matrix = (1.0 - rate) * np.eye(n_classes)
    n_targets = 1 if noise_type == "flip" else 2
    for c in range(n_classes):
        others = np.delete(np.arange(n_classes), c)
        matrix[c, rng.choice(others, size=n_targets, replace=False)] = rate / n_targets
    return matrix


def corrupt_labels(labels: np.ndarray, matrix: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Each label ``[N]`` resampled from its row of ``matrix`` -> noisy labels ``[N]`` (int64).

    A resample may land on the true label (uniform noise): that example is not corrupted.
    """
    labels = np.asarray(labels, dtype=np.int64)
    cumulative = np.cumsum(matrix, axis=1)[labels]  # [N, C]
    cumulative[:, -1] = 1.0  # rows sum to 1 up to rounding; the last bin must catch u < 1
    draws = rng.random(len(labels))[:, None]
    return (draws >= cumulative).sum(axis=1).astype(np.int64)
