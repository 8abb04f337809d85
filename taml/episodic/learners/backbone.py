"""A backbone ``nn.Module`` as the pure function the inner loop adapts
(``torch.func.functional_call``), and the batch norm every backbone runs inside the learners.

A backbone maps inputs ``[N, C, H, W]`` to features ``[N, D]``; the learner adds the
classifier ``features @ dense_w + dense_b`` (``dense_w`` ``[D, way]``, zero at the start of
every task, as the original's ``tf.zeros``). Its parameters split in two:

- **adapted** (θ): the weight and bias of every ``nn.Conv*`` and ``nn.Linear`` layer, in
  the module's order; the inner loop updates them, and each layer l is one of the paper's
  layers: γ_l scales its step, z modulates its output channels (kernels × (1 + z_w[l]),
  biases + z_b[l]);
- **meta-learned only**: the batch-norm layers' scale and shift, as the original's shifts
  (never adapted in the inner loop).

Batch norm runs on the statistics of the batch it is given, over the real rows only
(``mask``), at meta-test too (transductive, as the original), with plain tensor ops
(:func:`masked_batch_norm`): ``F.batch_norm``'s batching rule gives wrong second-order
meta-gradients under ``vmap`` (docs/architecture.md). The running statistics are neither
read nor written. Any other parameter is refused: the inner loop would not know whether to
adapt it.

The command line's 4-conv net (:class:`~taml.episodic.learners.conv4.Conv4`), its ResNet-12
and a user's module all run through :class:`ModuleBackbone`: one path, one benchmark.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from taml.run import validate

Params = dict[str, torch.Tensor]
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)
# --precision's names (the config's choices, taml.episodic.config.PRECISIONS) -> the
# backbone's compute type under autocast (None: float32, no autocast); the classifier, the
# losses and every parameter's gradient stay float32
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class BackboneError(ValueError):
    """A module the episodic learners cannot adapt (names the offending parameter)."""


@dataclass(frozen=True)
class Layer:
    """One adapted layer: its parameters' keys, output channels, and whether it has a bias."""

    weight: str
    bias: str | None
    channels: int


def masked_batch_norm(
    x: torch.Tensor, shift: torch.Tensor | None, mask: torch.Tensor | None, eps: float,
    scale: torch.Tensor | None = None,
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
    ``F.batch_norm`` (:func:`native_batch_norm`): its fused kernels and C++ double backward
    made a second-order MAML iteration (84x84, 2 tasks) about 20% faster than these plain
    ops in bfloat16, and it accumulates the statistics in float32. Not in float32, where it
    was no faster, and on the speed benchmark's random images its Meta-SGD meta-gradient was
    100x further from float64's (relative error 6e-3 against 5e-5,
    ``benchmarks/precision_error.py --data random``; equal on the synthetic data), so
    float32 keeps these ops and its earlier results. Never under ``vmap``, whose
    batch-norm batching rule gives wrong second-order meta-gradients
    (tests/test_learners.py): the vmap path always passes a mask.
    """
    if x.dim() != 4:  # batch norm 1d: [N, C] or [N, C, L], as [N, C, L, 1]
        flat = x.reshape(x.shape[0], x.shape[1], -1, 1)
        return masked_batch_norm(flat, shift, mask, eps, scale).reshape(x.shape)
    if mask is None and x.dtype == torch.bfloat16:
        return native_batch_norm(x, shift, eps, scale)
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


def native_batch_norm(x: torch.Tensor, shift: torch.Tensor | None, eps: float,
                      scale: torch.Tensor | None = None) -> torch.Tensor:
    """``F.batch_norm`` on the batch's statistics (every row real), then the scale and the
    shift."""
    # scale and shift applied outside: F.batch_norm's double backward w.r.t. its bias fails
    # without a weight ("Expected a proper Tensor but got None"; torch 2.14)
    out = F.batch_norm(x, None, None, training=True, momentum=0.0, eps=eps)
    if scale is not None:
        out = out * scale.to(x.dtype).view(1, -1, 1, 1)
    return out if shift is None else out + shift.to(x.dtype).view(1, -1, 1, 1)


def autocast(x: torch.Tensor, precision: str) -> torch.autocast:
    """The autocast region of ``--precision`` on ``x``'s device (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(x.device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


