"""The numerical-gradient loop: compiled vs twin, accuracy, restoring, errors."""
import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _kernels
from fastnn.gradcheck import (gradient_check, numerical_gradient, numerical_gradient_array,
                             rel_error)

C, T = _kernels.COMPILED, _kernels.NUMPY


def _smooth(A):
    # f(x) = sum(sin(x) * A) + 0.5 * |x|^2 : gradient cos(x) * A + x
    return lambda x: float(np.sum(np.sin(x) * A) + 0.5 * np.sum(x.astype(np.float64) ** 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 3, 5)])
def test_compiled_loop_equals_the_twin_bit_for_bit(shape, dtype, centered):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    f = _smooth(rng.standard_normal(shape))
    g1 = C.numerical_gradient(f, x, np.empty_like(x), 1e-5, centered)
    g2 = T.numerical_gradient(f, x, np.empty_like(x), 1e-5, centered)
    # Same evaluation points, same arithmetic: the loops must agree exactly.
    np.testing.assert_array_equal(g1, g2)


def test_centered_and_forward_accuracy(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    A = rng.standard_normal((4, 6))
    exact = np.cos(x) * A + x
    # centered error O(h^2) ~ 1e-10 relative; forward O(h) ~ 1e-5
    assert rel_error(numerical_gradient(_smooth(A), x), exact) < 1e-8
    fwd = rel_error(numerical_gradient(_smooth(A), x, centered=False), exact)
    assert 1e-9 < fwd < 1e-3
    assert gradient_check(_smooth(A), x, exact) < 1e-8


def test_every_element_is_restored_even_when_the_callable_raises(backend):
    x = np.random.default_rng(2).standard_normal(20)
    before = x.copy()
    calls = []

    def f(arr):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("boom")
        return float(arr.sum())

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(x, before)
    numerical_gradient(lambda a: float((a ** 3).sum()), x)
    np.testing.assert_array_equal(x, before)


def test_callable_sees_the_perturbed_array_in_place(backend):
    x = np.zeros(3)
    seen = []
    numerical_gradient(lambda a: seen.append(a.copy()) or 0.0, x, h=0.5)
    assert len(seen) == 6
    np.testing.assert_array_equal(seen[0], [0.5, 0, 0])
    np.testing.assert_array_equal(seen[1], [-0.5, 0, 0])


def test_bad_arguments(backend):
    f = lambda a: float(a.sum())  # noqa: E731
    with pytest.raises(TypeError, match="x"):
        numerical_gradient(f, [1.0, 2.0])
    with pytest.raises(TypeError, match="x"):
        numerical_gradient(f, np.arange(3))
    with pytest.raises(ValueError, match="C-contiguous"):
        numerical_gradient(f, np.ones((4, 4))[:, ::2])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        numerical_gradient(f, ro)
    with pytest.raises(ValueError, match="h"):
        numerical_gradient(f, np.ones(3), h=0.0)
    with pytest.raises(TypeError, match="f"):
        numerical_gradient(3.0, np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        numerical_gradient(lambda a: a, np.ones(3))


# ---- the three stencils, the array-valued form, rel_error ------------------------------

def _errors(grad_of, exact, steps):
    return np.array([np.max(np.abs(grad_of(h) - exact)) for h in steps])


# (method, steps where truncation dominates rounding, expected error ratio per halving)
ORDERS = [("forward", [4e-3, 2e-3, 1e-3], 2.0),
          ("centered", [4e-2, 2e-2, 1e-2], 4.0),
          ("fourth_order", [2e-1, 1e-1, 5e-2], 16.0)]


@pytest.mark.parametrize("method,steps,ratio", ORDERS)
def test_error_order_of_each_method_on_sin(method, steps, ratio, backend):
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, 12)
    A = rng.uniform(0.5, 2, 12)
    f = lambda a: float(np.sum(A * np.sin(a)))  # noqa: E731
    err = _errors(lambda h: numerical_gradient(f, x, h=h, method=method), A * np.cos(x),
                  steps)
    # halving h divides the error by 2**order: 2 forward, 4 centered, 16 fourth order
    np.testing.assert_allclose(err[:-1] / err[1:], ratio, rtol=0.1)


@pytest.mark.parametrize("method", ["forward", "centered", "fourth_order"])
def test_polynomials_against_closed_forms(method, backend):
    # f = sum(c3 x^3 + c2 x^2 + c1 x): the truncation errors are exact polynomials in h
    x = np.linspace(-1.5, 1.5, 9)
    c3, c2, c1 = 0.7, -1.3, 2.0
    f = lambda a: float(np.sum(c3 * a ** 3 + c2 * a ** 2 + c1 * a))  # noqa: E731
    exact = 3 * c3 * x ** 2 + 2 * c2 * x + c1
    h = 1e-3
    g = numerical_gradient(f, x, h=h, method=method)
    if method == "forward":        # f'' h / 2 + f''' h^2 / 6
        bias = (6 * c3 * x + 2 * c2) * h / 2 + c3 * h ** 2
        np.testing.assert_allclose(g - exact, bias, atol=1e-9)
    elif method == "centered":     # f''' h^2 / 6 = c3 h^2, the same at every x
        np.testing.assert_allclose(g - exact, c3 * h ** 2, atol=1e-9)
    else:                          # exact for cubics up to rounding (~1e-16 / h)
        np.testing.assert_allclose(g, exact, atol=1e-10)
    # a quintic: the fourth-order stencil's error is -f^(5) h^4 / 30 = -4 h^4
    q = lambda a: float(np.sum(a ** 5))  # noqa: E731
    if method == "fourth_order":
        h = 2e-2
        err = numerical_gradient(q, x, h=h, method=method) - 5 * x ** 4
        np.testing.assert_allclose(err, -4 * h ** 4, rtol=1e-4)


def _softmax_loss(y):
    def loss(scores):
        s = scores - scores.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())
    return loss


