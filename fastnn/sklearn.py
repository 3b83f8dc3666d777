"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`, trained by
fastnn's :class:`~fastnn.trainer.Trainer` on its compiled training plan (the ``sklearn``
extra: ``pip install 'fastnn[sklearn]'``).

They take scikit-learn's parameter names with their meanings, plus fastnn's own
(``dropout``, ``batch_norm``, the activations ``'leaky_relu'``, ``'prelu'`` and
``'maxout'``, ``init``, ``loss``, ``callbacks``, ``dtype``, ``n_threads``), and give
scikit-learn's fitted attributes (``coefs_``, ``intercepts_``, ``loss_curve_``, ...).
The fitted network is ``model_`` (a :class:`fastnn.net.Sequential`); ``out_activation_``
('softmax', 'logistic' or 'identity') is what turns its scores into the outputs.

How the settings map onto fastnn (so that equal settings give comparable models):

* Every epoch takes ``N // batch_size`` batches (scikit-learn also takes the short last
  batch; fastnn's compiled plan has one batch size, so the ``N % batch_size`` rows left
  over differ from epoch to epoch with ``shuffle=True``; with ``shuffle=False`` the rows
  are taken in order, cyclically, so every row is used).  ``t_`` counts the rows used.
* ``alpha`` is scikit-learn's L2 term: a step on a batch of B rows minimizes the batch's
  mean loss plus ``0.5 * alpha / B * sum(W**2)`` over every weight matrix (not the
  biases): fastnn's ``L2(alpha / B)``.  With ``sample_weight`` the data term is the
  weighted mean over the batch (as in scikit-learn) while the penalty keeps ``1 / B``
  (scikit-learn divides it by the batch's weight sum: the same for weights averaging 1).
* ``loss='squared_error'``: fastnn's L2 loss is ``sum_j (s_j - y_j)**2`` per row, twice
  scikit-learn's ``0.5 * sum_j (s_j - y_j)**2``; the estimator trains twice
  scikit-learn's objective (``L2(2 * alpha / B)``, and half the learning rate for
  'sgd'; Adam does not see the factor), i.e. the same steps.  ``loss_curve_`` is
  reported in scikit-learn's units (half the mean squared error over all outputs, plus
  the penalty).
* solver 'adam' differs from scikit-learn's where ``epsilon`` matters: fastnn's step is
  ``lr * m_hat / (sqrt(v_hat) + epsilon)`` (bias corrections inside, CS231n's form),
  scikit-learn's ``lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) +
  epsilon)``, i.e. fastnn's form with ``epsilon / sqrt(1 - beta_2**t)``, and for
  'squared_error' with half that (the doubled gradient).  The steps are equal where
  ``sqrt(v_hat)`` is far above epsilon: at the default 1e-8, weights agree to ~1e-6
  after a few epochs; a large epsilon (1e-2) gives visibly different runs.
* ``learning_rate``: 'constant'; 'invscaling' sets the rate to
  ``learning_rate_init / (t_ + 1) ** power_t`` after every epoch; 'adaptive' divides it
  by 5 when more than ``n_iter_no_change`` epochs in a row improve by less than ``tol``
  (training stops instead once it is <= 1e-6).  Only 'sgd' uses them, as in scikit-learn.
* Stopping: as scikit-learn, on the training loss (``best_loss_``) or, with
  ``early_stopping=True``, on the validation score (accuracy or R^2 on a
  ``validation_fraction`` held out, stratified for binary targets as scikit-learn's);
  the best epoch's weights are put back at the end.  ``validation_loss_curve_`` (fastnn's addition)
  holds the validation data loss per epoch when early_stopping is on.
* solver 'lbfgs' is refused (ValueError naming ``solver``): fastnn trains by mini-batch
  steps only.

