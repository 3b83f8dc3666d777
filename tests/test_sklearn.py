"""fastnn.sklearn: scikit-learn's own estimator checks, attributes beside scikit-learn's,
the alpha / loss mapping step for step, pickling, model selection, sample weights."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_multilabel_classification  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.net import Sequential  # noqa: E402
from fastnn.sklearn import MLPClassifier, MLPRegressor, expected_failed_checks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@parametrize_with_checks([MLPClassifier(), MLPRegressor()],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _regression(n=120, d=5, m=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.tanh(X @ rng.standard_normal((d, m))) + 0.05 * rng.standard_normal((n, m))
    return X, (Y[:, 0] if m == 1 else Y)


# ---- attributes, beside scikit-learn's ----------------------------------------------------

def _same_attributes(ours, theirs):
    for name in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_", "n_iter_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    assert len(ours.loss_curve_) == ours.n_iter_
    assert ours.loss_ == ours.loss_curve_[-1]


@pytest.mark.parametrize("target", ["multiclass", "binary", "multilabel"])
def test_classifier_attributes_match_sklearns(iris, target):
    X, y = iris
    if target == "binary":
        y = np.where(y == 0, "setosa", "other")
    elif target == "multilabel":
        X, y = make_multilabel_classification(150, 6, n_classes=3, random_state=0)
    kw = dict(hidden_layer_sizes=(16, 8), max_iter=30, random_state=0)
    ours, theirs = MLPClassifier(**kw).fit(X, y), sknn.MLPClassifier(**kw).fit(X, y)
    _same_attributes(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.predict(X).shape == theirs.predict(X).shape
    assert ours.predict(X).dtype == theirs.predict(X).dtype
    assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape
    assert ours.loss_curve_[-1] < ours.loss_curve_[0]     # (units: the step tests below)
    assert ours.best_loss_ == min(ours.loss_curve_)
    assert ours.validation_scores_ is None and ours.best_validation_score_ is None
    assert ours.validation_loss_curve_ is None
    assert ours.t_ == ours.n_iter_ * (X.shape[0] // min(200, X.shape[0])) * min(200, len(X))
    assert isinstance(ours.model_, Sequential)


def test_regressor_attributes_match_sklearns_multioutput():
    X, Y = _regression(m=3)
    kw = dict(hidden_layer_sizes=(10,), max_iter=25, random_state=0)
    ours, theirs = MLPRegressor(**kw).fit(X, Y), sknn.MLPRegressor(**kw).fit(X, Y)
    _same_attributes(ours, theirs)
    assert ours.out_activation_ == "identity"
    assert ours.predict(X).shape == (120, 3)
    assert ours.loss_curve_[-1] < ours.loss_curve_[0]
    X, y = _regression()
    ours = MLPRegressor(**kw).fit(X, y)
    assert ours.predict(X).shape == (120,) and ours.n_outputs_ == 1


def test_early_stopping_records_and_restores_the_best(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=3,
                        max_iter=200, random_state=0, learning_rate_init=0.05).fit(X, y)
    assert est.best_loss_ is None
    assert len(est.validation_scores_) == len(est.validation_loss_curve_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.n_iter_ < 200                                  # it stopped early
    assert all(np.isfinite(est.validation_loss_curve_))


def test_stops_on_the_training_loss_like_sklearn(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), tol=0.5, n_iter_no_change=2,
                        random_state=0).fit(X, y)
    # after the first, every epoch improves by less than tol: scikit-learn's rule stops
    # when more than n_iter_no_change epochs in a row did
    assert est.n_iter_ == 4


def test_a_float32_fit_stays_float32(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5).fit(X.astype(np.float32), y)
    assert est.model_.dtype == np.float32 and est.coefs_[0].dtype == np.float32
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, dtype="float32").fit(X, y)
    assert est.coefs_[0].dtype == np.float32
    assert MLPRegressor(max_iter=3).fit(*_regression()).coefs_[0].dtype == np.float64


# ---- the mapping of alpha and the losses, step for step ------------------------------------

def _one_sgd_epoch_beside_sklearn(ours, theirs, X, y):
    """Both take their initial weights from ours, then one full-batch SGD epoch."""
    ours.fit(X, y)
    theirs.fit(X, y)
    theirs.coefs_ = [c.copy() for c in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    ours.set_params(warm_start=True)
    theirs.set_params(warm_start=True)
    ours.fit(X, y)
    theirs.fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


SGD_ONE_EPOCH = dict(solver="sgd", momentum=0.0, batch_size=60, shuffle=False, max_iter=1,
                     learning_rate_init=0.3, alpha=0.7, random_state=0)


@pytest.mark.parametrize("outputs", [1, 2])
def test_squared_error_and_alpha_take_sklearns_steps(outputs):
    X, y = _regression(n=60, m=outputs)
    kw = dict(SGD_ONE_EPOCH, hidden_layer_sizes=(7,), activation="tanh")
    _one_sgd_epoch_beside_sklearn(MLPRegressor(**kw), sknn.MLPRegressor(**kw), X, y)


@pytest.mark.parametrize("classes", [2, 3])
def test_log_loss_and_alpha_take_sklearns_steps(classes):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, classes, 60)
    kw = dict(SGD_ONE_EPOCH, hidden_layer_sizes=(5,), activation="relu")
    _one_sgd_epoch_beside_sklearn(MLPClassifier(**kw), sknn.MLPClassifier(**kw), X, y)


def test_nesterov_momentum_takes_sklearns_steps():
    X, y = _regression(n=60)
    kw = dict(SGD_ONE_EPOCH, momentum=0.9, max_iter=1, hidden_layer_sizes=(4,),
              activation="logistic")
    ours, theirs = MLPRegressor(**kw), sknn.MLPRegressor(**kw)
    _one_sgd_epoch_beside_sklearn(ours, theirs, X, y)      # one step: velocity from 0


# ---- pickling and model selection ----------------------------------------------------------

def test_pickle_is_small_and_round_trips(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=20, random_state=0).fit(X, y)
    blob = pickle.dumps(est)
    n_params = est.model_.n_params
    # parameters + Adam's two moments, and little else (no batch buffers, no copies)
    assert len(blob) < 3 * 8 * n_params + 20_000, (len(blob), n_params)
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.coefs_[0], est.coefs_[0])
    assert back.coefs_[0].base is not None                   # views into model_ again
    assert back.loss_curve_ == est.loss_curve_
    # a pickled estimator resumes partial_fit like the original
    est.partial_fit(X, y)
    back.partial_fit(X, y)
    np.testing.assert_array_equal(back.coefs_[1], est.coefs_[1])


def test_clone_pipeline_grid_search_and_cross_val(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0,
                        learning_rate_init=0.01)
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "model_")
    pipe = make_pipeline(StandardScaler(), est)
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    grid = GridSearchCV(est, {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1e-1]},
                        cv=3).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.7
    assert grid.best_estimator_.learning_rate_init in (1e-3, 1e-2)


# ---- sample weights --------------------------------------------------------------------------

def test_zero_weights_equal_leaving_the_rows_out():
    X, y = _regression(n=50)
    w = np.ones(50)
    w[40:] = 0
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=50, alpha=0.0, max_iter=5,
              random_state=0, learning_rate_init=0.05)
    a = MLPRegressor(**kw).fit(X, y, sample_weight=w)
    b = MLPRegressor(**dict(kw, batch_size=40)).fit(X[:40], y[:40])
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-10)


def test_weights_change_the_fit_and_unit_weights_do_not(iris):
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    base = MLPClassifier(**kw).fit(X, y).coefs_[0]
    np.testing.assert_array_equal(
        MLPClassifier(**kw).fit(X, y, sample_weight=np.ones(150)).coefs_[0], base)
    w = np.where(y == 0, 5.0, 1.0)
    assert not np.allclose(MLPClassifier(**kw).fit(X, y, sample_weight=w).coefs_[0], base)


# ---- partial_fit, warm_start, predict_proba ------------------------------------------------

def test_partial_fit(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, y)
    est.partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    t = est._trainer.plan.t
    est.partial_fit(X[50:], y[50:])
    assert len(est.loss_curve_) == 2 and est.t_ == 50 + 100
    assert est._trainer.plan.t == t + 1        # a chunk of another size: Adam's count goes on
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="labels not seen"):
        est.partial_fit(X[:5], [0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(*_regression())


def test_warm_start_continues_and_checks_the_classes(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True,
                        random_state=0).fit(X, y)
    w = est.coefs_[0].copy()
    est.fit(X, y)
    assert len(est.loss_curve_) == 10 and not np.array_equal(w, est.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        est.fit(X[:100], y[:100])
    est.set_params(early_stopping=True).fit(X, y)          # switched on: records start
    assert len(est.validation_scores_) == est.n_iter_
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.set_params(hidden_layer_sizes=(9,)).fit(X, y)


def test_probabilities_and_hinge_losses(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, y)
    p = est.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), p, rtol=1e-12)
    np.testing.assert_array_equal(est.classes_[p.argmax(1)], est.predict(X))
    for loss in ("hinge", "squared_hinge"):
        svm = MLPClassifier(hidden_layer_sizes=(8,), loss=loss, max_iter=50,
                            learning_rate_init=0.01, random_state=0).fit(X, y)
        assert svm.out_activation_ == "identity" and svm.score(X, y) > 0.8
        assert not hasattr(svm, "predict_proba")
    Xm, Ym = make_multilabel_classification(100, 5, n_classes=3, random_state=0)
    ml = MLPClassifier(hidden_layer_sizes=(8,), loss="hinge", max_iter=50).fit(Xm, Ym)
    assert ml.predict(Xm).shape == Ym.shape


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "leaky_relu",
                                        "prelu", "maxout"])
def test_fastnn_options_train(iris, activation):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(16,), activation=activation, dropout=0.9,
                        batch_norm=activation in ("relu", "prelu"), max_iter=100,
                        learning_rate_init=0.01, random_state=0, n_threads=1).fit(X, y)
    assert est.score(X, y) > 0.85
    MLPRegressor(loss="absolute_error", hidden_layer_sizes=(8,), max_iter=20,
                 init="he_uniform", batch_norm=True).fit(*_regression())


def test_learning_rate_schedules(iris):
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", random_state=0, max_iter=40)
    inv = MLPClassifier(learning_rate="invscaling", **kw).fit(X, y)
    assert inv._lr == pytest.approx(0.001 / (inv.t_ + 1) ** 0.5)
    ada = MLPClassifier(learning_rate="adaptive", tol=10.0, n_iter_no_change=1, **kw)
    ada.fit(X, y)
    # never improving by tol: the rate drops 5x every 2 epochs; the drop that finds it
    # <= 1e-6 stops training instead (scikit-learn's rule)
    assert ada._lr == pytest.approx(0.001 / 5 ** 5) and ada.n_iter_ == 13


def test_callbacks_and_verbose(iris, capsys):
    from fastnn.callbacks import Callback
    seen = []

    class Count(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(epoch)

    X, y = iris
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, callbacks=[Count()],
                  verbose=True).fit(X, y)
    assert seen == [0, 1, 2]
    assert "Iteration 3, loss = " in capsys.readouterr().out


# ---- bad parameters: clear errors at fit time -------------------------------------------

@pytest.mark.parametrize("param, value, exc", [
    ("solver", "lbfgs", ValueError), ("solver", "rmsprop", ValueError),
    ("hidden_layer_sizes", (10, 0), ValueError), ("hidden_layer_sizes", "10", TypeError),
    ("activation", "softplus", ValueError), ("alpha", -1.0, ValueError),
    ("batch_size", 0, ValueError), ("batch_size", "big", ValueError),
    ("learning_rate", "cyclic", ValueError), ("learning_rate_init", 0.0, ValueError),
    ("max_iter", 0, ValueError), ("momentum", 1.0, ValueError),
    ("validation_fraction", 1.0, ValueError), ("beta_1", 1.0, ValueError),
    ("epsilon", 0.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("loss", "squared_error", ValueError), ("dropout", 1.5, ValueError),
    ("dtype", "int32", ValueError), ("n_threads", 0, ValueError),
    ("callbacks", "early", TypeError), ("shuffle", "yes", TypeError),
    ("tol", float("nan"), ValueError),
])
def test_bad_parameters_are_refused_at_fit_naming_them(iris, param, value, exc):
    X, y = iris
    est = MLPClassifier(**{param: value})                 # no check at construction
    with pytest.raises(exc, match=param):
        est.fit(X, y)


@pytest.mark.parametrize("param, value, message", [
    ("alpha", -1.0, "alpha must be a finite number >= 0.0, got -1.0"),
    ("learning_rate_init", 0.0, "learning_rate_init must be a finite number > 0.0, got 0.0"),
    ("momentum", 1.0, "momentum must be a finite number in [0.0, 1.0), got 1.0"),
])
def test_a_range_error_says_the_range(iris, param, value, message):
    with pytest.raises(ValueError) as info:
        MLPClassifier(**{param: value}).fit(*iris)
    assert str(info.value) == message


def test_regressor_refuses_classifier_losses():
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="log_loss").fit(*_regression())


def test_fits_on_the_compiled_plan_and_its_oracle_alike(iris):
    """The estimator trains on the compiled plan (never a silent NumPy path); on the NumPy
    backend the per-layer path (with the NumPy twins, a few ulp apart from the compiled
    kernels) trains the same model, sample weights included.  (The plan against the
    per-layer path on the compiled kernels, bit for bit: tests/test_plan.py.)"""
    import fastnn
    from fastnn.plan import CompiledPlan, LayerPath
    X, y = iris
    w = np.linspace(0.1, 2.0, 150)
    kw = dict(hidden_layer_sizes=(8,), batch_size=32, max_iter=5, dropout=0.9,
              random_state=0)
    a = MLPClassifier(**kw).fit(X, y, sample_weight=w)
    assert isinstance(a._trainer.plan, CompiledPlan)
    with fastnn.use_backend("numpy"):
        b = MLPClassifier(**kw).fit(X, y, sample_weight=w)
        assert isinstance(b._trainer.plan, LayerPath)
    np.testing.assert_allclose(a.model_.flat_params, b.model_.flat_params, rtol=1e-10,
                               atol=1e-14)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)


def test_feature_names_from_a_dataframe(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(X)


# ---- where scikit-learn's behaviour was not ours (a review's findings) ---------------------

def test_partial_fit_takes_classes_in_any_order(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    est.partial_fit(X, y, classes=[2, 0, 1, 1])          # sorted and unique, as sklearn
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    for _ in range(60):
        est.partial_fit(X, y, classes=[1, 2, 0])
    ref = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(61):
        ref.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_array_equal(est.predict_proba(X), ref.predict_proba(X))
    with pytest.raises(ValueError, match="differs from the classes"):
        est.partial_fit(X, y, classes=[0, 1, 2, 3])


def test_early_stopping_stratifies_binary_targets_only():
    """scikit-learn stratifies the validation split of binary targets only: a class of
    one row, or more classes than validation rows, is no error."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    y = np.r_[np.arange(99) % 19, 19]       # 20 classes (class 19: one row), 10 held out
    for est in (MLPClassifier((4,), early_stopping=True, validation_fraction=0.1,
                              max_iter=3, random_state=0),
                sknn.MLPClassifier((4,), early_stopping=True, validation_fraction=0.1,
                                   max_iter=3, random_state=0)):
        est.fit(X, y)
        assert len(est.validation_scores_) == 3


