"""MAML on your own tensors: a labelled image tensor, your own small network, N-way
imbalanced episodes drawn from it (1..max_shot shots per class), and a plain PyTorch loop.

Here the tensor is scikit-learn's handwritten digits (1,797 real 8x8 images, no download;
classes 0-6 to meta-train, 7-9 to meta-test): replace `images, labels` with yours.

    python examples/maml_on_your_tensors.py --iterations 100
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn

import taml

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=20)
parser.add_argument("--way", type=int, default=3)
parser.add_argument("--max_shot", type=int, default=5)
parser.add_argument("--query", type=int, default=10)
parser.add_argument("--inner_lr", type=float, default=0.1)
args = parser.parse_args()

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16  # [1797,1,8,8]
labels = torch.tensor(digits.target)
rng = torch.Generator().manual_seed(0)
# the paper's imbalanced tasks: each class 1..max_shot support images, `query` queries,
# supports padded to the largest task with a mask that keeps padding out of the learner
train_tasks, test_tasks = (
    taml.EpisodeBuilder(images, labels, way=args.way, max_shot=args.max_shot,
                        query=args.query, classes=classes)
    for classes in (range(7), range(7, 10)))  # digits 7-9 are never meta-trained on


network = nn.Sequential(  # yours: conv / linear layers with batch norm
    nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten())
learner = taml.MAML(network, way=args.way, input_shape=(1, 8, 8), n_steps=5,
                   inner_lr=args.inner_lr)
optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
for iteration in range(1, args.iterations + 1):
    optimiser.zero_grad()
    objective = learner.meta_objective(*train_tasks.sample(4, generator=rng))
    objective.loss.backward()
    optimiser.step()
    if iteration % 10 == 0 or iteration == args.iterations:
        print(f"iteration {iteration}: meta-loss {objective.loss.item():.3f}, "
              f"query accuracy {100 * objective.accuracy.mean().item():.1f}%")

test = test_tasks.sample(20, generator=rng)  # classes never seen in meta-training
probs = learner.predict(test.support_x, test.support_y, test.query_x, test.support_mask)
accuracy = (probs.argmax(-1) == test.query_y).float().mean().item()
print(f"meta-test on digits 7-9: {100 * accuracy:.1f}% (chance {100 / args.way:.0f}%)")
