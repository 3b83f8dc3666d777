"""Weight initialization.

Every initializer is ``f(fan_in, fan_out, rng=None, dtype=float64, **options)`` and
returns a new C-contiguous ``(fan_in, fan_out)`` array of ``dtype`` (float32 or
float64): column j holds the incoming weights of output unit j.  ``rng`` is None, an
int seed, or a numpy ``Generator``/``RandomState`` (drawn from, so that several layers
can share one stream); the same seed gives the same array.  Values are drawn in float64
and rounded once to ``dtype``, so a float32 layer starts at the float64 layer's weights
rounded.

Options are keyword-only, so ``functools.partial(sparse, k=4)`` (or
``get("sparse", k=4)``) is itself an initializer.  :data:`INITIALIZERS` maps names to
the initializers; :func:`get` resolves a name, :func:`weights` draws and checks.

========================  ==========================================================
name                      weights
========================  ==========================================================
``small_random``          ``0.01 * randn`` (the notes' first recipe)
``calibrated``            ``randn / sqrt(fan_in)``: Var(w) = 1/fan_in, which keeps a
                          unit's output variance at its inputs' variance
``calibrated_uniform``    uniform with the same variance, 1/fan_in
``glorot_normal``         Var(w) = 2/(fan_in + fan_out) (Glorot & Bengio), normal
``glorot_uniform``        the same variance, uniform on [-a, a], a = sqrt(6/(fan_in+fan_out))
``he_normal``             ``randn * sqrt(2/fan_in)`` (He et al.): **the default to use
                          for ReLU nets**, the notes' recommendation in practice
``he_uniform``            the same variance, 2/fan_in, uniform
``sparse``                each output unit connected to ``k`` (10) random inputs with
                          ``0.01 * randn`` weights; every other weight exactly 0
========================  ==========================================================

``xavier_normal`` / ``xavier_uniform`` are aliases of the Glorot pair.  A uniform
distribution on [-a, a] has variance a**2 / 3, so each uniform variant uses
``a = sqrt(3 * variance)`` of its normal twin.  Biases: :func:`bias`.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ._validation import check_positive_int, check_random_state, check_scalar, float_dtype


def _setup(fan_in: int, fan_out: int, rng: Any, dtype: DTypeLike
           ) -> tuple[int, int, np.random.Generator | np.random.RandomState, np.dtype[Any]]:
    """The checked arguments every initializer starts from."""
    return (check_positive_int(fan_in, "fan_in"), check_positive_int(fan_out, "fan_out"),
            check_random_state(rng, "rng"), float_dtype(dtype))


def _finish(w, dtype):
    return np.ascontiguousarray(w, dtype=dtype)


def _normal(fan_in, fan_out, rng, dtype, std):
    fan_in, fan_out, rng, dtype = _setup(fan_in, fan_out, rng, dtype)
    w = rng.standard_normal((fan_in, fan_out))
    w *= std(fan_in, fan_out)
    return _finish(w, dtype)


def _uniform(fan_in, fan_out, rng, dtype, std):
    """Uniform on [-a, a] with a = sqrt(3) * std: variance a**2/3 = std**2."""
    fan_in, fan_out, rng, dtype = _setup(fan_in, fan_out, rng, dtype)
    a = math.sqrt(3.0) * std(fan_in, fan_out)
    return _finish(rng.uniform(-a, a, size=(fan_in, fan_out)), dtype)


def _gain(gain):
    return check_scalar(gain, "gain", low=0.0, low_open=True)


def small_random(fan_in: int, fan_out: int,
                 rng: int | np.random.Generator | np.random.RandomState | None = None,
                 dtype: DTypeLike = np.float64, *, scale: float = 0.01) -> np.ndarray:
    """The notes' first recipe: ``scale * randn(fan_in, fan_out)`` (scale 0.01).

    Draws exactly ``rng.standard_normal((fan_in, fan_out))``, so with the legacy
    ``RandomState`` it reproduces the notes' ``0.01 * np.random.randn(D, H)``."""
    scale = check_scalar(scale, "scale", low=0.0, low_open=True)
    return _normal(fan_in, fan_out, rng, dtype, lambda fi, fo: scale)


