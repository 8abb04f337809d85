"""The base learner: the 4-block conv net of few-shot learning, as a pure function of a
parameter dict (applied with plain ``torch.nn.functional`` ops, no module surgery).

Each block: 3x3 conv (32 filters, stride 1, same padding, bias) -> batch norm -> ReLU ->
2x2 max pool; then a linear classifier on the flattened 2*2*32 (32 px) or 5*5*32 (84 px)
features.

Batch norm always normalises with the statistics of the batch it is given (transductive,
at test time too, as the original), computed over the **real rows only**: ``mask`` marks
them, so the zero images that pad a support set change nothing. It has a learned shift and
no scale, and belongs to the outer loop (never adapted in the inner loop). It is written
with plain tensor ops rather than ``F.batch_norm``, whose batching rule gives wrong
second-order meta-gradients under ``vmap`` (tests/test_learners.py checks the batched
path against task-by-task second-order gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_FILTERS = 32
N_BLOCKS = 4
BN_EPS = 1e-3  # the original's tf.contrib.layers.batch_norm default
CONV_KEYS = tuple(f"conv{l}_{p}" for l in range(1, N_BLOCKS + 1) for p in ("w", "b"))
DENSE_KEYS = ("dense_w", "dense_b")
ADAPTED_KEYS = CONV_KEYS + DENSE_KEYS  # what the inner loop updates, in layer order
# --precision's names (the config's choices, taml.episodic.config.PRECISIONS) -> the conv
# blocks' compute type under autocast (None: float32, no autocast); everything else stays
# float32
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def feature_size(image_size: int) -> int:
    """Flattened feature length after the four 2x2 pools (floor division, as 'VALID')."""
    side = image_size
    for _ in range(N_BLOCKS):
        side //= 2
    return side * side * N_FILTERS


def layer_index(key: str) -> int:
    """0..3 for conv1..conv4, 4 for the classifier: which γ scales this parameter's step."""
    return int(key[4]) - 1 if key.startswith("conv") else N_BLOCKS


def init_conv_params(generator: torch.Generator, in_channels: int = 3) -> dict[str, torch.Tensor]:
    """θ's conv part: kernels from a normal(0, 0.02) truncated at 2 std, biases 0."""
    params = {}
    for l in range(1, N_BLOCKS + 1):
        fan_in = in_channels if l == 1 else N_FILTERS
        kernel = torch.empty(N_FILTERS, fan_in, 3, 3)
        torch.nn.init.trunc_normal_(kernel, std=0.02, a=-0.04, b=0.04, generator=generator)
        params[f"conv{l}_w"] = kernel
        params[f"conv{l}_b"] = torch.zeros(N_FILTERS)
    return params


