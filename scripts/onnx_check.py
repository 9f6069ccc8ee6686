#!/usr/bin/env python3
"""Checks an ONNX file that striate exported: onnx.checker (with shape inference), then a run
in onnxruntime, optionally compared with the output striate computed.

    python scripts/onnx_check.py MODEL.onnx [--input X.npy] [--expected Y.npy]
                                 [--tolerance 1e-5] [--batch 2] [--output OUT.npy]

--input     the input batch (float32, [N, ..] as the model's `input`); without it, a batch of
            --batch samples drawn from N(0, 1) with seed 0.
--expected  the output striate gave for that input (`net.forward`); the check fails unless
            every value is within tolerance * max(1, |expected|) of onnxruntime's.
--output    where to write onnxruntime's output.

Needs `pip install onnx onnxruntime numpy`. Prints one line per check and exits 0 when all
pass, 1 when one fails, 2 when the packages are missing.
"""

import argparse
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--input")
    parser.add_argument("--expected")
    parser.add_argument("--output")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
    except ImportError as e:
        print(f"missing: {e.name} (pip install onnx onnxruntime numpy)")
        return 2

    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    print(
        f"ok: onnx.checker (onnx {onnx.__version__}): ir_version {model.ir_version}, "
        f"opsets {opsets}, {len(model.graph.node)} nodes, "
        f"{len(model.graph.initializer)} initializers"
    )

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    if args.input:
        x = np.load(args.input).astype(np.float32)
    else:
        shape = [args.batch] + [d for d in inp.shape[1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (y,) = session.run(None, {inp.name: x})
    print(
        f"ok: onnxruntime {ort.__version__}: input {inp.name} {list(x.shape)} -> "
        f"output {list(y.shape)}"
    )
    if args.output:
        np.save(args.output, y)

    if args.expected:
        expected = np.load(args.expected)
        if expected.shape != y.shape:
            print(f"failed: expected shape {list(expected.shape)}, found {list(y.shape)}")
            return 1
        bound = args.tolerance * np.maximum(1.0, np.abs(expected))
        diff = np.abs(y.astype(np.float64) - expected)
        worst = np.unravel_index(np.argmax(diff - bound), diff.shape)
        if not np.all(diff <= bound) or not np.all(np.isfinite(y)):
            print(
                f"failed: at {[int(i) for i in worst]} onnxruntime gives {y[worst]}, striate "
                f"{expected[worst]} (difference {diff[worst]:.3g}, allowed {bound[worst]:.3g})"
            )
            return 1
        print(
            f"ok: matches the expected output to {args.tolerance:g} "
            f"(largest difference {diff.max():.3g}, |expected| up to {np.abs(expected).max():.3g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