Classifier outputs: multiclass targets use a softmax over one output per class
(``out_activation_ = 'softmax'``); binary targets one logistic output, as in
scikit-learn (``'logistic'``, ``coefs_[-1]`` has one column); multilabel indicator targets
one logistic output per label (``'logistic'``).  ``loss='hinge'`` / ``'squared_hinge'``
train a multiclass SVM (one output per class, binary included; multilabel: a hinge per
label, 'hinge' only); their ``out_activation_`` is 'identity' and they have no
predict_proba.
"""
from __future__ import annotations

import copy
import functools
import numbers
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

if TYPE_CHECKING:
    from typing_extensions import Self     # typing.Self from Python 3.11

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state as _sk_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import (_check_sample_weight, check_is_fitted,
                                          column_or_1d, validate_data)
except ImportError as exc:          # pragma: no cover - the extra is missing
    raise ImportError("fastnn.sklearn needs scikit-learn >= 1.6: pip install "
                      f"'fastnn[sklearn]' ({exc})") from exc

from . import config
from . import init as _init
from .layers import (BatchNorm, Dropout, LeakyReLU, Linear, Maxout, PReLU, ReLU, Sigmoid,
                     Tanh)
from .losses import (AttributeHinge, AttributeLogistic, L1Regression, L2Regression,
                     MulticlassSVM, SoftmaxCrossEntropy, SquaredHingeSVM)
from .net import Sequential
from .optim import SGD, Adam, Momentum, Nesterov
from .regularization import L2

__all__ = ["MLPClassifier", "MLPRegressor", "expected_failed_checks"]

_ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "leaky_relu", "prelu", "maxout")
#: fused (Linear's own activation argument) names of the element-wise activations
_FUSED = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
          "leaky_relu": "leaky_relu"}
_ACT_LAYER = {"logistic": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU}
def _default_init(activation):
    """scikit-learn's initialization of the weights: Glorot uniform on [-a, a],
    a = sqrt(6 / (fan_in + fan_out)), and sqrt(2 / (fan_in + fan_out)) for 'logistic'
    (fastnn's biases start at 0 where scikit-learn draws them from the same range)."""
    if activation == "logistic":
        return functools.partial(_init.glorot_uniform, gain=1.0 / np.sqrt(3.0))
    return "glorot_uniform"

#: check_estimator checks these estimators cannot pass, with the reason
_EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data":
        "mini-batch training: rows repeated k times land in other batches than one row "
        "of weight k, so the two fits take different steps and differ by more than the "
        "check's rtol=1e-7 (scikit-learn runs this check on its own MLPs only with "
        "solver='lbfgs' or a tuned 'sgd', full-batch settings fastnn does not have)",
}


def expected_failed_checks(estimator: Any) -> dict[str, str]:
    """{check name: reason} for scikit-learn's ``check_estimator(...,
    expected_failed_checks=...)`` (also the docs' list)."""
    return dict(_EXPECTED_FAILED)


# ---- parameter checks --------------------------------------------------------------------

def _real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bad = (not np.isfinite(value)
           or (low is not None and (value < low or (low_open and value == low)))
           or (high is not None and (value > high or (high_open and value == high))))
    if bad:
        if low is None and high is None:
            rng = ""
        elif high is None:
            rng = f" {'>' if low_open else '>='} {low}"
        elif low is None:
            rng = f" {'<' if high_open else '<='} {high}"
        else:
            rng = (f" in {'(' if low_open else '['}{low}, {high}"
                   f"{')' if high_open else ']'}")
        raise ValueError(f"{name} must be a finite number{rng}, got {value!r}")
    return value


