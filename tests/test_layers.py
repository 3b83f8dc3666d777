"""Activation, PReLU, Maxout, BatchNorm and Dropout layers and their kernels.

Every compiled kernel is compared with its NumPy twin (fastnn.reference), on one row,
odd sizes and a large block, in float32 and float64; with 1 and 2 threads (bit for
bit); and every layer's analytic gradient is compared with finite differences.
"""
import zlib

import numpy as np
import pytest

import fastnn
from conftest import DTYPES, RTOL
from fastnn import _runtime, _kernels
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.layers import (ACTIVATIONS, BatchNorm, Dropout, LeakyReLU, Linear, Maxout,
                           PReLU, ReLU, Sigmoid, Tanh)
from fastnn.net import Sequential

C = _kernels.COMPILED
NP = _kernels.NUMPY
BACKENDS = ["compiled", "numpy"]
CODES = sorted(set(ACTIVATIONS.values()))          # 0 identity .. 4 tanh
# RTOL (conftest): float64 1e-12, float32 1e-5.  The kernels and twins run the same
# formulas up to summation order (BLAS blocking), FMA contraction in the AVX2/AVX-512
# clones and our exp/tanh vs libm's: a few ulp per operation, far inside either.
ROW_SHAPES = [(1, 7), (13, 29), (1024, 512)]        # (N, H): one row, odd, large


