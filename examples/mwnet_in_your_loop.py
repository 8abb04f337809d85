"""MW-Net inside a standard CIFAR-style PyTorch loop: your DataLoader, your network, your
optimiser and lr schedule; taml.MWNetStep does one Meta-Weight-Net step per batch.

Data: the embedded glyphs (no download), long-tailed (imbalance factor 10) or with 40%
uniform label noise, plus a small balanced clean meta set. Tiny by default (seconds on a
CPU); for a longer run: --epochs 30 --steps_per_epoch 0 (0: whole epochs).

    python examples/mwnet_in_your_loop.py [--bias noise] [--epochs N] [--device cuda]
"""

import argparse
import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import taml
from taml.data.recipes import BiasSpec, build_biased_data

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--bias", choices=["long_tail", "noise"], default="long_tail")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--steps_per_epoch", type=int, default=20, help="0: whole epochs")
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--data_root", default=None, help="where the glyphs are generated")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
torch.manual_seed(0)

data = build_biased_data(BiasSpec(dataset="glyphs", bias=args.bias, imbalance_factor=10,
                                  noise_rate=0.4), args.data_root)


def tensors(split):  # uint8 [N, H, W, C] -> float [N, C, H, W] in [-1, 1], int64 labels
    x = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return TensorDataset(x, torch.from_numpy(split.labels).long())


loader = DataLoader(tensors(data.train), batch_size=64, shuffle=True, drop_last=True)
meta_loader = DataLoader(tensors(data.meta), batch_size=50, shuffle=True)
test_loader = DataLoader(tensors(data.test), batch_size=500)

model = nn.Sequential(  # your own network: anything made of standard layers
    nn.Conv2d(data.in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, data.num_classes)).to(args.device)
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
mwnet = taml.MWNetStep(model, optimizer)  # V: 1-100-1 MLP, Adam 1e-3 (the CLI's defaults)
meta_batches = itertools.cycle(meta_loader)  # endless clean, balanced meta batches


def on(device, batch):
    return tuple(t.to(device) for t in batch)


for epoch in range(1, args.epochs + 1):
    model.train()
    steps = itertools.islice(loader, args.steps_per_epoch or None)
    for batch in steps:
        stats = mwnet.step(on(args.device, batch), on(args.device, next(meta_batches)))
    scheduler.step()  # MWNetStep looks ahead with the optimiser's current lr
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x.to(args.device)).argmax(1) == y.to(args.device)).sum())
                      for x, y in test_loader)
    print(f"epoch {epoch}: weighted loss {stats.loss:.3f}, example weights {stats.weight_min:.4f}.."
          f"{stats.weight_max:.4f}, meta loss {stats.meta_loss:.3f}, "
          f"test accuracy {100 * correct / len(data.test):.1f}%")
curve = mwnet.summary()["weight_curve"]
print("V(loss) at loss 0, 2.5, 5:", [round(curve[1][i], 3) for i in (0, 25, 50)])
