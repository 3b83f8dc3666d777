"""Fused affine + activation kernels: compiled vs NumPy twin, threads, gradients, errors."""
import numpy as np
import pytest

from conftest import DTYPES, tol
from fastnn import _kernels, _runtime
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.layers import Linear
from fastnn.reference import ACT_IDENTITY, ACT_LEAKY_RELU, ACT_RELU

C, T = _kernels.COMPILED, _kernels.NUMPY
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 4), (37, 19, 23), (300, 2, 100), (257, 130, 97),
          (1024, 64, 96)]
ACTS = [ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU]


def _problem(shape, dtype, seed=0):
    n, d, h = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, h)).astype(dtype)
    b = rng.standard_normal(h).astype(dtype)
    dout = rng.standard_normal((n, h)).astype(dtype)
    return x, W, b, dout


def _run(impl, x, W, b, dout, act, alpha=0.1, n_threads=1, want_dx=True):
    n, h = dout.shape
    out = np.empty((n, h), x.dtype)
    impl.affine_forward(x, W, b, out, act, alpha, n_threads)
    dz = np.empty_like(out)
    dx = np.empty_like(x) if want_dx else None
    dW, db = np.empty_like(W), np.empty_like(b)
    impl.affine_backward(dout, x, W, out, dz, dx, dW, db, act, alpha, n_threads)
    return out, dx, dW, db


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ACTS)
def test_compiled_matches_twin(shape, dtype, act):
    x, W, b, dout = _problem(shape, dtype)
    got = _run(C, x, W, b, dout, act, n_threads=2)
    want = _run(T, x, W, b, dout, act)
    # Scale-aware atol: entries are sums of D (or N) products of O(1) numbers, so
    # rounding error grows with the reduction length, not with the entry's value.
    scale = np.sqrt(max(shape))
    for name, g, w in zip(("out", "dx", "dW", "db"), got, want):
        t = tol(dtype)
        np.testing.assert_allclose(g, w, rtol=t["rtol"], atol=t["rtol"] * scale * 10,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_dx_leaves_other_gradients_unchanged(dtype):
    x, W, b, dout = _problem((40, 8, 12), dtype)
    with_dx = _run(C, x, W, b, dout, ACT_RELU)
    without = _run(C, x, W, b, dout, ACT_RELU, want_dx=False)
    assert without[1] is None
    for a, c in zip(with_dx[2:], without[2:]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_results_do_not_depend_on_thread_count(dtype, act):
    # 4096 x 96 is above the size where the kernels start using threads
    assert 4096 * 96 >= _runtime.parallel_min_work()
    x, W, b, dout = _problem((4096, 33, 96), dtype, seed=3)
    one = _run(C, x, W, b, dout, act, n_threads=1)
    two = _run(C, x, W, b, dout, act, n_threads=2)
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)


def _away_from_kinks(layer, x, margin=1e-3):
    """Shift biases so no pre-activation lies within `margin` of ReLU's kink at 0."""
    z = x @ layer.W + layer.b
    close = np.abs(z) < margin
    while close.any():
        layer.b[np.any(close, axis=0)] += 3 * margin
        z = x @ layer.W + layer.b
        close = np.abs(z) < margin


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
def test_analytic_gradient_matches_numerical(backend, activation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5))
    layer = Linear(5, 4, activation=activation, seed=rng,
                   init=lambda i, o, r, d: r.standard_normal((i, o)))
    _away_from_kinks(layer, x)
    G = rng.standard_normal((6, 4))

    def loss(_):
        return float(np.sum(layer.forward(x) * G))

    layer.forward(x)
    dx = layer.backward(G).copy()
    dW, db = layer.dW.copy(), layer.db.copy()
    assert rel_error(dW, numerical_gradient(loss, layer.W)) < 1e-7
    assert rel_error(db, numerical_gradient(loss, layer.b)) < 1e-7
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-7


def test_kernel_rejects_bad_arguments_without_crashing():
    x, W, b, dout = _problem((4, 3, 5), np.float64)
    out = np.empty((4, 5))
    with pytest.raises(ValueError, match="W"):
        C.affine_forward(x, W[:2], b, out, 0, 0.0, 1)
    with pytest.raises(ValueError, match="b"):
        C.affine_forward(x, W, b[:3], out, 0, 0.0, 1)
    with pytest.raises(ValueError, match="out"):
        C.affine_forward(x, W, b, np.empty((3, 5)), 0, 0.0, 1)
    with pytest.raises(TypeError, match="W"):
        C.affine_forward(x, W.astype(np.float32), b, out, 0, 0.0, 1)
    with pytest.raises(TypeError, match="x"):
        C.affine_forward(x.astype(np.int64), W, b, out, 0, 0.0, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        C.affine_forward(np.asfortranarray(x), W, b, out, 0, 0.0, 1)
    ro = np.empty((4, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        C.affine_forward(x, W, b, ro, 0, 0.0, 1)
    with pytest.raises(ValueError, match="activation"):
        C.affine_forward(x, W, b, out, 7, 0.0, 1)
    with pytest.raises(ValueError, match="dz"):
        C.affine_backward(dout, x, W, out, None, None, np.empty_like(W), np.empty_like(b),
                          ACT_RELU, 0.0, 1)
    with pytest.raises(ValueError, match="dout"):
        C.affine_backward(dout[:2], x, W, out, None, None, np.empty_like(W),
                          np.empty_like(b), 0, 0.0, 1)
    with pytest.raises(TypeError):
        C.affine_forward(None, W, b, out, 0, 0.0, 1)


def test_float32_bias_gradient_keeps_float32_accuracy_over_many_rows():
    # db sums dout over the batch; summed in float32, a million rows of 0.1 drift by
    # ~1e-3 relative.  The kernels accumulate column sums in double.
    n = 1 << 20
    dout = np.full((n, 2), 0.1, np.float32)
    x, W = np.zeros((n, 1), np.float32), np.zeros((1, 2), np.float32)
    out = np.zeros((n, 2), np.float32)
    dW, db = np.empty((1, 2), np.float32), np.empty(2, np.float32)
    C.affine_backward(dout, x, W, out, None, None, dW, db, ACT_IDENTITY, 0.0, 2)
    exact = n * np.float64(np.float32(0.1))
    assert np.all(np.abs(db - exact) / exact < 1e-6)