def rng_for(*key):
    """A generator seeded from the test's parameters (crc32: stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def assert_close(actual, expected, dtype, scale=None):
    """rtol for the dtype, plus an absolute floor rtol * scale for elements that are
    small only because terms of size ~scale cancelled (sums, GEMMs, x - mean)."""
    rtol = RTOL[dtype]
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def both(kernel):
    return getattr(C, kernel), getattr(NP, kernel)


# ---------------------------------------------------------------- kernels vs twins --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("act", CODES)
def test_activation_kernels_match_twin(act, shape, dtype):
    rng = rng_for("act", act, shape)
    x = randn(rng, shape, dtype, 3.0)
    dout = randn(rng, shape, dtype)
    (fwd, fwd_r), (bwd, bwd_r) = both("activation_forward"), both("activation_backward")
    out_r = fwd_r(x, np.empty_like(x), act, 0.1)
    # element-wise: no cancellation to excuse, so purely relative (atol 0); this is
    # what catches a tanh that loses digits near 0
    assert_close(fwd(x, np.empty_like(x), act, 0.1), out_r, dtype, scale=0.0)
    # both backwards read the same output, so they too agree to rtol
    dx = bwd(dout, out_r, np.empty_like(x), act, 0.1)
    assert_close(dx, bwd_r(dout, out_r, np.empty_like(x), act, 0.1), dtype, scale=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nd", [(1, 3, 5), (13, 7, 29), (1024, 64, 512)])
@pytest.mark.parametrize("act", CODES)
def test_affine_kernels_match_twin(act, nd, dtype):
    n, d, h = nd
    rng = rng_for("affine", act, nd)
    x, W, b = randn(rng, (n, d), dtype), randn(rng, (d, h), dtype, 0.5), randn(rng, h, dtype)
    dout = randn(rng, (n, h), dtype)
    res = []
    for fwd, bwd in zip(both("affine_forward"), both("affine_backward")):
        out = fwd(x, W, b, np.empty((n, h), dtype), act, 0.1)
        dz, dx = np.empty((n, h), dtype), np.empty((n, d), dtype)
        dW, db = np.empty((d, h), dtype), np.empty(h, dtype)
        bwd(dout, x, W, out, dz, dx, dW, db, act, 0.1)
        res.append((out, dx, dW, db))
    for a, e in zip(*res):
        assert_close(a, e, dtype)


def test_tanh_and_sigmoid_are_accurate_at_the_extremes():
    # tanh near 0 is where 1 - 2/(e^{2x} + 1) cancels; sigmoid far below 0 is where
    # 1/(1 + e^{-x}) overflows.  The compiled versions stay within a few ulp there.
    x = np.geomspace(1e-300, 30.0, 4001)
    x = np.concatenate([-x[::-1], [0.0], x])
    t = C.activation_forward(x, np.empty_like(x), ACTIVATIONS["tanh"])
    np.testing.assert_allclose(t, np.tanh(x), rtol=1e-15, atol=0)
    x32 = x.astype(np.float32)
    t32 = C.activation_forward(x32, np.empty_like(x32), ACTIVATIONS["tanh"])
    np.testing.assert_allclose(t32, np.tanh(x32.astype(np.float64)), rtol=4e-7, atol=1e-44)
    z = np.linspace(-740.0, 800.0, 3001)
    s = C.activation_forward(z, np.empty_like(z), ACTIVATIONS["sigmoid"])
    expected = np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))),
                        np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))
    np.testing.assert_allclose(s, expected, rtol=1e-15, atol=0)
    assert np.all(np.isfinite(s)) and s[0] > 0 and s[-1] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_prelu_kernels_match_twin(shape, dtype):
    rng = rng_for("prelu", shape)
    x, dout = randn(rng, shape, dtype), randn(rng, shape, dtype)
    alpha = randn(rng, shape[1], dtype, 0.3)          # some slopes negative
    res = []
    for fwd, bwd in zip(both("prelu_forward"), both("prelu_backward")):
        out = fwd(x, alpha, np.empty_like(x))
        dx, dalpha = np.empty_like(x), np.empty_like(alpha)
        bwd(dout, x, alpha, dx, dalpha)
        res.append((out, dx, dalpha))
    for a, e in zip(*res):
        assert_close(a, e, dtype)
    # dx is optional
    dalpha = np.empty_like(alpha)
    assert C.prelu_backward(dout, x, alpha, None, dalpha) is None
    assert_close(dalpha, res[1][2], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("nd", [(1, 3, 5), (13, 7, 29), (1024, 64, 512)])
def test_maxout_kernels_match_twin(nd, k, dtype):
    n, d, h = nd
    rng = rng_for("maxout", nd, k)
    x, W = randn(rng, (n, d), dtype), randn(rng, (d, h * k), dtype, 0.5)
    b, dout = randn(rng, h * k, dtype), randn(rng, (n, h), dtype)
    res = []
    for fwd, bwd in zip(both("maxout_forward"), both("maxout_backward")):
        z, out = np.empty((n, h * k), dtype), np.empty((n, h), dtype)
        arg = np.empty((n, h), np.int32)
        fwd(x, W, b, z, out, arg, k)
        dz, dx = np.empty((n, h * k), dtype), np.empty((n, d), dtype)
        dW, db = np.empty_like(W), np.empty_like(b)
        bwd(dout, x, W, arg, dz, dx, dW, db, k)
        res.append((out, arg, dz, dx, dW, db))
    (out, arg, dz, *_), (out_r, arg_r, dz_r, *_) = res
    assert_close(out, out_r, dtype)
    if dtype == np.float32:
        # a near-tie may pick another piece in float32 (FMA vs separate rounding), so
        # the backward kernels are compared on the compiled forward's winners
        _, bwd_twin = both("maxout_backward")
        dz_r, dx_r = np.empty((n, h * k), dtype), np.empty((n, d), dtype)
        dW_r, db_r = np.empty_like(W), np.empty_like(b)
        bwd_twin(dout, x, W, arg, dz_r, dx_r, dW_r, db_r, k)
        res[1] = (out_r, arg, dz_r, dx_r, dW_r, db_r)
    np.testing.assert_array_equal(res[0][1], res[1][1])      # the same winners
    np.testing.assert_array_equal(res[0][2], res[1][2])      # dz routes dout to them
    for a, e in zip(res[0][3:], res[1][3:]):                 # dx, dW, db
        assert_close(a, e, dtype)


def test_maxout_ties_go_to_the_first_piece():
    x = np.ones((2, 1))
    W = np.array([[1.0, 1.0, 0.5, 2.0, 2.0, 2.0]])      # unit 0 ties (0, 1); unit 1 all
    b = np.zeros(6)
    for kern in both("maxout_forward"):
        arg = np.empty((2, 2), np.int32)
        out = kern(x, W, b, np.empty((2, 6)), np.empty((2, 2)), arg, 3)
        np.testing.assert_array_equal(arg, [[0, 0], [0, 0]])
        np.testing.assert_array_equal(out, [[1.0, 2.0], [1.0, 2.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_kernels_match_twin(training, shape, dtype):
    n, h = shape
    rng = rng_for("bn", shape, training)
    x = randn(rng, shape, dtype, 2.0) + dtype(0.5)
    gamma, beta = randn(rng, h, dtype), randn(rng, h, dtype)
    rm0, rv0 = randn(rng, h, dtype), (rng.random(h) + 0.5).astype(dtype)
    dout = randn(rng, shape, dtype)
    res = []
    if training and n < 2:
        # one row has no batch variance: both implementations refuse it
        for fwd in both("batchnorm_forward"):
            with pytest.raises(ValueError, match="2 rows"):
                fwd(x, gamma, beta, rm0.copy(), rv0.copy(), np.empty_like(x),
                    np.empty_like(x), np.empty(h, dtype), np.empty(h, dtype), True, 0.9, 1e-5)
        return
    for fwd, bwd in zip(both("batchnorm_forward"), both("batchnorm_backward")):
        rm, rv = rm0.copy(), rv0.copy()
        out, xhat = np.empty_like(x), np.empty_like(x)
        mean, inv_std = np.empty(h, dtype), np.empty(h, dtype)
        fwd(x, gamma, beta, rm, rv, out, xhat, mean, inv_std, training, 0.9, 1e-5)
        dx, dgamma, dbeta = np.empty_like(x), np.empty(h, dtype), np.empty(h, dtype)
        bwd(dout, xhat, gamma, inv_std, dx, dgamma, dbeta, training)
        res.append(dict(out=out, xhat=xhat, mean=mean, inv_std=inv_std, rm=rm, rv=rv,
                        dx=dx, dgamma=dgamma, dbeta=dbeta))
    a, e = res
    for key in ("mean", "inv_std", "rm", "rv", "out", "xhat"):
        assert_close(a[key], e[key], dtype)
    # dbeta, dgamma sum N signed terms: compare relative to the sum of their sizes
    assert_close(a["dbeta"], e["dbeta"], dtype, scale=float(np.abs(dout).sum(0).max()))
    assert_close(a["dgamma"], e["dgamma"], dtype,
                 scale=float(np.abs(dout * e["xhat"]).sum(0).max()))
    scale = float(np.max(np.abs(gamma * e["inv_std"]) * (np.abs(dout).max() * 3)))
    assert_close(a["dx"], e["dx"], dtype, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_scaled_dropout_kernels_match_twin(scale, shape, dtype):
    rng = rng_for("drop", shape)
    x, dout = randn(rng, shape, dtype), randn(rng, shape, dtype)
    res = []
    for fwd, bwd in zip(both("dropout_forward_scaled"), both("dropout_backward_scaled")):
        mask = np.empty(shape, np.uint8)
        out = fwd(x, np.empty_like(x), mask, 0.4, scale, 12345, 7)
        dx = bwd(dout, mask, np.empty_like(x), scale)
        res.append((mask, out, dx))
    np.testing.assert_array_equal(res[0][0], res[1][0])      # the same mask, bit for bit
    np.testing.assert_array_equal(res[0][1], res[1][1])
    np.testing.assert_array_equal(res[0][2], res[1][2])
    # scale = 1/p is exactly inverted dropout, with the same mask
    mask = np.empty(shape, np.uint8)
    inv = C.dropout_forward(x, np.empty_like(x), mask, 0.4, 12345, 7)
    np.testing.assert_array_equal(mask, res[0][0])
    sc = C.dropout_forward_scaled(x, np.empty_like(x), mask, 0.4, 1 / 0.4, 12345, 7)
    np.testing.assert_array_equal(sc, inv)


# -------------------------------------------------------------------- threads ------

def _run_all_kernels(n_threads, dtype):
    """Every new kernel on a block big enough to be split across threads."""
    rng = rng_for("threads", dtype)
    n, d, h, k = 1024, 32, 512, 3
    assert n * h >= _runtime.parallel_min_work()          # really split across threads
    x, dout = randn(rng, (n, h), dtype), randn(rng, (n, h), dtype)
    xi, alpha = randn(rng, (n, d), dtype), randn(rng, h, dtype, 0.3)
    r = {}
    for act in CODES:
        out = C.activation_forward(x, np.empty_like(x), act, 0.1, n_threads)
        r[f"act{act}"] = out
        r[f"dact{act}"] = C.activation_backward(dout, out, np.empty_like(x), act, 0.1,
                                                n_threads)
        W, b = randn(rng, (d, h), dtype), randn(rng, h, dtype)
        aout = C.affine_forward(xi, W, b, np.empty((n, h), dtype), act, 0.1, n_threads)
        # dz zeroed: identity leaves the scratch untouched, and garbage is not a result
        bufs = [np.zeros((n, h), dtype), np.empty((n, d), dtype), np.empty((d, h), dtype),
                np.empty(h, dtype)]
        C.affine_backward(dout, xi, W, aout, *bufs, act, 0.1, n_threads)
        r[f"affine{act}"] = [aout] + bufs
    r["prelu"] = C.prelu_forward(x, alpha, np.empty_like(x), n_threads)
    dx, dal = np.empty_like(x), np.empty_like(alpha)
    C.prelu_backward(dout, x, alpha, dx, dal, n_threads)
    r["dprelu"] = (dx, dal)
    W, b = randn(rng, (d, h * k), dtype), randn(rng, h * k, dtype)
    z, out, arg = np.empty((n, h * k), dtype), np.empty((n, h), dtype), np.empty((n, h), np.int32)
    C.maxout_forward(xi, W, b, z, out, arg, k, n_threads)
    bufs = [np.empty((n, h * k), dtype), np.empty((n, d), dtype), np.empty_like(W),
            np.empty_like(b)]
    C.maxout_backward(dout, xi, W, arg, *bufs, k, n_threads)
    r["maxout"] = [out, arg] + bufs
    for training in (True, False):
        rm, rv = np.zeros(h, dtype), np.ones(h, dtype)
        g, be = randn(rng, h, dtype), randn(rng, h, dtype)
        bo, xh = np.empty_like(x), np.empty_like(x)
        mu, ist = np.empty(h, dtype), np.empty(h, dtype)
        C.batchnorm_forward(x, g, be, rm, rv, bo, xh, mu, ist, training, 0.9, 1e-5, n_threads)
        bufs = [np.empty_like(x), np.empty(h, dtype), np.empty(h, dtype)]
        C.batchnorm_backward(dout, xh, g, ist, *bufs, training, n_threads)
        r[f"bn{training}"] = [bo, xh, mu, ist, rm, rv] + bufs
    mask = np.empty(x.shape, np.uint8)
    r["drop"] = [C.dropout_forward_scaled(x, np.empty_like(x), mask, 0.7, 1.0, 3, 4, n_threads),
                 C.dropout_backward_scaled(dout, mask, np.empty_like(x), 1.0, n_threads)]
    return r


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_are_bit_identical_for_1_and_2_threads(dtype):
    one, two = _run_all_kernels(1, dtype), _run_all_kernels(2, dtype)
    assert one.keys() == two.keys()
    for key in one:
        a, b = one[key], two[key]
        for u, v in zip(a if isinstance(a, (list, tuple)) else [a],
                        b if isinstance(b, (list, tuple)) else [b]):
            assert u.tobytes() == v.tobytes(), key


# ----------------------------------------------------------- gradient checks --------

def _check_layer_grads(layer, x, rng, tol=1e-7):
    """Analytic input and parameter gradients of sum(layer(x) * R) vs finite differences."""
    R = rng.standard_normal(layer.forward(x).shape)

    def f(_):
        return float(np.sum(layer.forward(x) * R))

    layer.forward(x)
    dx = np.array(layer.backward(R))
    grads = {name: g.copy() for name, g in layer.grads.items()}
    assert rel_error(dx, numerical_gradient(f, x)) < tol
    for name, p in layer.params.items():
        assert rel_error(grads[name], numerical_gradient(f, p)) < tol, name


def _away_from_zero(rng, shape, margin=0.05):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-300) * margin + x, x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_linear_with_activation_gradients(activation, backend):
    rng = np.random.default_rng(1)
    with fastnn.use_backend(backend):
        layer = Linear(4, 5, activation=activation, alpha=0.1, init=lambda i, o, r, d:
                       r.standard_normal((i, o)).astype(d), seed=2)
        layer.b[...] = rng.standard_normal(5)
        x = rng.standard_normal((6, 4))
        # keep pre-activations away from the ReLU kink
        z = x @ layer.W + layer.b
        layer.b[...] += np.where(np.abs(z).min(0) < 0.05, 0.2, 0.0)
        assert np.abs(x @ layer.W + layer.b).min() > 1e-3
        _check_layer_grads(layer, x, rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [ReLU, lambda: LeakyReLU(0.2), Sigmoid, Tanh],
                         ids=["relu", "leaky", "sigmoid", "tanh"])
def test_elementwise_activation_gradients(make, backend):
    rng = np.random.default_rng(3)
    with fastnn.use_backend(backend):
        _check_layer_grads(make(), _away_from_zero(rng, (5, 7)), rng)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prelu_gradients(backend):
    rng = np.random.default_rng(4)
    with fastnn.use_backend(backend):
        layer = PReLU(6)
        layer.alpha[...] = [0.25, -0.3, 0.0, 1.5, 0.1, -1.0]
        _check_layer_grads(layer, _away_from_zero(rng, (5, 6)), rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_maxout_gradients(k, backend):
    rng = np.random.default_rng(5)
    with fastnn.use_backend(backend):
        layer = Maxout(4, 3, k, init=lambda i, o, r, d: r.standard_normal((i, o)), seed=6)
        layer.b[...] = rng.standard_normal(3 * k)
        x = rng.standard_normal((5, 4))
        # winners must not change under +-h: every unit's best piece leads by a margin
        pieces = np.sort((x @ layer.W + layer.b).reshape(5, 3, k), axis=2)
        if k > 1:
            assert (pieces[..., -1] - pieces[..., -2]).min() > 1e-3
        _check_layer_grads(layer, x, rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(training, backend):
    rng = np.random.default_rng(7)
    with fastnn.use_backend(backend):
        layer = BatchNorm(4)
        layer.set_params(gamma=rng.standard_normal(4), beta=rng.standard_normal(4))
        layer.running_mean[...] = rng.standard_normal(4)
        layer.running_var[...] = rng.random(4) + 0.5
        layer.train(training)
        # 2e-7: rounding in the differenced sums, measured with rel_error's max(|a|, |b|)
        # denominator (it was below 1e-7 with the older, up to 2x smaller |a| + |b|)
        _check_layer_grads(layer, 2 * rng.standard_normal((6, 4)) + 1, rng, tol=2e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["inverted", "vanilla"])
@pytest.mark.parametrize("training", [True, False])
def test_dropout_gradients(training, mode, backend):
    rng = np.random.default_rng(8)
    with fastnn.use_backend(backend):
        layer = Dropout(0.6, mode=mode, seed=9).train(training)
        x = rng.standard_normal((5, 6))
        R = rng.standard_normal(x.shape)

        def f(_):
            layer.step = 0                # the same mask for every evaluation
            return float(np.sum(layer.forward(x) * R))

        f(x)
        dx = np.array(layer.backward(R))
        assert rel_error(dx, numerical_gradient(f, x)) < 1e-7


# ----------------------------------------------------------------- batch norm -------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_train_normalizes_and_tracks_running_stats(dtype, backend):
    rng = np.random.default_rng(10)
    with fastnn.use_backend(backend):
        bn = BatchNorm(5, momentum=0.8, dtype=dtype)
        rm, rv = np.zeros(5), np.ones(5)
        for _ in range(4):
            x = rng.standard_normal((64, 5)) * [1, 2, 3, 4, 5] + [-3, 0, 1, 2, 10]
            out = bn.forward(x)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(out.mean(axis=0, dtype=np.float64), 0, atol=tol)
            # var(xhat) = var / (var + eps), 1 up to eps / var < 1e-5
            np.testing.assert_allclose(out.var(axis=0, dtype=np.float64), 1, atol=2e-5)
            xd = x.astype(dtype).astype(np.float64)
            rm = 0.8 * rm + 0.2 * xd.mean(axis=0)
            rv = 0.8 * rv + 0.2 * xd.var(axis=0)          # the biased batch variance
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(bn.running_mean, rm, rtol=rtol)
        np.testing.assert_allclose(bn.running_var, rv, rtol=rtol)
        # eval mode: the running statistics, and they stay put
        bn.set_params(gamma=[1, 2, 3, 4, 5], beta=[0, 1, 0, 1, 0])
        bn.eval()
        x = rng.standard_normal((7, 5)) * 3
        expected = (bn.gamma * (x.astype(dtype) - rm) / np.sqrt(rv + 1e-5)) + bn.beta
        np.testing.assert_allclose(bn.forward(x), expected, rtol=10 * rtol, atol=10 * rtol)
        np.testing.assert_allclose(bn.running_mean, rm, rtol=rtol)


# -------------------------------------------------------------------- dropout -------

@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_expected_values(backend):
    rng = np.random.default_rng(11)
    x = rng.random((400, 500)) + 0.5                  # 200,000 elements, mean ~1
    p = 0.3
    with fastnn.use_backend(backend):
        inv = Dropout(p, seed=1)
        van = Dropout(p, mode="vanilla", seed=1)
        out_inv, out_van = inv.forward(x).copy(), van.forward(x).copy()
        # same seed and step: the same mask in both modes
        np.testing.assert_array_equal(out_inv != 0, out_van != 0)
        np.testing.assert_array_equal(out_van[out_van != 0], x[out_van != 0])
        # the kept fraction is p; its standard error over 2e5 draws is ~1e-3
        assert abs(np.mean(out_van != 0) - p) < 5e-3
        # inverted: E[out] = E[x] in training; identity at test time
        assert abs(out_inv.mean() / x.mean() - 1) < 0.02
        np.testing.assert_array_equal(inv.eval().forward(x), x)
        # vanilla: E[out] = p E[x] in training, and test time multiplies by p to match
        assert abs(out_van.mean() / (p * x.mean()) - 1) < 0.02
        np.testing.assert_allclose(van.eval().forward(x), p * x, rtol=1e-15)
        np.testing.assert_allclose(van.backward(np.ones_like(x)), p, rtol=1e-15)


# ------------------------------------------------------------- Sequential fusion ----

ACT_LAYERS = {"relu": ReLU, "leaky_relu": lambda **kw: LeakyReLU(0.05, **kw),
              "sigmoid": Sigmoid, "tanh": Tanh}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACT_LAYERS))
def test_sequential_fuses_linear_and_activation(name, dtype, backend):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((33, 6))

    def make():
        return Sequential([Linear(6, 9, seed=1, dtype=dtype), ACT_LAYERS[name](dtype=dtype),
                           Linear(9, 3, seed=2, dtype=dtype)])

    with fastnn.use_backend(backend):
        net = make()
        assert len(net._fused) == 2
        assert net._fused[0][1].act_code == ACTIVATIONS[name]
        scores = net.forward(X).copy()
        dscores = rng.standard_normal(scores.shape)
        dX = net.backward(dscores, input_grad=True).copy()
        # the same layers run one by one, unfused
        sep = make()
        h = X.astype(dtype)
        for layer in sep.layers:
            h = layer.forward(h)
        g = dscores
        for layer in reversed(sep.layers):
            g = layer.backward(g)
        tol = RTOL[dtype] * 10
        np.testing.assert_allclose(scores, h, rtol=tol, atol=tol)
        np.testing.assert_allclose(dX, g, rtol=tol, atol=tol)
        for (_, pname, _, gr), (_, _, _, gs) in zip(net.parameters(), sep.parameters()):
            np.testing.assert_allclose(gr, gs, rtol=tol, atol=tol, err_msg=pname)


def test_sequential_keeps_parametric_layers_separate():
    net = Sequential([Linear(3, 4), PReLU(4), Linear(4, 4), BatchNorm(4), ReLU(),
                      Maxout(4, 2, 3), Linear(2, 2, activation="tanh"), Sigmoid()])
    kinds = [(type(layer).__name__, act) for layer, act in net._fused]
    assert kinds == [("Linear", None), ("PReLU", None), ("Linear", None),
                     ("BatchNorm", None), ("ReLU", None), ("Maxout", None),
                     ("Linear", None), ("Sigmoid", None)]
    X = np.random.default_rng(0).standard_normal((10, 3))
    s = net.forward(X)
    assert s.shape == (10, 2) and np.all((s > 0) & (s < 1))
    assert net.backward(np.ones_like(s), input_grad=True).shape == X.shape


def test_maxout_as_first_layer_skips_the_input_gradient():
    net = Sequential([Maxout(3, 4, 2, seed=0), Linear(4, 2, seed=1)])
    X = np.random.default_rng(0).standard_normal((5, 3))
    s = net.forward(X)
    assert net.backward(np.ones_like(s)) is None
    assert np.any(net.layers[0].dW != 0)


# ----------------------------------------------------------------- bad input --------

@pytest.mark.parametrize("make, match", [
    (lambda: Linear(2, 3, activation="swish"), "activation"),
    (lambda: Linear(2, 3, activation="leaky_relu", alpha=-0.1), "alpha"),
    (lambda: LeakyReLU(alpha=-0.01), "alpha"),
    (lambda: PReLU(0), "n_units"),
    (lambda: Maxout(3, 4, k=0), "k"),
    (lambda: Maxout(3, 0), "n_out"),
    (lambda: Maxout(0, 2), "n_in"),
    (lambda: BatchNorm(0), "n_features"),
    (lambda: BatchNorm(3, momentum=1.0), "momentum"),
    (lambda: BatchNorm(3, momentum=-0.1), "momentum"),
    (lambda: BatchNorm(3, eps=0.0), "eps"),
    (lambda: Dropout(0.5, mode="gaussian"), "mode"),
    (lambda: Dropout(0.0, mode="vanilla"), "p"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer", [PReLU(3), Maxout(3, 2), BatchNorm(3)],
                         ids=["prelu", "maxout", "batchnorm"])
def test_mismatched_shapes(layer):
    with pytest.raises(ValueError, match="x"):
        layer.forward(np.ones((2, 4)))
    out = layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones((2, out.shape[1] + 1)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_argument_checks(backend):
    k = getattr(_kernels, "COMPILED" if backend == "compiled" else "NUMPY")
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="activation"):
        k.activation_forward(x, np.empty_like(x), 9)
    with pytest.raises(ValueError, match="alpha"):
        k.activation_forward(x, np.empty_like(x), ACTIVATIONS["leaky_relu"], -0.5)
    with pytest.raises(ValueError, match="activation"):
        k.affine_forward(x, np.ones((3, 2)), np.ones(2), np.empty((2, 2)), 5)
    with pytest.raises(ValueError, match="momentum"):
        k.batchnorm_forward(x, np.ones(3), np.ones(3), np.ones(3), np.ones(3),
                            np.empty_like(x), np.empty_like(x), np.empty(3), np.empty(3),
                            True, 1.0, 1e-5)
    with pytest.raises(ValueError, match="k"):
        k.maxout_forward(x, np.ones((3, 4)), np.ones(4), np.empty((2, 4)), np.empty((2, 2)),
                         np.empty((2, 2), np.int32), 3)
    with pytest.raises(ValueError, match="arg"):
        k.maxout_backward(np.ones((2, 2)), x, np.ones((3, 4)), np.full((2, 2), 2, np.int32),
                          np.empty((2, 4)), None, np.empty((3, 4)), np.empty(4), 2)


def test_compiled_kernels_reject_mismatched_buffers():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="out"):
        C.activation_forward(x, np.empty((2, 4)), 1)
    with pytest.raises(ValueError, match="alpha"):
        C.prelu_forward(x, np.ones(4), np.empty_like(x))
    with pytest.raises(ValueError, match="gamma"):
        C.batchnorm_forward(x, np.ones(4), np.ones(3), np.ones(3), np.ones(3),
                            np.empty_like(x), np.empty_like(x), np.empty(3), np.empty(3),
                            True, 0.9, 1e-5)
    with pytest.raises(ValueError, match="b"):
        C.maxout_forward(x, np.ones((3, 4)), np.ones(3), np.empty((2, 4)), np.empty((2, 2)),
                         np.empty((2, 2), np.int32), 2)
    with pytest.raises(TypeError, match="arg"):
        C.maxout_forward(x, np.ones((3, 4)), np.ones(4), np.empty((2, 4)), np.empty((2, 2)),
                         np.empty((2, 2), np.int64), 2)


# ------------------------------------------------------------ in a whole net -------

@pytest.mark.parametrize("backend", BACKENDS)
def test_new_layers_train_the_spiral(backend):
    # Linear -> BatchNorm -> Tanh and a Maxout net both fit the notes' spiral, which a
    # linear classifier cannot (~0.5); 300 full-batch steps suffice when the gradients
    # of every new layer are right.
    from fastnn.datasets import spiral
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.trainer import gradient_descent
    X, y = spiral(100, 3, seed=0)
    with fastnn.use_backend(backend):
        for layers in ([Linear(2, 100, seed=1), BatchNorm(100), Tanh(), Linear(100, 3, seed=2)],
                       [Maxout(2, 50, 3, seed=1), PReLU(50), Linear(50, 3, seed=2)]):
            net = Sequential(layers)
            h = gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=300, step_size=1.0)
            assert h.loss[-1] < 0.5 * h.loss[0]
            assert net.score(X, y) > 0.8


def test_nets_of_new_layers_pickle():
    import pickle
    net = Sequential([Maxout(3, 8, 2, seed=0), BatchNorm(8), PReLU(8), Linear(8, 6, seed=1),
                      Tanh(), Dropout(0.7, mode="vanilla", seed=2), Linear(6, 4, seed=3),
                      LeakyReLU(0.1), Linear(4, 2, seed=4), Sigmoid()])
    X = np.random.default_rng(0).standard_normal((9, 3))
    net.forward(X)                               # moves the running statistics
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.predict_scores(X), net.predict_scores(X))
    assert [type(act).__name__ for _, act in clone._fused] == \
        [type(act).__name__ for _, act in net._fused]


def test_fused_leaky_relu_reads_its_alpha_at_run_time(backend):
    # the fusion plan keeps the activation layer, not a copy of its slope
    act = LeakyReLU(0.1)
    net = Sequential([Linear(2, 4, seed=1), act, Linear(4, 2, seed=2)])
    X = np.array([[-3.0, -2.0]])
    before = net.forward(X).copy()
    act.alpha = 0.5
    assert not np.array_equal(net.forward(X), before)
