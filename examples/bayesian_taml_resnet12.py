"""Bayesian TAML on your own ResNet-12, in a plain PyTorch loop.

The tasks are imbalanced on purpose (each class of a task gets 1..max_shot support images,
as in the paper): that is where Bayesian TAML's balancing variables earn their keep. Your
episodes come from your own data; here a stand-in of random class templates plus noise
keeps the script self-contained. Tiny by default (CPU seconds); `--channels 64 160 320 640
--size 84` is the standard ResNet-12 at miniImageNet's size (use a GPU).

    python examples/bayesian_taml_resnet12.py --iterations 300
"""

import argparse

import torch

import taml

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=10)
parser.add_argument("--way", type=int, default=5)
parser.add_argument("--max_shot", type=int, default=5)
parser.add_argument("--query", type=int, default=5)
parser.add_argument("--size", type=int, default=16)
parser.add_argument("--alpha_init", type=float, default=0.01)
parser.add_argument("--channels", type=int, nargs=4, default=[8, 16, 32, 64])
args = parser.parse_args()
rng = torch.Generator().manual_seed(0)
# your labelled data: here 40 random class templates, 20 noisy images of each
templates = torch.rand(40, 3, args.size, args.size, generator=rng)
labels = torch.arange(40).repeat_interleave(20)
images = templates[labels] + 0.2 * torch.randn(len(labels), 3, args.size, args.size,
                                               generator=rng)
# the paper's imbalanced tasks (1..max_shot images per class), padded with their mask;
# classes 0-29 to meta-train, 30-39 to meta-test
train_tasks, test_tasks = (
    taml.EpisodeBuilder(images, labels, way=args.way, max_shot=args.max_shot,
                        query=args.query, classes=classes)
    for classes in (range(30), range(30, 40)))

backbone = taml.ResNet12(in_channels=3, channels=tuple(args.channels))  # your module
learner = taml.BayesianTAML(backbone, way=args.way, input_shape=(3, args.size, args.size),
                            max_shot=args.max_shot, n_steps=3, first_order=True,
                            alpha_init=args.alpha_init)
optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
noise = torch.Generator().manual_seed(1)  # the posterior samples' noise
for iteration in range(1, args.iterations + 1):
    sx, sy, qx, qy, mask = train_tasks.sample(2, generator=rng)
    optimiser.zero_grad()
    objective = learner.meta_objective(sx, sy, qx, qy, mask, generator=noise)
    objective.loss.backward()
    optimiser.step()
    print(f"iteration {iteration}: meta-loss {objective.loss.item():.3f}, query accuracy "
          f"{100 * objective.accuracy.mean().item():.1f}%")

test = test_tasks.sample(4, generator=rng)  # meta-test: 4 tasks of new classes, 5 samples
probs = learner.predict(test.support_x, test.support_y, test.query_x, test.support_mask,
                        n_samples=5, generator=noise)
accuracy = (probs.argmax(-1) == test.query_y).float().mean().item()
print(f"meta-test accuracy {100 * accuracy:.1f}% (chance {100 / args.way:.0f}%)")
# the balancing of the last meta-training task: its class sizes and the class weights
# softmax(omega) its inner loss used (the paper: smaller classes get larger weights)
shots = torch.bincount(sy[-1][mask[-1]], minlength=args.way)
weights = torch.softmax(objective.balancing["omega"][-1].detach(), -1)
print("class sizes -> weights: " + ", ".join(
    f"{n} -> {w:.3f}" for n, w in zip(shots.tolist(), weights.tolist(), strict=True)))
