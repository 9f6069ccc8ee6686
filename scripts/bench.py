#!/usr/bin/env python3
"""Runs striate's benchmark (examples/bench.rs) and the PyTorch reference
(../shared/bench/torch_peer.py) alternately on this machine and prints medians, spread and
ratios. The protocol both speak is ../shared/bench/PROTOCOL.md.

    python3 scripts/bench.py [--rounds 3] [--threads 2] [--modes train,infer,...]

Options:
    --rounds R      runs of each program per mode, alternating striate, PyTorch, striate, ...
                    (default 3; the protocol asks for at least 3)
    --threads LIST  comma-separated thread counts, e.g. 1,2 (default 2)
    --modes LIST    comma-separated subset of: train, infer, alexnet, alexnet-fwd, accuracy,
                    alexnet-train, resnet, autoencoder (default: all eight; alexnet-train
                    and resnet are whole training steps of larger networks and take the
                    longest; autoencoder's PyTorch side is scripts/torch_autoencoder.py)
    --no-build      do not run `cargo build --release --example bench` first

The PyTorch reference (once per machine, outside the repository; it pulls large CUDA
packages from PyPI but runs on the CPU; allow a few minutes):

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy

The script looks for its Python in $TORCH_PYTHON, then /tmp/torch-venv/bin/python, then
./torch-venv/bin/python; the peer script in $TORCH_PEER, then ../shared/bench/torch_peer.py
next to the repository. When either is missing, or `import torch` fails, it runs striate alone
and says so. Peak RSS is measured the same way for both programs, from the kernel's
accounting of each child process (getrusage's ru_maxrss).

Environment passed on: MNIST_DIR (both programs read the digits from it). When it is unset,
striate uses its built-in copy of the 10,000 digits and PyTorch reads the identical files in
runtime/data/mnist-10k.
"""
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
STRIATE = os.path.join(TARGET, "release", "examples", "bench")
ALL_MODES = ["train", "infer", "alexnet", "alexnet-fwd", "accuracy", "alexnet-train", "resnet", "autoencoder"]
# Modes whose PyTorch side is a script of this repository rather than the shared peer.
OWN_PEERS = {"autoencoder": os.path.join(REPO, "scripts", "torch_autoencoder.py")}

# The figure each mode is judged by, and whether more is better.
METRICS = {
    "train": [("img_per_s", True)],
    "infer": [("b256_img_per_s", True), ("b1_median_us", False)],
    "alexnet": [("ms_per_step", False)],
    "alexnet-fwd": [("ms_per_step", False)],
    "accuracy": [("train_seconds", False), ("test_acc", True)],
    "alexnet-train": [("img_per_s", True), ("ms_per_step", False)],
    "resnet": [("img_per_s", True), ("ms_per_step", False)],
    "autoencoder": [("img_per_s", True), ("ms_per_step", False)],
}


def parse_args(argv):
    opts = {"rounds": "3", "threads": "2", "modes": ",".join(ALL_MODES)}
    build = True
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--no-build":
            build = False
            i += 1
        elif a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        elif a.startswith("--") and a[2:] in opts and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
        else:
            sys.exit(f"bench.py: unknown argument {a!r}; see --help")
    modes = [m for m in opts["modes"].split(",") if m]
    for m in modes:
        if m not in ALL_MODES:
            sys.exit(f"bench.py: unknown mode {m!r}; expected one of: {', '.join(ALL_MODES)}")
    threads = [int(t) for t in opts["threads"].split(",") if t]
    return int(opts["rounds"]), threads, modes, build


def find_torch():
    """The (python, torch_peer.py) pair, or None with the reason."""
    candidates = [os.environ.get("TORCH_PYTHON"), "/tmp/torch-venv/bin/python",
                  os.path.join(REPO, "torch-venv", "bin", "python")]
    python = next((p for p in candidates if p and os.path.exists(p)), None)
    peer = os.environ.get("TORCH_PEER") or os.path.join(os.path.dirname(REPO), "shared", "bench", "torch_peer.py")
    if python is None:
        return None, "no Python with torch found (set TORCH_PYTHON; see --help for the install)"
    if not os.path.exists(peer):
        return None, f"no torch_peer.py at {peer} (set TORCH_PEER)"
    ok = subprocess.run([python, "-c", "import torch, numpy"], capture_output=True)
    if ok.returncode != 0:
        return None, f"{python} cannot import torch and numpy"
    return (python, peer), None


