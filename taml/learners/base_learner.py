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
second-order meta-gradients under ``vmap`` (see shared/reference/traps.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

N_FILTERS = 32
N_BLOCKS = 4
BN_EPS = 1e-3  # the original's tf.contrib.layers.batch_norm default
CONV_KEYS = tuple(f"conv{l}_{p}" for l in range(1, N_BLOCKS + 1) for p in ("w", "b"))
DENSE_KEYS = ("dense_w", "dense_b")
ADAPTED_KEYS = CONV_KEYS + DENSE_KEYS  # what the inner loop updates, in layer order


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
    x: torch.Tensor, shift: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Normalise ``x`` ``[N, C, H, W]`` over (N, H, W), using the rows where ``mask`` ``[N]``
    (float 0/1) is 1 (all rows when None); then add the learned per-channel ``shift``.

    The masked sums are contractions (einsum), not mask-multiply-then-sum: one pass over the
    activations instead of two, which halves this function's share of a second-order step.
    """
    weight = x.new_ones(x.shape[0]) if mask is None else mask.to(x.dtype)
    count = weight.sum() * (x.shape[2] * x.shape[3])
    mean = torch.einsum("n,nchw->c", weight, x) / count
    centred = x - mean.view(1, -1, 1, 1)
    var = torch.einsum("n,nchw->c", weight, centred * centred) / count
    return centred * torch.rsqrt(var + BN_EPS).view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def features(
    params: dict[str, torch.Tensor],
    bn_shifts: dict[str, torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flattened features ``[N, feature_size]`` of ``x`` ``[N, 3, H, W]``: the four conv
    blocks, read from ``params``' ``conv{1..4}_{w,b}`` (other keys are ignored)."""
    for l in range(1, N_BLOCKS + 1):
        x = F.conv2d(x, params[f"conv{l}_w"], params[f"conv{l}_b"], padding=1)
        x = masked_batch_norm(x, bn_shifts[f"bn{l}"], mask)
        x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1)


def forward(
    params: dict[str, torch.Tensor],
    bn_shifts: dict[str, torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``[N, way]`` of inputs ``x`` ``[N, 3, H, W]``.

    ``params`` holds ``conv{1..4}_{w,b}`` and ``dense_{w,b}`` (``dense_w`` is
    ``[features, way]``); ``bn_shifts`` holds ``bn{1..4}``.
    """
    return features(params, bn_shifts, x, mask) @ params["dense_w"] + params["dense_b"]