def _int(value, name, low=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


# ---- the shared estimator ----------------------------------------------------------------

class _BaseMLP(BaseEstimator):
    _losses: tuple[str, ...] = ()

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool | int = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10, loss: str | None = None,
                 dropout: float | None = None, batch_norm: bool = False, init: Any = None,
                 callbacks: Sequence[Any] | None = None, dtype: DTypeLike | None = None,
                 n_threads: int | None = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.loss = loss
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.init = init
        self.callbacks = callbacks
        self.dtype = dtype
        self.n_threads = n_threads

    # -- checks -------------------------------------------------------------------------
    def _check_params(self):
        """Every parameter, checked at fit time (scikit-learn's convention); returns a
        dict of the normalized values.  TypeError / ValueError name the parameter."""
        p = {}
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{type(self.hidden_layer_sizes).__name__}") from None
        p["sizes"] = [_int(s, "hidden_layer_sizes") for s in sizes]
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by fastnn (it trains by "
                             "mini-batch steps only); use solver='adam' or 'sgd'")
        p["solver"] = _choice(self.solver, "solver", ("sgd", "adam"))
        p["activation"] = _choice(self.activation, "activation", _ACTIVATIONS)
        p["alpha"] = _real(self.alpha, "alpha", low=0.0)
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            p["batch_size"] = "auto"
        elif isinstance(self.batch_size, str):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got "
                             f"{self.batch_size!r}")
        else:
            p["batch_size"] = _int(self.batch_size, "batch_size")
        p["learning_rate"] = _choice(self.learning_rate, "learning_rate",
                                     ("constant", "invscaling", "adaptive"))
        p["learning_rate_init"] = _real(self.learning_rate_init, "learning_rate_init",
                                        low=0.0, low_open=True)
        p["power_t"] = _real(self.power_t, "power_t", low=0.0)
        p["max_iter"] = _int(self.max_iter, "max_iter")
        p["shuffle"] = _bool(self.shuffle, "shuffle")
        p["tol"] = _real(self.tol, "tol", low=0.0)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}")
        p["warm_start"] = _bool(self.warm_start, "warm_start")
        p["momentum"] = _real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        p["nesterovs_momentum"] = _bool(self.nesterovs_momentum, "nesterovs_momentum")
        p["early_stopping"] = _bool(self.early_stopping, "early_stopping")
        p["validation_fraction"] = _real(self.validation_fraction, "validation_fraction",
                                         low=0.0, high=1.0, low_open=True, high_open=True)
        p["beta_1"] = _real(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        p["beta_2"] = _real(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        p["epsilon"] = _real(self.epsilon, "epsilon", low=0.0, low_open=True)
        p["n_iter_no_change"] = _int(self.n_iter_no_change, "n_iter_no_change")
        p["loss"] = _choice(self._default_loss if self.loss is None else self.loss, "loss",
                            self._losses)
        if self.dropout is not None:
            p["dropout"] = _real(self.dropout, "dropout", low=0.0, high=1.0, low_open=True)
        else:
            p["dropout"] = None
        p["batch_norm"] = _bool(self.batch_norm, "batch_norm")
        if self.init is not None and not (isinstance(self.init, str) or callable(self.init)):
            raise TypeError(f"init must be None, an initializer name or a callable, got "
                            f"{type(self.init).__name__}")
        callbacks = [] if self.callbacks is None else self.callbacks
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError("callbacks must be None or a list of fastnn callbacks, got "
                            f"{type(callbacks).__name__}")
        from .trainer import _callback_list
        p["callbacks"] = _callback_list(callbacks)       # each checked to be one
        if self.dtype is None:
            p["dtype"] = None
        else:
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise ValueError(f"dtype must be None, float32 or float64, got {self.dtype!r}")
            p["dtype"] = dt
        p["n_threads"] = (None if self.n_threads is None
                          else _int(self.n_threads, "n_threads"))
        return p

    def _validate_X(self, X, reset):
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)
        if not reset and hasattr(self, "model_"):
            dtype = self.model_.dtype
        return validate_data(self, X, reset=reset, dtype=dtype, order="C")

    # -- the network ---------------------------------------------------------------------
    def _build_net(self, p, n_in, n_out, dtype, rng):
        act = p["activation"]
        init = _default_init(act) if self.init is None else self.init
        seed = np.random.default_rng(rng.randint(0, 2**31 - 1))
        layers, width = [], n_in
        for h in p["sizes"]:
            if act == "maxout":
                layers.append(Maxout(width, h, 2, init=init, seed=seed, dtype=dtype))
                if p["batch_norm"]:
                    layers.append(BatchNorm(h, dtype=dtype))
            elif p["batch_norm"] or act == "prelu":
                layers.append(Linear(width, h, init=init, seed=seed, dtype=dtype))
                if p["batch_norm"]:
                    layers.append(BatchNorm(h, dtype=dtype))
                if act == "prelu":
                    layers.append(PReLU(h, dtype=dtype))
                elif act != "identity":
                    layers.append(_ACT_LAYER[act](dtype=dtype))
            else:
                layers.append(Linear(width, h, activation=_FUSED[act], init=init, seed=seed,
                                     dtype=dtype))
            if p["dropout"] is not None:
                layers.append(Dropout(p["dropout"], seed=seed, dtype=dtype))
            width = h
        layers.append(Linear(width, n_out, init=init, seed=seed, dtype=dtype))
        return Sequential(layers)

    def _optimizer(self, p):
        lr = p["learning_rate_init"] * self._lr_factor(p)
        if p["solver"] == "adam":
            return Adam(lr, p["beta_1"], p["beta_2"], p["epsilon"])
        if p["momentum"] == 0:
            return SGD(lr=lr)
        cls = Nesterov if p["nesterovs_momentum"] else Momentum
        return cls(lr, p["momentum"])

    def _lr_factor(self, p):
        """fastnn learning rate / scikit-learn's (see _objective_scale)."""
        return 1.0 / self._objective_scale(p) if p["solver"] == "sgd" else 1.0

    def _objective_scale(self, p):
        """fastnn's objective / scikit-learn's: 2 for squared_error, else 1."""
        return 1.0

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike,
            sample_weight: ArrayLike | None = None) -> Self:
        """Fit the network to X (n_samples, n_features) and y; ``sample_weight``
        (n_samples,) weights each row's loss.  Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        # all or nothing: a fit refused before its first step (here, or by the trainer's
        # checks and the callbacks' on_fit_begin) leaves the estimator as it was: a
        # fitted one keeps predicting with its weights, not a fresh net's
        saved = dict(self.__dict__)
        old = self.__dict__.get("_trainer")
        old_state = None if old is None else dict(old.__dict__)

        def restore():
            self.__dict__.clear()
            self.__dict__.update(saved)
            if old is not None:
                old.__dict__.clear()
                old.__dict__.update(old_state)
        try:
            p, trainer, stopper, X, targets, validation, sample_weight = self._prepare_fit(
                X, y, sample_weight, incremental, classes)
        except BaseException:
            restore()
            raise
        t0 = 0 if trainer.plan is None else trainer.plan.t   # (a rebuilt plan carries t)
        self.n_iter_ = 0                     # epochs of this call (scikit-learn's meaning)
        metric = None
        if validation is not None:           # accuracy or R^2: EarlyStopping maximizes it
            metric = functools.partial(self._val_score)
            metric.greater_is_better = True  # type: ignore[attr-defined]
        try:
            with config.threads(p["n_threads"]) if p["n_threads"] else _nothing():
                history = trainer.fit(
                    X, targets, epochs=1 if incremental else p["max_iter"], record_every=1,
                    validation_data=validation, callbacks=[stopper] + p["callbacks"],
                    sample_weight=sample_weight, train_metric=False, metric=metric)
        except BaseException:
            if (0 if trainer.plan is None else trainer.plan.t) == t0:   # no step taken
                restore()
            raise
        stopper.finish(history)
        self._set_coefs()
        return self

    def _prepare_fit(self, X, y, sample_weight, incremental, classes):
        """Everything checked and made ready for training: (params, trainer, callback,
        X, targets, validation data, sample weights)."""
        from .trainer import Trainer
        p = self._check_params()
        first = not hasattr(self, "model_")
        fresh = first or not (p["warm_start"] or incremental)
        if incremental and p["early_stopping"]:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = self._validate_Xy(X, y, reset=fresh)
        targets, n_out, loss = self._prepare_targets(y, p, fresh, classes, incremental)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        dtype = X.dtype
        rs = _sk_random_state(self.random_state)
        arch = (tuple(p["sizes"]), p["activation"], p["batch_norm"], p["dropout"], p["loss"])
        if fresh:
            self.model_ = self._build_net(p, X.shape[1], n_out, dtype, rs)
            self._arch = arch
            self._init_records(p)
            self._trainer = None
        else:
            if arch != self._arch:
                raise ValueError(
                    "warm_start / partial_fit continue the fitted network, but "
                    "hidden_layer_sizes, activation, batch_norm, dropout or loss changed "
                    f"since it was built ({self._arch} -> {arch}); fit anew with "
                    "warm_start=False")
            if p["early_stopping"] and self.validation_scores_ is None:
                self.validation_scores_, self.validation_loss_curve_ = [], []
                self.best_validation_score_ = -np.inf
            elif not p["early_stopping"] and self.best_loss_ is None:
                self.best_loss_ = np.inf
        n = X.shape[0]
        if p["early_stopping"]:
            strat = targets if self._stratify(targets) else None
            parts = train_test_split(
                X, targets, *(() if sample_weight is None else (sample_weight,)),
                test_size=p["validation_fraction"], random_state=rs.randint(0, 2**31 - 1),
                stratify=strat)
            X, Xv, targets, yv = parts[:4]
            sample_weight, wv = (parts[4], parts[5]) if sample_weight is not None else \
                (None, None)
            if Xv.shape[0] < 2:
                raise ValueError("The validation set is too small: increase "
                                 "validation_fraction or the size of the data set")
            validation = (Xv, yv) if wv is None else (Xv, yv, wv)
            n = X.shape[0]
        else:
            validation = None
        batch = min(200, n) if p["batch_size"] == "auto" else p["batch_size"]
        if batch > n:
            warnings.warn(f"batch_size={batch} is larger than the {n} training rows; it is "
                          "clipped to them", UserWarning, stacklevel=3)
            batch = n
        reg = p["alpha"] * self._objective_scale(p) / batch
        trainer = self._trainer if incremental else None
        if trainer is not None and trainer.epoch_step:
            # one epoch per call: an epoch left unfinished (Ctrl-C, a non-finite loss)
            # ends there, not in this call's steps
            trainer.epoch, trainer.epoch_step = trainer.epoch + 1, 0
        if trainer is not None and (trainer.batch_size != batch
                                    or trainer.regularizer.reg != reg):
            # partial_fit on a chunk of another size: the trainer's plan for the new
            # batch size continues the optimizer's state (as in scikit-learn)
            trainer.batch_size = batch
            trainer.regularizer = L2(reg)
        if trainer is None:
            # a new optimizer, at learning_rate_init (a warm fit's too, as scikit-learn's)
            self._lr = p["learning_rate_init"]
            trainer = Trainer(self.model_, loss, self._optimizer(p), batch_size=batch,
                              reg=reg, seed=int(rs.randint(0, 2**31 - 1)), verbose=0,
                              shuffle=p["shuffle"])
            if loss.__class__ in (SoftmaxCrossEntropy, MulticlassSVM, SquaredHingeSVM):
                trainer.classes_ = np.arange(n_out)
        self._trainer = trainer
        stopper = _SklearnStopping(self, p, batch, incremental)
        return p, trainer, stopper, X, targets, validation, sample_weight

    def _init_records(self, p):
        self.loss_curve_ = []
        self.t_ = 0
        self.n_iter_ = 0
        self._no_improvement = 0
        if p["early_stopping"]:
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_, self.best_loss_ = -np.inf, None
        else:
            self.validation_scores_ = self.validation_loss_curve_ = None
            self.best_validation_score_, self.best_loss_ = None, np.inf

    def _set_coefs(self):
        self.n_layers_ = len(self._weight_layers()) + 1

    def _weight_layers(self):
        model = self.__dict__.get("model_")
        if model is None:         # (AttributeError: hasattr says False before fit)
            raise AttributeError(f"{type(self).__name__} is not fitted yet")
        return [layer for layer in model.layers if "W" in layer.params]

    @property
    def coefs_(self) -> list[np.ndarray]:
        """The weight matrices, (n_in, n_out) per layer with weights: views of
        ``model_``'s parameters (writing into one changes the model); assigning a list
        of arrays of the same shapes copies them into the model."""
        return [layer.W for layer in self._weight_layers()]

    @coefs_.setter
    def coefs_(self, value: Sequence[ArrayLike]) -> None:
        self._assign(value, "coefs_", "W")

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """The bias vectors, (n_out,) per layer with weights: views of ``model_``'s
        parameters, assigned as :attr:`coefs_` are."""
        return [layer.b for layer in self._weight_layers()]

    @intercepts_.setter
    def intercepts_(self, value: Sequence[ArrayLike]) -> None:
        self._assign(value, "intercepts_", "b")

    def _assign(self, value, name, param):
        """Copy a list of arrays into each weight layer's `param`, all checked first."""
        targets = [getattr(layer, param) for layer in self._weight_layers()]
        if not isinstance(value, (list, tuple)) or len(value) != len(targets):
            raise ValueError(f"{name} must be a list of {len(targets)} arrays, got "
                             f"{type(value).__name__}"
                             + (f" of {len(value)}" if isinstance(value, (list, tuple))
                                else ""))
        arrays = [np.asarray(a) for a in value]
        for j, (a, target) in enumerate(zip(arrays, targets)):
            if a.shape != target.shape:
                raise ValueError(f"{name}[{j}] has shape {a.shape}, the model's is "
                                 f"{target.shape}")
            if a.dtype.kind not in "biuf":
                raise ValueError(f"{name}[{j}] must be finite real numbers")
            with np.errstate(over="ignore"):
                arrays[j] = a = a.astype(target.dtype)    # (float32 may overflow to inf)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name}[{j}] must be finite real numbers in the model's "
                                 f"dtype {target.dtype}")
        for a, target in zip(arrays, targets):
            target[...] = a

    def _sk_loss(self, p, loss, data_loss):
        """A record in fastnn's units -> scikit-learn's (see the module docstring)."""
        return loss

    def _sk_val_loss(self, p, data_loss):
        return data_loss

    # -- pickling: parameters, not views -------------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())     # (a copy: it may be __dict__ itself)
        if state.get("_trainer") is not None:  # its History's per-step losses: not needed
            trainer = copy.copy(state["_trainer"])
            trainer.history_ = None
            state["_trainer"] = trainer
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "model_" in self.__dict__:
            self._set_coefs()

    # -- predicting ------------------------------------------------------------------------
    _y_numeric = False

    def _validate_Xy(self, X, y, reset):
        """X and y checked by scikit-learn's validate_data: X in the estimator's dtype
        (float64 or float32 kept, unless dtype= says; once fitted, the net's), C order."""
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)
        if not reset:
            dtype = self.model_.dtype
        return validate_data(self, X, y, reset=reset, dtype=dtype, order="C",
                             multi_output=True, y_numeric=self._y_numeric)

    def _scores(self, X):
        check_is_fitted(self, "model_")
        X = self._validate_X(X, reset=False)
        with config.threads(self.n_threads) if self.n_threads else _nothing():
            return self.model_._eval_forward(X).copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _SklearnStopping:
    """scikit-learn's per-epoch bookkeeping as a fastnn callback: loss_curve_, t_,
    n_iter_, the validation scores, the no-improvement count (tol, n_iter_no_change),
    'invscaling' / 'adaptive' learning rates and the best weights for early stopping."""

    def __init__(self, est, p, batch, incremental):
        self.est, self.p, self.batch, self.incremental = est, p, batch, incremental
        self.stopped = False
        self.best = None

    def on_epoch_end(self, trainer, epoch, logs):
        est, p = self.est, self.p
        plan = trainer.plan
        est.n_iter_ += 1
        est.t_ += self.batch * (plan.t - self._t_last)      # the rows this epoch used
        self._t_last = plan.t
        loss = est._sk_loss(p, logs["loss"], logs["data_loss"])
        est.loss_curve_.append(loss)
        est.loss_ = loss
        if p["early_stopping"]:
            score = logs["val_metric"]
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(est._sk_val_loss(p, logs["val_loss"]))
            if score < est.best_validation_score_ + p["tol"]:
                est._no_improvement += 1
            else:
                est._no_improvement = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best = _copy_weights(est.model_, self.best)
        else:
            if loss > est.best_loss_ - p["tol"]:
                est._no_improvement += 1
            else:
                est._no_improvement = 0
            est.best_loss_ = min(est.best_loss_, loss)
        if self.est.verbose:
            line = f"Iteration {est.n_iter_}, loss = {loss:.8f}"
            if p["early_stopping"]:
                line += f"\nValidation score: {est.validation_scores_[-1]:f}"
            print(line)
        if p["solver"] == "sgd" and p["learning_rate"] == "invscaling":
            est._lr = p["learning_rate_init"] / (est.t_ + 1) ** p["power_t"]
            plan.set_lr(est._lr * est._lr_factor(p))
        # (partial_fit's one epoch ends here anyway; an 'adaptive' rate still drops)
        if est._no_improvement > p["n_iter_no_change"]:
            if (p["solver"] == "sgd" and p["learning_rate"] == "adaptive"
                    and est._lr > 1e-6):
                est._lr /= 5
                plan.set_lr(est._lr * est._lr_factor(p))
                est._no_improvement = 0
                if est.verbose:
                    print(f"Setting learning rate to {est._lr:f}")
            else:
                if est.verbose:
                    what = "Validation score" if p["early_stopping"] else "Training loss"
                    print(f"{what} did not improve more than tol={p['tol']:f} for "
                          f"{p['n_iter_no_change']} consecutive epochs. Stopping.")
                self.stopped = not self.incremental
                return self.stopped
        return False

    def on_fit_begin(self, trainer):
        self._t_last = trainer.plan.t

    def finish(self, history):
        est, p = self.est, self.p
        if p["early_stopping"] and self.best is not None:
            _restore_weights(est.model_, self.best)
        if (not self.incremental and not self.stopped and history.stopped_by is None
                and est.n_iter_ == p["max_iter"]):
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({p['max_iter']}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=4)


