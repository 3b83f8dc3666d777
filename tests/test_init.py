"""Weight initializers: shapes, dtypes, variances, sparsity, reproducibility, bad input."""
import functools
import math

import numpy as np
import pytest

from fastnn import init
from fastnn.layers import Linear

DTYPES = [np.float32, np.float64]

# Expected standard deviation of each initializer as a function of (fan_in, fan_out).
STD = {
    "small_random": lambda fi, fo: 0.01,
    "calibrated": lambda fi, fo: 1 / math.sqrt(fi),
    "calibrated_uniform": lambda fi, fo: 1 / math.sqrt(fi),
    "glorot_normal": lambda fi, fo: math.sqrt(2 / (fi + fo)),
    "glorot_uniform": lambda fi, fo: math.sqrt(2 / (fi + fo)),
    "xavier_normal": lambda fi, fo: math.sqrt(2 / (fi + fo)),
    "xavier_uniform": lambda fi, fo: math.sqrt(2 / (fi + fo)),
    "he_normal": lambda fi, fo: math.sqrt(2 / fi),
    "he_uniform": lambda fi, fo: math.sqrt(2 / fi),
}
UNIFORM = {"calibrated_uniform", "glorot_uniform", "xavier_uniform", "he_uniform"}
ALL = sorted(init.INITIALIZERS)


def test_registry_names_every_initializer():
    assert set(ALL) == set(STD) | {"sparse"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(13, 7), (10, 1), (11, 300)])
def test_shape_dtype_contiguity(name, dtype, shape):
    w = init.get(name)(*shape, 0, dtype)
    assert w.shape == shape
    assert w.dtype == dtype
    assert w.flags.c_contiguous and w.flags.writeable
    assert np.all(np.isfinite(w))
    assert np.count_nonzero(w) > 0


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_array_and_float32_is_float64_rounded(name):
    a = init.get(name)(30, 20, 123, np.float64)
    b = init.get(name)(30, 20, np.random.default_rng(123), np.float64)
    c = init.get(name)(30, 20, 124, np.float64)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Drawn in float64 and rounded once: float32 weights are the float64 ones rounded.
    np.testing.assert_array_equal(init.get(name)(30, 20, 123, np.float32),
                                  a.astype(np.float32))
    np.testing.assert_array_equal(init.weights(name, 30, 20, seed=123), a)


def test_small_random_is_the_notes_recipe():
    # The notes' `0.01 * np.random.randn(D, H)` on the legacy stream, exactly.
    w = init.small_random(5, 4, np.random.RandomState(0))
    np.testing.assert_array_equal(w, 0.01 * np.random.RandomState(0).randn(5, 4))


# Statistical checks.  N = 1024 * 256 = 262144 draws, fixed seed.  The relative standard
# error of a sample std is about 1/sqrt(2N) = 0.0014 for a Gaussian and
# sqrt(0.8/N)/2 = 0.0009 for a uniform (its kurtosis is 1.8), so a 1.5 % tolerance is
# over 10 standard errors: it does not fail by chance for any seed, yet fan_in != fan_out
# puts the candidates' stds at least 12 % apart, so a wrong formula fails it.
FAN_IN, FAN_OUT = 1024, 256


@pytest.mark.parametrize("name", sorted(STD))
def test_empirical_std_and_mean(name):
    w = init.get(name)(FAN_IN, FAN_OUT, 7, np.float64)
    want = STD[name](FAN_IN, FAN_OUT)
    assert abs(w.std() / want - 1) < 0.015
    # The mean's standard error is std/sqrt(N) = std/512: allow 5 of them.
    assert abs(w.mean()) < 5 * want / math.sqrt(w.size)


@pytest.mark.parametrize("name", sorted(UNIFORM))
def test_uniform_support(name):
    w = init.get(name)(FAN_IN, FAN_OUT, 7, np.float64)
    a = math.sqrt(3) * STD[name](FAN_IN, FAN_OUT)
    assert np.abs(w).max() <= a
    # 262144 uniform draws leave a gap at either end of about a/N: they reach 0.999 a.
    assert w.max() > 0.999 * a and w.min() < -0.999 * a


def test_calibrated_keeps_output_variance_at_one():
    # The notes' argument: Var(x @ w) = fan_in * Var(w) * Var(x) = 1 for unit-variance x.
    # Column norms**2 vary by sqrt(2/400) = 7 % each, averaged over 300 columns and
    # 2000 rows the estimate is within about 1 %; 5 % leaves a wide margin.
    x = np.random.default_rng(1).standard_normal((2000, 400))
    assert abs((x @ init.calibrated(400, 300, 2)).var() - 1) < 0.05
    # whereas 0.01 * randn shrinks it to 400 * 1e-4 = 0.04
    assert abs((x @ init.small_random(400, 300, 2)).var() - 0.04) < 0.002


