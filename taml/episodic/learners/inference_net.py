"""The inference network: reads a task's support set and returns Gaussian posteriors
q(ω), q(γ), q(z) of the balancing variables (Lee et al. 2020, sec. 3.3 and Fig. 2).

It works on a whole meta-batch at once, whose support sets are padded to the largest one
(``taml/data/episodes.py``). A padding row (``support_mask`` False) is a zero image that
still goes through encoder 1, but its class membership is 0 for every class, so it adds
nothing to any class's mean, variance or size N_c; encoder 1 has no batch norm, so it cannot
change a real row's features either, and pooling 2 runs over the ``way`` classes, which
padding never reaches. The original got the same exclusion from its labels: a padding row's
one-hot label is all zeros, so the row belongs to no class.

- Encoder 1 (per image): conv(10, 3x3) -> ReLU -> pool -> conv(10) -> ReLU -> pool ->
  flatten -> dense 64.
- Statistics pooling 1 (per class): element-wise mean and (population) variance of the
  64 features over the class's rows, and the normalised class size
  (N_c - 1) / (max_shot - 1); ``[64, 3]`` -> dense 4 -> ReLU -> flatten: s_c (256).
- Encoder 2 (per class): dense 128 -> ReLU -> dense 32.
- Statistics pooling 2 (over classes): mean and variance of those, and the mean normalised
  class size; ``[32, 3]`` -> dense 4 -> ReLU -> flatten: v (128).
- ω_c from s_c (dense 64 -> ReLU, or s_c directly in the multi-dataset setting);
  γ (5) and z (2 * 4 * 32) from v (dense 64 -> ReLU). Each has a mean head and a
  softplus-std head. The prior of every variable is N(0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from taml.episodic.learners.bayesian_taml import ORIGINAL_SIGMA_INIT
from taml.episodic.learners.conv4 import N_BLOCKS, N_FILTERS

GAMMA_SIZE = N_BLOCKS + 1  # conv1..conv4 and the classifier
Z_SIZE = 2 * N_BLOCKS * N_FILTERS  # per-channel kernel scales, then bias shifts


@dataclass(frozen=True)
class Posterior:
    """Diagonal Gaussian: ``mean`` and ``std`` of the same shape."""

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, generator: torch.Generator | None) -> torch.Tensor:
        """A reparameterised sample. The noise is drawn on the generator's device (the CPU
        for taml's generators) so that a seed gives the same samples on any device."""
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device,
                            dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """KL(q || N(0, 1)) summed over all but the first (task) dimension: ``[T]``."""
        kl = -torch.log(self.std) + 0.5 * (self.std.square() + self.mean.square()) - 0.5
        return kl.flatten(1).sum(dim=1)


