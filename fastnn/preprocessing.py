"""Data preprocessing: mean subtraction, scaling, PCA and whitening.

Every transformer learns its statistics in ``fit`` from the training data only and
applies them, unchanged, to any split with ``transform``; ``fit_transform`` does both on
the training data and ``inverse_transform`` maps back (exactly, except after PCA keeps
fewer components than features, where it returns the projection).  The names and the
``get_params``/``set_params`` protocol are scikit-learn's, so the transformers also work
inside a scikit-learn ``Pipeline`` -- without fastnn importing scikit-learn.

==================  ===================================================================
:class:`Center`         subtract the mean of every feature (or one global mean)
:class:`Standardize`    subtract the mean, divide every feature by its standard deviation
:class:`RangeScale`     map every feature's [min, max] onto [-1, 1]
:class:`PCA`            rotate centered data into the covariance eigenbasis; keep the top
                        k components or enough for a fraction of the variance; whiten
:class:`Preprocessor`   the steps above chained in the right order (see
                        :func:`make_preprocessor`), fitted on the training split only
==================  ===================================================================

Dtypes: float32 data stays float32 (and float64 stays float64; integer data becomes
float64).  Statistics (means, deviations, the covariance and its eigendecomposition) are
always computed in float64, because sums over many float32 rows lose digits and the
small eigenvalues of a float32 covariance are mostly rounding; they are rounded once to
the data's dtype when applied.

The common pitfall: statistics must come from the training split alone.  Fitting on all
the data and splitting afterwards lets the validation and test rows shift the mean, the
scale and the principal axes the model is trained with, so their scores no longer
measure data the pipeline has not seen::

    # wrong: the test rows take part in the mean and the covariance
    Z = make_preprocessor(n_components=50, whiten=True).fit_transform(X_all)
    Z_train, Z_test = Z[:n_train], Z[n_train:]

    # right: fit on the training split, apply the same statistics to every split
    pre = make_preprocessor(n_components=50, whiten=True)
    Z_train, Z_val, Z_test = pre.fit_transform_splits(X_train, X_val, X_test)
"""
from __future__ import annotations

import inspect
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ._validation import all_finite

if TYPE_CHECKING:
    from typing_extensions import Self     # typing.Self from Python 3.11

__all__ = ["NotFittedError", "Center", "Standardize", "RangeScale", "PCA", "Preprocessor",
           "make_preprocessor"]


class NotFittedError(ValueError, AttributeError):
    """transform (or inverse_transform) called before fit.

    A ValueError and an AttributeError, like scikit-learn's NotFittedError, so code that
    catches either (scikit-learn's own checks do) handles it."""


# ---- input checks ----------------------------------------------------------------------

