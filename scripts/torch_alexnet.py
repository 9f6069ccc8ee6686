"""PyTorch's side of the whole-AlexNet training comparison in BENCHMARKS.md.

The network of examples/alexnet.rs (single-tower AlexNet for 227x227 images), trained with
SGD (learning rate 0.01, momentum 0.9) on a batch of random images: prints the median time of
five training steps after one to warm up, as `cargo run --release --example alexnet --
--train-batch B --threads N` does for striate. Not part of ../shared/bench's protocol: same
shapes and work, not the same weights or data.

    /tmp/torch-venv/bin/python scripts/torch_alexnet.py --threads 1 --batch 16

PyTorch comes from PyPI (python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install
torch numpy); scripts/bench.py explains more.
"""
import argparse
import time

import torch
from torch import nn


def alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 1000),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = alexnet()
    x = torch.rand(args.batch, 3, 227, 227)
    labels = torch.arange(args.batch) * 7 % 1000
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times = []
    for step in range(6):
        start = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        if step > 0:
            times.append((time.perf_counter() - start) * 1e3)
    ms = sorted(times)[2]
    print(f"training step on {args.batch} images, {args.threads} thread(s): median {ms:.0f} ms "
          f"({args.batch / ms * 1e3:.1f} images/s)")


if __name__ == "__main__":
    main()