def images_to_input(images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> contiguous float ``[..., 3, H, W]`` in [0, 1].

    Made contiguous NCHW on purpose: on CPU the second-order conv path measured about 2x
    slower with channels-last inputs.
    """
    dtype = dtype or torch.get_default_dtype()
    return images.movedim(-1, -3).to(dtype).div_(255.0).contiguous()


def masked_batch_norm(
    x: torch.Tensor, shift: torch.Tensor | None, mask: torch.Tensor | None,
    eps: float = BN_EPS, scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalise ``x`` ``[N, C, H, W]`` over (N, H, W), using the rows where ``mask`` ``[N]``
    (float 0/1) is 1; then multiply by the learned per-channel ``scale`` (None: no scale, the
    original's) and add the learned ``shift`` (None: none). ``x`` ``[N, C]`` or ``[N, C, L]``
    (``nn.BatchNorm1d``) is normalised over its rows (and L) alike.

    ``mask`` None means every row is real. The masked sums are contractions (einsum), not
    mask-multiply-then-sum (one pass over the activations instead of two). They work in
    ``x``'s dtype; the row count stays in the mask's float32, where it is exact (in
    bfloat16 250 x 84 x 84 rows would round).

    A bfloat16 ``x`` (``--precision bf16``) with every row real takes the native
    ``F.batch_norm`` (training mode, no running statistics): its fused kernels and C++
    double backward made a second-order MAML iteration (84x84, 2 tasks) about 20% faster
    than these plain ops in bfloat16, and it accumulates the statistics in float32. Not in
    float32, where it was no faster, and on the speed benchmark's random images its
    Meta-SGD meta-gradient was 100x further from float64's (relative error 6e-3 against
    5e-5, ``benchmarks/precision_error.py --data random``; equal on the synthetic data), so
    float32 keeps these ops and its earlier results. Never under ``vmap``, whose
    batch-norm batching rule gives wrong second-order meta-gradients
    (tests/test_learners.py): the vmap path always passes a mask.
    """
    if x.dim() != 4:  # batch norm 1d: [N, C] or [N, C, L], as [N, C, L, 1]
        flat = x.reshape(x.shape[0], x.shape[1], -1, 1)
        return masked_batch_norm(flat, shift, mask, eps, scale).reshape(x.shape)
    if mask is None and x.dtype == torch.bfloat16 and scale is None and shift is not None \
            and eps == BN_EPS:
        return native_batch_norm(x, shift)
    spatial = x.shape[2] * x.shape[3]
    if mask is None:
        weight, count = x.new_ones(x.shape[0]), float(x.shape[0] * spatial)
    else:
        weight, count = mask.to(x.dtype), mask.sum() * spatial
    mean = (torch.einsum("n,nchw->c", weight, x) / count).to(x.dtype)
    centred = x - mean.view(1, -1, 1, 1)
    var = torch.einsum("n,nchw->c", weight, centred * centred) / count
    inverse_std = torch.rsqrt(var + eps).to(x.dtype)
    if scale is not None:
        inverse_std = inverse_std * scale.to(x.dtype)
    out = centred * inverse_std.view(1, -1, 1, 1)
    return out if shift is None else out + shift.to(x.dtype).view(1, -1, 1, 1)


def native_batch_norm(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``F.batch_norm`` on the batch's statistics, then the shift (every row real)."""
    # the shift added outside: F.batch_norm's double backward w.r.t. its bias fails
    # without a weight ("Expected a proper Tensor but got None"; torch 2.14)
    return (F.batch_norm(x, None, None, training=True, momentum=0.0, eps=BN_EPS)
            + shift.to(x.dtype).view(1, -1, 1, 1))


def autocast(x: torch.Tensor, precision: str) -> torch.autocast:
    """The autocast region of ``--precision`` on ``x``'s device (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(x.device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


def features(
    params: dict[str, torch.Tensor],
    bn_shifts: dict[str, torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Flattened features ``[N, feature_size]`` of ``x`` ``[N, 3, H, W]``: the four conv
    blocks, read from ``params``' ``conv{1..4}_{w,b}`` (other keys are ignored). ``mask``
    ``[N]`` marks the real rows; None: all are (see :func:`masked_batch_norm`).

    ``precision`` bf16: the blocks run under autocast (convolutions, batch norm, ReLU and
    pooling in bfloat16, their backward passes too), and the features come back in the
    parameters' dtype, so that the classifier, the losses and every gradient of a
    parameter (autocast's casts route them back) are float32.
    """
    with autocast(x, precision):
        for l in range(1, N_BLOCKS + 1):
            x = F.conv2d(x, params[f"conv{l}_w"], params[f"conv{l}_b"], padding=1)
            x = masked_batch_norm(x, bn_shifts[f"bn{l}"], mask)
            x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1).to(params["conv1_w"].dtype)


def forward(
    params: dict[str, torch.Tensor],
    bn_shifts: dict[str, torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits ``[N, way]`` of inputs ``x`` ``[N, 3, H, W]``.

    ``params`` holds ``conv{1..4}_{w,b}`` and ``dense_{w,b}`` (``dense_w`` is
    ``[features, way]``); ``bn_shifts`` holds ``bn{1..4}``. ``precision``: see
    :func:`features`.
    """
    return (features(params, bn_shifts, x, mask, precision) @ params["dense_w"]
            + params["dense_b"])


class ShiftBatchNorm2d(nn.BatchNorm2d):
    """The original's batch norm as a module: a learned per-channel shift, no scale, eps
    1e-3. (Inside the episodic learners every batch norm runs on the batch's real rows;
    see :mod:`taml.episodic.learners.backbone`.)"""

    def __init__(self, channels: int, eps: float = BN_EPS):
        super().__init__(channels, eps=eps, affine=True)
        self.weight = None  # no scale: a registered None, so state_dict has the shift only


class Conv4(nn.Module):
    """The 4-block conv net of few-shot learning as an ``nn.Module`` (features ``[N, D]``,
    no classifier: the learner adds it), the same function as :func:`features`.

    ``generator`` draws the kernels (normal(0, 0.02) truncated at 2 std, conv1 first, as
    :func:`init_conv_params`); no other random number is drawn (the layers are built
    without their default initialisation, which would read torch's global generator).
    ``n_filters`` (32, the paper's) is there for tiny tests. The convolutions are declared
    before the batch norms, so that the parameters come in :func:`init_conv_params`'s order
    and then the shifts'.
    """

    def __init__(self, in_channels: int = 3, generator: torch.Generator | None = None,
                 n_filters: int = N_FILTERS):
        super().__init__()
        generator = generator or torch.Generator().manual_seed(0)
        for l in range(1, N_BLOCKS + 1):
            fan_in = in_channels if l == 1 else n_filters
            conv = torch.nn.utils.skip_init(nn.Conv2d, fan_in, n_filters, 3, padding=1)
            torch.nn.init.trunc_normal_(conv.weight, std=0.02, a=-0.04, b=0.04,
                                        generator=generator)
            torch.nn.init.zeros_(conv.bias)
            setattr(self, f"conv{l}", conv)
        for l in range(1, N_BLOCKS + 1):
            setattr(self, f"bn{l}", ShiftBatchNorm2d(n_filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for l in range(1, N_BLOCKS + 1):
            x = getattr(self, f"bn{l}")(getattr(self, f"conv{l}")(x))
            x = F.max_pool2d(F.relu(x), 2)
        return x.flatten(1)
