"""The base learner of few-shot learning: the 4-block conv net, as an ``nn.Module`` that
the learners run like any other backbone (:mod:`taml.episodic.learners.backbone`).

Each block: 3x3 conv (32 filters, stride 1, same padding, bias) -> batch norm -> ReLU ->
2x2 max pool; the learner adds a linear classifier on the flattened 2*2*32 (32 px) or
5*5*32 (84 px) features.

Batch norm, as the original's, has a learned shift and no scale (eps 1e-3); inside the
learners it normalises with the statistics of the real rows of the batch it is given, at
test time too, and belongs to the outer loop (never adapted in the inner loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_FILTERS = 32
N_BLOCKS = 4
BN_EPS = 1e-3  # the original's tf.contrib.layers.batch_norm default


def images_to_input(images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> contiguous float ``[..., 3, H, W]`` in [0, 1].

    Made contiguous NCHW on purpose: on CPU the second-order conv path measured about 2x
    slower with channels-last inputs.
    """
    dtype = dtype or torch.get_default_dtype()
    return images.movedim(-1, -3).to(dtype).div_(255.0).contiguous()


class ShiftBatchNorm2d(nn.BatchNorm2d):
    """The original's batch norm as a module: a learned per-channel shift, no scale, eps
    1e-3. (Inside the episodic learners every batch norm runs on the batch's real rows;
    see :mod:`taml.episodic.learners.backbone`.)"""

    def __init__(self, channels: int, eps: float = BN_EPS):
        super().__init__(channels, eps=eps, affine=True)
        self.weight = None  # no scale: a registered None, so state_dict has the shift only


class Conv4(nn.Module):
    """The 4-block conv net of few-shot learning as an ``nn.Module`` (features ``[N, D]``,
    no classifier: the learner adds it).

    ``generator`` draws the kernels (normal(0, 0.02) truncated at 2 std, conv1 first: the
    original's initialisation, and the draws of every run the command line saved); no other
    random number is drawn (the layers are built without their default initialisation,
    which would read torch's global generator).
    ``n_filters`` (32, the paper's) is there for tiny tests. The convolutions are declared
    before the batch norms, so that the parameters come in the order of the runs saved
    before the 4-conv net became a module (kernel and bias of conv1..4, then the shifts):
    their optimiser states, indexed by that order, resume as they are.
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
