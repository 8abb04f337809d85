"""Any ``nn.Module`` of conv / linear layers with batch norm, as the pure function the inner
loop adapts (``torch.func.functional_call``), and the 4-conv net's own pure function.

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
(:func:`taml.episodic.learners.conv4.masked_batch_norm`): ``F.batch_norm``'s batching rule
gives wrong second-order meta-gradients under ``vmap`` (docs/architecture.md). The running
statistics are neither read nor written. Any other parameter is refused: the inner loop
would not know whether to adapt it.

:class:`ModuleBackbone` wraps a module; :data:`CONV4` is the 4-conv net's pure function
(``conv4.features``), which the command line's default learner runs, and which
:class:`~taml.episodic.learners.conv4.Conv4` (the same net as an ``nn.Module``) equals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from taml.episodic.learners import conv4

Params = dict[str, torch.Tensor]
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


class BackboneError(ValueError):
    """A module the episodic learners cannot adapt (names the offending parameter)."""


@dataclass(frozen=True)
class Layer:
    """One adapted layer: its parameters' keys, output channels, and whether it has a bias."""

    weight: str
    bias: str | None
    channels: int


class FunctionalBackbone:
    """What the inner loop needs of a backbone (see the two implementations below)."""

    layers: tuple[Layer, ...]

    @property
    def adapted_keys(self) -> tuple[str, ...]:
        return tuple(k for layer in self.layers for k in (layer.weight, layer.bias) if k)

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

    @property
    def _layer_of(self) -> dict[str, int]:
        return {k: i for i, layer in enumerate(self.layers)
                for k in (layer.weight, layer.bias) if k}

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
        None: all) under ``params`` (the adapted keys) and ``outer`` (batch norm's)."""
        raise NotImplementedError

    def forward(self, params: Params, outer: Params, x: torch.Tensor,
                mask: torch.Tensor | None, precision: str = "fp32") -> torch.Tensor:
        """Logits ``[N, way]``: the features through ``params``' ``dense_w``, ``dense_b``."""
        return (self.features(params, outer, x, mask, precision) @ params["dense_w"]
                + params["dense_b"])


def modulate_init(params: Params, z_weight: torch.Tensor, z_bias: torch.Tensor) -> Params:
    """Applies z (``[4, 32]`` each) to the 4-conv net's conv layers' initialisation."""
    out = dict(params)
    for l in range(conv4.N_BLOCKS):
        out[f"conv{l + 1}_w"] = params[f"conv{l + 1}_w"] * (1 + z_weight[l]).view(-1, 1, 1, 1)
        out[f"conv{l + 1}_b"] = params[f"conv{l + 1}_b"] + z_bias[l]
    return out


class Conv4Functional(FunctionalBackbone):
    """The 4-conv net as ``conv4.features`` on a dict ``conv{1..4}_{w,b}`` (θ) and
    ``bn{1..4}`` (the shifts): the command line's learner since the first version."""

    layers = tuple(Layer(f"conv{l}_w", f"conv{l}_b", conv4.N_FILTERS)
                   for l in range(1, conv4.N_BLOCKS + 1))

    def modulate(self, params: Params, z: torch.Tensor) -> Params:
        # the same ops as ever: z is [kernel scales of conv1..4, bias shifts of conv1..4]
        half = z.shape[-1] // 2
        return modulate_init(params, z[:half].view(conv4.N_BLOCKS, -1),
                             z[half:].view(conv4.N_BLOCKS, -1))

    def features(self, params, outer, x, mask, precision="fp32"):
        return conv4.features(params, outer, x, mask, precision)

    def forward(self, params, outer, x, mask, precision="fp32"):
        return conv4.forward(params, outer, x, mask, precision)


CONV4 = Conv4Functional()


def _batch_norm_forward(module: nn.modules.batchnorm._BatchNorm, holder: dict):
    """A batch-norm layer's forward on the batch's real rows (``holder["mask"]``)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return conv4.masked_batch_norm(x, module.bias, holder["mask"], eps=module.eps,
                                       scale=module.weight)

    return forward


class ModuleBackbone(FunctionalBackbone):
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
        self._batch_norms = [sub for sub in module.modules() if isinstance(sub, BATCH_NORM_TYPES)]

    def initialisation(self) -> Params:
        named = dict(self.module.named_parameters())
        return {k: named[k] for k in self.adapted_keys}

    def outer_params(self) -> Params:
        """The batch-norm scales and shifts (meta-learned, not adapted)."""
        adapted = set(self.adapted_keys)
        return {k: v for k, v in self.module.named_parameters() if k not in adapted}

    @contextlib.contextmanager
    def _masked_batch_norm(self, mask: torch.Tensor | None) -> Iterator[None]:
        holder = {"mask": mask}
        for bn in self._batch_norms:
            bn.forward = _batch_norm_forward(bn, holder)  # an instance attribute, undone below
        try:
            yield
        finally:
            for bn in self._batch_norms:
                del bn.forward

    def features(self, params, outer, x, mask, precision="fp32"):
        dtype = params[self.layers[0].weight].dtype
        with self._masked_batch_norm(mask), conv4.autocast(x, precision):
            out = functional_call(self.module, {**outer, **params}, (x,))
        return out.flatten(1).to(dtype)


def feature_size(backbone: FunctionalBackbone, outer: Params, params: Params,
                 input_shape: tuple[int, ...]) -> int:
    """D: the backbone's flattened feature length on inputs of ``input_shape`` (C, H, W)."""
    reference = params[backbone.layers[0].weight]
    x = torch.zeros(2, *input_shape, dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        return backbone.features(params, outer, x, None).shape[1]