@pytest.mark.parametrize("method,tol", [("forward", 1e-3), ("centered", 1e-8),
                                        ("fourth_order", 1e-8)])
def test_softmax_loss_gradient(method, tol, backend):
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    exact = p.copy()
    exact[np.arange(5), y] -= 1
    exact /= 5
    assert rel_error(numerical_gradient(_softmax_loss(y), scores, method=method),
                     exact) < tol


def test_fourth_order_is_the_five_point_stencil(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(6)
    f = lambda a: float(np.sum(np.exp(0.3 * a) * np.cos(a)))  # noqa: E731
    h = 1e-2
    want = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        want[i] = (f(x - 2 * e) - 8 * f(x - e) + 8 * f(x + e) - f(x + 2 * e)) / (12 * h)
    np.testing.assert_allclose(numerical_gradient(f, x, h=h, method="fourth_order"), want,
                               rtol=1e-11, atol=1e-13)


def test_the_compiled_loop_runs_every_method(twins_forbidden):
    x = np.linspace(-1, 1, 5)
    for method in ("centered", "forward", "fourth_order"):
        g = numerical_gradient(lambda a: float(np.sum(a ** 2)), x, method=method)
        np.testing.assert_allclose(g, 2 * x, atol=1e-4)
    g = numerical_gradient_array(lambda a: a ** 2, x, np.ones(5), method="fourth_order")
    np.testing.assert_allclose(g, 2 * x, atol=1e-9)


def test_centered_flag_still_works_and_agrees_with_method(backend):
    x = np.linspace(-1, 1, 4)
    f = lambda a: float(np.sum(np.sin(a)))  # noqa: E731
    np.testing.assert_array_equal(numerical_gradient(f, x, centered=False),
                                  numerical_gradient(f, x, method="forward"))
    np.testing.assert_array_equal(numerical_gradient(f, x, centered=True),
                                  numerical_gradient(f, x))
    np.testing.assert_array_equal(numerical_gradient(f, x, 1e-4, "forward", centered=False),
                                  numerical_gradient(f, x, h=1e-4, method="forward"))
    with pytest.raises(ValueError, match="centered=False contradicts method='fourth_order'"):
        numerical_gradient(f, x, method="fourth_order", centered=False)
    with pytest.raises(ValueError, match="method must be one of"):
        numerical_gradient(f, x, method="backward")
    with pytest.raises(TypeError, match="method"):
        numerical_gradient(f, x, method=2)


@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("method", ["centered", "forward", "fourth_order"])
def test_bad_step_is_a_value_error_naming_h(h, method, backend):
    x = np.ones(3)
    with pytest.raises(ValueError, match="^h must be"):
        numerical_gradient(lambda a: float(a.sum()), x, h=h, method=method)
    with pytest.raises(ValueError, match="^h must be"):
        numerical_gradient_array(lambda a: a, x, np.ones(3), h=h, method=method)
    with pytest.raises(TypeError, match="^h must be a real number"):
        numerical_gradient(lambda a: float(a.sum()), x, h="1e-5", method=method)


@pytest.mark.parametrize("method", ["centered", "forward", "fourth_order"])
@pytest.mark.parametrize("fail_at", [1, 2, 5, 11])
def test_x_is_restored_when_f_raises(method, fail_at, backend):
    x = np.random.default_rng(6).standard_normal((3, 4))
    before = x.copy()
    calls = []

    def f(arr):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("boom")
        return float(np.sum(arr ** 2))

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x, method=method)
    np.testing.assert_array_equal(x, before)
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient_array(lambda a: np.atleast_1d(f(a)), x, np.ones(1),
                                 method=method)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("method,tol", [("centered", 1e-8), ("fourth_order", 1e-9),
                                        ("forward", 1e-3)])
