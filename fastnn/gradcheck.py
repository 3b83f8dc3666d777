"""Numerical gradients and gradient checks (the notes' h = 1e-5, centered differences)."""
import numpy as np

from . import _kernels
from ._validation import check_scalar


def numerical_gradient(f, x, *, h=1e-5, centered=True):
    """The gradient of the scalar function f at x by finite differences.

    f(x) -> float is called 2 * x.size times (x.size + 1 for forward differences);
    each element of x is perturbed in place by +-h and restored, also if f raises.
    x must be a writeable, C-contiguous float32/float64 array (f reads it, so it
    cannot be copied).  Returns a new array like x.

    Centered differences have error O(h**2), forward differences O(h).  In float32,
    h = 1e-5 is below the resolution of most weights: use float64 to check gradients.
    """
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
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    h = check_scalar(h, "h", low=0.0, low_open=True)
    grad = np.empty_like(x)
    return _kernels.backend().numerical_gradient(f, x, grad, h, bool(centered))


def rel_error(a, b, eps=1e-8):
    """The largest element-wise relative error |a - b| / max(|a| + |b|, eps).

    0 for equal arrays, about 1 for unrelated ones.  The floor eps keeps elements where
    both gradients are ~0 (dead ReLUs, say) from dividing rounding noise by zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in shape: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), eps)))


def gradient_check(f, x, analytic_grad, *, h=1e-5, centered=True):
    """Relative error between an analytic gradient and the numerical one at x."""
    return rel_error(analytic_grad, numerical_gradient(f, x, h=h, centered=centered))