def _as_data(X, name="X") -> np.ndarray:
    """X as a C-contiguous 2-D float array: float32 stays float32, every other real
    type (integers, booleans, float16, numbers held in an object array) becomes
    float64.  TypeError for sparse matrices and non-numbers, ValueError for complex
    numbers, a shape other than (samples, features), no rows or columns, NaN or inf."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; these transformers need dense data "
                        f"({name}.toarray())")
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception as exc:  # noqa: BLE001 - ragged lists and the like
            raise TypeError(f"{name} cannot be converted to an array: {exc}") from None
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
    if X.dtype.kind == "O":
        X = X.astype(np.float64)       # TypeError/ValueError from float() on a non-number
    elif X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {X.shape}. "
                         "Reshape your data: X.reshape(-1, 1) if it has a single feature, "
                         "X.reshape(1, -1) if it is a single sample")
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise ValueError(f"{name} has 0 {what}(s) (shape={X.shape}) while a minimum "
                             "of 1 is required.")
    # float32 in either byte order stays float32
    dtype = np.float32 if X.dtype.kind == "f" and X.dtype.itemsize == 4 else np.float64
    X = np.ascontiguousarray(X, dtype=dtype)
    if not X.dtype.isnative:
        X = X.astype(X.dtype.newbyteorder("="))
    if not all_finite(X):
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_eps(eps, name="eps"):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {eps}")
    return eps


# ---- the scikit-learn protocol, without scikit-learn -----------------------------------

class _Transformer:
    """get_params/set_params from the constructor's signature (every parameter is stored
    under its own name and checked in fit, as scikit-learn expects), fit_transform, a
    readable repr and the hooks scikit-learn's tools look for.  Subclasses implement
    ``_fit(X)`` (X already checked, float64 statistics) and ``_transform(X)``."""

    if TYPE_CHECKING:               # the subclasses' hooks, declared for the type checker
        def _fit(self, X: np.ndarray) -> None: ...

        def _transform(self, X: np.ndarray) -> np.ndarray: ...

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, by name."""
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            params[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for key, sub in value.get_params(deep=True).items():
                    params[f"{name}__{key}"] = sub
        return params

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (checked at the next fit); returns self."""
        valid = self._param_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; "
                                 f"its parameters are {valid}")
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if not (k in defaults and _same(defaults[k], v))]
        return f"{type(self).__name__}({', '.join(changed)})"

    # fitting and applying

    def fit(self, X: ArrayLike, y: Any = None) -> Self:
        """Learn the statistics from X (samples x features), the training data only.
        y is ignored (it is accepted for scikit-learn pipelines).  Returns self."""
        X = _as_data(X)
        self._check_params()
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Apply the statistics learned in fit to X (any split); a new array of X's
        float dtype."""
        return self._transform(self._checked(X))

    def fit_transform(self, X: ArrayLike, y: Any = None) -> np.ndarray:
        """fit(X) then transform(X), for the training data."""
        return self.fit(X, y).transform(X)

    def _check_params(self):
        pass

    def _checked(self, X, name="X") -> np.ndarray:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                 "fit on the training data before transform")
        X = _as_data(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name} has {X.shape[1]} features, but "
                             f"{type(self).__name__} is expecting {self.n_features_in_} "
                             "features as input")
        return X

    # scikit-learn's hooks (called by scikit-learn only, so importing it there is fine)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_")

    def __sklearn_clone__(self):
        return type(self)(**{k: _clone_param(v) for k, v in
                             self.get_params(deep=False).items()})

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(two_d_array=True, allow_nan=False, sparse=False))

    def _more_tags(self):           # scikit-learn < 1.6
        return {"preserves_dtype": [np.float64, np.float32], "allow_nan": False}


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - arrays and the like
        return a is b


def _clone_param(value):
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value)(**{k: _clone_param(v) for k, v in
                              value.get_params(deep=False).items()})
    return value


def _apply(X, stat) -> np.ndarray:
    """A float64 statistic rounded once into X's dtype."""
    return stat.astype(X.dtype)


# ---- mean subtraction and scaling ------------------------------------------------------

class Center(_Transformer):
    """Mean subtraction: X - mean.

    per_feature : True (default) subtracts the mean of every feature (column); False
        subtracts one value, the mean of all entries (the notes' option for images,
        whose pixels share one scale).

    Fitted attributes: ``mean_`` (n_features,), float64 (every entry the same when
    per_feature is False), and ``n_features_in_``.
    """

    def __init__(self, per_feature: bool = True) -> None:
        self.per_feature = per_feature

    def _check_params(self):
        _check_bool(self.per_feature, "per_feature")

    def _fit(self, X):
        if self.per_feature:
            self.mean_ = X.mean(axis=0, dtype=np.float64)
        else:
            self.mean_ = np.full(X.shape[1], X.mean(dtype=np.float64))

    def _transform(self, X):
        return X - _apply(X, self.mean_)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """X + mean."""
        X = self._checked(X)
        return X + _apply(X, self.mean_)


