"""Every fused linear+activation kernel and every compiled loss against its NumPy twin.

    python bench/twins.py [--sizes 300x100,4096x1024] [--dtypes float32,float64] [--reps R]

For each case both implementations run on the same preallocated buffers, in
alternating blocks of calls with a pause between blocks (see _median_pair); the table gives
the median time of each and the ratio twin / compiled (above 1: the compiled kernel is faster).
Sizes are N x D: the linear layers map (N, D) to (N, D) (a D x D weight matrix), the
losses take (N, D) scores (D classes, attributes or outputs; the hierarchical softmax
takes (N, D) features and D classes).
"""
import argparse
import gc
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import fastnn  # noqa: E402
from fastnn import _kernels, config, losses  # noqa: E402
from fastnn.layers import ACTIVATIONS  # noqa: E402

C, T = _kernels.COMPILED, _kernels.NUMPY


def _median_pair(run_c, run_t, reps, block=5, pause=0.0):
    """Median seconds per call of each, measured in alternating blocks of `block`
    calls with a pause between blocks: back-to-back calls into two libraries would
    put their idle spinning thread pools (OpenMP, two OpenBLAS) on the same cores and
    time the contention instead of the kernels."""
    tc, tt = [], []
    gc.disable()
    try:
        for _ in range(max(1, reps // block)):
            for run, times in ((run_c, tc), (run_t, tt)):
                run()                               # warm this library's threads
                for _ in range(block):
                    t0 = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - t0)
                time.sleep(pause)
    finally:
        gc.enable()
    return float(np.median(tc)), float(np.median(tt))


def linear_cases(n, d, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(dtype)
    W = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype)
    b = np.zeros(d, dtype)
    dout = rng.standard_normal((n, d)).astype(dtype)
    out, dz, dx = (np.empty((n, d), dtype) for _ in range(3))
    dW, db = np.empty_like(W), np.empty_like(b)
    nt = config.get_num_threads()
    for name, code in ACTIVATIONS.items():
        if name is None:
            continue

        def run(impl, code=code):
            impl.affine_forward(x, W, b, out, code, 0.01, nt)
            impl.affine_backward(dout, x, W, out, dz, dx, dW, db, code, 0.01, nt)
        yield f"linear+{name}", (lambda run=run: run(C)), (lambda run=run: run(T))


def loss_cases(n, d, dtype):
    rng = np.random.default_rng(1)
    s = rng.standard_normal((n, d)).astype(dtype)
    labels = rng.integers(0, d, n).astype(np.intp)
    signs = np.where(rng.random((n, d)) < 0.5, -1.0, 1.0).astype(dtype)
    bits = (rng.random((n, d)) < 0.5).astype(dtype)
    targets = rng.standard_normal((n, d)).astype(dtype)
    ds, rows = np.empty_like(s), np.empty(n, dtype)
    nt = config.get_num_threads()
    for name, kernel, y, extra in [
        ("softmax cross-entropy", "softmax_cross_entropy", labels, ()),
        ("multiclass SVM", "multiclass_svm", labels, (1.0, False)),
        ("squared hinge SVM", "multiclass_svm", labels, (1.0, True)),
        ("attribute hinge", "attribute_hinge", signs, ()),
        ("attribute logistic", "attribute_logistic", bits, ()),
        ("L2 regression", "l2_regression", targets, ()),
        ("L1 regression", "l1_regression", targets, ()),
    ]:
        def run(impl, kernel=kernel, y=y, extra=extra):
            getattr(impl, kernel)(s, y, ds, rows, *extra, n_threads=nt)
        yield name, (lambda run=run: run(C)), (lambda run=run: run(T))
    hs = losses.HierarchicalSoftmax(d, d, seed=0, dtype=dtype)
    h = rng.standard_normal((n, d)).astype(dtype)
    dz = np.empty((n, hs.paths.shape[1]), dtype)
    dh = np.empty_like(h)

    def run_hs(impl):
        impl.hierarchical_softmax_forward(h, hs.W, hs.b, labels, hs.paths, hs.codes,
                                          hs.depths, dz, rows, nt)
        impl.hierarchical_softmax_backward(h, hs.W, labels, hs.paths, hs.depths, dz, dh,
                                           hs.dW, hs.db, nt)
    yield "hierarchical softmax", (lambda: run_hs(C)), (lambda: run_hs(T))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="300x100,4096x1024")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--reps", type=int, default=0,
                    help="timed calls per implementation and case (default: 25 small, 10 large)")
    args = ap.parse_args(argv)
    info = fastnn.show_config(print_out=False)
    print(f"fastnn {info['version']} compiled kernels vs their NumPy twins; "
          f"{info['num_threads']} threads, {info['cores']} cores; medians, forward+backward")
    print(f"{'case':<24}{'size':>11}{'dtype':>9}{'compiled':>12}{'twin':>12}{'twin/compiled':>15}")
    for size in args.sizes.split(","):
        n, d = (int(v) for v in size.lower().split("x"))
        reps = args.reps or (25 if n * d <= 100_000 else 10)
        for dtype in args.dtypes.split(","):
            dt = np.dtype(dtype)
            for family in (linear_cases, loss_cases):
                for name, run_c, run_t in family(n, d, dt):
                    tc, tt = _median_pair(run_c, run_t, reps)
                    unit, scale = ("ms", 1e3) if tc > 1e-3 else ("us", 1e6)
                    print(f"{name:<24}{size:>11}{dtype:>9}{tc * scale:>9.1f} {unit}"
                          f"{tt * scale:>9.1f} {unit}{tt / tc:>14.1f}x", flush=True)


if __name__ == "__main__":
    main()