def calibrated(fan_in: int, fan_out: int,
               rng: int | np.random.Generator | np.random.RandomState | None = None,
               dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """``gain * randn / sqrt(fan_in)``: Var(w) = gain**2 / fan_in.

    With zero-mean, unit-variance inputs, each unit's pre-activation then has variance
    gain**2 whatever its fan-in (the notes' 1/sqrt(n) calibration)."""
    gain = _gain(gain)
    return _normal(fan_in, fan_out, rng, dtype, lambda fi, fo: gain / math.sqrt(fi))


def calibrated_uniform(fan_in: int, fan_out: int,
                       rng: int | np.random.Generator | np.random.RandomState | None = None,
                       dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """Uniform with the variance of :func:`calibrated`: gain**2 / fan_in."""
    gain = _gain(gain)
    return _uniform(fan_in, fan_out, rng, dtype, lambda fi, fo: gain / math.sqrt(fi))


def glorot_normal(fan_in: int, fan_out: int,
                  rng: int | np.random.Generator | np.random.RandomState | None = None,
                  dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """Glorot/Xavier normal: Var(w) = gain**2 * 2 / (fan_in + fan_out), a compromise
    between keeping forward activations (fan_in) and backward gradients (fan_out)
    at constant variance."""
    gain = _gain(gain)
    return _normal(fan_in, fan_out, rng, dtype,
                   lambda fi, fo: gain * math.sqrt(2.0 / (fi + fo)))


def glorot_uniform(fan_in: int, fan_out: int,
                   rng: int | np.random.Generator | np.random.RandomState | None = None,
                   dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """Glorot/Xavier uniform on [-a, a], a = gain * sqrt(6 / (fan_in + fan_out)):
    the variance of :func:`glorot_normal`."""
    gain = _gain(gain)
    return _uniform(fan_in, fan_out, rng, dtype,
                    lambda fi, fo: gain * math.sqrt(2.0 / (fi + fo)))


def he_normal(fan_in: int, fan_out: int,
              rng: int | np.random.Generator | np.random.RandomState | None = None,
              dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """He et al.: ``randn * sqrt(2 / fan_in)``, Var(w) = 2/fan_in (times gain**2).

    The default to use for nets of ReLU units: a ReLU zeroes half its inputs'
    variance, and the factor 2 gives it back (the notes' recommendation in practice)."""
    gain = _gain(gain)
    return _normal(fan_in, fan_out, rng, dtype, lambda fi, fo: gain * math.sqrt(2.0 / fi))


def he_uniform(fan_in: int, fan_out: int,
               rng: int | np.random.Generator | np.random.RandomState | None = None,
               dtype: DTypeLike = np.float64, *, gain: float = 1.0) -> np.ndarray:
    """Uniform with the variance of :func:`he_normal`: a = gain * sqrt(6 / fan_in)."""
    gain = _gain(gain)
    return _uniform(fan_in, fan_out, rng, dtype, lambda fi, fo: gain * math.sqrt(2.0 / fi))


def sparse(fan_in: int, fan_out: int,
           rng: int | np.random.Generator | np.random.RandomState | None = None,
           dtype: DTypeLike = np.float64, *, k: int = 10, scale: float = 0.01) -> np.ndarray:
    """Sparse initialization: every output unit (column) is connected to ``k`` distinct
    inputs chosen uniformly at random, with weights ``scale * randn``; every other
    weight is exactly 0.  Each column has exactly k non-zeros (with probability 1:
    a Gaussian draw is 0 with probability 0).

    k must be in [1, fan_in]: for a layer with fewer than 10 inputs pass a smaller k,
    e.g. ``functools.partial(sparse, k=2)``."""
    fan_in, fan_out, rng, dtype = _setup(fan_in, fan_out, rng, dtype)
    k = check_positive_int(k, "k")
    if k > fan_in:
        raise ValueError(f"k (inputs per unit) must be <= fan_in = {fan_in}, got {k}")
    scale = check_scalar(scale, "scale", low=0.0, low_open=True)
    # The k smallest of fan_in i.i.d. uniform keys are a uniformly random k-subset;
    # argpartition finds them per column in linear time.
    rows = np.argpartition(rng.random((fan_in, fan_out)), k - 1, axis=0)[:k]
    w = np.zeros((fan_in, fan_out))
    w[rows, np.arange(fan_out)] = scale * rng.standard_normal((k, fan_out))
    return _finish(w, dtype)


def bias(n: int, value: float = 0.0, dtype: DTypeLike = np.float64) -> np.ndarray:
    """A bias vector of ``n`` copies of ``value``: 0 (the common choice) or a small
    constant such as 0.01, which makes every ReLU unit fire at the start.  Returns a
    new (n,) array of dtype."""
    n = check_positive_int(n, "n")
    value = check_scalar(value, "value")
    return np.full(n, value, dtype=float_dtype(dtype))


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {
    "small_random": small_random,
    "calibrated": calibrated,
    "calibrated_uniform": calibrated_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "sparse": sparse,
}


def get(init: str | Callable[..., np.ndarray], **options: Any) -> Callable[..., np.ndarray]:
    """An initializer from its name or a callable with the initializer signature.

    Keyword options configure it: ``get("sparse", k=4)`` is
    ``functools.partial(sparse, k=4)``.  Unknown names raise ValueError listing the
    choices; anything else but a callable raises TypeError."""
    if callable(init):
        f = init
    elif not isinstance(init, str):
        raise TypeError(f"init must be an initializer name or a callable f(fan_in, "
                        f"fan_out, rng, dtype), got {type(init).__name__}")
    elif init in INITIALIZERS:
        f = INITIALIZERS[init]
    else:
        raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALIZERS)} "
                         "or pass a callable f(fan_in, fan_out, rng, dtype)")
    return functools.partial(f, **options) if options else f


def weights(init: str | Callable[..., np.ndarray], fan_in: int, fan_out: int,
            seed: int | np.random.Generator | np.random.RandomState | None = None,
            dtype: DTypeLike = np.float64) -> np.ndarray:
    """Draw a (fan_in, fan_out) weight matrix with the named or given initializer."""
    fan_in = check_positive_int(fan_in, "fan_in")
    fan_out = check_positive_int(fan_out, "fan_out")
    dtype = float_dtype(dtype)
    w = get(init)(fan_in, fan_out, check_random_state(seed), dtype)
    if not isinstance(w, np.ndarray) or w.shape != (fan_in, fan_out):
        raise ValueError(f"init returned {getattr(w, 'shape', type(w))}, "
                         f"expected shape {(fan_in, fan_out)}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not np.all(np.isfinite(w)):        # (a user's initializer, or float32 overflow)
        raise ValueError("init returned weights with NaN or infinity")
    return w