class Standardize(_Transformer):
    """Scaling by the standard deviation: (X - mean) / std, feature by feature.

    center : True (default) subtracts the mean first, as the notes do; False only
        divides by the standard deviation (which is still that of the centered data).

    The standard deviation is the population one (dividing by N, as ``np.std``).  A
    feature that is constant in the training data has std 0 and is left unscaled (its
    scale is 1) rather than divided by zero.

    Fitted attributes: ``mean_``, ``scale_`` (the standard deviations, 1 for constant
    features), both (n_features,) float64, and ``n_features_in_``.
    """

    def __init__(self, center: bool = True) -> None:
        self.center = center

    def _check_params(self):
        _check_bool(self.center, "center")

    def _fit(self, X):
        lo, hi = _feature_range(X)
        constant = lo == hi
        # a constant feature's mean is its value (a float64 mean of ten 0.1s is not
        # 0.1, and the 1e-17 std it leaves would scale the feature to 1, not 0)
        self.mean_ = np.where(constant, lo, X.mean(axis=0, dtype=np.float64))
        std = np.sqrt(np.mean((X - self.mean_) ** 2, axis=0))
        self.scale_ = np.where(constant | ~(std > 0), 1.0, std)

    def _transform(self, X):
        if self.center:
            X = X - _apply(X, self.mean_)
        return X / _apply(X, self.scale_)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """X * std (+ mean)."""
        X = self._checked(X)
        X = X * _apply(X, self.scale_)
        # numpy's stubs make X * ... Any, which mypy reads as X's declared ArrayLike
        return X + _apply(X, self.mean_) if self.center else X  # type: ignore[return-value]


def _feature_range(X):
    """Each feature's (minimum, maximum) as float64 (a feature is constant where equal)."""
    return X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)


class RangeScale(_Transformer):
    """Scaling each feature to [-1, 1].

    center : False (default) maps every feature's training minimum to -1 and maximum to
        +1 (the notes' min/max normalization).  True subtracts the mean and divides by
        the largest absolute centered value, so the feature has mean 0 and lies in
        [-1, 1] with one end reached (the notes' recommended "center, then scale to
        [-1, 1]"); mapping min and max exactly onto -1 and 1 would move the mean away
        from 0 again.

    Values outside the training range (in other splits) fall outside [-1, 1]; they are
    not clipped.  A constant feature maps to 0.

    Fitted attributes: ``offset_`` and ``scale_`` (n_features,) float64, with
    transform(X) = (X - offset_) / scale_, and ``n_features_in_``.
    """

    def __init__(self, center: bool = False) -> None:
        self.center = center

    def _check_params(self):
        _check_bool(self.center, "center")

    def _fit(self, X):
        lo, hi = _feature_range(X)
        constant = lo == hi
        if self.center:
            self.offset_ = np.where(constant, lo, X.mean(axis=0, dtype=np.float64))
            half = np.maximum(hi - self.offset_, self.offset_ - lo)
        else:
            self.offset_ = lo + (hi - lo) / 2
            half = (hi - lo) / 2
        self.scale_ = np.where(constant | ~(half > 0), 1.0, half)

    def _transform(self, X):
        return (X - _apply(X, self.offset_)) / _apply(X, self.scale_)

    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """X * scale_ + offset_."""
        X = self._checked(X)
        return X * _apply(X, self.scale_) + _apply(X, self.offset_)


# ---- PCA and whitening -----------------------------------------------------------------

def _check_n_components(n, n_features):
    """The number of components to keep: None is all; an int k in [1, n_features]; a
    float in (0, 1] is a fraction of the variance (resolved after the eigenvalues)."""
    if n is None:
        return n_features
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Real):
        raise TypeError(f"n_components must be None, an int or a float in (0, 1], got "
                        f"{type(n).__name__}")
    if isinstance(n, numbers.Integral):
        n = int(n)
        if n < 1:
            raise ValueError(f"n_components must be >= 1, got {n}")
        if n > n_features:
            raise ValueError(f"n_components={n} is larger than the number of features "
                             f"({n_features}): PCA keeps at most one component per "
                             "feature")
        return n
    n = float(n)
    if not 0 < n <= 1:
        raise ValueError(f"n_components as a float is the fraction of the variance to "
                         f"keep and must be in (0, 1], got {n}")
    return n


