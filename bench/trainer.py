"""Benchmark: hpsearch's tensor trainer against the classic DataLoader training loop.

Trains the reference configuration (784-128-10, ReLU, NLL, Adadelta lr 1.0, StepLR gamma 0.7,
batch 64, standardized input) on real MNIST both ways in one run, on the same training
images, and prints seconds per epoch, test accuracy and the speedup.

    python bench/trainer.py --epochs 3 --data-dir ../shared/data [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from population import timed  # bench/population.py: one call of the trainer, timed
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Subset
from torchvision import datasets
from torchvision import transforms

from hpsearch.spec.config import make_config
from hpsearch.training.data import split_indices
from hpsearch.training.trainer import resolve_device
from hpsearch.training.trainer import train


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
    """The pytorch/examples MNIST loop: per-sample transforms, DataLoader, .item() per log,
    and an evaluation after every epoch (here on the validation images our trainer also
    evaluates every epoch; the test set once at the end, untimed, as for ours)."""
    torch.manual_seed(1)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    full = datasets.MNIST(data_dir, train=True, transform=transform)
    train_idx, val_idx = split_indices(len(full), 0.1)  # the same images our trainer uses
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=64, shuffle=True, **extra)
    val_loader = DataLoader(Subset(full, val_idx.tolist()), batch_size=1000, **extra)
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
        accuracy(model, val_loader, device)  # the example's test() after each epoch
        scheduler.step()
        seconds.append(time.perf_counter() - start)
    return seconds, accuracy(model, test_loader, device)


def accuracy(model: nn.Module, loader: DataLoader[Any], device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for data, target in loader:
            out = model(data.to(device))
            correct += int((out.argmax(dim=1) == target.to(device)).sum())
            total += len(target)
    return correct / total


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
    (ours,), wall = timed([config])  # the first epoch's CUDA graph capture included
    ours_sec = [e.seconds for e in ours.epochs]
    print(f"device: {device}  torch {torch.__version__}  epochs: {args.epochs}")
    show("hpsearch", ours_sec, ours.test_accuracy, wall)
    if device.type == "cuda":  # the same run stepped eagerly, side by side
        (eager,), eager_wall = timed([make_config({"cuda_graphs": False}, config)])
        show("eager", [e.seconds for e in eager.epochs], eager.test_accuracy, eager_wall)
        print(f"CUDA graphs: {eager_wall / wall:.1f}x faster (whole run)")
    if args.skip_reference:
        return
    ref_sec, ref_acc = reference(args.data_dir, args.epochs, device)
    show("reference", ref_sec, ref_acc)
    assert ours.test_accuracy is not None
    print(f"accuracy difference: {100 * (ours.test_accuracy - ref_acc):+.2f} points")
    print(f"total-time ratio: {sum(ref_sec) / sum(ours_sec):.1f}x")
    # The headline compares median epochs: one epoch stalled by a noisy neighbour on a shared
    # machine moves a mean, not a median.
    print(f"speedup: {statistics.median(ref_sec) / statistics.median(ours_sec):.1f}x")


def show(
    name: str, seconds: list[float], accuracy: float | None, wall: float | None = None
) -> None:
    whole = f"  run {wall:6.2f}s" if wall is not None else ""
    print(
        f"{name:<10} s/epoch median {statistics.median(seconds):6.3f}  "
        f"mean {statistics.mean(seconds):6.3f}  total {sum(seconds):7.2f}s  "
        f"test_acc {accuracy:.4f}{whole}"
    )


if __name__ == "__main__":
    main()
