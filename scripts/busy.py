#!/usr/bin/env python3
"""Times the main job (LeNet-5 on the built-in digits, examples/lenet.rs) at 1 and 2 threads
while 0, 1, 2 and 3 other CPU-bound processes compete for the cores, and prints the medians
and the ratio of 2 threads to 1 (issue 15's check that more threads never make a run slower).

    python3 scripts/busy.py [--rounds 3] [--hogs 0,1,2,3] [--bin A[,B]] [--epochs N]

Each round runs every binary at 1 thread, then at 2, alternating, with the same competing
processes (busy loops, started before and stopped after each run). The run's own wall time is
measured from outside, so it includes start-up and the test evaluation.

Options:
    --rounds R    runs of each (binary, threads) pair per load (default 3)
    --hogs LIST   competing processes (default 0,1,2,3)
    --bin LIST    lenet binaries to compare, e.g. an old build and the new one
                  (default target/release/examples/lenet; build it first with
                  `cargo build --release --example lenet`)
    --epochs N    passes over the training set (default 12, the main job's)
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hog():
    """A CPU-bound process: a busy loop until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(binary, threads, epochs, out):
    start = time.perf_counter()
    subprocess.run(
        [binary, "--threads", str(threads), "--epochs", str(epochs), "--out", out],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main():
    args = sys.argv[1:]
    opts = {"--rounds": "3", "--hogs": "0,1,2,3", "--epochs": "12",
            "--bin": os.path.join(REPO, "target", "release", "examples", "lenet")}
    while args:
        key = args.pop(0)
        if key not in opts or not args:
            sys.exit(__doc__)
        opts[key] = args.pop(0)
    rounds, epochs = int(opts["--rounds"]), int(opts["--epochs"])
    binaries = opts["--bin"].split(",")
    print(f"machine: {os.cpu_count()} cores; {rounds} rounds; epochs {epochs}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lenet.safetensors")
        for hogs in [int(h) for h in opts["--hogs"].split(",")]:
            times = {(b, t): [] for b in binaries for t in (1, 2)}
            for _ in range(rounds):
                for b in binaries:
                    for t in (1, 2):
                        procs = [hog() for _ in range(hogs)]
                        try:
                            time.sleep(0.2)
                            times[(b, t)].append(run(b, t, epochs, out))
                        finally:
                            for p in procs:
                                p.kill()
                                p.wait()
            for b in binaries:
                one, two = (statistics.median(times[(b, t)]) for t in (1, 2))
                spread = {t: f"{min(times[(b, t)]):.2f}-{max(times[(b, t)]):.2f}" for t in (1, 2)}
                print(f"hogs {hogs}  {b}: 1 thread {one:.2f} s ({spread[1]}), "
                      f"2 threads {two:.2f} s ({spread[2]}), 2/1 = {two / one:.2f}x", flush=True)


if __name__ == "__main__":
    main()
