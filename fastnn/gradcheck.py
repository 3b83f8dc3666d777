"""Numerical gradients and gradient checks (the notes' h = 1e-5, centered differences).

Three finite-difference stencils, all run by the compiled loop (src_c/_numgrad.pyx, or
its NumPy twin when that backend is active):

==============  ===========================================  ==========  ==============
method          partial derivative along x[i]                 error       calls of f
==============  ===========================================  ==========  ==============
"centered"      [f(x+h) - f(x-h)] / 2h                        O(h**2)     2 per element
"forward"       [f(x+h) - f(x)] / h                           O(h)        1 per element
                                                                          (+1 for f(x))
"fourth_order"  [f(x-2h) - 8f(x-h) + 8f(x+h) - f(x+2h)] / 12h  O(h**4)     4 per element
==============  ===========================================  ==========  ==============

The fourth-order stencil is not a separate kernel: it equals (4 D(h) - D(2h)) / 3 where
D(s) is the centered difference with step s (Richardson extrapolation; expand the
numerator: 8[f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)] = 16h D(h) - 4h D(2h)), so it is two
passes of the centered loop.
"""
import numpy as np

from . import _kernels
from ._validation import check_scalar

#: The finite-difference stencils numerical_gradient accepts as ``method``.
METHODS = ("centered", "forward", "fourth_order")


def _check_method(method, centered):
    """The stencil name from method= and the older centered= flag (True: "centered",
    False: "forward"); a conflict between the two is a ValueError."""
    if not isinstance(method, str):
        raise TypeError(f"method must be one of {METHODS}, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if centered is None:
        return method
    if not isinstance(centered, (bool, np.bool_)):
        raise TypeError(f"centered must be True or False, got {type(centered).__name__}")
    implied = "centered" if centered else "forward"
    if method not in ("centered", implied):
        raise ValueError(f"centered={bool(centered)} contradicts method={method!r} "
                         "(centered= is the older spelling: pass method= alone)")
    return implied if method == "centered" else method


def _check_x(x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array (it is perturbed in place), "
                        f"got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (it is perturbed in place, so it is "
                         "not copied)")
    if not x.flags.writeable:
        raise ValueError("x must be writeable (it is perturbed in place)")


def numerical_gradient(f, x, h=1e-5, method="centered", *, centered=None):
    """The gradient of the scalar function f at x by finite differences.

    f(x) -> float; x: a writeable, C-contiguous float32/float64 array (f reads it, so it
    cannot be copied).  Each element of x is perturbed in place and restored, also when
    f raises.  Returns a new array like x.

    h : the step, a finite number > 0 (1e-5 as in the notes).
    method : "centered" (default, error O(h**2)), "forward" (O(h), the notes' first
        loop) or "fourth_order" (the 5-point stencil, O(h**4)); see the module
        docstring for the formulas and the number of calls of f.
    centered : the older spelling, still accepted: True is method="centered", False is
        method="forward".

    The divisor of each difference is the distance between the two evaluation points as
    stored in x's dtype (2h or h up to rounding), and a step that rounds away (x + h
    == x) is a ValueError.  In float32, h = 1e-5 is below the resolution of most
    weights: use float64 to check gradients.
    """
    _check_x(x)
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    h = check_scalar(h, "h", low=0.0, low_open=True)
    method = _check_method(method, centered)
    kernel = _kernels.backend().numerical_gradient
    if method != "fourth_order":
        return kernel(f, x, np.empty_like(x), h, method == "centered")
    # (4 D(h) - D(2h)) / 3, accumulated in float64 and rounded once into x's dtype
    near = kernel(f, x, np.empty_like(x), h, True).astype(np.float64)
    far = kernel(f, x, np.empty_like(x), 2.0 * h, True)
    return ((4.0 * near - far) / 3.0).astype(x.dtype, copy=False)


def numerical_gradient_array(f, x, df, h=1e-5, method="centered"):
    """The gradient of sum(df * f(x)) with respect to x, by finite differences.

    For an array-valued f (a layer's forward pass, say) and df the upstream gradient
    (dLoss/df(x), f(x)'s shape), this is what backpropagation returns for x:
    sum_j df[j] * d f(x)[j] / d x[i].  It is :func:`numerical_gradient` of the scalar
    function x -> sum(df * f(x)) (summed in float64), with the same x, h and method
    rules; f(x) must have df's shape.

    Each difference is taken between two such sums, so besides the stencil's
    truncation error it carries a rounding error of about 1e-16 * |sum(df * f(x))| / h.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(df, np.ndarray):
        df = np.asarray(df)
    if df.dtype.kind not in "fiu":
        raise TypeError(f"df must hold real numbers, got dtype {df.dtype}")
    df = df.astype(np.float64)
    if not np.all(np.isfinite(df)):
        raise ValueError("df contains NaN or infinity")

    def weighted_sum(arr):
        out = np.asarray(f(arr))
        if out.shape != df.shape:
            raise ValueError(f"f(x) has shape {out.shape} but df has shape {df.shape}: "
                             "df is the upstream gradient of f(x), one entry per output")
        return float(np.sum(df * out, dtype=np.float64))

    return numerical_gradient(weighted_sum, x, h, method)


def rel_error(a, b, eps=1e-8):
    """The largest element-wise relative error |a - b| / max(|a|, |b|).

    This is the relative error a gradient check compares (the course's gradient-check
    definition): 0 for equal arrays, 1 when one of the two is 0 and the other is not, up
    to 2 for opposite signs.  The denominator is floored at eps, so elements where both
    gradients are ~0 (dead ReLUs, say) give |a - b| / eps instead of dividing rounding
    noise by zero.  Before this module used |a| + |b| as the denominator, which reads
    up to 2x smaller for the same pair.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in shape: {a.shape} vs {b.shape}")
    eps = check_scalar(eps, "eps", low=0.0, low_open=True)
    if a.size == 0:
        return 0.0
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), eps)
    return float(np.max(np.abs(a - b) / scale))


def gradient_check(f, x, analytic_grad, *, h=1e-5, method="centered", centered=None):
    """Relative error (:func:`rel_error`) between an analytic gradient and the numerical
    one of f at x (:func:`numerical_gradient` with h and method)."""
    return rel_error(analytic_grad,
                     numerical_gradient(f, x, h, method, centered=centered))
