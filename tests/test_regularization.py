"""Regularization: compiled kernels vs their NumPy twins, thread-count independence,
gradients vs finite differences, L1 at 0, max-norm projection, the trainer's use of
global / per-layer / bias regularization, bad input."""
import pickle

import numpy as np
import pytest

import fastnn
from fastnn import _kernels, _runtime, regularization as R
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.layers import Linear
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import Sequential
from fastnn.trainer import gradient_descent

C, NP = _kernels.COMPILED, _kernels.NUMPY
DTYPES = [np.float32, np.float64]
BACKENDS = ["compiled", "numpy"]
# (n,) shapes are biases; (513, 257) spans 17 reduction blocks of 8192 elements and
# 5 max-norm column chunks, so the parallel paths run.
SHAPES = [(1,), (7,), (1, 1), (3, 5), (17, 33), (300, 200), (513, 257)]
PENALTIES = {                     # kernel name -> strengths after (W, dW)
    "l2_penalty": (0.3,),
    "l1_penalty": (0.3,),
    "elastic_net_penalty": (0.2, 0.7),
}
# Penalties are sums of non-negative terms accumulated in double from values that are
# exact in double (float32 widens exactly), so only the summation order differs between
# kernel and twin: a relative error of ~n * 1e-16 at worst, hence 1e-12 for both dtypes.
# Gradients are one or two roundings per element in the array's dtype; in float32 a
# fused multiply-add on some platforms may change the last bit: rtol 1e-6 (float32
# epsilon is 6e-8), 1e-12 in float64.
GRAD_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def weights(shape, dtype, seed=0, zeros=True):
    w = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if zeros:
        w.reshape(-1)[1::7] = 0       # exact zeros exercise sign(0) = 0
    return w


# ---- kernels vs twins ---------------------------------------------------------------