def _weight_arrays(net):
    arrays = [net.flat_params]
    for layer in net.layers:
        if isinstance(layer, BatchNorm):
            arrays += [layer.running_mean, layer.running_var]
    return arrays


def _copy_weights(net, into):
    arrays = _weight_arrays(net)
    if into is None:
        return [a.copy() for a in arrays]
    for dst, src in zip(into, arrays):
        dst[...] = src
    return into


def _restore_weights(net, saved):
    for dst, src in zip(_weight_arrays(net), saved):
        dst[...] = src


# ---- the classifier ----------------------------------------------------------------------

class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastnn (scikit-learn's API).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers; () for none (a linear model).
    activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu', 'prelu', 'maxout'}
        Hidden activation; 'leaky_relu' has slope 0.01, 'prelu' learns one slope per
        unit, 'maxout' takes the max of 2 affine pieces per unit.
    solver : {'adam', 'sgd'}; 'lbfgs' is refused (ValueError).
    alpha : float >= 0, L2 strength (scikit-learn's meaning; see the module docstring).
    batch_size : 'auto' (min(200, n_samples)) or int.
    learning_rate : {'constant', 'invscaling', 'adaptive'} ('sgd' only).
    learning_rate_init, power_t, momentum, nesterovs_momentum, beta_1, beta_2, epsilon :
        the optimizers' settings, as in scikit-learn (momentum must be < 1; Adam's
        epsilon enters its step differently: see the module docstring).
    max_iter : epochs at most.  shuffle : bool.  random_state : None, int or RandomState.
    tol, n_iter_no_change, early_stopping, validation_fraction : stopping, as in
        scikit-learn.
    verbose : bool, a line per epoch.  warm_start : bool, continue from the last fit.
    loss : {'log_loss', 'hinge', 'squared_hinge'}, default 'log_loss'.
    dropout : None or the probability of *keeping* a hidden unit (fastnn's and the
        notes' convention: inverted dropout after every hidden activation).
    batch_norm : bool, batch normalization after every hidden affine layer.
    init : None (scikit-learn's: Glorot uniform, scaled by 1/sqrt(3) for 'logistic';
        biases start at 0), a fastnn.init name or callable.
    callbacks : None or a list of fastnn callbacks (run after every epoch).
    dtype : None (float32 data trains in float32, anything else in float64), float32 or
        float64.
    n_threads : None (fastnn's setting) or the threads of the kernels.

    Attributes
    ----------
    classes_ : (n_classes,) the labels (multilabel: 0 .. n_labels - 1)
    coefs_, intercepts_ : per weight layer, W (n_in, n_out) and b (n_out,) of the net's
        dtype (views into ``model_``'s parameters)
    loss_, loss_curve_ : the last and every epoch's mean training loss (+ penalty)
    best_loss_ : the lowest training loss (None with early_stopping)
    validation_scores_, best_validation_score_, validation_loss_curve_ : per epoch
        accuracy and data loss on the validation fraction (None without early_stopping)
    n_iter_ : epochs run by the last fit; t_ : training rows used over all fits
    n_features_in_, feature_names_in_ : the input's width (and column names)
    n_outputs_ : the net's outputs; n_layers_ : weight layers + 1
    out_activation_ : 'softmax', 'logistic' or 'identity'
    model_ : the fitted fastnn Sequential (scores = model_.predict_scores(X))
    """

    _losses = ("log_loss", "hinge", "squared_hinge")
    _default_loss = "log_loss"

    def _validate_Xy(self, X, y, reset):
        X, y = super()._validate_Xy(X, y, reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _prepare_targets(self, y, p, fresh, classes, incremental):
        kind = type_of_target(y)
        if fresh:
            if kind == "multilabel-indicator":
                labels = np.arange(y.shape[1])
            else:
                # sorted and unique, as the encoding (searchsorted) needs and
                # scikit-learn's unique_labels gives
                labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
                if classes is not None and not np.all(np.isin(np.unique(y), labels)):
                    raise ValueError(f"y has labels not in classes: "
                                     f"{np.setdiff1d(np.unique(y), labels).tolist()}")
            if kind != "multilabel-indicator" and len(labels) < 2:
                raise ValueError(f"y has only one class ({labels.tolist()}, 1 class); a "
                                 "classifier needs at least 2 classes")
            self.classes_ = labels
            self._multilabel = kind == "multilabel-indicator"
            self._label_dtype = y.dtype
            loss, out, width = self._loss_for(p, len(labels))
            self._loss_obj, self.out_activation_, self.n_outputs_ = loss, out, width
        else:
            if (kind == "multilabel-indicator") != self._multilabel:
                raise ValueError("y's kind (multilabel or not) differs from the previous fit")
            if self._multilabel:
                if y.shape[1] != len(self.classes_):
                    raise ValueError(f"y has {y.shape[1]} labels, the previous fit had "
                                     f"{len(self.classes_)}")
            elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                            self.classes_):
                raise ValueError(f"classes={list(classes)} differs from the classes of the "
                                 f"first partial_fit call {self.classes_.tolist()}")
            elif incremental and not np.all(np.isin(np.unique(y), self.classes_)):
                raise ValueError("y has labels not seen in the first partial_fit call: "
                                 f"{np.setdiff1d(np.unique(y), self.classes_).tolist()}")
            elif not incremental and not np.array_equal(np.unique(y), self.classes_):
                raise ValueError("warm_start can only be used where y has the same classes "
                                 f"as in the previous call to fit; previously got "
                                 f"{self.classes_.tolist()}, y has {np.unique(y).tolist()}")
        return self._encode(y), self.n_outputs_, self._loss_obj

    def _loss_for(self, p, k):
        """(fastnn loss, out_activation_, outputs) for k classes (labels)."""
        name = p["loss"]
        if self._multilabel:
            if name == "log_loss":
                return AttributeLogistic(), "logistic", k
            if name == "hinge":
                return AttributeHinge(), "identity", k
            raise ValueError("loss='squared_hinge' does not take multilabel targets; use "
                             "'log_loss' or 'hinge'")
        if name == "log_loss":
            if k == 2:
                return AttributeLogistic(), "logistic", 1
            return SoftmaxCrossEntropy(), "softmax", k
        return (MulticlassSVM() if name == "hinge" else SquaredHingeSVM()), "identity", k

    def _encode(self, y):
        """Labels -> what the loss takes: intp class codes (softmax, SVM), an (N, 1) 0/1
        column (binary logistic), the indicator matrix (multilabel; +-1 for hinge)."""
        if self._multilabel:
            y = np.asarray(y, dtype=np.float64)
            return 2 * y - 1 if self.out_activation_ == "identity" else y
        codes = np.searchsorted(self.classes_, y).astype(np.intp)
        if self.out_activation_ == "logistic":
            return codes.astype(np.float64).reshape(-1, 1)
        return codes

    def _stratify(self, targets):
        # binary targets only, as scikit-learn (whose multiclass split is not stratified,
        # so a class of one row, or more classes than validation rows, is no error)
        return not self._multilabel and len(self.classes_) == 2

    def _val_score(self, scores, y, w):
        """Accuracy of the scores against encoded targets (subset accuracy for
        multilabel), weighted like scikit-learn's score."""
        return float(np.average(np.all(self._decide(scores) == self._codes_of(y), axis=1),
                                weights=w))

    def _codes_of(self, y):
        if self._multilabel:
            return (y > 0).astype(np.intp)
        return np.asarray(y, dtype=np.intp).reshape(len(y), -1)

    def _decide(self, scores):
        """Scores -> (N, 1) class codes or (N, L) 0/1 labels."""
        if self._multilabel or self.out_activation_ == "logistic":
            return (scores > 0).astype(np.intp)
        return np.argmax(scores, axis=1).reshape(-1, 1)

    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> Self:
        """One epoch over (X, y), continuing the model (and its optimizer) of the previous
        calls.  ``classes`` (every label there will be) is required on the first call
        unless y is a multilabel indicator matrix.  Returns self."""
        if not hasattr(self, "model_") and classes is None:
            y_kind = type_of_target(np.asarray(y)) if y is not None else None
            if y_kind != "multilabel-indicator":
                raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted labels: (n_samples,) of classes_' kind, or (n_samples, n_labels)
        0/1 for multilabel targets."""
        decided = self._decide(self._scores(X))
        if self._multilabel:
            return decided.astype(self._label_dtype)
        return self.classes_[decided[:, 0]]

    def _has_proba(self):
        check = getattr(self, "out_activation_", None)
        if check is None:
            return (self.loss or "log_loss") == "log_loss"
        return check in ("softmax", "logistic")

    @available_if(_has_proba)
    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes) float64 rows summing to 1 (for
        multilabel targets: (n_samples, n_labels), each label's probability).
        Only with loss='log_loss'."""
        s = self._scores(X).astype(np.float64)
        if self.out_activation_ == "softmax":
            s -= s.max(axis=1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=1, keepdims=True)
            return s
        p = np.empty_like(s)
        pos = s >= 0
        p[pos] = 1.0 / (1.0 + np.exp(-s[pos]))
        e = np.exp(s[~pos])
        p[~pos] = e / (1.0 + e)
        if self._multilabel:
            return p
        return np.hstack([1.0 - p, p])

    @available_if(_has_proba)
    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """log of predict_proba, computed without underflow to -inf where it can be."""
        s = self._scores(X).astype(np.float64)
        if self.out_activation_ == "softmax":
            s -= s.max(axis=1, keepdims=True)
            return s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        logp = -np.logaddexp(0.0, -s)          # log sigmoid(s)
        if self._multilabel:
            return logp
        return np.hstack([-np.logaddexp(0.0, s), logp])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


# ---- the regressor -----------------------------------------------------------------------

class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastnn (scikit-learn's API).

    Parameters as :class:`MLPClassifier`'s, except ``loss``: 'squared_error' (default)
    or 'absolute_error' (mean over rows of sum_j |s_j - y_j|).  The output layer is
    linear (``out_activation_ = 'identity'``).  y may be (n_samples,) or
    (n_samples, n_outputs) (multi-output); predict returns the same shape.

    Attributes as :class:`MLPClassifier`'s, without classes_ and predict_proba;
    validation scores are R^2.
    """

    _losses = ("squared_error", "absolute_error")
    _default_loss = "squared_error"

    _y_numeric = True

    def _prepare_targets(self, y, p, fresh, classes, incremental):
        width = 1 if y.ndim == 1 else y.shape[1]
        if fresh:
            self.n_outputs_ = width
            self._y_1d = y.ndim == 1
            self.out_activation_ = "identity"
            self._loss_obj = (L2Regression() if p["loss"] == "squared_error"
                              else L1Regression())
        elif width != self.n_outputs_:
            raise ValueError(f"y has {width} outputs, the previous fit had {self.n_outputs_}")
        return np.asarray(y, dtype=np.float64).reshape(len(y), width), width, self._loss_obj

    def _objective_scale(self, p):
        return 2.0 if p["loss"] == "squared_error" else 1.0

    def _sk_loss(self, p, loss, data_loss):
        m = self.n_outputs_
        if p["loss"] == "squared_error":
            return data_loss / (2 * m) + (loss - data_loss) / 2
        return data_loss / m + (loss - data_loss)

    def _sk_val_loss(self, p, data_loss):
        m = self.n_outputs_
        return data_loss / (2 * m) if p["loss"] == "squared_error" else data_loss / m

    def _stratify(self, targets):
        return False

    def _val_score(self, scores, y, w):
        """R^2 averaged over the outputs (scikit-learn's r2_score), weighted."""
        scores = np.asarray(scores, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        wc = None if w is None else w[:, None]
        mean = np.average(y, axis=0, weights=w)
        ss_res = np.sum((y - scores) ** 2 * (1 if wc is None else wc), axis=0)
        ss_tot = np.sum((y - mean) ** 2 * (1 if wc is None else wc), axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                      np.where(ss_res > 0, 0.0, 1.0))
        return float(np.mean(r2))

    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> Self:
        """One epoch over (X, y), continuing the model (and its optimizer) of the previous
        calls.  Returns self."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predictions, (n_samples,) when fit saw 1-D y, else (n_samples, n_outputs)."""
        s = self._scores(X)
        return s[:, 0].copy() if self._y_1d else s

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