class PCA(_Transformer):
    """PCA and whitening: rotate the centered data into the eigenbasis of its covariance
    matrix, keep the top components, and optionally whiten.

    n_components : None (default) keeps every component (a pure rotation, which
        decorrelates the data); an int k keeps the k of largest variance (1 <= k <=
        n_features); a float f in (0, 1] keeps the fewest components whose variance is
        at least the fraction f of the total.
    whiten : divide every component by sqrt(eigenvalue + eps), so that (for eps -> 0)
        the data has identity covariance.
    eps : the whitening constant, 1e-5 by default as in the notes.  It keeps a component
        of zero variance from being divided by zero; a larger value smooths more (it
        damps the near-zero-variance directions, mostly noise, that whitening would
        otherwise stretch to unit scale).

    The covariance is X_c.T @ X_c / N (dividing by N, as the notes), computed in float64
    and diagonalized with ``numpy.linalg.eigh``; components are sorted by decreasing
    eigenvalue.  An eigenvector's sign is arbitrary, so each is flipped to make its
    largest-magnitude entry positive (the first of those within 1e-8 of the largest, so
    ties are settled by position, not by rounding): fits on the same data give the same
    components on every machine.

    Fitted attributes: ``mean_`` (n_features,); ``components_`` (k, n_features), the
    eigenvectors as orthonormal rows (the notes' ``U[:, :k].T``); ``explained_variance_``
    (k,), their eigenvalues; ``explained_variance_ratio_`` (k,), each one's share of the
    total variance; ``n_components_`` (k); ``n_features_in_``.  All float64.
    """

    def __init__(self, n_components: int | float | None = None, whiten: bool = False,
                 eps: float = 1e-5) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.eps = eps

    def _check_params(self):
        _check_bool(self.whiten, "whiten")
        _check_eps(self.eps)

    def _fit(self, X):
        n, d = X.shape
        k = _check_n_components(self.n_components, d)
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        Xc = X.astype(np.float64) - self.mean_
        cov = Xc.T @ Xc / n
        values, vectors = np.linalg.eigh(cov)          # ascending
        values = np.clip(values[::-1], 0.0, None)      # rounding can make 0 slightly < 0
        vectors = vectors[:, ::-1].T.copy()            # rows, largest variance first
        # the first entry within 1e-8 of the largest magnitude: exact ties (symmetric
        # data) would otherwise go whichever way the last bit of eigh's output falls
        mag = np.abs(vectors)
        top = np.argmax(mag >= (1 - 1e-8) * mag.max(axis=1, keepdims=True), axis=1)
        vectors *= np.where(vectors[np.arange(d), top] < 0, -1.0, 1.0)[:, None]
        total = values.sum()
        ratio = values / total if total > 0 else np.zeros(d)
        if isinstance(k, float):
            # the fewest components reaching the fraction (rounding slack of 1e-12)
            k = int(np.searchsorted(np.cumsum(ratio), k - 1e-12) + 1) if total > 0 else 1
            k = min(k, d)
        if self.whiten and not np.all(values[:k] + float(self.eps) > 0):
            zero = int(np.argmin(values[:k] + float(self.eps) > 0))
            raise ValueError(f"whitening with eps={self.eps} divides component {zero}, of "
                             "zero variance, by zero: give eps > 0 or keep fewer "
                             "components (n_components)")
        self.n_components_ = k
        self.components_ = vectors[:k]
        self.explained_variance_ = values[:k]
        self.explained_variance_ratio_ = ratio[:k]

    def _divisor(self):
        return np.sqrt(self.explained_variance_ + float(self.eps))

    def _transform(self, X):
        Z = (X - _apply(X, self.mean_)) @ _apply(X, self.components_).T
        if self.whiten:
            Z /= _apply(Z, self._divisor())
        return Z

    def inverse_transform(self, Z: ArrayLike) -> np.ndarray:
        """Back to the original feature space: undo the whitening, rotate back, add the
        mean.  Exact (up to rounding) when every component is kept; with fewer, the
        result is the projection of the data onto the kept components."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                 "fit on the training data before inverse_transform")
        Z = _as_data(Z, "Z")
        if Z.shape[1] != self.n_components_:
            raise ValueError(f"Z has {Z.shape[1]} columns, but this PCA keeps "
                             f"{self.n_components_} components")
        if self.whiten:
            Z = Z * _apply(Z, self._divisor())
        return Z @ _apply(Z, self.components_) + _apply(Z, self.mean_)


# ---- the pipeline ----------------------------------------------------------------------

_SCALES = (None, "std", "range")


class Preprocessor(_Transformer):
    """The notes' preprocessing steps, chained in their order and fitted together on the
    training data: mean subtraction, then scaling, then PCA, then whitening.

    center : subtract the mean of every feature (default True).
    scale : None (default), "std" (:class:`Standardize`: divide by the standard
        deviation) or "range" (:class:`RangeScale`: each feature to [-1, 1]; with
        center=True the feature keeps mean 0, see RangeScale).  The scaler does the
        centering itself, so there is no separate Center step.
    n_components : keep this many principal components (an int), or enough for this
        fraction of the variance (a float in (0, 1]); None keeps the features as they
        are unless whiten is set.  PCA always centers the data it rotates.
    whiten : whiten in the eigenbasis (every component, unless n_components says
        fewer).
    eps : the whitening constant (see :class:`PCA`).

    Fitted attribute ``steps_``: the list of (name, fitted transformer), in order.
    Use :meth:`fit_transform_splits` to fit on the training split and transform the
    others in one call, the order the notes insist on.
    """

    if TYPE_CHECKING:               # set by fit
        steps_: list[tuple[str, Center | Standardize | RangeScale | PCA]]

    def __init__(self, center: bool = True, scale: str | None = None,
                 n_components: int | float | None = None, whiten: bool = False,
                 eps: float = 1e-5) -> None:
        self.center = center
        self.scale = scale
        self.n_components = n_components
        self.whiten = whiten
        self.eps = eps

    def _check_params(self):
        _check_bool(self.center, "center")
        _check_bool(self.whiten, "whiten")
        if self.scale not in _SCALES or isinstance(self.scale, (bool, np.bool_)):
            raise ValueError(f"scale must be one of {_SCALES}, got {self.scale!r}")
        _check_eps(self.eps)

    def _make_steps(self):
        steps = []
        if self.scale == "std":
            steps.append(("scale", Standardize(center=self.center)))
        elif self.scale == "range":
            steps.append(("scale", RangeScale(center=self.center)))
        elif self.center:
            steps.append(("center", Center()))
        if self.n_components is not None or self.whiten:
            steps.append(("pca", PCA(self.n_components, whiten=self.whiten, eps=self.eps)))
        return steps

    def _fit(self, X):
        steps = self._make_steps()
        for i, (_, step) in enumerate(steps):
            X = step.fit(X).transform(X) if i < len(steps) - 1 else step.fit(X)
        self.steps_ = steps

    def _transform(self, X):
        X = X.copy() if not self.steps_ else X   # a new array even with no step
        for _, step in self.steps_:
            X = step.transform(X)
        return X

    def inverse_transform(self, Z: ArrayLike) -> np.ndarray:
        """Undo the steps in reverse order (see :meth:`PCA.inverse_transform` for what
        is lost when PCA keeps fewer components than features)."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                 "fit on the training data before inverse_transform")
        Z = _as_data(Z, "Z")
        if not self.steps_:                  # nothing to undo, but the width is checked
            if Z.shape[1] != self.n_features_in_:
                raise ValueError(f"Z has {Z.shape[1]} columns, this Preprocessor was fitted "
                                 f"on {self.n_features_in_} features")
            return Z.copy()
        for _, step in reversed(self.steps_):
            Z = step.inverse_transform(Z)
        return Z

    def fit_transform_splits(self, X_train: ArrayLike,
                             *others: ArrayLike) -> tuple[np.ndarray, ...]:
        """Fit on X_train alone, then transform it and every other split (validation,
        test, ...) with the same statistics.  Returns a tuple: the transformed X_train,
        then the others in the order given."""
        self.fit(X_train)
        return (self.transform(X_train),) + tuple(
            self._transform(self._checked(X, f"others[{i}]")) for i, X in enumerate(others))


def make_preprocessor(center: bool = True, scale: str | None = None,
                      n_components: int | float | None = None, whiten: bool = False,
                      eps: float = 1e-5) -> Preprocessor:
    """A :class:`Preprocessor` (unfitted) with these steps; see it for the arguments.

    >>> pre = make_preprocessor(scale="std")                 # zero mean, unit variance
    >>> pre = make_preprocessor(n_components=0.99)           # PCA keeping 99% variance
    >>> pre = make_preprocessor(n_components=100, whiten=True)
    >>> Z_train, Z_test = pre.fit_transform_splits(X_train, X_test)    # doctest: +SKIP
    """
    return Preprocessor(center=center, scale=scale, n_components=n_components,
                        whiten=whiten, eps=eps)
