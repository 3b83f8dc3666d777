"""The numerical-gradient loop: compiled vs twin, accuracy, restoring, errors."""
import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _kernels
from fastnn.gradcheck import gradient_check, numerical_gradient, rel_error

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