def test_gain_and_scale_options():
    base = init.he_normal(50, 40, 3)
    np.testing.assert_allclose(init.get("he_normal", gain=0.5)(50, 40, 3), 0.5 * base,
                               rtol=1e-15)
    np.testing.assert_allclose(init.small_random(50, 40, 3, scale=1.0),
                               init.small_random(50, 40, 3) * 100, rtol=1e-12)
    assert isinstance(init.get("sparse", k=2), functools.partial)


@pytest.mark.parametrize("k", [1, 3, 10, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_has_exactly_k_nonzeros_per_column(k, dtype):
    w = init.sparse(64, 500, 11, dtype, k=k)
    assert np.all(np.count_nonzero(w, axis=0) == k)
    nz = w[w != 0].astype(np.float64)
    # k * 500 >= 500 Gaussian draws with std 0.01: the sample std has a relative
    # standard error <= 1/sqrt(1000) = 3.2 %; 15 % is over 4.7 of them.
    assert abs(nz.std() / 0.01 - 1) < 0.15


def test_sparse_picks_different_inputs_for_different_units():
    w = init.sparse(100, 2000, 5, k=10)
    rows_hit = np.count_nonzero(w, axis=1)
    # Each input is picked by 2000 * 10/100 = 200 units on average (binomial, sd ~13):
    # every one is hit, and none far more than its share.
    assert rows_hit.min() > 130 and rows_hit.max() < 270
    assert len({tuple(np.flatnonzero(w[:, j])) for j in range(50)}) > 45


def test_sparse_scale_option():
    w = init.sparse(200, 400, 0, k=20, scale=1.0)
    assert abs(w[w != 0].std() - 1) < 0.05


def test_sparse_bad_k():
    with pytest.raises(ValueError, match="k"):
        init.sparse(5, 3, 0, k=6)          # more connections than inputs
    with pytest.raises(ValueError, match="k"):
        init.sparse(5, 3, 0, k=0)
    with pytest.raises(ValueError, match="k"):
        init.sparse(5, 3, 0)               # default k = 10 > fan_in = 5
    with pytest.raises(TypeError, match="k"):
        init.sparse(20, 3, 0, k=2.5)
    assert np.count_nonzero(init.sparse(5, 3, 0, k=5)) == 15    # k == fan_in: dense


def test_bias():
    b = init.bias(4)
    assert b.shape == (4,) and b.dtype == np.float64 and not b.any()
    b = init.bias(3, 0.01, np.float32)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, np.float32(0.01))
    with pytest.raises(ValueError, match="n"):
        init.bias(0)
    with pytest.raises(ValueError, match="value"):
        init.bias(3, float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        init.bias(3, dtype=np.int32)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="he_normal") as exc:
        init.get("kaiming")
    assert "kaiming" in str(exc.value) and "sparse" in str(exc.value)
    with pytest.raises(ValueError, match="unknown init"):
        Linear(3, 2, init="glorot")
    with pytest.raises(TypeError, match="init must be an initializer name or a callable"):
        init.get(3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        init.weights(lambda i, o, rng, dtype: np.full((i, o), np.nan), 3, 2)


@pytest.mark.parametrize("name", ALL)
def test_bad_arguments_name_the_argument(name):
    f = init.get(name)
    with pytest.raises(ValueError, match="fan_in"):
        f(0, 3, 0)
    with pytest.raises(ValueError, match="fan_out"):
        f(12, -1, 0)
    with pytest.raises(TypeError, match="fan_in"):
        f(12.0, 3, 0)
    with pytest.raises(TypeError, match="dtype"):
        f(12, 3, 0, np.int64)
    with pytest.raises(TypeError, match="rng"):
        f(12, 3, "seed")
    with pytest.raises(ValueError, match="rng"):
        f(12, 3, -1)


@pytest.mark.parametrize("name", ["calibrated", "calibrated_uniform", "glorot_normal",
                                  "glorot_uniform", "he_normal", "he_uniform"])
def test_bad_gain(name):
    with pytest.raises(ValueError, match="gain"):
        init.get(name, gain=0.0)(4, 3, 0)
    with pytest.raises(ValueError, match="gain"):
        init.get(name, gain=-1.0)(4, 3, 0)


@pytest.mark.parametrize("name", ["small_random", "sparse"])
def test_bad_scale(name):
    with pytest.raises(ValueError, match="scale"):
        init.get(name, scale=0.0)(12, 3, 0)


def test_weights_checks_a_callables_output():
    with pytest.raises(ValueError, match="expected shape"):
        init.weights(lambda fi, fo, rng, dtype: np.zeros((fo, fi)), 3, 2)


def test_linear_uses_named_and_configured_initializers():
    layer = Linear(300, 200, init="he_normal", seed=0)
    assert abs(layer.W.std() / math.sqrt(2 / 300) - 1) < 0.02
    layer = Linear(2, 100, init=functools.partial(init.sparse, k=1), seed=0,
                   dtype=np.float32)
    assert layer.W.dtype == np.float32
    assert np.all(np.count_nonzero(layer.W, axis=0) == 1)
    with pytest.raises(ValueError, match="k"):
        Linear(2, 100, init="sparse")       # default k = 10 > n_in = 2