class _MaskedBatchNorm(TorchFunctionMode):
    """Every ``F.batch_norm`` call (each batch-norm layer's forward) as
    :func:`masked_batch_norm` on ``mask``'s rows, with the layer's weight as the scale and its
    bias as the shift; the running statistics are neither read nor written.

    A function mode rather than a replaced ``forward`` on the layers: the module is left
    untouched, and ``torch.compile`` traces it (setting and deleting a module attribute
    inside a compiled region failed)."""

    def __init__(self, mask: torch.Tensor | None):
        super().__init__()
        self.mask = mask

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            x, weight, bias, eps = (bound.arguments[k] for k in ("input", "weight", "bias",
                                                                   "eps"))
            return masked_batch_norm(x, bias, self.mask, eps, weight)
        return func(*args, **kwargs)


_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)


class ModuleBackbone:
    """A user's ``nn.Module`` (inputs ``[N, C, H, W]`` -> features ``[N, D]``, or any
    shape that flattens to ``[N, D]``), applied with ``functional_call`` on the adapted
    parameters. The module keeps its parameters: the learner registers it, so that its
    optimiser sees them; nothing of it is changed in place."""

    def __init__(self, module: nn.Module):
        self.module = module
        layers, owned = [], set()
        for name, sub in module.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(sub, LAYER_TYPES):
                if sub.weight is None:
                    raise BackboneError(f"layer {name!r} has no weight")
                bias = f"{prefix}bias" if sub.bias is not None else None
                layers.append(Layer(f"{prefix}weight", bias, sub.weight.shape[0]))
                owned.update(k for k in (f"{prefix}weight", bias) if k)
            elif isinstance(sub, BATCH_NORM_TYPES):
                owned.update(f"{prefix}{p}" for p, v in sub.named_parameters(recurse=False))
        if not layers:
            raise BackboneError("the backbone has no nn.Conv* or nn.Linear layer to adapt")
        for key, _ in module.named_parameters():
            if key not in owned:
                raise BackboneError(
                    f"parameter {key!r} belongs to no nn.Conv*, nn.Linear or batch-norm "
                    "layer: the inner loop adapts conv and linear layers and meta-learns "
                    "batch norm; build the backbone from those layers")
        self.layers = tuple(layers)
        self.adapted_keys = tuple(k for layer in layers for k in (layer.weight, layer.bias) if k)
        # which γ scales each key's step (the classifier's, n_layers, is the default)
        self._layer_of = {k: i for i, layer in enumerate(layers)
                          for k in (layer.weight, layer.bias) if k}
        # a batch-norm layer's forward counts its calls in this buffer (in place): the
        # learners give each call a scratch counter, so that the module stays as it is
        self._counters = [name for name, _ in module.named_buffers()
                          if name.rsplit(".", 1)[-1] == "num_batches_tracked"]

    @property
    def n_layers(self) -> int:
        """γ's size is this + 1 (the classifier's step)."""
        return len(self.layers)

    @property
    def z_size(self) -> int:
        """z: one kernel scale per output channel of every layer, then one bias shift per
        output channel of every layer with a bias."""
        return (sum(layer.channels for layer in self.layers)
                + sum(layer.channels for layer in self.layers if layer.bias))

    def layer_index(self, key: str) -> int:
        """Which γ scales this key's step: its layer's index, ``n_layers`` for the
        classifier's ``dense_w`` / ``dense_b``."""
        return self._layer_of.get(key, self.n_layers)

    def initialisation(self) -> Params:
        """θ without the classifier: the adapted layers' parameters, in the module's order."""
        named = dict(self.module.named_parameters())
        return {k: named[k] for k in self.adapted_keys}

    def outer_params(self) -> Params:
        """The batch-norm scales and shifts (meta-learned, not adapted)."""
        adapted = set(self.adapted_keys)
        return {k: v for k, v in self.module.named_parameters() if k not in adapted}

    def modulate(self, params: Params, z: torch.Tensor) -> Params:
        """z ``[z_size]`` applied to the layers' initialisation (the classifier is not)."""
        out = dict(params)
        at = 0
        for layer in self.layers:
            scale = z[at:at + layer.channels]
            at += layer.channels
            weight = params[layer.weight]
            out[layer.weight] = weight * (1 + scale).view(-1, *([1] * (weight.dim() - 1)))
        for layer in self.layers:
            if layer.bias:
                out[layer.bias] = params[layer.bias] + z[at:at + layer.channels]
                at += layer.channels
        return out

    def features(self, params: Params, outer: Params, x: torch.Tensor,
                 mask: torch.Tensor | None, precision: str = "fp32") -> torch.Tensor:
        """Features ``[N, D]`` of ``x`` ``[N, C, H, W]`` (``mask`` ``[N]``: the real rows;
        None: all) under ``params`` (the adapted keys) and ``outer`` (batch norm's).

        ``precision`` bf16: the module runs under autocast (its convolutions, batch norm and
        their backward passes in bfloat16), and the features come back in the parameters'
        dtype, so that the classifier, the losses and every gradient of a parameter
        (autocast's casts route them back) are float32."""
        dtype = params[self.layers[0].weight].dtype
        counters = {name: torch.zeros((), dtype=torch.long, device=x.device)
                    for name in self._counters}
        with _MaskedBatchNorm(mask), autocast(x, precision):
            out = functional_call(self.module, {**outer, **params, **counters}, (x,))
        return out.flatten(1).to(dtype)

    def forward(self, params: Params, outer: Params, x: torch.Tensor,
                mask: torch.Tensor | None, precision: str = "fp32") -> torch.Tensor:
        """Logits ``[N, way]``: the features through ``params``' ``dense_w``, ``dense_b``;
        without them (``head="backbone"``) the features are the logits."""
        features = self.features(params, outer, x, mask, precision)
        if "dense_w" not in params:
            return features
        return features @ params["dense_w"] + params["dense_b"]


