"""The nogil cores of src_c/_*_core.pxd (activation, dropout, batch norm, loss,
regularization) are what the def kernels run, and what a compiled training plan will run.

* Every def kernel of those five modules gives the same bits on 1, 2 and 3 threads at
  sizes above _runtime.parallel_min_work(): the one-thread calls take the cores' serial
  branch (no OpenMP region), the others their parallel branch, so this pins the two
  branches to one arithmetic.
* The penalties return exactly the values they returned when the def kernels formed them
  from the block sums: equal to the NumPy twins where every sum is exact, and equal to
  the documented block / lane summation order, rebuilt here in NumPy, everywhere.
* The cores cimported by another compiled module are tested through fastnn._plan
  (tests/test_plan.py).
"""
import zlib

import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _kernels, _runtime, losses

C, NP = _kernels.COMPILED, _kernels.NUMPY
MIN_WORK = _runtime.parallel_min_work()


def rng_for(*key):
    """A generator seeded from the test's parameters (crc32: stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---- every def kernel: 1 thread vs 2 and 3, bit for bit -------------------------------
# Each case builds its inputs from its own seed, runs the kernels on n_threads and returns
# every output (arrays and returned floats).  N x H = 1023 x 301 is above the parallel
# threshold and odd (dropout's last element, partial blocks and uneven thread splits).
N, H = 1023, 301


def _activation(dtype, nt):
    rng = rng_for("act", dtype)
    x, dout = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype)
    res = []
    for act in range(5):
        out = C.activation_forward(x, np.empty_like(x), act, 0.1, nt)
        res += [out, C.activation_backward(dout, out, np.empty_like(x), act, 0.1, nt)]
    return res


def _prelu(dtype, nt):
    rng = rng_for("prelu", dtype)
    x, dout, alpha = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype), randn(rng, H, dtype)
    out = C.prelu_forward(x, alpha, np.empty_like(x), nt)
    dx, dal, dal_only = np.empty_like(x), np.empty_like(alpha), np.empty_like(alpha)
    C.prelu_backward(dout, x, alpha, dx, dal, nt)
    C.prelu_backward(dout, x, alpha, None, dal_only, nt)
    return [out, dx, dal, dal_only]


def _dropout(dtype, nt):
    rng = rng_for("dropout", dtype)
    x, dout = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype)
    res = []
    for p in (0.3, 1.0):
        mask = np.empty(x.shape, np.uint8)
        res += [C.dropout_forward(x, np.empty_like(x), mask, p, 17, 3, nt), mask.copy(),
                C.dropout_backward(dout, mask, np.empty_like(x), p, nt)]
        res += [C.dropout_forward_scaled(x, np.empty_like(x), mask, p, 1.0, 17, 4, nt), mask,
                C.dropout_backward_scaled(dout, mask, np.empty_like(x), 1.0, nt)]
    return res


def _batchnorm(dtype, nt):
    rng = rng_for("batchnorm", dtype)
    x, dout = randn(rng, (N, H), dtype, 3.0), randn(rng, (N, H), dtype)
    gamma, beta = randn(rng, H, dtype), randn(rng, H, dtype)
    res = []
    for training in (True, False):
        rm, rv = randn(rng, H, dtype, 0.1), np.full(H, 1.5, dtype)
        out, xhat = np.empty_like(x), np.empty_like(x)
        mean, inv_std = np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_forward(x, gamma, beta, rm, rv, out, xhat, mean, inv_std, training, 0.9,
                            1e-5, nt)
        dx, dg, db = np.empty_like(x), np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_backward(dout, xhat, gamma, inv_std, dx, dg, db, training, nt)
        dg2, db2 = np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_backward(dout, xhat, gamma, inv_std, None, dg2, db2, training, nt)
        res += [out, xhat, mean, inv_std, rm, rv, dx, dg, db, dg2, db2]
    return res


def _score_losses(dtype, nt):
    rng = rng_for("scores", dtype)
    s = randn(rng, (N, H), dtype, 2.0)
    labels = rng.integers(0, H, N).astype(np.intp)
    targets = {"attribute_hinge": rng.choice([-1.0, 1.0], (N, H)).astype(dtype),
               "attribute_logistic": rng.integers(0, 2, (N, H)).astype(dtype),
               "l2_regression": randn(rng, (N, H), dtype),
               "l1_regression": randn(rng, (N, H), dtype)}
    res = []
    for name, y, extra in [("softmax_cross_entropy", labels, ()),
                           ("multiclass_svm", labels, (1.0, False)),
                           ("multiclass_svm", labels, (0.5, True))] + \
                          [(name, y, ()) for name, y in targets.items()]:
        d, rl = np.empty_like(s), np.empty(N, dtype)
        res += [getattr(C, name)(s, y, d, rl, *extra, nt), d, rl]
    return res


def _hsoftmax(dtype, nt):
    n, d, k = 2048, 300, 100
    hs = losses.HierarchicalSoftmax(d, k, seed=0, dtype=dtype)
    rng = rng_for("hs", dtype)
    hs.set_params(W=0.1 * rng.standard_normal(hs.W.shape), b=0.1 * rng.standard_normal(k - 1))
    h, y = randn(rng, (n, d), dtype), rng.integers(0, k, n).astype(np.intp)
    dz, rl = np.empty((n, hs.paths.shape[1]), dtype), np.empty(n, dtype)
    loss = C.hierarchical_softmax_forward(h, hs.W, hs.b, y, hs.paths, hs.codes, hs.depths,
                                          dz, rl, nt)
    dh, dW, db = np.empty_like(h), np.empty_like(hs.W), np.empty_like(hs.b)
    C.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, dz, dh, dW, db, nt)
    dW2, db2 = np.empty_like(hs.W), np.empty_like(hs.b)
    C.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, dz, None, dW2, db2, nt)
    return [loss, dz, rl, dh, dW, db, dW2, db2]


def _regularization(dtype, nt):
    rng = rng_for("reg", dtype)
    res = []
    for shape in [(300001,), (600, 500)]:
        W = randn(rng, shape, dtype)
        W.reshape(-1)[::7] = 0
        for name, args in [("l2_penalty", (0.3,)), ("l1_penalty", (0.3,)),
                           ("elastic_net_penalty", (0.2, 0.7))]:
            dW = np.ones(shape, dtype)
            res += [getattr(C, name)(W, dW, *args, nt), dW]
    W = randn(rng, (600, 500), dtype) / np.sqrt(600).astype(dtype)
    res += [C.max_norm_constrain(W, 1.0, nt), W]
    return res


FAMILIES = {"activation": _activation, "prelu": _prelu, "dropout": _dropout,
            "batchnorm": _batchnorm, "score_losses": _score_losses, "hsoftmax": _hsoftmax,
            "regularization": _regularization}


def _same_bits(a, b):
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and np.array(a).tobytes() == np.array(b).tobytes()


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_def_kernels_same_bits_for_1_2_and_3_threads(family, dtype):
    assert N * H >= MIN_WORK and 300001 >= MIN_WORK      # the threaded branch really runs
    one = FAMILIES[family](dtype, 1)
    for nt in (2, 3):
        other = FAMILIES[family](dtype, nt)
        assert len(one) == len(other)
        for i, (a, b) in enumerate(zip(one, other)):
            assert _same_bits(a, b), f"{family}: output {i} differs on {nt} threads"


# ---- penalties: exactly the values the def kernels returned before ------------------
PENALTY_ARGS = {"l2_penalty": (0.375,), "l1_penalty": (0.375,),
                "elastic_net_penalty": (0.25, 0.625)}
PENALTY_SHAPES = [(1,), (7,), (3, 5), (8192,), (8199,), (300, 200), (600, 500), (300001,)]


def _dyadic(shape, dtype, seed):
    """Multiples of 1/64 in [-4, 4] (zeros included): squares, |w| and every sum of them
    here are exact in double in any order, so any summation gives the same bits."""
    w = np.random.default_rng(seed).integers(-256, 257, shape) / 64.0
    return w.astype(dtype)


@pytest.mark.parametrize("kernel", sorted(PENALTY_ARGS))
@pytest.mark.parametrize("shape", PENALTY_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_equals_twin_exactly_where_sums_are_exact(kernel, shape, dtype):
    # Dyadic strengths too: the gradient terms are exact, so dW must match bit for bit.
    W = _dyadic(shape, dtype, 1)
    dW0 = _dyadic(shape, dtype, 2)
    want_dW = dW0.copy()
    want = getattr(NP, kernel)(W, want_dW, *PENALTY_ARGS[kernel])
    for nt in (1, 2, 3):
        dW = dW0.copy()
        got = getattr(C, kernel)(W, dW, *PENALTY_ARGS[kernel], nt)
        assert isinstance(got, float) and got == want
        np.testing.assert_array_equal(dW, want_dW)


def _lane_block_sum(terms):
    """The order of _regularization_core.pxd: blocks of 8192 terms added in block order;
    in a block, 8 lanes summed down its whole groups of 8, then the tail in order, then
    the lanes 0..7 added to the tail's sum."""
    total = 0.0
    for b0 in range(0, terms.size, 8192):
        blk = terms[b0:b0 + 8192]
        m = blk.size // 8 * 8
        lanes = np.cumsum(blk[:m].reshape(-1, 8), axis=0)[-1] if m else np.zeros(8)
        part = 0.0
        for v in blk[m:]:
            part += float(v)
        for v in lanes:
            part += float(v)
        total += part
    return total