def test_a_refused_fit_leaves_the_fitted_estimator_as_it_was(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    est.fit(X, y)
    before = (est.predict_proba(X), est.n_iter_, list(est.loss_curve_), est.model_)
    with pytest.raises(TypeError, match="1 is not a callback"):
        est.set_params(callbacks=[1]).fit(X, y)
    with pytest.raises(ValueError, match="validation set is too small"):
        est.set_params(callbacks=None, early_stopping=True,
                       validation_fraction=0.005).fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X), before[0])
    assert (est.n_iter_, est.loss_curve_, est.model_) == before[1:]


def _sgd_rates_beside_sklearn(calls, **kw):
    """fastnn's and scikit-learn's learning rates after each call of `calls`."""
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive", tol=10.0,
              n_iter_no_change=1, random_state=0, **kw)
    ours, theirs = MLPClassifier(**kw), sknn.MLPClassifier(**kw)
    rates = []
    for call in calls:
        for est in (ours, theirs):
            call(est, X, y)
        rates.append((ours._lr, theirs._optimizer.learning_rate))
    return rates, ours, theirs


def test_partial_fit_drops_an_adaptive_rate_as_sklearn():
    rates, ours, theirs = _sgd_rates_beside_sklearn(
        [lambda est, X, y: est.partial_fit(X, y, classes=[0, 1, 2])] * 6)
    for a, b in rates:
        assert a == pytest.approx(b, rel=1e-12)
    assert rates[-1][0] < 1e-3 / 5
    assert ours.n_iter_ == theirs.n_iter_ == 1            # the epochs of the last call


