"""Inverted dropout: masks bit-identical to the NumPy twin and across threads."""
import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _dropout, _kernels, reference
from fastnn.layers import Dropout

C, T = _kernels.COMPILED, _kernels.NUMPY
SHAPES = [(1,), (1, 1), (3,), (7, 5), (300, 100), (129, 257), (4, 3, 5)]


def _run(impl, x, p, seed, step, n_threads=1):
    out = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    impl.dropout_forward(x, out, mask, p, seed, step, n_threads)
    return out, mask


def test_key_derivation_matches_the_twin():
    for seed, step in [(0, 0), (1, 0), (0, 1), (2**64 - 1, 12345), (42, 2**40)]:
        assert _dropout.dropout_key(seed, step) == reference.dropout_key(seed, step)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1.0])
def test_forward_and_backward_equal_the_twin_bit_for_bit(shape, dtype, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    out, mask = _run(C, x, p, seed=7, step=3, n_threads=2)
    want_out, want_mask = _run(T, x, p, seed=7, step=3)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(out, want_out)
    dout = rng.standard_normal(shape).astype(dtype)
    dx = C.dropout_backward(dout, mask, np.empty_like(dout), p, 2)
    want_dx = T.dropout_backward(dout, want_mask, np.empty_like(dout), p)
    np.testing.assert_array_equal(dx, want_dx)
    if p == 1.0:
        assert mask.all() and np.array_equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_does_not_depend_on_thread_count(dtype):
    x = np.ones((4096, 1025), dtype)     # odd size: the last element has its own draw
    a = _run(C, x, 0.5, seed=11, step=0, n_threads=1)
    b = _run(C, x, 0.5, seed=11, step=0, n_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_mask_statistics_and_scaling():
    x = np.ones(1_000_000)
    for p in (0.2, 0.5, 0.8):
        out, mask = _run(C, x, p, seed=1, step=0)
        n = mask.size
        # The kept count is Binomial(n, p): 6 standard deviations is a safe bound.
        assert abs(mask.sum() - p * n) < 6 * np.sqrt(n * p * (1 - p))
        assert set(np.unique(out)) == {0.0, 1.0 / p}
        # inverted dropout keeps the expected value: E[out] = x
        assert abs(out.mean() - 1.0) < 6 * np.sqrt((1 - p) / (p * n))


def test_masks_differ_across_steps_and_seeds_and_repeat_for_the_same_key():
    x = np.ones(10_000)
    m00 = _run(C, x, 0.5, 0, 0)[1]
    assert np.array_equal(m00, _run(C, x, 0.5, 0, 0)[1])
    for other in (_run(C, x, 0.5, 0, 1)[1], _run(C, x, 0.5, 1, 0)[1]):
        agree = np.mean(other == m00)
        assert 0.45 < agree < 0.55       # independent masks agree half the time


def test_layer_steps_its_counter_and_eval_is_identity(backend):
    layer = Dropout(0.5, seed=3)
    x = np.arange(1.0, 13.0).reshape(3, 4)
    a = layer.forward(x).copy()
    b = layer.forward(x).copy()
    assert layer.step == 2 and not np.array_equal(a, b)
    layer.eval()
    assert layer.forward(x) is x           # the identity, not a copy (documented)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.ones_like(x))
    # a fresh layer with the same seed replays the same masks
    again = Dropout(0.5, seed=3)
    np.testing.assert_array_equal(again.forward(x), a)


def test_layer_backward_uses_the_forward_mask(backend):
    layer = Dropout(0.7, seed=5)
    x = np.random.default_rng(0).standard_normal((50, 20))
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx != 0, out != 0)
    np.testing.assert_allclose(dx[dx != 0], 1 / 0.7, rtol=1e-15)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan")])
def test_p_outside_zero_one_is_rejected(p):
    with pytest.raises(ValueError, match="p"):
        Dropout(p)
    x = np.ones(4)
    for impl in (C, T):
        with pytest.raises(ValueError, match="p"):
            _run(impl, x, p, 0, 0)


def test_kernel_rejects_mismatched_buffers():
    x = np.ones((4, 5))
    with pytest.raises(ValueError, match="mask"):
        C.dropout_forward(x, np.empty_like(x), np.empty((4, 4), np.uint8), 0.5, 0, 0, 1)
    with pytest.raises(TypeError, match="mask"):
        C.dropout_forward(x, np.empty_like(x), np.empty((4, 5), np.int32), 0.5, 0, 0, 1)
    with pytest.raises(ValueError, match="out"):
        C.dropout_forward(x, np.empty((5, 4)), np.empty((4, 5), np.uint8), 0.5, 0, 0, 1)