@pytest.mark.parametrize("shape", PENALTY_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_values_follow_the_documented_order(shape, dtype):
    # float32-representable weights (either dtype): their squares are exact in double,
    # so the sums below are those of the kernel's loop with or without a fused multiply-add
    w = np.random.default_rng(3).standard_normal(shape).astype(np.float32).astype(dtype)
    w.reshape(-1)[::5] = 0
    w64 = w.astype(np.float64).reshape(-1)
    s_abs, s_sq = _lane_block_sum(np.abs(w64)), _lane_block_sum(w64 * w64)
    reg, l1, l2 = 0.3, 0.2, 0.7
    for nt in (1, 2):
        assert C.l2_penalty(w, np.zeros_like(w), reg, nt) == 0.5 * reg * s_sq
        assert C.l1_penalty(w, np.zeros_like(w), reg, nt) == reg * s_abs
        assert C.elastic_net_penalty(w, np.zeros_like(w), l1, l2, nt) == l1 * s_abs + l2 * s_sq
    # and the twins agree to rounding (they sum pairwise)
    np.testing.assert_allclose(NP.l2_penalty(w, np.zeros_like(w), reg), 0.5 * reg * s_sq,
                               rtol=1e-12)
# The cores cimported by another compiled module (the C-level API): fastnn._plan does,
# and tests/test_plan.py holds it to the def kernels bit for bit for every family.
