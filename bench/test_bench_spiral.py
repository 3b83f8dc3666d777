"""The spiral case study, fastnn beside its peers: the whole 2-layer training step
(300x2 -> 100 ReLU -> 3, full batch) in both dtypes, and the numerical gradient of the
net's 603 parameters.  Timings are per call of STEPS steps (per whole gradient for the
numerical gradient); every implementation's result is checked afterwards."""
import numpy as np
import pytest

import cases
from conftest import bench_and_check, names

STEPS = 20
SPIRAL = {dt: cases.spiral_case(dt) for dt in ("float64", "float32")}
NUMGRAD = cases.numgrad_case()


@pytest.mark.parametrize("impl", names(SPIRAL["float64"]))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_spiral_training_step(benchmark, dtype, impl):
    bench_and_check(benchmark, SPIRAL[dtype], impl, units=STEPS, rounds=10,
                    group=f"spiral 2-layer net, {STEPS} full-batch steps, {dtype}")


@pytest.mark.parametrize("impl", names(NUMGRAD))
def test_numerical_gradient(benchmark, impl):
    grads, analytic = bench_and_check(
        benchmark, NUMGRAD, impl, units=1, rounds=3,
        group="numerical gradient of the spiral net, 603 parameters, float64")
    # and against the analytic gradient: all but the few entries whose perturbation
    # crosses a ReLU kink agree to finite-difference accuracy
    centered = "centered" in impl
    for g, a in zip(grads, analytic):
        rel = np.abs(g - a) / np.maximum(np.abs(g) + np.abs(a), 1e-8)
        assert np.median(rel) < (1e-7 if centered else 1e-3)
        assert np.mean(rel < (1e-5 if centered else 1e-2)) > 0.95
