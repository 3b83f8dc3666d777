"""The in-place SGD update kernel and the SGD optimizer."""
import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _kernels, _runtime
from fastnn.optim import SGD

C, T = _kernels.COMPILED, _kernels.NUMPY


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 3), (300, 100), (4, 5, 6)])
def test_update_equals_the_twin_bit_for_bit(shape, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    a, b = w.copy(), w.copy()
    C.sgd_update(a, g, 0.37, 2)
    T.sgd_update(b, g, 0.37)
    # one multiply and one subtract per element, in the dtype, in both
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_does_not_depend_on_thread_count(dtype):
    rng = np.random.default_rng(1)
    n = 2 * _runtime.parallel_min_work()                # threaded on 2 threads
    w = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    one, two = w.copy(), w.copy()
    C.sgd_update(one, g, 0.1, 1)
    C.sgd_update(two, g, 0.1, 2)
    np.testing.assert_array_equal(one, two)


def test_update_rejects_bad_buffers():
    w, g = np.ones((3, 4)), np.ones((3, 4))
    with pytest.raises(ValueError, match="grad"):
        C.sgd_update(w, np.ones((4, 3)), 0.1, 1)
    with pytest.raises(TypeError, match="grad"):
        C.sgd_update(w, g.astype(np.float32), 0.1, 1)
    ro = np.ones((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        C.sgd_update(ro, g, 0.1, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        C.sgd_update(np.ones((4, 6))[:, ::2].copy(order="F"), g, 0.1, 1)


def test_sgd_steps_every_pair_and_validates_its_step_size(backend):
    w1, w2 = np.ones(3), np.full((2, 2), 2.0)
    SGD(0.5).step([(w1, np.ones(3)), (w2, np.full((2, 2), 2.0))])
    np.testing.assert_array_equal(w1, 0.5)
    np.testing.assert_array_equal(w2, 1.0)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="step_size"):
            SGD(bad)
    with pytest.raises(TypeError, match="step_size"):
        SGD("1")
