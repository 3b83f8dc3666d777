"""Shared fixtures.  A missing or broken build makes ``import fastnn`` an ImportError
(fastnn never falls back to the NumPy twins unless FASTNN_BACKEND=numpy asks for them),
so the suite cannot pass on a fallback."""
import os

import numpy as np
import pytest

import fastnn
from fastnn import _kernels

DTYPES = [np.float32, np.float64]

# Relative tolerances for compiled kernel vs NumPy twin.  The two compute the same
# formulas in a different order (BLAS blocking, lane-blocked sums, our exp vs libm's),
# so they differ by a few ulp per operation, amplified by at most the length of a
# reduction: float64 eps is 2.2e-16, float32 eps 1.2e-7.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def tol(dtype):
    """assert_allclose kwargs for a dtype: rtol as above, atol for values near 0."""
    rtol = RTOL[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": rtol * 1e-2}


@pytest.fixture(params=["compiled", "numpy"])
def backend(request):
    """Run a test once on the compiled kernels and once on the NumPy twins."""
    with fastnn.use_backend(request.param):
        yield request.param


@pytest.fixture
def twins_forbidden(monkeypatch):
    """Make every NumPy twin raise: a test using this fixture proves its code path ran
    the compiled kernels only."""
    def forbid(name):
        def twin_called(*args, **kwargs):
            raise AssertionError(f"the NumPy twin of {name} ran on the compiled backend")
        return twin_called

    for name in _kernels.KERNELS:
        monkeypatch.setattr(_kernels.NUMPY, name, forbid(name))
    with fastnn.use_backend("compiled"):
        yield


def pytest_report_header(config):
    info = fastnn.show_config(print_out=False)
    return (f"fastnn {info['version']} from {os.path.dirname(fastnn.__file__)}: "
            f"backend={info['backend']} openmp={info['openmp']} "
            f"threads={info['num_threads']}")
