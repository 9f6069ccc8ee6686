#!/usr/bin/env python3
"""striate's RBM against scikit-learn's BernoulliRBM, on the same binarized built-in digits.

Both train a 784-256 Bernoulli RBM by persistent contrastive divergence (scikit-learn's only
algorithm: one Gibbs step per update, chains of `batch` rows starting at zero hidden units), on
the first `--samples` training digits of runtime/data/mnist-10k (pixel >= 128 of 255, i.e. > 0.5
once scaled), in order, in batches of `--batch`, with the same learning rate, no momentum and no
weight decay, for the same epochs. The pseudo-likelihood of each epoch is scikit-learn's
estimator (`score_samples`, one unit flipped per sample) with the same flipped units for both:
the script writes scikit-learn's indices, `RandomState(seed).randint(0, 784, samples)`, for
striate to read. Times are training only (scoring excluded on both sides), over `--rounds`
alternating rounds, at `--threads` threads (striate's pool; numpy's BLAS limited with
threadpoolctl).

    python3 -m venv /tmp/sk-venv && /tmp/sk-venv/bin/pip install scikit-learn numpy
    /tmp/sk-venv/bin/python scripts/sklearn_rbm.py                 # the comparison
    /tmp/sk-venv/bin/python scripts/sklearn_rbm.py --fixture tests/fixtures/rbm_sklearn.json

Without scikit-learn or numpy it says how to install them and exits with status 0.
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "runtime", "data", "mnist-10k", "train-images-idx3-ubyte.gz")
HIDDEN = 256  # the hidden units of examples/rbm_sklearn.rs, a constant there


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.06)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--samples", type=int, default=8000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="random_state, striate's seed and the flips' seed")
    p.add_argument("--binary", help="examples/rbm_sklearn built with --release (built if not given)")
    p.add_argument("--fixture", help="write the pseudo-likelihood fixture of tests/rbm.rs there and stop")
    p.add_argument("--quality-seeds", type=int, metavar="N",
                   help="the quality comparison alone (no timing) over seeds --seed .. --seed+N-1: each "
                        "seed's final pseudo-likelihoods, then the mean difference and its 95%% interval")
    return p.parse_args()


def digits(np, n):
    with gzip.open(IMAGES) as f:
        raw = f.read()
    count = int.from_bytes(raw[4:8], "big")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, 784)[:n]
    return (images >= 128).astype(np.float32)


def exact_pseudo_likelihood(np, rbm, v):
    """sum_i log p(v_i | v_-i) over every unit, in float64."""
    w = rbm.components_.astype(np.float64)
    b = rbm.intercept_visible_.astype(np.float64)
    c = rbm.intercept_hidden_.astype(np.float64)
    v = v.astype(np.float64)

    pre = v @ w.T + c
    hidden = np.logaddexp(0, pre).sum(axis=1)
    total = np.zeros(v.shape[0])
    for i in range(v.shape[1]):
        # Flipping unit i moves the visible term by -b_i * sign and each hidden input by sign * W[:, i].
        sign = (1 - 2 * v[:, i])[:, None]
        flipped = np.logaddexp(0, pre + sign * w[:, i]).sum(axis=1)
        difference = hidden - flipped - b[i] * sign[:, 0]  # F(flipped) - F(v)
        total += -np.logaddexp(0, -difference)
    return total


def write_fixture(np, BernoulliRBM, path):
    """Weights from a short fit (10 hidden units, 2 epochs on 500 digits), 20 digits, the units
    score_samples flips in them, its scores, the exact pseudo-likelihood and transform."""
    data = digits(np, 500)
    rbm = BernoulliRBM(n_components=10, learning_rate=0.05, batch_size=10, n_iter=2, random_state=0)
    rbm.fit(data)
    # Rounded to 5 decimals (a smaller file), then scored: the scores are those of these weights.
    for name in ("components_", "intercept_visible_", "intercept_hidden_"):
        setattr(rbm, name, np.round(getattr(rbm, name), 5).astype(np.float32))
    v = data[:20]

    def short(x):
        return np.round(x.astype(np.float64), 5).tolist()

    flipped = np.random.RandomState(0).randint(0, 784, v.shape[0])
    fixture = {
        "about": "scripts/sklearn_rbm.py --fixture: BernoulliRBM(n_components=10, learning_rate=0.05, "
        "batch_size=10, n_iter=2, random_state=0) fitted on the first 500 binarized built-in digits; "
        "score_samples of the first 20 flips the units in `flipped`",
        "components": short(rbm.components_),
        "intercept_visible": short(rbm.intercept_visible_),
        "intercept_hidden": short(rbm.intercept_hidden_),
        "data": v.astype(int).tolist(),
        "flipped": flipped.tolist(),
        "score_samples": rbm.score_samples(v).tolist(),
        "exact_pseudo_likelihood": exact_pseudo_likelihood(np, rbm, v).tolist(),
        "transform": rbm.transform(v).tolist(),
    }
    with open(path, "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"wrote {path}")


def sklearn_curve(np, BernoulliRBM, data, a):
    """Per-epoch pseudo-likelihood: BernoulliRBM.fit's own loop (its batches, its generator),
    scored between epochs (main checks it against fit's result)."""
    from sklearn.utils import check_random_state, gen_even_slices

    def model(epochs):
        return BernoulliRBM(n_components=HIDDEN, learning_rate=a.lr, batch_size=a.batch,
                            n_iter=epochs, random_state=a.seed)

    rbm = model(a.epochs)
    rng = check_random_state(a.seed)
    n = data.shape[0]
    rbm.components_ = np.asarray(rng.normal(0, 0.01, (HIDDEN, 784)), order="F", dtype=data.dtype)
    rbm._n_features_out = HIDDEN
    rbm.intercept_hidden_ = np.zeros(HIDDEN, dtype=data.dtype)
    rbm.intercept_visible_ = np.zeros(784, dtype=data.dtype)
    rbm.h_samples_ = np.zeros((a.batch, HIDDEN), dtype=data.dtype)
    rbm.n_features_in_ = 784
    n_batches = int(np.ceil(float(n) / a.batch))
    slices = list(gen_even_slices(n_batches * a.batch, n_batches, n_samples=n))
    curve = []
    for _ in range(a.epochs):
        for s in slices:
            rbm._fit(data[s], rng)
        curve.append(float(rbm.score_samples(data).mean()))
    return curve, rbm


def time_sklearn(BernoulliRBM, data, a):
    rbm = BernoulliRBM(n_components=HIDDEN, learning_rate=a.lr, batch_size=a.batch,
                       n_iter=a.epochs, random_state=a.seed)
    start = time.perf_counter()
    rbm.fit(data)
    return time.perf_counter() - start, rbm


def run_striate(a, flips_path, weights_path=None):
    """Trains with the binary; with `weights_path`, also writes the weights there and computes
    the exact pseudo-likelihood."""
    cmd = [a.binary, "--epochs", str(a.epochs), "--lr", str(a.lr), "--batch", str(a.batch),
           "--samples", str(a.samples), "--threads", str(a.threads), "--seed", str(a.seed),
           "--flips", flips_path]
    if weights_path:
        cmd += ["--weights", weights_path, "--exact"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    epochs = [l for l in lines if "epoch" in l]
    exact = [l["exact_pseudo_likelihood"] for l in lines if "exact_pseudo_likelihood" in l]
    exact = exact[0] if exact else None
    return [l["pseudo_likelihood"] for l in epochs], epochs[-1]["seconds"], exact


def curves(np, BernoulliRBM, data, a, tmp):
    """Both trainings of seed `a.seed`, with the per-epoch pseudo-likelihood of each (the one-unit
    estimator on the same flipped units, whose file it writes in `tmp`), scikit-learn's fitted
    model, the exact last-epoch pseudo-likelihoods, and striate's weights file."""
    flips = os.path.join(tmp, "flips.u32")
    np.random.RandomState(a.seed).randint(0, 784, a.samples).astype("<u4").tofile(flips)
    weights = os.path.join(tmp, "weights.f32")
    ours, _, exact_ours = run_striate(a, flips, weights)
    theirs, rbm = sklearn_curve(np, BernoulliRBM, data, a)
    exact_theirs = float(exact_pseudo_likelihood(np, rbm, data).mean())
    return theirs, ours, rbm, (exact_theirs, exact_ours), flips, weights


def interval(differences):
    """Mean, and a 95 % interval by Student's t (two-sided), of per-seed differences."""
    n = len(differences)
    mean = statistics.mean(differences)
    if n < 2:
        return mean, float("nan"), float("nan")
    # t quantiles (0.975) for n - 1 degrees of freedom, up to 40, then the normal's.
    t = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
         2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
         2.05, 2.04, 2.04, 2.04, 2.03, 2.03, 2.03, 2.03, 2.03, 2.02, 2.02, 2.02]
    q = t[n - 2] if n - 2 < len(t) else 1.96
    half = q * statistics.stdev(differences) / n ** 0.5
    return mean, mean - half, mean + half


def quality(np, BernoulliRBM, data, a):
    """The pseudo-likelihood comparison over many seeds: with the two implementations doing the
    same steps, one seed's difference is mostly the random numbers, so only the mean over seeds,
    with its interval, says which is better."""
    first = a.seed
    print(f"seeds {first}..{first + a.quality_seeds - 1}; {a.samples} digits, 784-{HIDDEN}, PCD-1, "
          f"lr {a.lr}, batch {a.batch}, {a.epochs} epochs")
    print("seed  pseudo-likelihood: scikit-learn  striate  exact: scikit-learn  striate", flush=True)
    one, exact = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(first, first + a.quality_seeds):
            a.seed = seed
            theirs, ours, _, (te, oe), _, _ = curves(np, BernoulliRBM, data, a, tmp)
            t, o = theirs[-1], ours[-1]
            one.append(o - t)
            exact.append(oe - te)
            print(f"{seed:4}  {t:31.2f}  {o:7.2f}  {te:19.2f}  {oe:7.2f}", flush=True)
    for name, d in (("one-unit estimator", one), ("exact", exact)):
        mean, lo, hi = interval(d)
        ahead = sum(x >= 0 for x in d)
        print(f"striate - scikit-learn, {name}: mean {mean:+.2f}, 95 % interval [{lo:+.2f}, {hi:+.2f}], "
              f"striate ahead in {ahead} of {len(d)} seeds")
    return 0


def spread(xs):
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, {len(xs)} rounds)"


