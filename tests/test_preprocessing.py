"""fastnn.preprocessing: the notes' mean subtraction, scaling, PCA and whitening, fitted
on training data only, checked against the formulas; errors; scikit-learn compatibility
(check_estimator, Pipeline) without scikit-learn being needed to import fastnn."""
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.preprocessing import (PCA, Center, NotFittedError, Preprocessor, RangeScale,
                                  Standardize, make_preprocessor)


def _data(n=400, d=5, seed=0, dtype=np.float64):
    """Correlated gaussian data with unequal scales and a far-off mean."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.linspace(3, 0.2, d)[:, None]
    return (rng.standard_normal((n, d)) @ mix + rng.uniform(-10, 10, d)).astype(dtype)


def _fresh(est):
    """An unfitted copy (the parametrized instances are shared between tests)."""
    return type(est)(**est.get_params())


def _cov(Z):
    Zc = Z - Z.mean(axis=0)
    return Zc.T @ Zc / len(Z)


ALL = [Center(), Center(per_feature=False), Standardize(), Standardize(center=False),
       RangeScale(), RangeScale(center=True), PCA(), PCA(n_components=2),
       PCA(whiten=True), PCA(n_components=0.9, whiten=True, eps=1e-3), Preprocessor(),
       Preprocessor(scale="std", n_components=3, whiten=True),
       Preprocessor(center=False, scale="range")]


# ---- the formulas --------------------------------------------------------------------------

def test_mean_subtraction_per_feature_and_global():
    X = _data()
    Z = Center().fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    g = Center(per_feature=False).fit(X)
    np.testing.assert_allclose(g.mean_, np.full(5, X.mean()))
    Zg = g.transform(X)
    assert abs(Zg.mean()) < 1e-12 and np.ptp(Zg.mean(axis=0)) > 1   # one value, not per column
    np.testing.assert_allclose(g.inverse_transform(Zg), X, atol=1e-12)


def test_scaling_by_the_standard_deviation():
    X = _data()
    X[:, 2] = 7.0                                        # a constant feature
    s = Standardize().fit(X)
    Z = s.transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), [1, 1, 0, 1, 1], atol=1e-12)
    assert s.scale_[2] == 1.0                            # not divided by zero
    np.testing.assert_allclose(s.inverse_transform(Z), X, atol=1e-12)
    Zs = Standardize(center=False).fit_transform(X)     # only divided by the std
    np.testing.assert_allclose(Zs, X / s.scale_, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("est", [Standardize(), RangeScale(), RangeScale(center=True)],
                         ids=repr)
def test_a_constant_feature_maps_to_zero_whatever_its_value(est, dtype):
    """0.1 is not a float: the mean of ten of them is 0.09999999999999999, whose 1e-17
    "std" would scale the feature to 1."""
    for value in (0.1, 7.0, -1e-300, 3e38):
        X = np.column_stack([np.full(10, value), np.arange(10.0)]).astype(dtype)
        Z = _fresh(est).fit_transform(X)
        np.testing.assert_array_equal(Z[:, 0], 0)
        assert Z.dtype == dtype


def test_scaling_each_feature_to_minus_one_one():
    X = _data()
    r = RangeScale().fit(X)
    Z = r.transform(X)
    np.testing.assert_allclose(Z.min(axis=0), -1, atol=1e-14)
    np.testing.assert_allclose(Z.max(axis=0), 1, atol=1e-14)
    np.testing.assert_allclose(r.inverse_transform(Z), X, atol=1e-12)
    Zc = RangeScale(center=True).fit_transform(X)      # mean 0, inside [-1, 1], one end hit
    np.testing.assert_allclose(Zc.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.abs(Zc).max(axis=0), 1, atol=1e-14)
    const = np.ones((4, 2))
    np.testing.assert_array_equal(RangeScale().fit_transform(const), 0)


def test_pca_components_are_orthonormal_and_sorted():
    X = _data(d=6)
    p = PCA().fit(X)
    U = p.components_
    assert U.shape == (6, 6)
    np.testing.assert_allclose(U @ U.T, np.eye(6), atol=1e-12)
    lam = p.explained_variance_
    assert np.all(np.diff(lam) <= 0)
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvalsh(_cov(X)))[::-1], rtol=1e-10)
    np.testing.assert_allclose(p.explained_variance_ratio_.sum(), 1)
    # rotated data is decorrelated: its covariance is diag(eigenvalues)
    np.testing.assert_allclose(_cov(p.transform(X)), np.diag(lam), atol=1e-10 * lam[0])
    # a rotation: inverse_transform is exact
    np.testing.assert_allclose(p.inverse_transform(p.transform(X)), X, atol=1e-10)


def test_pca_matches_the_notes_recipe():
    # center, cov = X.T X / N, U S V = svd(cov), Xrot = X U, Xwhite = Xrot / sqrt(S + 1e-5)
    X = _data(d=4)
    Xc = X - X.mean(axis=0)
    U, S, _ = np.linalg.svd(Xc.T @ Xc / len(X))
    rot = Xc @ U[:, :3]
    white = rot / np.sqrt(S[:3] + 1e-5)
    ours = PCA(n_components=3).fit_transform(X)
    ours_white = PCA(n_components=3, whiten=True).fit_transform(X)
    signs = np.sign(np.sum(ours * rot, axis=0))          # eigenvector signs are arbitrary
    np.testing.assert_allclose(ours, rot * signs, atol=1e-10)
    np.testing.assert_allclose(ours_white, white * signs, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whitened_data_has_identity_covariance_within_eps(dtype):
    X = _data(d=5, dtype=dtype)
    for eps in (1e-5, 1e-2):
        p = PCA(whiten=True, eps=eps).fit(X)
        C = _cov(p.transform(X).astype(np.float64))
        lam = p.explained_variance_
        # exactly diag(lam / (lam + eps)): identity up to eps / lam per component
        np.testing.assert_allclose(np.diag(C), lam / (lam + eps), rtol=1e-4 if
                                   dtype == np.float32 else 1e-10)
        off = 1e-5 if dtype == np.float32 else 1e-10
        assert np.max(np.abs(C - np.eye(5))) <= eps / lam.min() + off
    # the larger eps damps the low-variance directions more
    small = PCA(whiten=True, eps=1e-5).fit_transform(X).std(axis=0)
    large = PCA(whiten=True, eps=1.0).fit_transform(X).std(axis=0)
    assert large[-1] < 0.5 * small[-1]


def test_top_k_and_variance_fraction():
    X = _data(d=6)
    full = PCA().fit(X)
    p2 = PCA(n_components=2).fit(X)
    assert p2.components_.shape == (2, 6) and p2.n_components_ == 2
    np.testing.assert_allclose(p2.transform(X), full.transform(X)[:, :2], atol=1e-10)
    cum = np.cumsum(full.explained_variance_ratio_)
    for f in (0.5, 0.9, 0.99, float(cum[2])):
        k = PCA(n_components=f).fit(X).n_components_
        assert cum[k - 1] >= f - 1e-12 and (k == 1 or cum[k - 2] < f - 1e-12), (f, k)
    assert PCA(n_components=1.0).fit(X).n_components_ == 6
    # fewer components: inverse_transform is the projection (applying it twice is once)
    Z = p2.transform(X)
    back = p2.inverse_transform(Z)
    np.testing.assert_allclose(p2.transform(back), Z, atol=1e-9)
    assert np.linalg.matrix_rank(back - p2.mean_) == 2


def test_sign_convention_is_deterministic():
    X = _data(d=4)
    a = PCA().fit(X).components_
    b = PCA().fit(X[::-1].copy()).components_            # same data, rows reordered
    c = PCA().fit(-X).components_                        # same axes, mirrored data
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a, c, atol=1e-12)
    big = np.argmax(np.abs(a), axis=1)
    assert np.all(a[np.arange(4), big] > 0)
    # a tie: two features with equal variance, so the axes are (1, 1) and (1, -1) / sqrt 2;
    # the first of the tied entries is the positive one
    rng = np.random.default_rng(1)
    t = rng.standard_normal(500)
    u = 0.3 * rng.standard_normal(500)
    sym = np.c_[t + u, t - u]
    sym = np.vstack([sym, sym[:, ::-1]])                 # exactly symmetric covariance
    V = PCA().fit(sym).components_
    np.testing.assert_allclose(V, np.array([[1, 1], [1, -1]]) / np.sqrt(2), atol=1e-12)


@pytest.mark.parametrize("est", ALL, ids=repr)
def test_dtype_is_kept_and_float32_agrees_with_float64(est):
    est = _fresh(est)
    X = _data()
    Z64 = est.fit_transform(X)
    Z32 = est.fit_transform(X.astype(np.float32))
    assert Z64.dtype == np.float64 and Z32.dtype == np.float32
    np.testing.assert_allclose(Z32, Z64, rtol=1e-3, atol=1e-3 * np.abs(Z64).max())
    assert est.fit_transform(X.astype(np.int64)).dtype == np.float64
    assert est.fit_transform(X.astype(">f4")).dtype == np.float32       # either byte order
    if hasattr(est, "inverse_transform"):
        assert est.fit(X.astype(np.float32)).inverse_transform(Z32).dtype == np.float32


# ---- train only ---------------------------------------------------------------------------

@pytest.mark.parametrize("est", ALL, ids=repr)
def test_fitted_on_train_the_test_split_changes_nothing(est):
    est = _fresh(est)
    X = _data(n=500)
    train, test = X[:400].copy(), X[400:] * 3 + 5        # a shifted, wider test split
    test_before = test.copy()
    est.fit(train)
    state = pickle.dumps(est)
    Zt = est.transform(test)
    np.testing.assert_array_equal(test, test_before)      # the input is not modified
    assert pickle.dumps(est) == state                     # nor are the statistics
    # fitted on train alone: the same as transforming with a copy fitted on train
    twin = pickle.loads(state)
    np.testing.assert_array_equal(twin.transform(test), Zt)
    # and not what fitting on everything gives (that would be the leak)
    leaked = _fresh(est).fit(np.vstack([train, test])).transform(test)
    assert leaked.shape != Zt.shape or not np.allclose(leaked, Zt)


def test_the_test_split_uses_the_training_statistics():
    X = _data(n=300)
    train, test = X[:200], X[200:]
    s = Standardize().fit(train)
    np.testing.assert_allclose(s.transform(test),
                               (test - train.mean(axis=0)) / train.std(axis=0), rtol=1e-12)
    # the test split's own statistics are not forced to 0 and 1
    assert np.abs(s.transform(test).mean(axis=0)).max() > 1e-3


def test_preprocessor_chains_in_the_notes_order_and_fits_splits():
    X = _data(n=600, d=6)
    tr, va, te = X[:400], X[400:500], X[500:]
    pre = make_preprocessor(scale="std", n_components=3, whiten=True, eps=1e-4)
    assert isinstance(pre, Preprocessor)
    Ztr, Zva, Zte = pre.fit_transform_splits(tr, va, te)
    assert [name for name, _ in pre.steps_] == ["scale", "pca"]
    s = Standardize().fit(tr)
    p = PCA(3, whiten=True, eps=1e-4).fit(s.transform(tr))
    for Z, part in ((Ztr, tr), (Zva, va), (Zte, te)):
        np.testing.assert_allclose(Z, p.transform(s.transform(part)), atol=1e-12)
    np.testing.assert_allclose(_cov(Ztr), np.eye(3), atol=1e-3)
    assert [n for n, _ in Preprocessor().fit(tr).steps_] == ["center"]
    assert [n for n, _ in Preprocessor(center=False, scale="range").fit(tr).steps_] == ["scale"]
    assert [n for n, _ in Preprocessor(whiten=True).fit(tr).steps_] == ["center", "pca"]
    # no step at all: a copy
    nothing = Preprocessor(center=False).fit(tr)
    out = nothing.transform(tr)
    assert out is not tr and np.array_equal(out, tr)
    assert np.array_equal(nothing.inverse_transform(out), tr)
    with pytest.raises(ValueError, match="Z has 5 columns, this Preprocessor was fitted on"):
        nothing.inverse_transform(out[:, :5])
    # inverse through the chain (every component kept: exact)
    full = make_preprocessor(scale="range", whiten=True).fit(tr)
    np.testing.assert_allclose(full.inverse_transform(full.transform(te)), te, atol=1e-9)
    with pytest.raises(ValueError, match=r"others\[1\] has 5 features"):
        pre.fit_transform_splits(tr, va, te[:, :5])


# ---- errors -------------------------------------------------------------------------------

def test_transform_before_fit_is_not_fitted_error():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for est in map(_fresh, ALL):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            est.transform(np.ones((3, 5)))
        if hasattr(est, "inverse_transform"):
            with pytest.raises(NotFittedError, match="not fitted yet"):
                est.inverse_transform(np.ones((3, 5)))


def test_bad_input_is_a_clear_error():
    X = _data(d=4)
    with pytest.raises(ValueError, match="n_components=5 is larger than the number of "
                                         r"features \(4\)"):
        PCA(n_components=5).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        make_preprocessor(n_components=9).fit(X)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        PCA(n_components=0).fit(X)
    with pytest.raises(ValueError, match=r"n_components .* in \(0, 1\]"):
        PCA(n_components=1.5).fit(X)
    with pytest.raises(TypeError, match="n_components"):
        PCA(n_components=True).fit(X)
    with pytest.raises(TypeError, match="n_components"):
        PCA(n_components="all").fit(X)
    with pytest.raises(ValueError, match="eps"):
        PCA(whiten=True, eps=-1e-5).fit(X)
    with pytest.raises(ValueError, match="eps"):
        PCA(eps=float("nan")).fit(X)
    with pytest.raises(TypeError, match="whiten"):
        PCA(whiten="yes").fit(X)
    with pytest.raises(TypeError, match="per_feature"):
        Center(per_feature=None).fit(X)
    with pytest.raises(ValueError, match="scale must be one of"):
        Preprocessor(scale="minmax").fit(X)
    for est in (Center(), Standardize(), PCA(2), Preprocessor(scale="std")):
        est.fit(X)
        with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 4"):
            est.transform(X[:, :3])
        bad = X.copy()
        bad[3, 1] = np.nan
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            type(est)().fit(bad)
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            est.transform(bad)
        with pytest.raises(ValueError, match="X must be 2-D"):
            est.transform(X[0])
        with pytest.raises(ValueError, match="0 sample"):
            est.transform(X[:0])
        with pytest.raises(TypeError, match="X must hold real numbers"):
            est.transform(np.full((2, 4), "a"))
        with pytest.raises(ValueError, match="Complex"):
            est.transform(X + 1j)
    with pytest.raises(ValueError, match="Z has 3 columns, but this PCA keeps 2"):
        PCA(2).fit(X).inverse_transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match="no parameter 'k'"):
        PCA().set_params(k=3)


def test_params_protocol_and_pickling():
    p = PCA(n_components=3, whiten=True)
    assert p.get_params() == {"eps": 1e-5, "n_components": 3, "whiten": True}
    assert repr(p) == "PCA(n_components=3, whiten=True)"
    assert p.set_params(eps=1e-3) is p and p.eps == 1e-3
    X = _data()
    p.fit(X)
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.transform(X), p.transform(X))
    # parameters are stored as given and only checked at fit, as scikit-learn expects
    lazy = PCA(n_components=-3)
    assert lazy.n_components == -3


# ---- scikit-learn -------------------------------------------------------------------------

@pytest.mark.parametrize("est", [Center(), Center(per_feature=False), Standardize(),
                                 RangeScale(center=True), PCA(), PCA(n_components=2),
                                 PCA(n_components=0.9, whiten=True),
                                 Preprocessor(scale="std", n_components=2, whiten=True)],
                         ids=repr)
def test_scikit_learn_check_estimator(est):
    estimator_checks = pytest.importorskip("sklearn.utils.estimator_checks")
    with warnings.catch_warnings():
        # the one thing it notes: the classes do not inherit from sklearn's BaseEstimator
        # (on purpose: fastnn does not import scikit-learn)
        warnings.filterwarnings("ignore", message=".*does not inherit from")
        warnings.filterwarnings("ignore", category=estimator_checks.SkipTestWarning)
        results = estimator_checks.check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert len(results) > 30 and failed == []


def test_inside_a_scikit_learn_pipeline():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    X = _data(n=300, d=6)
    y = (X[:, 0] + X[:, 1] > np.median(X[:, 0] + X[:, 1])).astype(int)
    pipe = make_pipeline(Preprocessor(scale="std"), PCA(), LogisticRegression())
    search = GridSearchCV(pipe, {"pca__n_components": [2, 4], "preprocessor__scale":
                                 ["std", "range"]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.8
    c = clone(PCA(n_components=3, whiten=True))
    assert c.get_params() == {"eps": 1e-5, "n_components": 3, "whiten": True}


def test_fastnn_imports_and_preprocesses_without_scikit_learn(tmp_path):
    code = textwrap.dedent("""
        import sys
        class NoSklearn:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("scikit-learn is hidden for this test")
        sys.meta_path.insert(0, NoSklearn())
        import numpy as np
        import fastnn
        from fastnn.preprocessing import PCA, NotFittedError
        X = np.random.default_rng(0).standard_normal((50, 3))
        Z = fastnn.preprocessing.make_preprocessor(scale="std", whiten=True).fit_transform(X)
        try:
            PCA().transform(X)
        except NotFittedError:
            pass
        assert "sklearn" not in sys.modules
        print("ok", Z.shape)
    """)
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok (50, 3)"
    assert fastnn.preprocessing is sys.modules["fastnn.preprocessing"]


def test_whitening_a_zero_variance_component_without_eps_is_refused():
    X = np.column_stack([np.arange(5.0), np.arange(5.0)])     # rank 1: one variance is 0
    with pytest.raises(ValueError, match="divides component 1, of zero variance, by zero"):
        PCA(whiten=True, eps=0).fit(X)
    Z = PCA(whiten=True, eps=0, n_components=1).fit_transform(X)
    assert np.all(np.isfinite(Z)) and Z.var() == pytest.approx(1.0)
    assert np.all(np.isfinite(PCA(whiten=True).fit_transform(X)))     # eps = 1e-5
