"""Reproduce the committed demo weights: ``python -m pathatlas.attribution.models.train_demo``.

Trains :func:`~pathatlas.attribution.models.demo_cnn.demo_cnn` on the synthetic benchmark (training seed
``seed``, held-out test set from another generator seed), deterministically on the CPU, and writes
the state dict and a JSON record (settings, accuracy, time, sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from ..data.synthetic import SyntheticConfig, generate_arrays
from .demo_cnn import MEAN, STD, WEIGHTS, demo_cnn
from .wrapper import PixelSpaceModel

TRAIN_SEED, TEST_SEED = 0, 999


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(n_train: int, epochs: int, width: int, seed: int, out: Path, info_path: Path) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    started = time.perf_counter()
    data = generate_arrays(SyntheticConfig(n_samples=n_train, seed=TRAIN_SEED + seed))
    test = generate_arrays(SyntheticConfig(n_samples=1000, seed=TEST_SEED))
    x, y = torch.from_numpy(data["image"]), torch.from_numpy(data["label"])
    net = demo_cnn(width)
    model = PixelSpaceModel(net, MEAN, STD)
    for p in model.parameters():
        p.requires_grad_(True)
    batch = 64
    steps = epochs * -(-n_train // batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train, batch):
            idx = order[i : i + batch]
            # +-2 px shifts: position must not matter
            xb = torch.roll(x[idx], shifts=tuple(torch.randint(-2, 3, (2,), generator=gen).tolist()), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        acc = accuracy(model, torch.from_numpy(test["image"]), torch.from_numpy(test["label"]))
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy {acc:.4f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    info = {
        "width": width,
        "n_train": n_train,
        "epochs": epochs,
        "seed": seed,
        "train_generator_seed": TRAIN_SEED + seed,
        "test_generator_seed": TEST_SEED,
        "test_accuracy": acc,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    info = train(args.n_train, args.epochs, args.width, args.seed, args.out, args.out.with_suffix(".json"))
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
