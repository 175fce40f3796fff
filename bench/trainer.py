"""Benchmark: hpsearch's tensor trainer against the classic DataLoader training loop.

Trains the reference configuration (784-128-10, ReLU, NLL, Adadelta lr 1.0, StepLR gamma 0.7,
batch 64, standardized input) on real MNIST both ways in one run, on the same training
images, and prints seconds per epoch, test accuracy and the speedup.

    python bench/trainer.py --epochs 3 --data-dir ../shared/data [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Subset
from torchvision import datasets
from torchvision import transforms

from hpsearch.config import make_config
from hpsearch.data import split_indices
from hpsearch.trainer import resolve_device
from hpsearch.trainer import train


class Net(nn.Module):
    """The classic example's model, reduced to the reference MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def reference(data_dir: str, epochs: int, device: torch.device) -> tuple[list[float], float]:
    """The pytorch/examples MNIST loop: per-sample transforms, DataLoader, .item() per log."""
    torch.manual_seed(1)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    full = datasets.MNIST(data_dir, train=True, transform=transform)
    train_idx, _ = split_indices(len(full), 0.1)  # the same images our trainer trains on
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=64, shuffle=True, **extra)
    test_loader = DataLoader(
        datasets.MNIST(data_dir, train=False, transform=transform), batch_size=1000, **extra
    )
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            if batch_idx % 10 == 0:  # the example logs every 10 batches
                loss.item()
        scheduler.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            out = model(data.to(device))
            correct += int((out.argmax(dim=1) == target.to(device)).sum())
    return seconds, correct / len(test_loader.dataset)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", required=True, help="holds MNIST/raw (torchvision layout)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-reference", action="store_true", help="time ours only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    config = make_config(
        {
            "dataset": "mnist",
            "data_dir": args.data_dir,
            "epochs": args.epochs,
            "device": str(device),
        }
    )
    train(make_config({"epochs": 1, "device": str(device)}, config))  # load + warm up, untimed
    ours = train(config)
    ours_sec = [e.seconds for e in ours.epochs]
    print(f"device: {device}  torch {torch.__version__}  epochs: {args.epochs}")
    print(
        f"hpsearch   s/epoch {sum(ours_sec) / len(ours_sec):7.3f}  "
        f"total {sum(ours_sec):7.2f}s  test_acc {ours.test_accuracy:.4f}"
    )
    if args.skip_reference:
        return
    ref_sec, ref_acc = reference(args.data_dir, args.epochs, device)
    print(
        f"reference  s/epoch {sum(ref_sec) / len(ref_sec):7.3f}  "
        f"total {sum(ref_sec):7.2f}s  test_acc {ref_acc:.4f}"
    )
    assert ours.test_accuracy is not None
    print(f"accuracy difference: {100 * (ours.test_accuracy - ref_acc):+.2f} points")
    print(f"speedup: {sum(ref_sec) / sum(ours_sec):.1f}x")


if __name__ == "__main__":
    main()
