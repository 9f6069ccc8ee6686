#!/usr/bin/env python3
"""Data-parallel scaling on this machine: 1 process x 2 threads against 2 processes x 1 thread.

Runs `examples/scaling.rs` (build it first: `cargo build --release --features mpi --example
scaling`) alternately, A B A B ..., for LeNet-5 and ResNet-20 with a global batch of 64, and
prints each round and the medians with their spread. As root, OpenMPI needs
OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here).

    python3 scripts/mpi_scaling.py --rounds 5 [--modes lenet,resnet]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

EXE = "target/release/examples/scaling"


def run(cmd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"no result from {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--modes", default="lenet,resnet")
    args = p.parse_args()
    mpirun = ["mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"]
    configs = {
        "1x2": lambda mode: [EXE, mode, "--threads", "2"],
        "2x1": lambda mode: mpirun + ["-np", "2", EXE, mode, "--threads", "1", "--distributed"],
    }
    for mode in args.modes.split(","):
        results = {name: [] for name in configs}
        for r in range(args.rounds):
            for name, cmd in configs.items():
                res = run(cmd(mode))
                results[name].append(res)
                print(f"{mode} round {r + 1} {name}: {res['img_per_s']:.0f} img/s, "
                      f"{res['ms_per_step']:.2f} ms/step, {res['allocs_per_step']} allocs/step")
        med = {}
        for name, rs in results.items():
            v = [x["img_per_s"] for x in rs]
            med[name] = statistics.median(v)
            print(f"{mode} {name}: median {med[name]:.0f} img/s [{min(v):.0f}-{max(v):.0f}]")
        print(f"{mode}: 2 processes x 1 thread / 1 process x 2 threads = "
              f"{med['2x1'] / med['1x2']:.2f}")


if __name__ == "__main__":
    main()
