"""The one set of rules for what taml is given: the command line's flags and the Python API's
arguments are checked here, by the same functions, so that ``--way 1`` and ``MAML(..., way=1)``
are refused by the same rule with the same words (the CLI names the flag, ``--way``; the API
the argument, ``way``).

Every check raises ``ValueError`` (``TypeError`` for an argument of the wrong type) whose
message names the argument and says what would be accepted: at the boundary where the input
enters, never from deep inside a tensor op (docs/reliability.md, "The Python API").
Nothing here imports torch at module level: the CLI's parsers use the number rules before
torch is loaded. Part of the run kit (it imports neither family); the episodic backbone's
probe, which needs the learners' layer types, is
:func:`taml.episodic.learners.backbone.check_backbone`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# --precision / precision=: the base learner's compute types (taml.episodic.learners.conv4)
PRECISIONS = ("fp32", "bf16")
# the smallest --sigma_init / sigma_init=: the KL's gradient -1/σ stays far below float32's
# largest number (3.4e38; 1e-45 diverged at the first step, blamed on --meta_lr)
SMALLEST_SIGMA = 1e-30


def check_number(name: str, value: float | None, *, minimum: float = 0.0,
                 inclusive: bool = False, below: float | None = None) -> None:
    """Raises ValueError naming ``name`` and ``value`` unless ``value`` is finite and above
    ``minimum`` (or equal to it, ``inclusive``) and under ``below`` when given; None (left to
    its method's default) passes. NaN passes every comparison (``nan <= 0`` is False), so
    finiteness is tested first."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # a 0-dim tensor or numpy scalar
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    low = value >= minimum if inclusive else value > minimum
    if math.isfinite(value) and low and (below is None or value < below):
        return
    if below is not None:
        rule = f"a finite number in {'[' if inclusive else '('}{minimum:g}, {below:g})"
    elif minimum == 0:
        rule = "a finite number of 0 or more" if inclusive else "a positive finite number"
    else:
        rule = f"a finite number of at least {minimum:g}" if inclusive else (
            f"a finite number above {minimum:g}")
    raise ValueError(f"{name} must be {rule}, got {value}")


def check_count(name: str, value: int | None, minimum: int = 1, why: str = "") -> None:
    """Raises unless ``value`` is a whole number of at least ``minimum`` (None passes).
    ``why`` is added to the message (``--way``'s "for classification")."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        if not (hasattr(value, "__index__")):  # numpy / 0-dim integer tensors index fine
            raise TypeError(f"{name} must be a whole number, got {type(value).__name__} "
                            f"{value!r}")
        value = value.__index__()
    if value < minimum:
        word = "0 or more" if minimum == 0 else f"at least {minimum}"
        raise ValueError(f"{name} must be {word}{why}, got {value}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


# ---- the rules both families' entry points share: one per quantity ----

def check_way(name: str, way: int) -> None:
    # 1 is refused too, so "at least 1" would mislead
    check_count(name, way, 2, " for classification")


def check_n_steps(name: str, n_steps: int | None) -> None:
    # 0 inner steps would meta-learn nothing: the classifier starts at zero, the loss stays
    # at ln(way) and the meta-gradient is exactly 0
    check_count(name, n_steps, 1)


def check_sigma_init(name: str, sigma: float) -> None:
    """σ of the posteriors at initialisation: its inverse softplus needs σ > 0, and the KL's
    gradient -1/σ is infinite in float32 below about 3e-39, so such a run diverges at its
    first step whatever ``--meta_lr`` (a divergence it would blame on that flag)."""
    try:
        check_number(name, sigma)
    except ValueError:
        raise ValueError(f"{name} must be a positive finite σ, got {sigma} (the original's "
                         "is softplus(0) = log 2 = 0.693)") from None
    if sigma < SMALLEST_SIGMA:
        raise ValueError(f"{name} must be at least {SMALLEST_SIGMA:g}: the KL's gradient "
                         f"-1/σ of a smaller σ overflows float32 at the first step, got "
                         f"{sigma}")


def check_precision(name: str, precision: str) -> None:
    check_choice(name, precision, PRECISIONS)


def check_seed(name: str, seed: int) -> None:
    """numpy's and torch's generators take seeds in [0, 2^63): a negative one is refused by
    numpy, one of 2^63 or more overflows torch's ``manual_seed`` (a traceback mid-run)."""
    check_count(name, seed, 0)
    if seed >= 2 ** 63:
        raise ValueError(f"{name} must be below 2^63 = {2 ** 63}, got {seed}")


# ---- the Python API's tensors and objects (torch imported when they are checked) ----

def check_generator(name: str, generator) -> None:
    import torch

    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator (torch.Generator().manual_seed("
                        f"{generator!r}) for a seed) or None, got {type(generator).__name__}")


def check_images(name: str, x) -> None:
    """Inputs ``x`` must be floating point: uint8 images cast as they are would be 0..255,
    not the [0, 1] the CLI reads."""
    import torch

    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; uint8 "
                         f"images: {name}.float() / 255")


def check_labels(name: str, labels, n_classes: int | None, real=None,
                 n_classes_name: str = "way") -> None:
    """Class indices: an integer tensor with every real entry (``real``: a bool mask of the
    entries that count, None: all) in [0, n_classes) (n_classes None: 0 or more)."""
    import torch

    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.dtype == torch.bool:
        what = labels.dtype if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"{name} must be integer class indices, got {what}")
    values = labels if real is None else labels[real.to(torch.bool)]
    if values.numel() == 0:
        return
    low, high = torch.aminmax(values)  # one device sync for both (a GPU step's loop)
    low, high = int(low), int(high)
    if low < 0:
        raise ValueError(f"{name} must be class indices of 0 or more, got {low}")
    if n_classes is not None and high >= n_classes:
        raise ValueError(f"{name} must be class indices in 0..{n_classes - 1} "
                         f"({n_classes_name} = {n_classes}), got {high}")
