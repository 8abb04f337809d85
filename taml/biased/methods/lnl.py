"""Learning Not to Learn (Kim, Kim, Kim, Kim, Kim, CVPR 2019; arXiv 1812.10352).

A known bias (colour) is removed from the shared features f by an adversary. Networks
(the authors' ``models.py``, restated): f = input BN, conv 32@5x5 -> ReLU -> max-pool 3/2 ->
conv 32@3x3 -> ReLU (a 32 x H/2 x W/2 map, 14x14 on MNIST); g = conv 64@3x3/2 -> ReLU ->
conv 64@3x3 -> ReLU -> average pool -> FC; three colour heads h_R, h_G, h_B = conv 32@3x3 ->
BN -> ReLU -> conv 8@3x3, each a per-pixel softmax over 8 bins of one channel.

One batch, two phases (:meth:`LNLTrainer.unlearn_step`):

1. f, g step:  CE(g(f(x)), y) + lambda * 1/3 sum_c mean_pixels sum_k p_ck log p_ck,
   p_c = softmax(h_c(f(x))): minus lambda times h's entropy, which pushes h's prediction on
   f's features toward uniform (the paper's mutual-information surrogate). Only f, g move.
2. h step through the gradient-reversal layer R (forward identity, backward -mu * grad):
   sum_c CE(h_c(R(f(x))), bin_c) over the foreground pixels. h learns to predict colour; f,
   receiving -mu times h's gradient, learns to make that prediction fail.

Colour targets (:func:`colour_labels`): the image resized to f's grid (nearest), each channel
value // 32 (8 bins); background (all channels 0) is ignored (``IGNORE``).

Defaults are the authors': lambda = 0.01, mu = 0.1 (their GradReverse's hard-coded factor).
Pre-training (:meth:`LNLTrainer.pretrain_step`) trains f, g on the class loss and h on
DETACHED features (h becomes a competent adversary, f is untouched by it); the authors'
README says the adversarial phase is unstable without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_BINS = 8
IGNORE = -100  # nn.functional.cross_entropy's default ignore_index
CHANNELS = ("R", "G", "B")


class GradReverse(torch.autograd.Function):
    """Forward: identity. Backward: ``-factor * grad`` (the gradient-reversal layer)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = float(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.factor * grad, None


def grad_reverse(x: torch.Tensor, factor: float) -> torch.Tensor:
    return GradReverse.apply(x, factor)


class FeatureNet(nn.Module):
    """f: ``[B, 3, H, W]`` in [0, 1] -> ``[B, 32, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(in_channels)  # the authors' bn0 over RGB
        self.conv1 = nn.Conv2d(in_channels, 32, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(self.input_norm(x))))
        return F.relu(self.conv2(x))


class Classifier(nn.Module):
    """g: features ``[B, 32, h, w]`` -> logits ``[B, num_classes]``."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(features))))
        return self.fc(x.mean(dim=(2, 3)))  # the authors' avgpool 7 on MNIST's 7x7 map


class ColourHead(nn.Module):
    """h_c: features ``[B, 32, h, w]`` -> per-pixel bin logits ``[B, N_BINS, h, w]``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32),
                                  nn.ReLU(), nn.Conv2d(32, N_BINS, 3, padding=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)


class ColourHeads(nn.Module):
    """h_R, h_G, h_B: features -> logits ``[B, 3, N_BINS, h, w]``."""

    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList(ColourHead() for _ in CHANNELS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features) for head in self.heads], dim=1)


class LNLNet(nn.Module):
    """f, g and the colour heads h; ``forward`` is the classifier g(f(x))."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.f = FeatureNet(in_channels)
        self.g = Classifier(num_classes)
        self.h = ColourHeads()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(self.f(x))


def colour_labels(images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per-pixel colour bins: uint8 ``[B, 3, H, W]`` -> int64 ``[B, 3, h, w]`` on ``grid``.

    The image is resized to ``grid`` (nearest), each channel value // 32 gives 8 bins, and
    background pixels (all three channels 0: the generator paints on pure black) get
    ``IGNORE`` in every channel, so the heads are scored on the foreground only.
    """
    small = F.interpolate(images.float(), size=tuple(grid), mode="nearest")
    bins = torch.div(small, 256 // N_BINS, rounding_mode="floor").long().clamp_(0, N_BINS - 1)
    background = (small.sum(dim=1, keepdim=True) == 0).expand_as(bins)
    return bins.masked_fill(background, IGNORE)


def colour_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sum over R, G, B of the mean CE over foreground pixels: logits ``[B, 3, K, h, w]``,
    labels ``[B, 3, h, w]``. A batch with no foreground pixel gives 0, not NaN."""
    total = logits.new_zeros(())
    for c in range(logits.shape[1]):
        target = labels[:, c]
        if (target != IGNORE).any():
            total = total + F.cross_entropy(logits[:, c], target, ignore_index=IGNORE)
    return total


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """1/3 sum_c mean_pixels sum_k p log p for logits ``[B, 3, K, h, w]`` (over all pixels,
    as the authors): minimising it maximises h's predictive entropy."""
    log_p = F.log_softmax(logits, dim=2)
    return (log_p.exp() * log_p).sum(dim=2).mean()


@torch.no_grad()
def colour_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) foreground pixel-channels: logits ``[B, 3, K, h, w]``."""
    mask = labels != IGNORE
    correct = (logits.argmax(dim=2) == labels) & mask
    return int(correct.sum()), int(mask.sum())


@dataclass(frozen=True)
class LNLStats:
    """One unlearning step, as floats: ``loss`` the class CE of phase 1, ``colour_loss``
    the heads' CE of phase 2 averaged over the colour channels, ``neg_entropy`` the
    entropy term of phase 1 (mean Σ p log p), ``accuracy`` the batch's accuracy in phase 1."""

    loss: float
    colour_loss: float
    neg_entropy: float
    accuracy: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class LNLStep:
    """LNL's two-phase unlearning step (module docstring) on a user's f, g and colour heads.

    ``f``: images ``[B, C, H, W]`` in [0, 1] -> features ``[B, D, h, w]``; ``g``: features ->
    logits ``[B, K]``; ``heads``: features -> per-pixel bin logits ``[B, 3, N_BINS, h, w]``
    (:class:`ColourHeads`'s shape). ``optimizer_fg`` steps f and g (in both phases),
    ``optimizer_heads`` the heads; each phase zeroes both first, so h's gradients from
    phase 1 are discarded. Modified in place: the three modules' parameters, ``.grad`` and
    batch-norm statistics (two training forwards of f per step), both optimisers' state.
    """

    def __init__(self, f: nn.Module, g: nn.Module, heads: nn.Module,
                 optimizer_fg: torch.optim.Optimizer,
                 optimizer_heads: torch.optim.Optimizer, *, lnl_lambda: float = 0.01,
                 grl_factor: float = 0.1):
        self.f, self.g, self.heads = f, g, heads
        self.optimizer_fg, self.optimizer_heads = optimizer_fg, optimizer_heads
        self.lnl_lambda, self.grl_factor = lnl_lambda, grl_factor
        self.logits: torch.Tensor | None = None  # g's detached logits [B, K] of the last step

    def _zero(self) -> None:
        self.optimizer_fg.zero_grad(set_to_none=True)
        self.optimizer_heads.zero_grad(set_to_none=True)

    def step(self, batch: Sequence[torch.Tensor]) -> LNLStats:
        """``batch``: (images uint8 ``[B, C, H, W]``, labels int64 ``[B]``), and optionally
        colour targets int64 ``[B, 3, h, w]`` on f's grid (``IGNORE`` where not scored;
        default :func:`colour_labels` of the images). f reads ``images / 255``."""
        if not isinstance(batch, list | tuple) or len(batch) not in (2, 3):
            raise ValueError("LNLStep.step needs (images, labels) or (images, labels, "
                             "colour_targets)")
        images, labels = batch[0], batch[1]
        if images.dtype != torch.uint8:
            raise ValueError(f"LNLStep.step needs uint8 images [B, C, H, W] (0..255; the "
                             f"colour bins are read from them), got {images.dtype}")
        x = images.float() / 255.0
        # phase 1: f, g minimise CE - lambda * H(h(f(x))); h's gradients are discarded
        self._zero()
        features = self.f(x)
        logits = self.g(features)
        class_loss = F.cross_entropy(logits, labels)
        entropy_term = negative_entropy(self.heads(features))
        (class_loss + self.lnl_lambda * entropy_term).backward()
        self.optimizer_fg.step()

        # phase 2: h minimises its colour loss; f, behind the reversal, maximises it
        self._zero()
        features = self.f(x)
        targets = batch[2] if len(batch) == 3 else colour_labels(images, features.shape[-2:])
        colour_logits = self.heads(grad_reverse(features, self.grl_factor))
        bias_loss = colour_loss(colour_logits, targets)
        bias_loss.backward()
        self.optimizer_fg.step()
        self.optimizer_heads.step()
        self.logits = logits.detach()
        return LNLStats(loss=class_loss.item(),
                        colour_loss=bias_loss.item() / colour_logits.shape[1],
                        neg_entropy=entropy_term.item(),
                        accuracy=float((logits.argmax(1) == labels).double().mean()))


def sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


class LNLTrainer:
    """The optimisers and the three kinds of step on one :class:`LNLNet`.

    ``opt_fg`` steps f and g (in both LNL phases, as the authors' ``optim``), ``opt_h`` the
    heads. Images enter as uint8 ``[B, 3, H, W]``; each step returns its losses as floats,
    the number of correct predictions and the classifier's logits (detached, for the chance
    watch of :mod:`taml.run.chance`).
    """

    def __init__(self, model: LNLNet, lr: float, momentum: float = 0.9,
                 weight_decay: float = 5e-4, lnl_lambda: float = 0.01,
                 grl_factor: float = 0.1):
        self.model = model
        self.lnl_lambda, self.grl_factor = lnl_lambda, grl_factor
        fg = list(model.f.parameters()) + list(model.g.parameters())
        self.opt_fg = sgd(fg, lr, momentum, weight_decay)
        self.opt_h = sgd(model.h.parameters(), lr, momentum, weight_decay)
        self.unlearning = LNLStep(model.f, model.g, model.h, self.opt_fg, self.opt_h,
                                  lnl_lambda=lnl_lambda, grl_factor=grl_factor)

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.opt_fg, self.opt_h):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _zero(self) -> None:
        self.opt_fg.zero_grad(set_to_none=True)
        self.opt_h.zero_grad(set_to_none=True)

    def plain_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """The baseline: CE(g(f(x)), y) on f and g; h is not used."""
        self._zero()
        logits = self.model(images.float() / 255.0)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        self.opt_fg.step()
        return {"loss": loss.item(), "correct": int((logits.argmax(1) == labels).sum()),
                "logits": logits.detach()}

    def pretrain_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """The baseline step, plus h trained on detached f(x) (f never sees h's gradient)."""
        self._zero()
        features = self.model.f(images.float() / 255.0)
        logits = self.model.g(features)
        class_loss = F.cross_entropy(logits, labels)
        colour_logits = self.model.h(features.detach())
        bias_loss = colour_loss(colour_logits, colour_labels(images, features.shape[-2:]))
        (class_loss + bias_loss).backward()
        self.opt_fg.step()
        self.opt_h.step()
        return {"loss": class_loss.item(), "colour_loss": bias_loss.item() / 3,
                "correct": int((logits.argmax(1) == labels).sum()),
                "logits": logits.detach()}

    def unlearn_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """The two LNL phases on one batch: :class:`LNLStep`, the API's object."""
        stats = self.unlearning.step((images, labels))
        return {"loss": stats.loss, "colour_loss": stats.colour_loss,
                "neg_entropy": stats.neg_entropy,
                "correct": round(stats.accuracy * len(labels)),
                "logits": self.unlearning.logits}

    def state_dict(self) -> dict:
        return {"opt_fg": self.opt_fg.state_dict(), "opt_h": self.opt_h.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt_fg.load_state_dict(state["opt_fg"])
        self.opt_h.load_state_dict(state["opt_h"])


# the probe fits on half of the test images and is scored on the other half
PROBE_MIN_IMAGES = 4


def colour_probe(f: nn.Module, images: torch.Tensor, steps: int = 300, batch_size: int = 64,
                 lr: float = 1e-2, seed: int = 0) -> float:
    """The colour information left in f: a FRESH set of heads h_R, h_G, h_B trained on
    frozen f (eval mode, no gradient into f) to predict the colour bins, scored on held-out
    images; the pixel-channel accuracy over foreground pixels (lower = less bias left).

    ``images`` uint8 ``[N, 3, H, W]`` should be colour-shuffled (colour independent of the
    label): the probe fits on a random half and is scored on the other, so it can only
    read colour, never guess it from the digit as it could on the biased training set.
    """
    if len(images) < PROBE_MIN_IMAGES:
        raise ValueError(f"the colour probe needs at least {PROBE_MIN_IMAGES} images")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    fit, score = images[order[: len(images) // 2]], images[order[len(images) // 2:]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = ColourHeads().to(images.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    was_training = f.training
    f.eval()
    try:
        for _ in range(steps):
            batch = fit[torch.randint(len(fit), (min(batch_size, len(fit)),),
                                      generator=generator).to(images.device)]
            with torch.no_grad():
                features = f(batch.float() / 255.0)
            loss = colour_loss(probe(features), colour_labels(batch, features.shape[-2:]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        probe.eval()
        correct = counted = 0
        with torch.no_grad():
            for start in range(0, len(score), 256):
                batch = score[start:start + 256]
                features = f(batch.float() / 255.0)
                c, n = colour_accuracy(probe(features), colour_labels(batch, features.shape[-2:]))
                correct, counted = correct + c, counted + n
    finally:
        f.train(was_training)
    return correct / max(counted, 1)