def test_a_warm_fit_starts_at_learning_rate_init_as_sklearn():
    fit = [lambda est, X, y: est.fit(X, y)]
    rates, ours, _ = _sgd_rates_beside_sklearn(fit * 3, warm_start=True, max_iter=4)
    for a, b in rates:
        assert a == pytest.approx(b, rel=1e-12) and a < 1e-3       # dropped in every fit


def test_assigned_coefs_and_intercepts_are_the_models():
    X, y = _regression(n=60, m=2)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    est.fit(X, y)
    est.coefs_ = [np.zeros_like(c) for c in est.coefs_]
    est.intercepts_ = [np.zeros(5), np.array([1.0, -2.0])]
    np.testing.assert_array_equal(est.predict(X[:3]), [[1.0, -2.0]] * 3)
    est.coefs_[1][0, 0] = 1.0                          # a view: writing into it counts
    assert est.model_.layers[-1].W[0, 0] == 1.0
    with pytest.raises(ValueError, match=r"coefs_\[1\] has shape \(5, 3\), the model's is "):
        est.coefs_ = [np.zeros((X.shape[1], 5)), np.zeros((5, 3))]
    with pytest.raises(ValueError, match="must be a list of 2 arrays"):
        est.intercepts_ = [np.zeros(5)]
    with pytest.raises(ValueError, match="finite"):
        est.intercepts_ = [np.zeros(5), np.array([np.nan, 0.0])]
    assert not hasattr(MLPRegressor(), "coefs_")