def _dense(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=0.02, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def _conv(in_channels: int, out_channels: int, generator: torch.Generator) -> nn.Conv2d:
    layer = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.trunc_normal_(layer.weight, std=0.02, a=-0.04, b=0.04, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


class _GaussianHead(nn.Module):
    """A mean head and a softplus-std head. ``sigma_init``: σ at initialisation (the std
    head's weights are small, so its bias sets σ): the original's softplus(0) ≈ 0.69 leaves
    the bias at zero; a smaller σ starts the posterior near its mean (near Meta-SGD for z
    and γ), which ``--sigma_init`` exists to measure (docs/studies.md)."""

    def __init__(self, in_features: int, out_features: int, hidden: bool, generator,
                 sigma_init: float = ORIGINAL_SIGMA_INIT):
        super().__init__()
        self.hidden = _dense(in_features, 64, generator) if hidden else None
        width = 64 if hidden else in_features
        self.mean = _dense(width, out_features, generator)
        self.pre_std = _dense(width, out_features, generator)
        if sigma_init != ORIGINAL_SIGMA_INIT:  # softplus⁻¹(σ) = log(expm1(σ))
            nn.init.constant_(self.pre_std.bias, math.log(math.expm1(sigma_init)))

    def forward(self, h: torch.Tensor) -> Posterior:
        if self.hidden is not None:
            h = F.relu(self.hidden(h))
        return Posterior(self.mean(h), F.softplus(self.pre_std(h)))


def _masked_moments(
    x: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group mean and population variance.

    ``x`` ``[T, N, D]``, ``weights`` ``[T, N, G]`` (one-hot group membership, 0 on padding),
    ``counts`` ``[T, G]`` -> two ``[T, G, D]``.
    """
    mean = weights.transpose(1, 2) @ x / counts.unsqueeze(-1)
    centred = x.unsqueeze(2) - mean.unsqueeze(1)  # [T, N, G, D]
    var = (weights.unsqueeze(-1) * centred.square()).sum(1) / counts.unsqueeze(-1)
    return mean, var


class InferenceNetwork(nn.Module):
    """Posteriors of the balancing variables that are switched on.

    It reads the support set at the backbone's input size (``image_size``: an int, or
    (H, W); ``in_channels``). ``gamma_size``: one γ per adapted layer of the backbone and
    one for the classifier (5 for the 4-conv net); ``z_size``: the backbone's
    (:attr:`~taml.episodic.learners.backbone.ModuleBackbone.z_size`, 256 for the 4-conv
    net).

    ``omega_reads_statistics``: ω's heads read s_c directly (the original's multi-dataset
    setting) instead of through a 64-unit hidden layer. ``sigma_init``: every posterior's σ
    at initialisation (the original's softplus(0) by default).
    """

    def __init__(
        self,
        image_size: int,
        max_shot: int,
        omega_on: bool,
        gamma_on: bool,
        z_on: bool,
        omega_reads_statistics: bool = False,
        generator: torch.Generator | None = None,
        sigma_init: float = ORIGINAL_SIGMA_INIT,
        in_channels: int = 3,
        gamma_size: int = GAMMA_SIZE,
        z_size: int = Z_SIZE,
    ):
        super().__init__()
        g = generator
        self.max_shot = max_shot
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.conv1, self.conv2 = _conv(in_channels, 10, g), _conv(10, 10, g)
        self.encode1 = _dense((height // 4) * (width // 4) * 10, 64, g)
        self.interact1 = _dense(3, 4, g)
        self.encode2a, self.encode2b = _dense(256, 128, g), _dense(128, 32, g)
        self.interact2 = _dense(3, 4, g)
        s = sigma_init
        self.omega = (_GaussianHead(256, 1, not omega_reads_statistics, g, s) if omega_on
                      else None)
        self.gamma = _GaussianHead(128, gamma_size, True, g, s) if gamma_on else None
        self.z = _GaussianHead(128, z_size, True, g, s) if z_on else None

    def _normalised_size(self, counts: torch.Tensor) -> torch.Tensor:
        return (counts - 1) / max(self.max_shot - 1, 1)

    def forward(
        self, support_x: torch.Tensor, support_y: torch.Tensor, support_mask: torch.Tensor,
        way: int,
    ) -> dict[str, Posterior]:
        """``support_x`` ``[T, N, 3, H, W]``, ``support_y`` ``[T, N]``, ``support_mask``
        ``[T, N]`` -> posteriors ``omega`` ``[T, way]``, ``gamma`` ``[T, 5]``, ``z``
        ``[T, 256]`` (the ones switched on)."""
        n_tasks, n_rows = support_y.shape
        h = support_x.flatten(0, 1)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        features = self.encode1(h.flatten(1)).view(n_tasks, n_rows, -1)  # [T, N, 64]

        mask = support_mask.to(features.dtype)
        classes = torch.arange(way, device=support_y.device)
        membership = (support_y.unsqueeze(-1) == classes).to(features.dtype) * mask[..., None]
        counts = membership.sum(1)  # [T, way]
        mean, var = _masked_moments(features, membership, counts)
        size = self._normalised_size(counts).unsqueeze(-1).expand_as(mean)
        s = F.relu(self.interact1(torch.stack([mean, var, size], dim=-1)))  # [T, way, 64, 4]
        s = s.flatten(2)  # [T, way, 256]

        e = self.encode2b(F.relu(self.encode2a(s)))  # [T, way, 32]
        task_mean = e.mean(1)
        task_var = (e - task_mean.unsqueeze(1)).square().mean(1)
        task_size = self._normalised_size(counts).mean(1, keepdim=True).expand_as(task_mean)
        v = F.relu(self.interact2(torch.stack([task_mean, task_var, task_size], dim=-1)))
        v = v.flatten(1)  # [T, 128]

        posteriors = {}
        if self.omega is not None:
            q = self.omega(s)
            posteriors["omega"] = Posterior(q.mean.squeeze(-1), q.std.squeeze(-1))
        if self.gamma is not None:
            posteriors["gamma"] = self.gamma(v)
        if self.z is not None:
            posteriors["z"] = self.z(v)
        return posteriors
