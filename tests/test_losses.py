"""Losses: compiled kernels vs NumPy twins, thread independence, gradient checks,
hierarchical softmax, numerical stability, validation, and spiral training sanity."""
import zlib

import numpy as np
import pytest

from conftest import DTYPES, tol  # noqa: F401 - tol's tolerances are explained there
import fastnn
from fastnn import _kernels, _runtime, losses
from fastnn.case_study import two_layer_net
from fastnn.datasets import spiral
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.trainer import gradient_descent


def rng_for(*key):
    """A generator seeded by the test's parameters, the same in every process
    (hash() of a str changes with PYTHONHASHSEED)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


SHAPES = [(1, 1), (1, 7), (13, 5), (64, 33), (2048, 300)]

# name -> (kernel extra args, target generator(rng, n, k, dtype))
SCORE_KERNELS = {
    "svm": ("multiclass_svm", (1.0, False),
            lambda rng, n, k, dt: rng.integers(0, k, n).astype(np.intp)),
    "svm_squared": ("multiclass_svm", (0.5, True),
                    lambda rng, n, k, dt: rng.integers(0, k, n).astype(np.intp)),
    "attribute_hinge": ("attribute_hinge", (),
                        lambda rng, n, k, dt: rng.choice([-1.0, 1.0], (n, k)).astype(dt)),
    "attribute_logistic": ("attribute_logistic", (),
                           lambda rng, n, k, dt: rng.integers(0, 2, (n, k)).astype(dt)),
    "l2_regression": ("l2_regression", (),
                      lambda rng, n, k, dt: rng.standard_normal((n, k)).astype(dt)),
    "l1_regression": ("l1_regression", (),
                      lambda rng, n, k, dt: rng.standard_normal((n, k)).astype(dt)),
}


def _run_kernel(impl, name, scores, y, n_threads=1):
    kernel, extra, _ = SCORE_KERNELS[name]
    d = np.full_like(scores, np.nan)
    rl = np.full(scores.shape[0], np.nan, dtype=scores.dtype)
    loss = getattr(impl, kernel)(scores, y, d, rl, *extra, n_threads)
    return loss, d, rl


# ---- compiled vs twin ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCORE_KERNELS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_score_kernel_matches_twin(name, dtype, shape):
    rng = rng_for(name, shape)
    n, k = shape
    scores = (2 * rng.standard_normal(shape)).astype(dtype)
    y = SCORE_KERNELS[name][2](rng, n, k, dtype)
    lc, dc, rc = _run_kernel(_kernels.COMPILED, name, scores, y)
    ln, dn, rn = _run_kernel(_kernels.NUMPY, name, scores, y)
    assert isinstance(lc, float)
    np.testing.assert_allclose(lc, ln, **tol(dtype))
    np.testing.assert_allclose(rc, rn, **tol(dtype))
    np.testing.assert_allclose(dc, dn, **tol(dtype))
    assert dc.dtype == dtype and np.all(np.isfinite(dc))


@pytest.mark.parametrize("name", sorted(SCORE_KERNELS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_score_kernel_thread_count_bit_identical(name, dtype):
    rng = np.random.default_rng(7)
    n, k = 2048, 300          # large enough for the kernels to wake a second thread
    assert n * k >= _runtime.parallel_min_work()
    scores = (2 * rng.standard_normal((n, k))).astype(dtype)
    y = SCORE_KERNELS[name][2](rng, n, k, dtype)
    l1, d1, r1 = _run_kernel(_kernels.COMPILED, name, scores, y, n_threads=1)
    l2, d2, r2 = _run_kernel(_kernels.COMPILED, name, scores, y, n_threads=2)
    assert l1 == l2
    assert np.array_equal(d1, d2) and np.array_equal(r1, r2)


# ---- hand-computed values on both backends ----------------------------------------------

def test_svm_known_values(backend):
    # The notes' running example: scores of one image, correct class 0.
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0]])
    y = np.array([0, 1])
    loss = losses.MulticlassSVM()
    # row 0: max(0, 5.1-3.2+1) + max(0, -1.7-3.2+1) = 2.9; row 1: max(0, 1.3-4.9+1)
    # + max(0, 2.0-4.9+1) = 0
    assert loss(scores, y) == pytest.approx(2.9 / 2, rel=1e-12)
    d = loss.backward()
    np.testing.assert_allclose(d, [[-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-15)
    sq = losses.SquaredHingeSVM(delta=1.0)
    assert sq(scores, y) == pytest.approx(2.9 ** 2 / 2, rel=1e-12)
    np.testing.assert_allclose(sq.backward(), [[-2.9, 2.9, 0.0], [0, 0, 0]], rtol=1e-12)
    # delta is configurable: with delta = 5 every margin is active
    big = losses.MulticlassSVM(delta=5.0)
    assert big(scores, y) == pytest.approx((6.9 + 0.1 + 1.4 + 2.1) / 2, rel=1e-12)


def _naive(name, s, y, delta=1.0):
    """Direct per-element formulas in float64 (independent of both implementations)."""
    s = s.astype(np.float64)
    n = s.shape[0]
    if name in ("svm", "svm_squared"):
        rows = np.arange(n)
        m = s - s[rows, y][:, None] + delta
        m[rows, y] = 0
        p = 2 if name == "svm_squared" else 1
        pos = np.maximum(m, 0)
        d = (p * pos ** (p - 1) * (pos > 0)) / n
        d[rows, y] = -d.sum(axis=1)
        return np.sum(pos ** p) / n, d
    if name == "attribute_hinge":
        m = 1 - y * s
        return np.sum(np.maximum(m, 0)) / n, np.where(m > 0, -y, 0) / n
    if name == "attribute_logistic":
        sig = 1 / (1 + np.exp(-s))
        return (np.sum(-(y * np.log(sig) + (1 - y) * np.log(1 - sig))) / n,
                (sig - y) / n)
    if name == "l2_regression":
        return np.sum((s - y) ** 2) / n, 2 * (s - y) / n
    return np.sum(np.abs(s - y)) / n, np.sign(s - y) / n


LOSS_CLASSES = {
    "svm": lambda dtype: losses.MulticlassSVM(dtype=dtype),
    "svm_squared": lambda dtype: losses.SquaredHingeSVM(delta=0.5, dtype=dtype),
    "attribute_hinge": lambda dtype: losses.AttributeHinge(dtype=dtype),
    "attribute_logistic": lambda dtype: losses.AttributeLogistic(dtype=dtype),
    "l2_regression": lambda dtype: losses.L2Regression(dtype=dtype),
    "l1_regression": lambda dtype: losses.L1Regression(dtype=dtype),
}


@pytest.mark.parametrize("name", sorted(LOSS_CLASSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_class_matches_formula(name, dtype, backend):
    rng = np.random.default_rng(3)
    n, k = 9, 4
    scores = (2 * rng.standard_normal((n, k))).astype(dtype)
    y = SCORE_KERNELS[name][2](rng, n, k, dtype)
    loss = LOSS_CLASSES[name](dtype=dtype)
    value = loss(scores, y)
    delta = 0.5 if name == "svm_squared" else 1.0
    want, dwant = _naive(name, scores, y, delta)
    # float32: the scores are the same, the arithmetic is float32 (eps 1.2e-7)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(want, rel=rtol)
    d = loss.backward()
    assert d.dtype == dtype and d.shape == scores.shape
    np.testing.assert_allclose(d, dwant, rtol=rtol, atol=rtol * 1e-2)
    assert loss.row_loss.shape == (n,)
    mean_rows = float(np.sum(loss.row_loss, dtype=np.float64)) / n
    assert mean_rows == pytest.approx(value, rel=rtol)


def test_softmax_cross_entropy_unchanged(backend):
    scores = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    loss = losses.SoftmaxCrossEntropy()
    value = loss(scores, [2, 0])
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert value == pytest.approx(-(np.log(p[0, 2]) + np.log(p[1, 0])) / 2, rel=1e-12)
    want = p.copy()
    want[[0, 1], [2, 0]] -= 1
    np.testing.assert_allclose(loss.backward(), want / 2, rtol=1e-12, atol=1e-15)


def test_l1_subgradient_zero_at_zero(backend):
    loss = losses.L1Regression()
    s = np.array([[1.0, 2.0, -3.0]])
    assert loss(s, [[1.0, 0.0, 0.0]]) == 5.0
    np.testing.assert_array_equal(loss.backward(), [[0.0, 1.0, -1.0]])


def test_regression_accepts_1d_targets_for_one_output(backend):
    loss = losses.L2Regression()
    assert loss(np.array([[1.0], [3.0]]), np.array([0.0, 1.0])) == pytest.approx(2.5)
    np.testing.assert_allclose(loss.backward(), [[1.0], [2.0]])


# ---- numerical stability -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_stable_at_extreme_scores(dtype, backend):
    s = np.array([[1000.0, -1000.0, 1000.0, -1000.0, 0.0]], dtype=dtype)
    y = np.array([[1, 0, 0, 1, 1]])
    loss = losses.AttributeLogistic(dtype=dtype)
    # exp(-1000) underflowing to 0 is right; overflow or an invalid value would not be
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss(s, y)
    # confident and right: 0; confident and wrong: |s|; s = 0: log 2
    assert value == pytest.approx(2000 + np.log(2), rel=1e-6)
    d = loss.backward()
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d, [[0.0, 0.0, 1.0, -1.0, -0.5]], atol=1e-7)
    np.testing.assert_allclose(loss.row_loss, [2000 + np.log(2)], rtol=1e-6)


def test_logistic_precise_for_tiny_losses(backend):
    # log1p keeps the loss of a confidently right prediction exact: -log sig(40) ~ 4.2e-18,
    # which log(1 + exp(-40)) would round to 0.
    loss = losses.AttributeLogistic()
    value = loss(np.array([[40.0, -40.0]]), np.array([[1, 0]]))
    assert value == pytest.approx(2 * np.exp(-40.0), rel=1e-12)


# ---- gradient checks (float64, away from kinks) --------------------------------------

def _away_from_kinks(name, rng, n, k, margin=1e-2):
    """Scores and targets whose hinge margins / L1 differences stay > margin from 0, so
    the centered difference (h = 1e-5) never straddles a kink."""
    while True:
        s = 2 * rng.standard_normal((n, k))
        y = SCORE_KERNELS[name][2](rng, n, k, np.float64)
        if name in ("svm", "svm_squared"):
            delta = 0.5 if name == "svm_squared" else 1.0
            m = s - s[np.arange(n), y][:, None] + delta
            m[np.arange(n), y] = 1.0
            gap = np.abs(m)
        elif name == "attribute_hinge":
            gap = np.abs(1 - y * s)
        elif name == "l1_regression":
            gap = np.abs(s - y)
        else:
            return s, y
        if gap.min() > margin:
            return s, y


@pytest.mark.parametrize("name", sorted(LOSS_CLASSES))
def test_gradient_check(name, backend):
    rng = np.random.default_rng(11)
    scores, y = _away_from_kinks(name, rng, 6, 5)
    loss = LOSS_CLASSES[name](dtype=np.float64)
    loss(scores, y)
    analytic = loss.backward().copy()      # the loss's buffer is rewritten by f below
    numeric = numerical_gradient(lambda s: loss(s, y), scores)
    assert rel_error(analytic, numeric) < 1e-7
    assert np.any(analytic != 0)


# ---- hierarchical softmax ------------------------------------------------------------

def _hs(n_in, k, dtype=np.float64, tree=None, seed=0, scale=0.5):
    hs = losses.HierarchicalSoftmax(n_in, k, tree=tree, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    hs.set_params(W=scale * rng.standard_normal(hs.W.shape),
                  b=scale * rng.standard_normal(hs.b.shape))
    return hs


def _hs_kernels(impl, hs, h, y, n_threads=1, input_grad=True):
    n, p = h.shape[0], hs.paths.shape[1]
    dz = np.full((n, p), np.nan, hs.dtype)
    rl = np.full(n, np.nan, hs.dtype)
    loss = impl.hierarchical_softmax_forward(h, hs.W, hs.b, y, hs.paths, hs.codes,
                                             hs.depths, dz, rl, n_threads)
    dh = np.full(h.shape, np.nan, hs.dtype) if input_grad else None
    dW = np.full_like(hs.W, np.nan)
    db = np.full_like(hs.b, np.nan)
    impl.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, dz, dh, dW, db,
                                       n_threads)
    return loss, rl, dz, dh, dW, db


CHAIN_7 = (0, (1, (2, (3, (4, (5, 6))))))       # a deep, unbalanced tree

HS_SHAPES = [(1, 1, 2, None), (1, 3, 5, None), (9, 5, 7, None), (17, 8, 7, CHAIN_7),
             (64, 33, 10, None), (2048, 300, 100, None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d, k, tree", HS_SHAPES)
def test_hsoftmax_kernels_match_twin(n, d, k, tree, dtype):
    hs = _hs(d, k, dtype, tree)
    rng = np.random.default_rng(n * 1000 + d)
    h = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n).astype(np.intp)
    got = _hs_kernels(_kernels.COMPILED, hs, h, y)
    want = _hs_kernels(_kernels.NUMPY, hs, h, y)
    np.testing.assert_allclose(got[0], want[0], **tol(dtype))
    for a, b in zip(got[1:], want[1:]):
        assert a.dtype == dtype and np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_hsoftmax_thread_count_bit_identical(dtype):
    hs = _hs(300, 100, dtype, scale=0.1)
    rng = np.random.default_rng(5)
    h = rng.standard_normal((2048, 300)).astype(dtype)
    y = rng.integers(0, 100, 2048).astype(np.intp)
    one = _hs_kernels(_kernels.COMPILED, hs, h, y, n_threads=1)
    two = _hs_kernels(_kernels.COMPILED, hs, h, y, n_threads=2)
    assert one[0] == two[0]
    for a, b in zip(one[1:], two[1:]):
        assert np.array_equal(a, b)


def test_hsoftmax_backward_without_input_grad(backend):
    hs = _hs(4, 6)
    h = np.random.default_rng(0).standard_normal((5, 4))
    y = np.array([0, 1, 2, 3, 5])
    hs(h, y)
    dh = hs.backward().copy()
    dW = hs.dW.copy()
    hs.dW[...] = 0
    assert hs.backward(input_grad=False) is None
    np.testing.assert_array_equal(hs.dW, dW)
    assert np.any(dh != 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, tree", [(2, None), (5, None), (7, CHAIN_7), (100, None),
                                     (4, ((3, 0), (2, 1)))])
def test_hsoftmax_probabilities(k, tree, dtype, backend):
    hs = _hs(6, k, dtype, tree)
    rng = np.random.default_rng(k)
    h = rng.standard_normal((40, 6)).astype(dtype)
    p = hs.predict_proba(h)
    assert p.shape == (40, k) and p.dtype == dtype
    assert np.all(p >= 0)
    # sum over leaves of a product of sigmoid pairs: 1 up to rounding of depth products
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32
                               else 1e-12)
    np.testing.assert_array_equal(hs.predict(h), np.argmax(p, axis=1))
    # the loss is the mean of -log P(y | h) that predict_proba reports
    y = rng.integers(0, k, 40)
    value = hs(h, y)
    want = -np.mean(np.log(p.astype(np.float64)[np.arange(40), y]))
    assert value == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-12)


def test_hsoftmax_two_classes_is_logistic_regression(backend):
    hs = _hs(3, 2)
    h = np.random.default_rng(1).standard_normal((8, 3))
    z = h @ hs.W[0] + hs.b[0]
    p1 = 1 / (1 + np.exp(-z))                      # the root's "right" branch is class 1
    np.testing.assert_allclose(hs.predict_proba(h)[:, 1], p1, rtol=1e-12)


@pytest.mark.parametrize("tree", [None, CHAIN_7, ((6, 2), ((0, 5), (1, (4, 3))))],
                         ids=["balanced", "chain", "custom"])
def test_hsoftmax_gradient_check(tree, backend):
    hs = _hs(4, 7, tree=tree)
    rng = np.random.default_rng(2)
    h = rng.standard_normal((5, 4))
    y = np.array([0, 3, 6, 2, 5])
    hs(h, y)
    dh = hs.backward().copy()
    dW, db = hs.dW.copy(), hs.db.copy()
    f = lambda _: hs(h, y)                          # noqa: E731 - reads W, b, h in place
    assert rel_error(dh, numerical_gradient(f, h)) < 1e-7
    assert rel_error(dW, numerical_gradient(f, hs.W)) < 1e-7
    assert rel_error(db, numerical_gradient(f, hs.b)) < 1e-7
    assert np.any(dW != 0) and np.any(db != 0)


def test_hsoftmax_custom_tree_structure():
    tree = [[3, 0], (2, [1, 4])]
    _, paths, codes, depths = losses.compile_tree(tree, 5)
    hs = losses.HierarchicalSoftmax(2, 5, tree=tree)
    assert hs.tree == ((3, 0), (2, (1, 4)))
    assert hs.W.shape == (4, 2) and hs.b.shape == (4,)
    np.testing.assert_array_equal(depths, [2, 3, 2, 2, 3])
    # pre-order: root 0, its left child 1, its right child 2, then 2's right child 3
    np.testing.assert_array_equal(paths[3, :2], [0, 1])
    np.testing.assert_array_equal(codes[3, :2], [-1, -1])
    np.testing.assert_array_equal(paths[4], [0, 2, 3])
    np.testing.assert_array_equal(codes[4], [1, 1, 1])
    assert losses.balanced_tree(5) == ((0, 1), (2, (3, 4)))
    assert max(losses.compile_tree(losses.balanced_tree(1000), 1000)[3]) == 10


def test_hsoftmax_deep_chain_tree_no_recursion_limit():
    k = 3000                                    # deeper than Python's recursion limit
    tree = k - 1
    for c in range(k - 2, -1, -1):
        tree = (c, tree)
    t, paths, codes, depths = losses.compile_tree(tree, k)
    assert depths[0] == 1 and depths[k - 1] == k - 1
    assert paths[k - 1, k - 2] == k - 2


def _cyclic():
    node = [0, None]
    node[1] = [1, node]
    return node


@pytest.mark.parametrize("tree, k, exc, match", [
    (((0, 1), (2, 2)), 4, ValueError, "class 2 appears twice"),
    (((0, 1), 2), 4, ValueError, r"class\(es\) 3 missing"),
    (((0, 1), (2, 7)), 4, ValueError, r"tree\[1\]\[1\] = 7 is not a class index"),
    (((0, 1, 2), 3), 4, ValueError, r"tree\[0\] has 3 children"),
    (((0,), (1, 2)), 3, ValueError, r"tree\[0\] has 1 children"),
    (((0, 1), (2, -1)), 4, ValueError, "not a class index"),
    (((0, 1), (2, "3")), 4, TypeError, r"tree\[1\]\[1\] is a str"),
    (((0, 1.0), 2), 3, TypeError, "float"),
    (((0, True), 2), 3, TypeError, "bool"),
    (_cyclic(), 3, ValueError, "appears twice|internal nodes"),
    (0, 2, ValueError, "missing"),
])
def test_hsoftmax_bad_trees(tree, k, exc, match):
    with pytest.raises(exc, match=match):
        losses.HierarchicalSoftmax(3, k, tree=tree)


def test_hsoftmax_validation():
    hs = losses.HierarchicalSoftmax(3, 4)
    h = np.zeros((2, 3))
    with pytest.raises(ValueError, match="h"):
        hs(np.zeros((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="y"):
        hs(h, [0, 4])
    with pytest.raises(TypeError, match="y"):
        hs(h, [0.5, 1])
    with pytest.raises(ValueError, match="y"):
        hs(h, [0, 1, 2])
    with pytest.raises(RuntimeError, match="before forward"):
        losses.HierarchicalSoftmax(3, 4).backward()
    with pytest.raises(ValueError, match="n_classes"):
        losses.HierarchicalSoftmax(3, 1)
    with pytest.raises(ValueError, match="no parameter"):
        hs.set_params(V=np.zeros(3))


def test_hsoftmax_kernels_reject_bad_tree_arrays():
    hs = _hs(3, 4)
    h = np.zeros((2, 3))
    y = np.array([0, 1], dtype=np.intp)
    dz = np.empty((2, hs.paths.shape[1]))
    rl = np.empty(2)
    for impl in (_kernels.COMPILED, _kernels.NUMPY):
        paths = hs.paths.copy()
        paths[1, 0] = 3                         # node 3 does not exist (K - 1 = 3 nodes)
        with pytest.raises(ValueError, match="path of class 1"):
            impl.hierarchical_softmax_forward(h, hs.W, hs.b, y, paths, hs.codes, hs.depths,
                                              dz, rl)
        depths = hs.depths.copy()
        depths[0] = hs.paths.shape[1] + 1       # would read past the row
        with pytest.raises(ValueError, match="path of class 0"):
            impl.hierarchical_softmax_backward(h, hs.W, y, hs.paths, depths, dz, None,
                                               np.empty_like(hs.W), np.empty_like(hs.b))
    with pytest.raises(TypeError, match="paths"):
        _kernels.COMPILED.hierarchical_softmax_forward(
            h, hs.W, hs.b, y, hs.paths.astype(np.int32), hs.codes, hs.depths, dz, rl)


def test_hsoftmax_trains_spiral():
    # A ReLU hidden layer feeding hierarchical softmax, trained by plain gradient descent.
    X, y = spiral(100, 3, seed=0)
    rng = np.random.default_rng(0)
    hidden = fastnn.layers.Linear(2, 100, activation="relu", seed=rng)
    hs = losses.HierarchicalSoftmax(100, 3, seed=rng)
    first = None
    for _ in range(300):
        h = hidden.forward(X)
        loss = hs(h, y)
        first = loss if first is None else first
        hidden.backward(hs.backward())
        for p, g in [(hidden.W, hidden.dW), (hidden.b, hidden.db), (hs.W, hs.dW),
                     (hs.b, hs.db)]:
            p -= 2.0 * g
    assert loss < first
    acc = np.mean(hs.predict(hidden.forward(X)) == y)
    assert acc > 0.6                            # chance is 1/3 (measured: 0.92)


# ---- validation ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [losses.MulticlassSVM, losses.SquaredHingeSVM,
                                 losses.SoftmaxCrossEntropy])
def test_class_label_validation(cls):
    loss = cls()
    s = np.zeros((3, 4))
    with pytest.raises(TypeError, match="y"):
        loss(s, [0.5, 1, 2])
    with pytest.raises(TypeError, match="y"):
        loss(s, ["a", "b", "c"])
    with pytest.raises(ValueError, match="y"):
        loss(s, [0, 1, 4])
    with pytest.raises(ValueError, match="y"):
        loss(s, [0, 1])
    with pytest.raises(ValueError, match="y"):
        loss(s, [[0, 1, 2]])
    with pytest.raises(ValueError, match="scores"):
        loss(np.full((3, 4), np.nan), [0, 1, 2])
    with pytest.raises(ValueError, match="scores"):
        loss(np.zeros(4), [0])
    with pytest.raises(RuntimeError, match="before forward"):
        cls().backward()


def test_svm_delta_validation():
    with pytest.raises(ValueError, match="delta"):
        losses.MulticlassSVM(delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        losses.SquaredHingeSVM(delta=float("nan"))
    with pytest.raises(TypeError, match="delta"):
        losses.MulticlassSVM(delta="1")


def test_attribute_label_validation():
    s = np.zeros((2, 3))
    hinge, logistic = losses.AttributeHinge(), losses.AttributeLogistic()
    with pytest.raises(ValueError, match=r"y\[0, 1\] = 0"):
        hinge(s, [[1, 0, -1], [1, 1, 1]])
    with pytest.raises(TypeError, match="y"):
        hinge(s, np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"y\[1, 2\] = -1"):
        logistic(s, [[1, 0, 1], [1, 1, -1]])
    with pytest.raises(ValueError, match="y"):
        logistic(s, [[1, 0, 0.5], [1, 1, 1]])
    with pytest.raises(ValueError, match="y"):
        logistic(s, [[1, 0, np.nan], [1, 1, 1]])
    with pytest.raises(ValueError, match="y"):
        hinge(s, np.ones((2, 4)))
    with pytest.raises(ValueError, match="y"):
        logistic(s, np.ones(2))
    with pytest.raises(TypeError, match="y"):
        logistic(s, [["a", "b", "c"], ["a", "b", "c"]])
    # booleans are 0/1 labels
    assert logistic(s, np.ones((2, 3), dtype=bool)) == pytest.approx(3 * np.log(2))


def test_regression_target_validation():
    s = np.zeros((2, 3))
    for loss in (losses.L2Regression(), losses.L1Regression()):
        with pytest.raises(ValueError, match="y"):
            loss(s, [[0, 1, np.nan], [0, 0, 0]])
        with pytest.raises(ValueError, match="y"):
            loss(s, [[0, 1, np.inf], [0, 0, 0]])
        with pytest.raises(ValueError, match="y"):
            loss(s, np.zeros((2, 2)))
        with pytest.raises(ValueError, match="y"):
            loss(s, np.zeros(2))                # 1-D only when there is one output
        with pytest.raises(TypeError, match="y"):
            loss(s, [["a"] * 3] * 2)


def test_kernels_reject_bad_arguments():
    s = np.zeros((3, 4))
    d, rl = np.empty_like(s), np.empty(3)
    c = _kernels.COMPILED
    with pytest.raises(ValueError, match=r"y\[2\] = 4"):
        c.multiclass_svm(s, np.array([0, 1, 4], dtype=np.intp), d, rl)
    with pytest.raises(TypeError, match="y"):
        c.multiclass_svm(s, np.array([0, 1, 2], dtype=np.int32), d, rl)
    with pytest.raises(ValueError, match="dscores"):
        c.multiclass_svm(s, np.array([0, 1, 2], dtype=np.intp), np.empty((3, 3)), rl)
    with pytest.raises(ValueError, match=r"y\[1, 0\] = 0"):
        c.attribute_hinge(s, np.array([[1.0] * 4, [0.0] * 4, [1.0] * 4]), d, rl)
    with pytest.raises(ValueError, match=r"y\[0, 0\] = 2"):
        c.attribute_logistic(s, np.full((3, 4), 2.0), d, rl)
    with pytest.raises(TypeError, match="y"):
        c.l2_regression(s, np.zeros((3, 4), dtype=np.float32), d, rl)
    with pytest.raises(ValueError, match="y"):
        c.l1_regression(s, np.zeros((3, 5)), d, rl)
    with pytest.raises(ValueError, match="row_loss"):
        c.l1_regression(s, np.zeros((3, 4)), d, np.empty(2))


# ---- training sanity -----------------------------------------------------------------

@pytest.mark.parametrize("loss, step_size", [
    (losses.MulticlassSVM(), 1.0),
    (losses.SquaredHingeSVM(), 0.3),      # gradient grows with the margin: smaller step
    (losses.SoftmaxCrossEntropy(), 1.0),
], ids=["svm", "squared_hinge", "softmax"])
def test_losses_train_spiral(loss, step_size):
    X, y = spiral(100, 3, seed=0)
    net = two_layer_net(2, 100, 3, seed=0)
    history = gradient_descent(net, loss, X, y, steps=300, step_size=step_size, reg=1e-3)
    assert history.loss[-1] < history.loss[0]
    # chance is 1/3 and a linear classifier gets ~0.5; measured 0.99 / 0.96 / 0.78
    assert net.score(X, y) > 0.6


# ---- every loss trains through fastnn.trainer.gradient_descent ----

def test_trainer_takes_any_loss_and_trains_loss_parameters():
    from fastnn.layers import Linear
    from fastnn.net import Sequential

    X, y = spiral(40, 3, seed=0)
    rng = np.random.default_rng(0)

    def net(n_out):
        return Sequential([Linear(2, 32, activation="relu", seed=rng,
                                  init=lambda i, o, r, d: 0.5 * r.standard_normal((i, o))),
                           Linear(32, n_out, seed=rng)])

    hs = losses.HierarchicalSoftmax(3, 3, seed=1)
    W0 = hs.W.copy()
    hist = gradient_descent(net(3), hs, X, y, steps=200, step_size=0.5, log_every=0)
    assert not np.array_equal(hs.W, W0)           # the loss's own weights moved
    assert hist.loss[-1] < hist.loss[0]
    targets = np.eye(3)[y] * 2 - 1                # one +-1 attribute per class
    hist = gradient_descent(net(3), losses.AttributeHinge(), X, targets, steps=100,
                            step_size=0.1)
    assert hist.data_loss[-1] < hist.data_loss[0]
    values = X[:, :1] ** 2
    hist = gradient_descent(net(1), losses.L2Regression(), X, values, steps=100,
                            step_size=0.05)
    assert hist.data_loss[-1] < 0.5 * hist.data_loss[0]
    with pytest.raises(ValueError, match="y"):
        gradient_descent(net(3), losses.AttributeHinge(), X, targets * 0.5, steps=1)
