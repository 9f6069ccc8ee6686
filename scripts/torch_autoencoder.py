"""PyTorch's side of the `autoencoder` mode of examples/bench.rs: training steps of the
denoising autoencoder of examples/autoencoder.rs (two stride-2 3x3 convolutions down to 32
maps of 7x7, two transposed convolutions back up), Adam at 2e-3, binary cross-entropy with
logits, on a batch of 64 random images in [0, 1) that are their own targets. The images are
splitmix64(31)'s stream, as striate's; the initial weights are PyTorch's own (same shapes and
work, not the same weights: the timing does not depend on them).

Speaks ../shared/bench/PROTOCOL.md's command line and `RESULT {json}` line, with
../shared/bench/common.py's timing, so scripts/bench.py runs it beside striate:

    /tmp/torch-venv/bin/python scripts/torch_autoencoder.py autoencoder --threads 2 [--batch 64]
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("TORCH_PEER_DIR", os.path.join(os.path.dirname(REPO), "shared", "bench")))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import SplitMix, emit, parse_args, time_calls_budget  # noqa: E402


def autoencoder():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
    )


def main():
    mode, kv = parse_args()
    if mode != "autoencoder":
        sys.exit(f"torch_autoencoder.py: unknown mode {mode!r}; expected autoencoder")
    threads = int(kv.get("threads", 2))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batch = int(kv.get("batch", 64))
    r = SplitMix(31)
    x = torch.from_numpy(r.f32_array(batch * 28 * 28).astype(np.float32)).reshape(batch, 1, 28, 28)
    m = autoencoder()
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    last = [0.0]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(x), x)
        loss.backward()
        opt.step()
        last[0] = loss.item()

    v = time_calls_budget(int(kv.get("warmup", 3)), int(kv.get("steps", 40)), 10.0, step, int(kv.get("min", 3)))
    med = float(np.median(v))
    emit({"mode": mode, "threads": threads, "batch": batch, "steps": len(v), "ms_per_step": med * 1e3,
          "min_ms": min(v) * 1e3, "max_ms": max(v) * 1e3, "img_per_s": batch / med, "last_loss": last[0],
          "torch": torch.__version__})


if __name__ == "__main__":
    main()