def main():
    a = parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    try:
        import numpy as np
        from sklearn.neural_network import BernoulliRBM
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        print(f"skipped: {e.name} is not installed; install it with\n"
              "  python3 -m venv /tmp/sk-venv && /tmp/sk-venv/bin/pip install scikit-learn numpy\n"
              "and run this script with /tmp/sk-venv/bin/python")
        return 0
    threadpool_limits(a.threads)
    import sklearn

    if a.fixture:
        write_fixture(np, BernoulliRBM, a.fixture)
        return 0
    if a.binary is None:
        subprocess.run(["cargo", "build", "--release", "--example", "rbm_sklearn"], cwd=ROOT, check=True)
        a.binary = os.path.join(ROOT, "target", "release", "examples", "rbm_sklearn")
    data = digits(np, a.samples)
    if a.quality_seeds:
        return quality(np, BernoulliRBM, data, a)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; {a.samples} digits, "
          f"784-{HIDDEN}, PCD-1, lr {a.lr}, batch {a.batch}, {a.epochs} epochs, {a.threads} threads, "
          f"seed {a.seed}")
    with tempfile.TemporaryDirectory() as tmp:
        theirs, ours, rbm, (exact_theirs, exact_ours), flips, weights = curves(np, BernoulliRBM, data, a, tmp)
        # scikit-learn scores striate's final weights itself: the same estimator, the same units.
        values = np.fromfile(weights, dtype="<f4")
        check = BernoulliRBM(n_components=HIDDEN, random_state=a.seed)
        check.components_ = values[:HIDDEN * 784].reshape(HIDDEN, 784)
        check.intercept_visible_ = values[HIDDEN * 784:HIDDEN * 784 + 784]
        check.intercept_hidden_ = values[HIDDEN * 784 + 784:]
        check.n_features_in_ = 784
        check.h_samples_ = np.zeros((a.batch, HIDDEN), dtype=np.float32)
        rescored = float(check.score_samples(data).mean())
        print("\nepoch  pseudo-likelihood: scikit-learn  striate")
        for e, (t, o) in enumerate(zip(theirs, ours), 1):
            print(f"{e:5}  {t:31.2f}  {o:7.2f}")
        print(f"striate's last epoch scored by scikit-learn: {rescored:.2f} (striate: {ours[-1]:.2f})")
        print(f"exact pseudo-likelihood (every unit), last epoch: scikit-learn {exact_theirs:.2f}, "
              f"striate {exact_ours:.2f}")
        sys.stdout.flush()
        t_sk, t_st = [], []
        for r in range(a.rounds):
            seconds, fitted = time_sklearn(BernoulliRBM, data, a)
            assert np.allclose(fitted.components_, rbm.components_), "the curve's loop is not fit's"
            t_sk.append(seconds)
            t_st.append(run_striate(a, flips)[1])
            print(f"round {r + 1}: scikit-learn {t_sk[-1]:.2f} s, striate {t_st[-1]:.2f} s", flush=True)
    print(f"\ntraining time, scikit-learn: {spread(t_sk)}")
    print(f"training time, striate:      {spread(t_st)}")
    print(f"striate is {statistics.median(t_sk) / statistics.median(t_st):.2f}x faster (medians); "
          f"pseudo-likelihood after {a.epochs} epochs: striate {ours[-1]:.2f}, scikit-learn {theirs[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