def test_array_valued_form_is_the_chain_rule(method, tol, backend):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4))
    W = rng.standard_normal((4, 5))
    df = rng.standard_normal((3, 5))
    # f(x) = tanh(x @ W): dx = ((1 - f^2) * df) @ W.T
    f = lambda a: np.tanh(a @ W)  # noqa: E731
    exact = ((1 - f(x) ** 2) * df) @ W.T
    got = numerical_gradient_array(f, x, df, method=method)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert rel_error(got, exact) < tol
    # a scalar upstream gradient of 1 everywhere is the gradient of sum(f(x))
    np.testing.assert_allclose(
        numerical_gradient_array(f, x, np.ones((3, 5)), method=method),
        numerical_gradient(lambda a: float(np.sum(f(a))), x, method=method), rtol=1e-9)


def test_array_valued_form_checks_df():
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"f\(x\) has shape \(3,\) but df has shape \(2,\)"):
        numerical_gradient_array(lambda a: a * 2, x, np.ones(2))
    with pytest.raises(ValueError, match="df contains NaN"):
        numerical_gradient_array(lambda a: a, x, np.array([1.0, np.nan, 1.0]))
    with pytest.raises(TypeError, match="df"):
        numerical_gradient_array(lambda a: a, x, np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="f must be callable"):
        numerical_gradient_array(None, x, np.ones(3))


def test_rel_error_is_the_notes_max_definition():
    # |a - b| / max(|a|, |b|)
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert rel_error(np.array([2.0]), np.array([1.0])) == pytest.approx(0.5)
    assert rel_error(np.array([1.0]), np.array([0.0])) == pytest.approx(1.0)
    assert rel_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(2.0)
    assert rel_error([3.0, 1e-3], [3.0, 1.1e-3]) == pytest.approx(0.1 / 1.1)
    # both ~0: the eps floor keeps it finite and small
    assert rel_error(np.zeros(3), np.full(3, 1e-12)) == pytest.approx(1e-4)
    assert rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        rel_error(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="eps"):
        rel_error(np.ones(2), np.ones(2), eps=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_new_forms_agree_bit_for_bit_between_compiled_and_twin(dtype):
    import fastnn
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4)).astype(dtype)
    f = _smooth(rng.standard_normal((3, 4)))
    df = rng.standard_normal((3, 4))
    out = {}
    for name in ("compiled", "numpy"):
        with fastnn.use_backend(name):
            out[name] = (numerical_gradient(f, x, h=1e-2, method="fourth_order"),
                         numerical_gradient_array(np.sin, x, df, h=1e-2,
                                                  method="fourth_order"))
    for a, b in zip(out["compiled"], out["numpy"]):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