def feature_size(backbone: ModuleBackbone, input_shape: tuple[int, ...]) -> int:
    """D: the backbone's flattened feature length on inputs of ``input_shape`` (C, H, W)."""
    params = backbone.initialisation()
    reference = params[backbone.layers[0].weight]
    x = torch.zeros(2, *input_shape, dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        return backbone.features(params, backbone.outer_params(), x, None).shape[1]


def check_backbone(backbone, input_shape: tuple[int, int, int]) -> None:
    """The episodic learners' backbone: an ``nn.Module`` of conv / linear / batch-norm
    layers that maps ``[N, *input_shape]`` to one features tensor ``[N, ...]``. Probed once
    on zeros in eval mode (batch norm reads its running statistics and updates none;
    dropout off), so that a wrong ``input_shape`` or a module that returns a tuple is named
    here instead of failing inside the learner's first forward."""
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be a torch.nn.Module mapping [N, C, H, W] to features "
                        f"[N, D] (taml.Conv4(), taml.ResNet12(), or yours), got "
                        f"{type(backbone).__name__}")
    unsupported = [f"{name or 'the backbone'} ({type(sub).__name__})"
                   for name, sub in backbone.named_modules()
                   if any(True for _ in sub.parameters(recurse=False))
                   and not isinstance(sub, LAYER_TYPES + BATCH_NORM_TYPES)]
    if unsupported:
        raise BackboneError(
            f"the backbone's layers {', '.join(unsupported)} have parameters but are not "
            "nn.Conv*, nn.Linear or batch norm: the inner loop adapts conv and linear layers "
            "and meta-learns batch norm; build the backbone from those layers")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    for value in input_shape:
        validate.check_count("input_shape's sizes", value, 1)
    reference = next(backbone.parameters(), None)
    x = torch.zeros(2, *(int(v) for v in input_shape),
                    dtype=reference.dtype if reference is not None else None,
                    device=reference.device if reference is not None else None)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(x)
    except (RuntimeError, ValueError, IndexError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ValueError(f"the backbone cannot take inputs of input_shape {tuple(input_shape)} "
                         f"(channels, height, width): {detail}. Give the input_shape of "
                         "your images, with the channels the backbone's first layer "
                         "expects") from None
    finally:
        backbone.train(was_training)
    if not torch.is_tensor(out):
        raise BackboneError(f"the backbone returns a {type(out).__name__}, not one features "
                            "tensor [N, D]: make its forward return the features alone")
    if out.dim() < 2 or out.shape[0] != 2 or out[0].numel() == 0:
        raise BackboneError(f"the backbone maps inputs [2, {', '.join(map(str, input_shape))}]"
                            f" to {tuple(out.shape)}, not to features [2, D]")
