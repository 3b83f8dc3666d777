"""The CS231n-compatible functional API: course formulas, gradients, dict protocol."""
import numpy as np
import pytest

from fastnn.functional import *  # noqa: F401,F403 - the point is that this works
from fastnn import functional as F
from fastnn.gradcheck import numerical_gradient, rel_error


def _num(f, x):
    return numerical_gradient(lambda _: float(f()), x)


def test_star_import_exposes_the_course_names():
    for name in ["affine_forward", "affine_backward", "relu_forward", "relu_backward",
                 "affine_relu_forward", "affine_relu_backward", "batchnorm_forward",
                 "batchnorm_backward", "dropout_forward", "dropout_backward", "svm_loss",
                 "softmax_loss"]:
        assert name in globals(), name


def test_affine_flattens_examples_and_matches_the_formula(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    w = rng.standard_normal((15, 6))
    b = rng.standard_normal(6)
    out, cache = affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(4, 15) @ w + b, rtol=1e-12)
    dout = rng.standard_normal((4, 6))
    dx, dw, db = affine_backward(dout, cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    loss = lambda: np.sum(affine_forward(x, w, b)[0] * dout)  # noqa: E731
    assert rel_error(dx, _num(loss, x)) < 1e-7
    assert rel_error(dw, _num(loss, w)) < 1e-7
    assert rel_error(db, _num(loss, b)) < 1e-7


def test_relu_and_affine_relu(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3))
    x[np.abs(x) < 1e-3] = 0.5                     # away from the kink
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, np.maximum(0, x))
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(relu_backward(dout, cache), dout * (x > 0))
    w, b = rng.standard_normal((6, 4)), rng.uniform(0.1, 0.5, 4)
    out, cache = affine_relu_forward(x, w, b)
    np.testing.assert_allclose(out, np.maximum(0, x.reshape(5, 6) @ w + b), rtol=1e-12)
    g = rng.standard_normal(out.shape)
    dx, dw, db = affine_relu_backward(g, cache)
    loss = lambda: np.sum(affine_relu_forward(x, w, b)[0] * g)  # noqa: E731
    for got, arr in ((dx, x), (dw, w), (db, b)):
        assert rel_error(got, _num(loss, arr)) < 1e-7


def test_batchnorm_train_and_test_modes(backend):
    rng = np.random.default_rng(2)
    x = 3 + 2 * rng.standard_normal((50, 4))
    gamma, beta = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    bn_param = {"mode": "train"}
    out, cache = batchnorm_forward(x, gamma, beta, bn_param)
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(out, gamma * xhat + beta, rtol=1e-10, atol=1e-12)
    # the course initializes running statistics at zero and updates them in the dict
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.1 * x.var(0), rtol=1e-12)
    dout = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)

    def loss():
        return np.sum(batchnorm_forward(x, gamma, beta, {"mode": "train"})[0] * dout)

    for got, arr in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        # 2e-7: rel_error's max(|a|, |b|) reads up to 2x the former |a| + |b|
        assert rel_error(got, _num(loss, arr)) < 2e-7
    assert batchnorm_backward_alt is batchnorm_backward
    test_param = {"mode": "test", "running_mean": x.mean(0), "running_var": x.var(0)}
    out_test, _ = batchnorm_forward(x, gamma, beta, test_param)
    np.testing.assert_allclose(out_test, gamma * xhat + beta, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        batchnorm_forward(x, gamma, beta, {"mode": "eval"})
    with pytest.raises(ValueError, match="gamma"):
        batchnorm_forward(x, gamma[:3], beta, {"mode": "train"})


def test_dropout_param_protocol(backend):
    x = np.random.default_rng(3).standard_normal((100, 50)) + 10
    p = {"p": 0.3, "mode": "train", "seed": 123}
    out1, cache = dropout_forward(x, p)
    out2, _ = dropout_forward(x, p)
    np.testing.assert_array_equal(out1, out2)        # a seed fixes the mask
    kept = out1 != 0
    assert abs(kept.mean() - 0.3) < 0.03
    np.testing.assert_allclose(out1[kept], x[kept] / 0.3, rtol=1e-15)
    dx = dropout_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx != 0, kept)
    fresh = dropout_forward(x, {"p": 0.3, "mode": "train"})[0]
    assert not np.array_equal(fresh, out1)           # no seed: a new mask
    out_test, cache_test = dropout_forward(x, {"p": 0.3, "mode": "test"})
    assert out_test is x and dropout_backward(x, cache_test) is x
    with pytest.raises(ValueError, match="p"):
        dropout_forward(x, {"p": 0.0, "mode": "train"})
    with pytest.raises(ValueError, match="p"):
        dropout_forward(x, {"mode": "train"})
    with pytest.raises(ValueError, match="mode"):
        dropout_forward(x, {"p": 0.5})


def test_svm_and_softmax_loss_match_the_course_formulas(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 7))
    y = rng.integers(0, 7, 20)
    n = np.arange(20)
    margins = np.maximum(0, x - x[n, y][:, None] + 1.0)
    margins[n, y] = 0
    loss, dx = svm_loss(x, y)
    assert loss == pytest.approx(margins.sum() / 20, rel=1e-12)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss, dx = softmax_loss(x, y)
    assert loss == pytest.approx(-np.log(p[n, y]).mean(), rel=1e-12)
    p[n, y] -= 1
    np.testing.assert_allclose(dx, p / 20, rtol=1e-10, atol=1e-15)
    assert rel_error(svm_loss(x, y)[1], _num(lambda: svm_loss(x, y)[0], x)) < 1e-7
    with pytest.raises(ValueError, match="y"):
        softmax_loss(x, y[:5])


def test_float32_stays_float32_and_mixed_inputs_compute_in_float64():
    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (4, 2), (2,)))
    assert affine_forward(x, w, b)[0].dtype == np.float32
    assert affine_forward(x, w.astype(np.float64), b)[0].dtype == np.float64
    with pytest.raises(ValueError, match="w"):
        F.affine_forward(x, w[:3], b)
    with pytest.raises(ValueError, match="x"):
        F.affine_forward(np.ones(3), w, b)


def test_affine_forward_names_a_bad_x():
    w, b = np.ones((6, 2)), np.zeros(2)
    for x in (np.ones(6), np.ones((0, 2, 3)), np.ones((2, 0, 3))):
        with pytest.raises(ValueError, match=r"x must have shape \(N, d_1, \.\.\., d_k\)"):
            affine_forward(x, w, b)