@pytest.mark.parametrize("kernel", sorted(PENALTIES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_kernel_matches_twin(kernel, shape, dtype):
    W = weights(shape, dtype)
    dW0 = weights(shape, dtype, seed=1, zeros=False)   # the gradient is *added*
    dWc, dWn = dW0.copy(), dW0.copy()
    pc = getattr(C, kernel)(W, dWc, *PENALTIES[kernel], 1)
    pn = getattr(NP, kernel)(W, dWn, *PENALTIES[kernel], 1)
    assert isinstance(pc, float) and pc > 0
    np.testing.assert_allclose(pc, pn, rtol=1e-12)
    np.testing.assert_allclose(dWc, dWn, rtol=GRAD_RTOL[dtype], atol=0)
    assert not np.array_equal(dWc, dW0)


@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) == 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_kernel_matches_twin(shape, dtype):
    # Scale so that about half the columns exceed c = 1.
    W = weights(shape, dtype, zeros=False) / np.float32(np.sqrt(shape[0]))
    Wc, Wn = W.copy(), W.copy()
    kc = C.max_norm_constrain(Wc, 1.0, 1)
    kn = NP.max_norm_constrain(Wn, 1.0, 1)
    assert kc == kn
    # Same norms in the same order, then one rounding: bit-identical.
    np.testing.assert_array_equal(Wc, Wn)


@pytest.mark.parametrize("kernel", sorted(PENALTIES))
# each shape above fastnn._runtime.parallel_min_work(), so 2 threads are really used
@pytest.mark.parametrize("shape", [(600, 500), (1025, 257), (300001,)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_is_thread_count_independent(kernel, shape, dtype):
    assert np.prod(shape) >= _runtime.parallel_min_work()
    W = weights(shape, dtype)
    out = []
    for nt in (1, 2):
        dW = np.ones(shape, dtype)
        out.append((getattr(C, kernel)(W, dW, *PENALTIES[kernel], nt), dW))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("shape", [(600, 500), (1025, 257), (40, 7000)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_is_thread_count_independent(shape, dtype):
    assert np.prod(shape) >= _runtime.parallel_min_work()
    W = weights(shape, dtype, zeros=False) / np.float32(np.sqrt(shape[0]))
    W1, W2 = W.copy(), W.copy()
    assert C.max_norm_constrain(W1, 1.0, 1) == C.max_norm_constrain(W2, 1.0, 2) > 0
    np.testing.assert_array_equal(W1, W2)


# ---- gradients ----------------------------------------------------------------------

def away_from_zero(shape, seed=3):
    """Weights with |w| in [0.2, 2]: finite differences with h = 1e-5 never cross the
    L1 kink at 0."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reg", [R.L2(0.3), R.L1(0.3), R.ElasticNet(0.2, 0.7),
                                 R.Combined([R.L2(0.1), R.L1(0.05), R.MaxNorm(1.0)])],
                         ids=repr)
@pytest.mark.parametrize("shape", [(6, 5), (9,)])
def test_gradient_matches_numerical(backend, reg, shape):
    with fastnn.use_backend(backend):
        W = away_from_zero(shape)
        dW = np.zeros_like(W)
        p = reg.penalty_and_grad(W, dW)
        assert p == pytest.approx(reg.penalty(W), rel=1e-15)
        num = numerical_gradient(reg.penalty, W)
        assert rel_error(dW, num) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_values_follow_the_notes(backend):
    with fastnn.use_backend(backend):
        W = np.array([[1.0, -2.0], [0.0, 3.0]])
        assert R.L2(0.5).penalty(W) == pytest.approx(0.5 * 0.5 * 14)
        assert R.L1(0.5).penalty(W) == pytest.approx(0.5 * 6)
        assert R.ElasticNet(0.5, 0.25).penalty(W) == pytest.approx(0.5 * 6 + 0.25 * 14)
        dW = np.zeros_like(W)
        R.ElasticNet(0.5, 0.25).penalty_and_grad(W, dW)
        np.testing.assert_allclose(dW, 0.5 * np.sign(W) + 2 * 0.25 * W, rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg", [R.L1(0.3), R.ElasticNet(0.3, 0.2)], ids=repr)
def test_l1_subgradient_is_zero_at_zero(backend, dtype, reg):
    with fastnn.use_backend(backend):
        W = np.array([[0.0, -0.0, 1.5], [-0.5, 0.0, 0.0]], dtype=dtype)
        dW = np.zeros_like(W)
        reg.penalty_and_grad(W, dW)
        zero = W == 0
        assert np.all(dW[zero] == 0)
        assert np.all(dW[~zero] != 0)
        np.testing.assert_array_equal(np.sign(dW[~zero]), np.sign(W[~zero]))


# ---- max norm -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_projects_columns_and_leaves_small_ones(backend, dtype):
    with fastnn.use_backend(backend):
        rng = np.random.default_rng(5)
        W = rng.standard_normal((50, 130)).astype(dtype)
        W[:, ::3] *= dtype(0.1)                 # norms ~0.7: inside the ball
        before = W.copy()
        norms = np.linalg.norm(before.astype(np.float64), axis=0)
        inside = norms <= 3.0
        assert 0 < inside.sum() < W.shape[1]
        R.MaxNorm().constrain(W)                # c = 3 by default
        after = np.linalg.norm(W.astype(np.float64), axis=0)
        # The bound holds up to one rounding of each weight to the dtype.
        eps = np.finfo(dtype).eps
        assert np.all(after <= 3.0 * (1 + 4 * eps))
        np.testing.assert_allclose(after[~inside], 3.0, rtol=4 * eps)
        # Clipped columns keep their direction; the others are untouched, bit for bit.
        np.testing.assert_allclose(W[:, ~inside], before[:, ~inside] * (3.0 / norms[~inside]),
                                   rtol=4 * eps)
        np.testing.assert_array_equal(W[:, inside], before[:, inside])


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_norm_acts_on_columns_not_rows(backend):
    with fastnn.use_backend(backend):
        W = np.zeros((4, 3))
        W[0] = 2.0               # row 0 has norm sqrt(12) > 3, every column norm is 2
        before = W.copy()
        R.MaxNorm(3.0).constrain(W)
        np.testing.assert_array_equal(W, before)
        W[:, 1] = 2.0            # column 1: norm 4 > 3
        R.MaxNorm(3.0).constrain(W)
        assert np.linalg.norm(W[:, 1]) == pytest.approx(3.0, rel=1e-15)
        np.testing.assert_array_equal(W[:, [0, 2]], before[:, [0, 2]])


def test_max_norm_has_no_penalty_and_penalties_no_constraint():
    W = away_from_zero((4, 3)) * 10
    dW = np.ones_like(W)
    assert R.MaxNorm(1.0).penalty_and_grad(W, dW) == 0.0
    assert np.all(dW == 1)
    for reg in (R.L2(1.0), R.L1(1.0), R.ElasticNet(1.0, 1.0), R.NONE):
        before = W.copy()
        reg.constrain(W)
        np.testing.assert_array_equal(W, before)


def test_combined_adds_penalties_and_applies_constraints():
    W = away_from_zero((5, 4))
    parts = [R.L2(0.3), R.L1(0.1), R.MaxNorm(0.5)]
    comb = R.get(parts)
    assert isinstance(comb, R.Combined) and comb.has_constraint and comb.has_penalty
    assert comb.penalty(W) == pytest.approx(R.L2(0.3).penalty(W) + R.L1(0.1).penalty(W))
    comb.constrain(W)
    assert np.linalg.norm(W, axis=0).max() <= 0.5 * (1 + 1e-15)


def test_get_and_pickle():
    assert R.get(None) is R.NONE
    assert isinstance(R.get(0.01), R.L2) and R.get(0.01).reg == 0.01
    l1 = R.L1(0.1)
    assert R.get(l1) is l1
    assert pickle.loads(pickle.dumps(R.NONE)) is R.NONE
    back = pickle.loads(pickle.dumps(R.Combined([R.L2(0.1), R.MaxNorm(2)])))
    assert repr(back) == "Combined([L2(reg=0.1), MaxNorm(c=2.0)])"


# ---- the trainer ---------------------------------------------------------------------

def tiny_problem(dtype=np.float64, **first_layer):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(dtype)
    y = rng.integers(0, 3, 30)
    net = Sequential([
        Linear(4, 8, activation="relu", init="he_normal", bias_init=0.5, seed=1,
               dtype=dtype, **first_layer),
        Linear(8, 3, init="calibrated", bias_init=0.5, seed=2, dtype=dtype),
    ])
    return net, X, y


def train(net, X, y, steps=1, **kw):
    kw.setdefault("step_size", 0.5)
    return gradient_descent(net, SoftmaxCrossEntropy(dtype=net.dtype), X, y, steps=steps, **kw)


def data_gradients(net, X, y):
    """[(W, dW, b, db)] of the data loss alone, copies."""
    loss = SoftmaxCrossEntropy(dtype=net.dtype)
    data_loss = loss.forward(net.forward(X), y)
    net.backward(loss.backward())
    return data_loss, [(l.W.copy(), l.dW.copy(), l.b.copy(), l.db.copy()) for l in net.layers]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reg_float_is_l2_and_unchanged(backend):
    with fastnn.use_backend(backend):
        net, X, y = tiny_problem()
        data_loss, g = data_gradients(net, X, y)
        h = train(net, X, y, reg=0.1)
        for layer, (W, dW, b, db) in zip(net.layers, g):
            np.testing.assert_allclose(layer.W, W - 0.5 * (dW + 0.1 * W), rtol=1e-13)
            np.testing.assert_allclose(layer.b, b - 0.5 * db, rtol=1e-13)   # no bias reg
        pen = sum(0.5 * 0.1 * np.sum(W ** 2) for W, _, _, _ in g)
        assert h.loss[0] == pytest.approx(data_loss + pen, rel=1e-13)
        # reg=0.1 and regularizer=L2(0.1) are the same run, bit for bit.
        net2, _, _ = tiny_problem()
        h2 = train(net2, X, y, regularizer=R.L2(0.1))
        np.testing.assert_array_equal(h.loss, h2.loss)
        np.testing.assert_array_equal(net.layers[0].W, net2.layers[0].W)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_step_with_elastic_net_and_max_norm(backend):
    with fastnn.use_backend(backend):
        net, X, y = tiny_problem()
        data_loss, g = data_gradients(net, X, y)
        h = train(net, X, y, step_size=3.0, regularizer=[R.ElasticNet(0.01, 0.02),
                                                         R.MaxNorm(0.8)])
        pen = 0.0
        for layer, (W, dW, b, db) in zip(net.layers, g):
            pen += 0.01 * np.abs(W).sum() + 0.02 * (W ** 2).sum()
            want = W - 3.0 * (dW + 0.01 * np.sign(W) + 0.04 * W)
            norms = np.linalg.norm(want, axis=0)
            assert np.any(norms > 0.8)          # the constraint has work to do
            want *= np.minimum(1.0, 0.8 / norms)
            np.testing.assert_allclose(layer.W, want, rtol=1e-12)
            np.testing.assert_allclose(layer.b, b - 3.0 * db, rtol=1e-13)
        assert h.loss[0] == pytest.approx(data_loss + pen, rel=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_layer_override(backend, dtype):
    with fastnn.use_backend(backend):
        glob = R.L2(0.5)
        ref, X, y = tiny_problem(dtype)
        off, _, _ = tiny_problem(dtype, regularizer=R.NONE)
        noreg, _, _ = tiny_problem(dtype)
        train(ref, X, y, regularizer=glob)
        train(off, X, y, regularizer=glob)
        train(noreg, X, y, reg=0.0)
        # One step: the exempted layer moved as with no regularization at all, the
        # other layer exactly as under the global one.
        np.testing.assert_array_equal(off.layers[0].W, noreg.layers[0].W)
        np.testing.assert_array_equal(off.layers[1].W, ref.layers[1].W)
        assert not np.array_equal(off.layers[0].W, ref.layers[0].W)
        # Over a run, the exempted layer's weights grow larger than the decayed ones.
        train(ref, X, y, steps=50, regularizer=glob)
        train(off, X, y, steps=50, regularizer=glob)
        assert np.linalg.norm(off.layers[0].W) > 1.2 * np.linalg.norm(ref.layers[0].W)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_layer_strength_and_constraint(backend):
    with fastnn.use_backend(backend):
        net, X, y = tiny_problem(regularizer=[R.L1(0.05), R.MaxNorm(0.3)])
        norms = []
        train(net, X, y, steps=20, step_size=2.0, reg=1e-3,
              callback=lambda i, loss: norms.append(np.linalg.norm(net.layers[0].W, axis=0)))
        assert np.max(norms) <= 0.3 * (1 + 1e-15)
        # the second layer followed the global L2 alone: not held under 0.3
        assert np.linalg.norm(net.layers[1].W, axis=0).max() > 0.3
        net2, _, _ = tiny_problem(regularizer=0.05)    # a float: an L2 strength
        assert isinstance(net2.layers[0].regularizer, R.L2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_regularize_bias(backend):
    with fastnn.use_backend(backend):
        plain, X, y = tiny_problem()
        withb, _, _ = tiny_problem(regularize_bias=True)
        h0 = train(plain, X, y, reg=0.2)
        h1 = train(withb, X, y, reg=0.2)
        b0 = np.full(8, 0.5)
        # one step: b moved by an extra -step_size * reg * b in the first layer only
        np.testing.assert_allclose(withb.layers[0].b - plain.layers[0].b, -0.5 * 0.2 * b0,
                                   rtol=1e-12)
        np.testing.assert_array_equal(withb.layers[1].b, plain.layers[1].b)
        np.testing.assert_array_equal(withb.layers[0].W, plain.layers[0].W)
        assert h1.loss[0] - h0.loss[0] == pytest.approx(0.5 * 0.2 * np.sum(b0 ** 2),
                                                        rel=1e-10)
        # and over a run it keeps the first layer's biases smaller
        train(plain, X, y, steps=40, reg=0.2)
        train(withb, X, y, steps=40, reg=0.2)
        assert np.abs(withb.layers[0].b).sum() < 0.8 * np.abs(plain.layers[0].b).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_norm_keeps_a_too_large_step_bounded(backend):
    # The notes: with max norm the net cannot explode even at a too-high step size.
    with fastnn.use_backend(backend):
        net, X, y = tiny_problem()
        h = train(net, X, y, steps=30, step_size=500.0, reg=None,
                  regularizer=R.MaxNorm(2.0))
        assert np.all(np.isfinite(h.loss))
        for layer in net.layers:
            assert np.linalg.norm(layer.W, axis=0).max() <= 2.0 * (1 + 1e-15)


# ---- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, name", [
    (lambda: R.L2(-1.0), ValueError, "reg"),
    (lambda: R.L2(float("nan")), ValueError, "reg"),
    (lambda: R.L2("0.1"), TypeError, "reg"),
    (lambda: R.L1(-1e-3), ValueError, "reg"),
    (lambda: R.ElasticNet(-1.0, 0.1), ValueError, "l1"),
    (lambda: R.ElasticNet(0.1, -1.0), ValueError, "l2"),
    (lambda: R.MaxNorm(0.0), ValueError, "c"),
    (lambda: R.MaxNorm(-3.0), ValueError, "c"),
    (lambda: R.MaxNorm(float("inf")), ValueError, "c"),
    (lambda: R.Combined([R.L2(), "l1"]), TypeError, r"regularizers\[1\]"),
    (lambda: R.Combined(R.L2()), TypeError, "regularizers"),
    (lambda: R.get("l2"), TypeError, "regularizer"),
    (lambda: Linear(3, 2, regularizer="l2"), TypeError, "regularizer"),
    (lambda: Linear(3, 2, regularizer=-0.1), ValueError, "regularizer"),
])
def test_bad_regularizer_arguments(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reg", [R.L2(0.1), R.L1(0.1), R.ElasticNet(0.1, 0.1)], ids=repr)
def test_bad_arrays(backend, reg):
    with fastnn.use_backend(backend):
        W = np.ones((3, 4))
        with pytest.raises(ValueError, match="dW"):
            reg.penalty_and_grad(W, np.zeros((4, 3)))
        with pytest.raises(ValueError, match="dW"):
            reg.penalty_and_grad(W, np.zeros(12))
        with pytest.raises(TypeError, match="dW"):
            reg.penalty_and_grad(W, np.zeros((3, 4), np.float32))
        with pytest.raises(TypeError, match="W"):
            reg.penalty_and_grad(W.astype(np.int64), np.zeros((3, 4), np.int64))
        with pytest.raises(ValueError, match="W"):
            reg.penalty_and_grad(np.ones((4, 3)).T, np.zeros((3, 4)))
        ro = np.zeros((3, 4))
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="dW"):
            reg.penalty_and_grad(W, ro)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_kernel_arguments(backend):
    k = _kernels.COMPILED if backend == "compiled" else _kernels.NUMPY
    W, dW = np.ones((3, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError, match="reg"):
        k.l2_penalty(W, dW, -1.0)
    with pytest.raises(ValueError, match="reg"):
        k.l1_penalty(W, dW, float("nan"))
    with pytest.raises(ValueError, match="l2"):
        k.elastic_net_penalty(W, dW, 0.1, -0.1)
    with pytest.raises(ValueError, match="c"):
        k.max_norm_constrain(W, 0.0)
    with pytest.raises(ValueError, match="W"):
        k.max_norm_constrain(np.ones(4), 1.0)         # no columns to project
    with pytest.raises(TypeError, match="W"):
        k.max_norm_constrain(np.ones((3, 4), np.int32), 1.0)
    with pytest.raises(ValueError, match="W"):
        k.max_norm_constrain(np.ones((4, 3)).T, 1.0)
    assert np.all(dW == 0)                            # nothing was written


def test_trainer_bad_arguments():
    net, X, y = tiny_problem()
    with pytest.raises(ValueError, match="reg"):
        train(net, X, y, reg=0.1, regularizer=R.L2(0.1))
    with pytest.raises(ValueError, match="reg"):
        train(net, X, y, reg=-0.1)
    with pytest.raises(TypeError, match="regularizer"):
        train(net, X, y, regularizer=object())
    with pytest.raises(ValueError, match="regularizer"):
        train(net, X, y, regularizer=-1.0)
