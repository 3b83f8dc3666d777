"""Softmax cross-entropy: compiled vs twin, stability, threads, gradient, labels."""
import numpy as np
import pytest

from conftest import DTYPES, tol
from fastnn import _kernels, _runtime
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.losses import SoftmaxCrossEntropy

C, T = _kernels.COMPILED, _kernels.NUMPY
SHAPES = [(1, 1), (1, 5), (7, 3), (300, 3), (33, 17), (129, 1000), (2048, 37)]


def _problem(shape, dtype, spread=3.0, seed=0):
    rng = np.random.default_rng(seed)
    s = (spread * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, shape[1], shape[0]).astype(np.intp)
    return s, y


def _run(impl, s, y, n_threads=1):
    d = np.empty_like(s)
    rows = np.empty(s.shape[0], s.dtype)
    loss = impl.softmax_cross_entropy(s, y, d, rows, n_threads)
    return loss, d, rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spread", [1.0, 30.0, 1000.0])
def test_compiled_matches_twin(shape, dtype, spread):
    # spread 1000: scores whose exp overflows without the max subtraction; most
    # probabilities underflow to (sub)normal tiny values.
    s, y = _problem(shape, dtype, spread)
    loss, d, rows = _run(C, s, y, n_threads=2)
    want_loss, want_d, want_rows = _run(T, s, y)
    assert np.isfinite(loss)
    t = tol(dtype)
    np.testing.assert_allclose(loss, want_loss, rtol=t["rtol"])
    # A row loss is log(Z) - (s_y - m) with Z >= 1: log(Z) carries an absolute error of
    # a few eps however small the loss is, so near-zero row losses need an atol.
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(rows, want_rows, rtol=t["rtol"], atol=8 * eps)
    # dscores are probabilities / N: absolute error relative to 1/N is what matters.
    np.testing.assert_allclose(d, want_d, rtol=t["rtol"], atol=t["rtol"] / shape[0])


def test_matches_the_notes_formula_in_float64():
    s, y = _problem((300, 3), np.float64)
    loss, d, _ = _run(C, s, y)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    notes_loss = np.mean(-np.log(p[np.arange(300), y]))
    p[np.arange(300), y] -= 1
    np.testing.assert_allclose(loss, notes_loss, rtol=1e-13)
    np.testing.assert_allclose(d, p / 300, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(dtype):
    s, y = _problem((4096, 100), dtype, seed=5)
    assert 4096 * 100 >= _runtime.parallel_min_work()     # really split across threads
    one, two = _run(C, s, y, 1), _run(C, s, y, 2)
    assert one[0] == two[0]
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(one[2], two[2])


def test_gradient_matches_numerical(backend):
    # Unit-spread scores keep every gradient entry far above the numerical gradient's
    # absolute noise (~eps * loss / h = 1e-11), so a relative error can reach 1e-7.
    s, y = _problem((8, 5), np.float64, spread=1.0, seed=2)
    loss = SoftmaxCrossEntropy()
    loss(s, y)
    analytic = loss.backward().copy()
    numeric = numerical_gradient(lambda sc: loss(sc, y), s)
    assert rel_error(analytic, numeric) < 1e-7


def test_uniform_scores_give_log_k():
    s = np.zeros((10, 4))
    assert SoftmaxCrossEntropy()(s, np.arange(10) % 4) == pytest.approx(np.log(4), rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_of_the_normalizer_is_within_two_ulp(dtype):
    """The compiled loss takes log Z with its own vectorizable log (fastnn_math.h's
    fnn_log_ge1, Z >= 1); uniform scores make Z = K exactly, so each row loss is log K:
    within 2 ulp of numpy's log for every K from 1 to 300 and a few wide ones (one past
    the softmax block's 2048 elements included)."""
    ks = list(range(1, 301)) + [1000, 2047, 2049, 4097]
    for k in ks:
        s = np.zeros((2, k), dtype)
        _, _, rows = _run(C, s, np.array([0, k - 1], np.intp))
        want = np.log(dtype(k))
        assert np.all(np.abs(rows - want) <= 2 * np.spacing(max(want, np.finfo(dtype).tiny))), k


@pytest.mark.parametrize("impl", [C, T], ids=["compiled", "numpy"])
def test_kernel_rejects_labels_out_of_range(impl):
    s, y = _problem((5, 3), np.float64)
    for bad in (3, -1):
        yb = y.copy()
        yb[2] = bad
        with pytest.raises(ValueError, match=r"y\[2\]"):
            _run(impl, s, yb)


def test_loss_validates_its_arguments(backend):
    loss = SoftmaxCrossEntropy()
    s, y = _problem((5, 3), np.float64)
    with pytest.raises(ValueError, match="y"):
        loss(s, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="y"):
        loss(s, y[:4])
    with pytest.raises(TypeError, match="y"):
        loss(s, y + 0.5)
    with pytest.raises(TypeError, match="y"):
        loss(s, y.astype(str))
    with pytest.raises(ValueError, match="scores"):
        loss(s[0], y)
    with pytest.raises(ValueError, match="scores"):
        loss(np.full((5, 3), np.nan), y)
    with pytest.raises(ValueError, match="scores"):
        loss(np.empty((0, 3)), np.empty(0, dtype=int))
    with pytest.raises(RuntimeError, match="before forward"):
        SoftmaxCrossEntropy().backward()
    # integer-valued float labels are accepted as class indices
    assert loss(s, y.astype(float)) == pytest.approx(loss(s, y))