def test_a_fit_refused_by_a_callback_before_its_first_step_changes_nothing(iris):
    from fastnn import callbacks as cb
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(X, y)
    before = (est.predict_proba(X), est.n_iter_, list(est.loss_curve_), est.model_)
    refuse = cb.LambdaCallback(on_fit_begin=lambda trainer: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        est.set_params(callbacks=[refuse]).fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X), before[0])
    assert (est.n_iter_, est.loss_curve_, est.model_) == before[1:]
    est.set_params(callbacks=None, warm_start=True)
    trainer = est._trainer
    with pytest.raises(ZeroDivisionError):                    # a warm one: its trainer too
        est.set_params(callbacks=[refuse], batch_size=7).partial_fit(X, y)
    assert est._trainer is trainer and trainer.batch_size == 150


def test_early_stopping_callbacks_know_the_validation_score_is_maximized(iris):
    from fastnn import callbacks as cb
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=200,
                        random_state=0, n_iter_no_change=1000,
                        callbacks=[cb.EarlyStopping("val_metric", patience=3)]).fit(X, y)
    scores = est.validation_scores_
    best = int(np.argmax(scores))
    assert est.n_iter_ < 200 and est.n_iter_ >= best + 4        # stopped on no increase


def test_partial_fit_after_an_interrupted_one_is_one_epoch(iris, monkeypatch):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), batch_size=10, random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    plan_type = type(est._trainer.plan)
    run = plan_type.run

    def interrupted(self, k, idx=None, *outputs, **kw):    # Ctrl-C after 5 of 15 steps
        run(self, 5, None if idx is None else idx[:5 * self.batch_size],
            *[o[:5] for o in outputs], **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(plan_type, "run", interrupted)
    est.partial_fit(X, y)
    monkeypatch.undo()
    curve = len(est.loss_curve_)
    est.partial_fit(X, y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == curve + 1
    assert est._trainer.epoch_step == 0


def test_assigned_float32_coefs_must_fit_float32():
    X, y = _regression(n=60)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                       dtype=np.float32).fit(X, y)
    with pytest.raises(ValueError, match="finite real numbers in the model's dtype float32"):
        est.coefs_ = [np.full(c.shape, 1e39) for c in est.coefs_]
    assert np.all(np.isfinite(est.predict(X)))