def run_measured(cmd, env):
    """Runs cmd, returns (result dict, the child's own peak RSS in KiB, wall seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # Read everything first (the pipes could otherwise fill), then reap with wait4 for rusage.
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    text = out.decode()
    if proc.returncode != 0:
        sys.exit(f"bench.py: {' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()}{text}")
    lines = [l for l in text.splitlines() if l.startswith("RESULT ")]
    if not lines:
        sys.exit(f"bench.py: {' '.join(cmd)} printed no RESULT line:\n{text}{err.decode()}")
    return json.loads(lines[-1][len("RESULT "):]), usage.ru_maxrss, wall


def spread(v):
    return f"{min(v):.4g}-{max(v):.4g}" if len(v) > 1 else "-"


def fmt(v):
    return f"{v:.4g}"


def main():
    rounds, thread_counts, modes, build = parse_args(sys.argv[1:])
    if build:
        subprocess.run(["cargo", "build", "--release", "--example", "bench"], cwd=REPO, check=True)
    torch, why = find_torch()
    if torch is None:
        print(f"# PyTorch reference skipped: {why}")
    env = dict(os.environ)
    torch_env = dict(env)
    if "MNIST_DIR" not in torch_env:
        torch_env["MNIST_DIR"] = os.path.join(REPO, "runtime", "data", "mnist-10k")
    print(f"# {rounds} rounds per program and mode, alternating; medians, [min-max], ratio = striate/PyTorch")
    print(f"# (for times, lower is better: the ratio column is then PyTorch/striate, so > 1 always means striate is faster)")
    rows = []
    extras = []
    for threads in thread_counts:
        for mode in modes:
            res = {"striate": [], "pytorch": []}
            rss = {"striate": [], "pytorch": []}
            for _ in range(rounds):
                peers = [("striate", [STRIATE, mode, "--threads", str(threads)], env)]
                if torch:
                    peer = OWN_PEERS.get(mode, torch[1])
                    peers.append(("pytorch", [torch[0], peer, mode, "--threads", str(threads)], torch_env))
                for name, cmd, e in peers:
                    r, maxrss, _ = run_measured(cmd, e)
                    res[name].append(r)
                    rss[name].append(maxrss)
            for key, higher in METRICS[mode]:
                s = [r[key] for r in res["striate"]]
                p = [r[key] for r in res["pytorch"]]
                sm = statistics.median(s)
                pm = statistics.median(p) if p else None
                if pm:
                    ratio = sm / pm if higher else pm / sm
                    rows.append((threads, mode, key, fmt(sm), spread(s), fmt(pm), spread(p), f"{ratio:.2f}x"))
                else:
                    rows.append((threads, mode, key, fmt(sm), spread(s), "-", "-", "-"))
            sr = statistics.median(rss["striate"])
            pr = statistics.median(rss["pytorch"]) if rss["pytorch"] else None
            rows.append((threads, mode, "peak_rss_mib", fmt(sr / 1024), spread([v / 1024 for v in rss["striate"]]),
                         fmt(pr / 1024) if pr else "-", spread([v / 1024 for v in rss["pytorch"]]) if pr else "-",
                         f"{pr / sr:.2f}x" if pr else "-"))
            allocs = [r.get("allocs_per_step") for r in res["striate"] if "allocs_per_step" in r]
            if allocs:
                extras.append(f"threads {threads} {mode}: striate heap allocations per step {statistics.median(allocs):g}")
            if mode == "infer":
                a = [r.get("allocs_per_b256_call") for r in res["striate"]]
                b = [r.get("allocs_per_b1_call") for r in res["striate"]]
                extras.append(f"threads {threads} infer: allocations per batch-256 call {statistics.median(a):g}, per batch-1 call {statistics.median(b):g}")
            if mode == "accuracy":
                for name in ("striate", "pytorch"):
                    for r in res[name][:1]:
                        losses = ", ".join(f"{v:.6f}" for v in r["epoch_loss"])
                        extras.append(f"threads {threads} accuracy: {name:8} epoch losses [{losses}], test {r['test_correct']}/{r['test_n']}")
                if res["pytorch"]:
                    d = max(abs(a - b) for a, b in zip(res["striate"][0]["epoch_loss"], res["pytorch"][0]["epoch_loss"]))
                    # The first epoch agrees to about 6 decimals; later ones drift by float
                    # summation order (PyTorch's own 1- and 2-thread runs differ by ~1e-4).
                    first = abs(res["striate"][0]["epoch_loss"][0] - res["pytorch"][0]["epoch_loss"][0])
                    verdict = "agree" if d < 2e-3 else "DISAGREE"
                    extras.append(f"threads {threads} accuracy: epoch-loss difference: first epoch {first:.1e}, largest {d:.1e} ({verdict} to about 3 decimals)")
    head = ("threads", "mode", "figure", "striate", "spread", "pytorch", "spread", "ratio")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    for e in extras:
        print(e)


if __name__ == "__main__":
    main()
