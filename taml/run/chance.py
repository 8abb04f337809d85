"""The chance-level stop: a run whose training accuracy stays at chance for a whole epoch.

A non-finite loss stops a run at once (``TrainingDiverged``); a run that diverged into a
model blind to its input (dead units, a collapsed output) keeps a finite loss and would
otherwise train on to the end and write a test report at chance. :class:`ChanceWatch`
tallies, per epoch of steps, what the real step computed anyway: per-class correct
predictions of its logits on the observed labels, their plain cross-entropy and how much
the predicted log-probabilities vary over the batch (:func:`output_spread`); no extra
forward, and nothing trained changes. At the end of every whole epoch from
:data:`FIRST_CHECKED` on that begins after :data:`MIN_STEPS` steps, the epoch is *at
chance* when all three hold:

- **balanced accuracy at chance**: the mean over the epoch's classes of their recall on
  the observed labels is at most ``1/C + BALANCED_MARGIN``, counting only the classes with
  at least :data:`MIN_CLASS_EXAMPLES` examples in the epoch (a recall of 2 images is no
  evidence: the 0.995 binary sets show their 2 minority images an epoch), and at least two
  of them. Balanced, not plain, accuracy: a model that predicts only the majority class, or
  guesses, has a balanced accuracy of 1/C whatever the imbalance. On noisy labels a learning
  run stays well above it (ERM at 40% uniform noise: 0.49 in epoch 6);
- **the loss did not fall**: the epoch's mean cross-entropy is at least ``1 - LOSS_FALL``
  times the previous epoch's;
- **the outputs hardly depend on the input, and are not coming to**: the epoch's mean
  :func:`output_spread` is below ``SPREAD_MAX`` *and* no larger than the previous epoch's.
  This is what tells a run stuck at chance from one still on its initial plateau: a
  network starts with outputs that barely vary (spread ~0.008 on the glyph LeNet) and a
  loss at ln C that falls by a fraction of a percent an epoch, so the first two tests hold
  for epochs in a healthy run at a small lr (measured in `make demo-biased`: ERM and MW-Net
  at lr 0.005 under 40% noise, seed 2, for epochs 2-3; class-balanced at lr 0.02 on the
  long tail, seed 2, for epochs 2-7), but its spread grows every epoch (0.0079, 0.0080,
  0.0082, 0.0085, 0.0090, 0.0099, 0.0111, then it learns). A collapsed network's spread
  shrinks to 0 (L2RW at lr 0.05 on the long tail: 2.8 in epoch 9, 0.0238 in epoch 11,
  0.0003 in epoch 12, where it is stopped). ERM on the 0.995 binary glyphs predicts only the
  majority (balanced accuracy 0.5 in every epoch) yet its outputs vary with the image: that
  is ERM's known failure on such data, reported by its test results, not a divergence.

The tally is the run's state, not a trained value: it is saved in the checkpoint and
restored on resume, so an epoch that spans a checkpoint is checked as in an uninterrupted
run; an epoch only partly seen (a checkpoint from before the tally existed) is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# the first epoch checked: epoch 1 starts from a random network (whose outputs barely vary),
# and the loss test needs the previous epoch's loss
FIRST_CHECKED = 2
# and only epochs that begin after this many steps: a network can sit on its initial
# plateau for tens of steps (LNL's at lr 0.05 for 8 steps; a 1-step epoch proves nothing).
# The demo's L2RW (12 steps an epoch) is then stopped at epoch 6, not 3.
MIN_STEPS = 50
# balanced accuracy at most 1/C plus this (absolute; C: the classes in the epoch)
BALANCED_MARGIN = 0.05
# "the loss did not fall": it fell by less than this share of the previous epoch's loss
LOSS_FALL = 0.01
# "the outputs hardly depend on the input": mean spread below this (nats)
SPREAD_MAX = 0.1
# a class's recall counts in the balanced accuracy from this many examples in the epoch
MIN_CLASS_EXAMPLES = 10


def output_spread(logits: torch.Tensor) -> torch.Tensor:
    """How much a batch's predictions depend on its images: the standard deviation over
    the batch of each class's predicted log-probability, averaged over the classes (0 for a
    network that gives every image the same output). Infinite for a batch of one (nothing
    to compare: never taken for blind)."""
    if logits.shape[0] < 2:
        return torch.tensor(float("inf"), device=logits.device)
    return F.log_softmax(logits.detach().float(), 1).std(0).mean()


@dataclass(frozen=True)
class EpochAtChance:
    """What the stop reports: the epoch, its accuracy and balanced accuracy (observed
    labels), the number of classes, its mean cross-entropy and the previous epoch's, and
    its mean output spread."""

    epoch: int
    accuracy: float
    balanced_accuracy: float
    classes: int
    loss: float
    previous_loss: float
    spread: float


def balanced_accuracy(correct: Sequence[float], seen: Sequence[float],
                      min_examples: int = 1) -> tuple[float, int]:
    """(mean recall over the classes with at least ``min_examples`` examples, the number
    of those classes)."""
    recalls = [c / n for c, n in zip(correct, seen, strict=True) if n >= max(min_examples, 1)]
    return sum(recalls) / max(len(recalls), 1), len(recalls)


class ChanceWatch:
    """The per-epoch tally of one run (steps numbered from 1, ``steps_per_epoch`` to an
    epoch) and its verdict at each epoch's last step."""

    def __init__(self, num_classes: int, steps_per_epoch: int, min_steps: int = MIN_STEPS):
        self.num_classes = num_classes
        self.steps_per_epoch = steps_per_epoch
        self.min_steps = min_steps
        self.start_at(1)

    def start_at(self, step: int) -> None:
        """A fresh tally from step ``step``; an epoch begun before it is not checked (a
        resume from a checkpoint without a saved tally)."""
        self.previous_loss: float | None = None
        self.previous_spread: float | None = None
        self._begin(step)

    def _begin(self, first_step: int) -> None:
        self.first_step = first_step
        self.correct = [0.0] * self.num_classes
        self.seen = [0.0] * self.num_classes
        self.loss_sum = 0.0
        self.spread_sum = 0.0

    def add(self, step: int, correct: Sequence[float], seen: Sequence[float],
            loss_sum: float, spread_sum: float) -> EpochAtChance | None:
        """Counts step ``step``: per-class correct predictions and examples, the sum of the
        examples' cross-entropy and the output spread x examples. At an epoch's last step
        returns the epoch when it was at chance (module docstring), else None."""
        self.correct = [a + b for a, b in zip(self.correct, correct, strict=True)]
        self.seen = [a + b for a, b in zip(self.seen, seen, strict=True)]
        self.loss_sum += loss_sum
        self.spread_sum += spread_sum
        if step % self.steps_per_epoch:
            return None
        epoch = step // self.steps_per_epoch
        whole = self.first_step == (epoch - 1) * self.steps_per_epoch + 1
        examples = sum(self.seen)
        verdict = None
        loss = self.loss_sum / examples if examples else float("nan")
        checked = epoch >= FIRST_CHECKED and (epoch - 1) * self.steps_per_epoch >= self.min_steps
        spread = self.spread_sum / examples if examples else float("nan")
        if whole and examples and checked and self.previous_loss is not None:
            balanced, classes = balanced_accuracy(self.correct, self.seen, MIN_CLASS_EXAMPLES)
            if (classes > 1 and balanced <= 1 / classes + BALANCED_MARGIN
                    and loss >= (1 - LOSS_FALL) * self.previous_loss
                    and spread < SPREAD_MAX and spread <= self.previous_spread):
                verdict = EpochAtChance(epoch, sum(self.correct) / examples, balanced,
                                        classes, loss, self.previous_loss, spread)
        self.previous_loss = loss if whole and examples else None
        self.previous_spread = spread if whole and examples else None
        self._begin(step + 1)
        return verdict

    def state_dict(self) -> dict:
        return {"first_step": self.first_step, "correct": list(self.correct),
                "seen": list(self.seen), "loss_sum": self.loss_sum,
                "spread_sum": self.spread_sum, "previous_loss": self.previous_loss,
                "previous_spread": self.previous_spread}

    def load_state_dict(self, state: dict) -> None:
        self.first_step = int(state["first_step"])
        self.correct = [float(v) for v in state["correct"]]
        self.seen = [float(v) for v in state["seen"]]
        self.loss_sum = float(state["loss_sum"])
        self.spread_sum = float(state["spread_sum"])
        self.previous_loss = state["previous_loss"]
        self.previous_spread = state["previous_spread"]
