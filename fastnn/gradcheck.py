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
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, SupportsFloat

import numpy as np
from numpy.typing import ArrayLike

from . import _kernels
from ._validation import check_scalar

if TYPE_CHECKING:
    from .net import Sequential

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


def numerical_gradient(f: Callable[[np.ndarray], SupportsFloat], x: np.ndarray,
                       h: float = 1e-5, method: str = "centered", *,
                       centered: bool | None = None) -> np.ndarray:
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


def numerical_gradient_array(f: Callable[[np.ndarray], ArrayLike], x: np.ndarray,
                             df: ArrayLike, h: float = 1e-5,
                             method: str = "centered") -> np.ndarray:
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


def rel_error(a: ArrayLike, b: ArrayLike, eps: float = 1e-8) -> float:
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


def gradient_check(f: Callable[[np.ndarray], SupportsFloat], x: np.ndarray,
                   analytic_grad: ArrayLike, *, h: float = 1e-5, method: str = "centered",
                   centered: bool | None = None) -> float:
    """Relative error (:func:`rel_error`) between an analytic gradient and the numerical
    one of f at x (:func:`numerical_gradient` with h and method)."""
    return rel_error(analytic_grad,
                     numerical_gradient(f, x, h, method, centered=centered))


# ---- whole nets: the compiled numerical gradient and the gradient check -----------------
#: The notes' thresholds on the relative error of a gradient check.
GOOD, WRONG = 1e-7, 1e-2


def _net_numerical(ev, params, h, method, indices, n_threads, kinks=False):
    """The compiled finite differences of an evaluator's loss (fastnn.evaluate) at
    params: (values in the net's dtype, kink flags as bool or None)."""
    h = check_scalar(h, "h", low=0.0, low_open=True)
    if not np.isfinite(h):
        raise ValueError(f"h must be finite, got {h}")
    method = _check_method(method, None)
    params = ev.check_params(ev.model.flat_params if params is None else params,
                             "params", ndim=1)
    if indices is None:
        indices = np.arange(ev.n_params, dtype=np.int64)
    else:
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise TypeError(f"indices must be a 1-D integer array, got {indices.dtype} "
                            f"with shape {indices.shape}")
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= ev.n_params):
            raise ValueError(f"indices must lie in [0, {ev.n_params})")

    def steps(s):
        old = params[indices].astype(np.float64)
        xp = (old + s).astype(params.dtype)
        xm = (old - s).astype(params.dtype) if method != "forward" else params[indices]
        same = np.flatnonzero(xp == xm)
        if same.size:
            i = int(indices[same[0]])
            raise ValueError(f"h = {h} is below the resolution of params[{i}] = "
                             f"{params[i]} in {params.dtype}: x + h rounds to x; use a "
                             "larger h or float64")

    flags = np.zeros(indices.size, dtype=np.uint8) if kinks else None
    steps(h)
    if method != "fourth_order":
        g = ev._numerical(params, indices, h, method == "centered", flags, n_threads)
    else:
        # (4 D(h) - D(2h)) / 3 as numerical_gradient forms it
        steps(2.0 * h)
        near = ev._numerical(params, indices, h, True, flags, n_threads).astype(np.float64)
        far = ev._numerical(params, indices, 2.0 * h, True, flags, n_threads)
        g = ((4.0 * near - far) / 3.0).astype(params.dtype, copy=False)
    return g, (flags.astype(bool) if kinks else None)


def net_numerical_gradient(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                           regularizer: Any = None, h: float = 1e-5, method: str = "centered",
                           params: np.ndarray | None = None, indices: ArrayLike | None = None,
                           n_threads: int | None = None) -> np.ndarray:
    """The numerical gradient of the total loss of a whole net (fastnn.evaluate's loss:
    data loss + penalties; batch norm on batch statistics, dropout off) with respect to
    every element of its flat parameters, in compiled code, parallel over elements.

    model, loss, X, y, regularizer : as for fastnn.evaluate.build_evaluator.
    h : the step, finite and > 0.  method : "centered", "forward" or "fourth_order", the
        stencils of :func:`numerical_gradient`, which it reproduces: each entry equals
        what that function returns for f = "set the flat parameters, run the forward
        pass, the loss and the penalties", the same bits (each thread perturbs its own
        copy, and re-runs the net only from the layer owning the element: the layers
        before it give the same bits as a full re-run).
    params : (n_params,) array of the net's dtype (default: model.flat_params).
    indices : None (every element) or a 1-D integer array of the elements to difference.
    n_threads : threads (default: fastnn's setting); the result does not depend on it.

    Returns an array of the net's dtype: (n_params,), or one entry per index."""
    from .evaluate import build_evaluator
    ev = build_evaluator(model, loss, X, y, regularizer=regularizer)
    return _net_numerical(ev, params, h, method, indices, n_threads)[0]


def analytic_gradient(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                      regularizer: Any = None,
                      params: ArrayLike | None = None) -> tuple[float, np.ndarray]:
    """The backpropagated gradient of the same total loss (the per-layer path's forward,
    loss, backward and penalties of one step, without the update; batch norm on batch
    statistics, dropout off): (loss value, (n_params,) array of the net's dtype).  The
    net (parameters, gradients, modes, running statistics) is left as it was."""
    from .evaluate import _Borrowed, _check_net
    from .plan import check_data, regularized
    net = _check_net(model)
    X, y = check_data(net, loss, X, y)
    penalized, _ = regularized(net, _reg_get(regularizer))
    with _Borrowed(net):
        if params is not None:
            net.flat_params[...] = params
        scores = net._forward(X)
        value = loss._forward(scores, y)
        net._backward(loss.backward())
        for r, W, dW in penalized:
            value += r.penalty_and_grad(W, dW)
        grad = net.flat_grads.copy()
    return float(value), grad


def _reg_get(regularizer):
    from . import regularization
    return regularization.get(regularizer, "regularizer")


def _verdict(err):
    if err < GOOD:
        return "good"
    if err > WRONG:
        return "wrong"
    return "check"


#: What to make of an error between the thresholds (the gradient-check advice).
GUIDANCE = ("between 1e-7 and 1e-2: above 1e-4 the gradient is probably wrong; 1e-4 to "
            "1e-7 is acceptable for objectives with kinks (ReLU, max, hinge) and too "
            "high for smooth ones; deeper nets accumulate larger errors, 1e-2 can be "
            "fine at the input of a 10-layer net")


@dataclass
class ParamCheck:
    """The check of one parameter array.

    layer, layer_name, param : where it lives (index in model.layers, class name, the
        name in layer.params).  size, shape : its elements.
    max_rel_error : the largest rel_error over its elements; worst : that element's
        index (in the array's shape), with the analytic and numerical values there.
    n_kinks : elements whose difference straddles a kink (see check_gradients).
    n_rounding : elements (not at kinks) whose |analytic - numerical| is within the
        rounding bound of the difference (see check_gradients).
    max_rel_error_off_kinks : the largest error over the other elements: the verdict's.
    verdict : "good" (< 1e-7), "check" (between; see GUIDANCE) or "wrong" (> 1e-2);
        "unchecked" when no element could be resolved (see check_gradients)."""
    layer: int
    layer_name: str
    param: str
    shape: tuple
    size: int
    max_rel_error: float
    worst: tuple
    analytic: float
    numerical: float
    n_kinks: int
    n_rounding: int
    max_rel_error_off_kinks: float
    verdict: str


@dataclass
class GradientReport:
    """check_gradients' result: one ParamCheck per parameter array, the settings, and
    the overall verdict (the worst of them).  str() is a readable table; to_dict() the
    same as plain data."""
    checks: list
    h: float
    method: str
    loss: float
    rounding: float
    verdict: str = field(init=False)

    def __post_init__(self):
        # a parameter nothing could be checked in keeps the whole report from "good"
        order = {"good": 0, "unchecked": 1, "check": 2, "wrong": 3}
        self.verdict = max((c.verdict for c in self.checks), key=order.get, default="good")

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"h": self.h, "method": self.method, "loss": self.loss,
                "rounding": self.rounding, "verdict": self.verdict,
                "checks": [asdict(c) for c in self.checks]}

    def __str__(self):
        lines = [f"gradient check ({self.method} differences, h = {self.h:g}, "
                 f"loss {self.loss:.6g}, rounding bound {self.rounding:.1e}): {self.verdict}",
                 f"{'layer':<18}{'param':<7}{'size':>8}{'max rel err':>13}"
                 f"{'verdict err':>12}{'kinks':>7}{'round':>7}  {'worst at':<14}verdict"]
        for c in self.checks:
            where = f"{c.layer}:{c.layer_name}"
            lines.append(f"{where:<18}{c.param:<7}{c.size:>8}{c.max_rel_error:>13.2e}"
                         f"{c.max_rel_error_off_kinks:>12.2e}{c.n_kinks:>7}{c.n_rounding:>7}  "
                         f"{str(c.worst):<14}{c.verdict}")
        if self.verdict == "check":
            lines.append("check: " + GUIDANCE)
        if any(c.verdict == "unchecked" for c in self.checks):
            lines.append("unchecked: every element of the array is at a kink or within a "
                         "rounding bound too large to resolve it, so nothing in it was "
                         "checked (check in float64, on data that puts no unit at a kink, "
                         "or after some training; a bias feeding a batch norm has gradient "
                         "0: nothing to check)")
        rounded = sum(c.n_rounding for c in self.checks)
        if rounded:
            lines.append(f"round: {rounded} elements differ by less than the rounding bound; "
                         "their relative errors are rounding noise (they count as agreeing "
                         "where the bound is below 1e-2 of their array's largest gradient, "
                         "else as unresolved)")
        return "\n".join(lines)


def _rounding_bound(ev, value, h, method):
    """How far rounding alone can move a difference quotient of the loss: each loss is
    off by up to N eps |L|, and the stencils divide the sum of two such errors by 2h
    (centered), h (forward), and (4 D(h) + D(2h)) / 3 -> 1.5x centered's."""
    factor = {"centered": 1.0, "forward": 2.0, "fourth_order": 1.5}[method]
    return factor * ev.n_rows * np.finfo(ev.dtype).eps * abs(value) / h


def check_gradients(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                    reg: float | None = None, regularizer: Any = None, h: float = 1e-5,
                    method: str = "centered", n_threads: int | None = None,
                    eps: float = 1e-8) -> GradientReport:
    """Check a net's backpropagated gradient against the compiled numerical gradient of
    every parameter, and report per parameter array (a :class:`GradientReport`).

    model, loss, X, y : the net, its loss and data (as for build_evaluator).
    reg : an L2 strength (the notes' name), or regularizer : any regularizer spec; not
        both.  h, method : the finite differences (:func:`net_numerical_gradient`).
    eps : the floor of rel_error's denominator.

    The loss is fastnn.evaluate's (batch norm on batch statistics, dropout switched
    off, as the notes advise for gradient checks); the analytic gradient is one step's
    of the per-layer path without its update (:func:`analytic_gradient`).

    Kinks: element i counts as *at a kink* when one of the points its difference
    evaluates (params +- h e_i, or params + h e_i for "forward"; also +- 2h for
    "fourth_order") puts any kink on the other side than params does: a ReLU / leaky
    ReLU output's sign (its input's), a PReLU input's sign, a maxout unit's winning
    piece, the sign of an SVM / squared-hinge / attribute-hinge loss's gradient entry
    (its margin active or not) or an L1 regression residual's, or (L1 / elastic net)
    the sign of the perturbed weight itself.  Such a difference straddles a point where
    the loss is not differentiable, so its error says nothing about backprop; the
    verdict uses the largest error over the other elements (``max_rel_error`` includes
    them).

    Rounding: the loss is a mean of N row losses, each rounded, so each evaluation
    carries an absolute rounding error up to about N eps |L| (eps: the dtype's machine
    epsilon), and a centered difference quotient up to ``rounding = N eps |L| / h``
    (2x for "forward", 1.5x for "fourth_order"; the report's ``rounding``).  Where
    |analytic - numerical| is within that bound the finite difference cannot tell the
    two apart -- typically gradients that are ~0, like a bias feeding a batch norm,
    whose relative error is rounding noise over eps -- and the element counts as
    agreeing (error 0 in the verdict, ``n_rounding``), as long as the bound is at most
    1e-2 of the array's largest gradient element (it could not hide a "wrong" error
    there).  A looser bound leaves such elements unresolved: they count toward nothing.
    That is the case in float32 (whose bound often exceeds the gradient), for a
    vanishing gradient, and for an array whose gradient is zero (a bias feeding a batch
    norm: nothing to check).

    method "forward" adds an O(h) truncation error that the bound does not cover: on a
    curved loss expect "check" where "centered" says "good".

    Verdicts (the notes' thresholds on the relative error): < 1e-7 "good", > 1e-2
    "wrong", between "check" (see GUIDANCE); "unchecked" for an array none of whose
    elements the check resolves (all at kinks or unresolved: nothing in it was checked).  The
    report's verdict is the worst: "wrong", "check", "unchecked", then "good".  Check in
    float64: float32 cannot resolve h = 1e-5 (its rounding bound leaves most elements
    unchecked)."""
    eps = check_scalar(eps, "eps", low=0.0, low_open=True)
    if reg is not None and regularizer is not None:
        raise ValueError("pass reg (an L2 strength) or regularizer, not both")
    regularizer = reg if reg is not None else regularizer
    from .evaluate import build_evaluator
    from .plan import _offset
    ev = build_evaluator(model, loss, X, y, regularizer=regularizer)
    numerical, kinks = _net_numerical(ev, None, h, method, None, n_threads, kinks=True)
    value, analytic = analytic_gradient(model, loss, X, y, regularizer=regularizer)
    a = analytic.astype(np.float64)
    b = numerical.astype(np.float64)
    err = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), eps)
    rounding = _rounding_bound(ev, value, h, method)
    within = np.abs(a - b) <= rounding
    flat = model.flat_params
    checks = []
    for i, layer in enumerate(model.layers):
        for name, p in layer.params.items():
            if p.size == 0:
                continue
            s = slice(_offset(flat, p), _offset(flat, p) + p.size)
            e, k, r = err[s], kinks[s], within[s] & ~kinks[s]
            j = int(np.argmax(e))
            # agreement within the bound means something only where the bound could not
            # hide a "wrong" error (1e-2) of the array's largest gradient element; a
            # looser one (float32, a vanishing gradient, a bias feeding a batch norm)
            # leaves those elements unresolved
            tight = rounding <= WRONG * float(max(np.max(np.abs(a[s])), np.max(np.abs(b[s]))))
            counted = ~k if tight else ~k & ~r        # elements the check resolves
            off = np.where(r, 0.0, e)[counted]
            worst_off = float(off.max()) if off.size else 0.0
            resolved = off.size
            checks.append(ParamCheck(
                layer=i, layer_name=type(layer).__name__, param=name, shape=p.shape,
                size=p.size, max_rel_error=float(e[j]),
                worst=tuple(int(v) for v in np.unravel_index(j, p.shape)),
                analytic=float(a[s][j]), numerical=float(b[s][j]), n_kinks=int(k.sum()),
                n_rounding=int(r.sum()), max_rel_error_off_kinks=worst_off,
                verdict=_verdict(worst_off) if resolved else "unchecked"))
    return GradientReport(checks, float(h), method, value, float(rounding))


@dataclass
class DirectionalCheck:
    """check_directions' result: for each random unit direction u, the finite
    difference (L(p + h u) - L(p - h u)) / 2h, the analytic grad . u, their rel_error,
    and the verdict (see check_directions: the largest error the check resolves)."""
    numerical: np.ndarray
    analytic: np.ndarray
    rel_errors: np.ndarray
    h: float
    verdict: str

    def __str__(self):
        return (f"directional check ({self.rel_errors.size} random directions, h = "
                f"{self.h:g}): max rel error {self.rel_errors.max():.2e}, {self.verdict}")


def check_directions(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                     reg: float | None = None, regularizer: Any = None, h: float = 1e-5,
                     n_directions: int = 4,
                     seed: int | np.random.Generator | np.random.RandomState | None = None,
                     n_threads: int | None = None, eps: float = 1e-8) -> DirectionalCheck:
    """The fast, weaker check: the derivative along random directions.

    For n_directions unit vectors u (normal draws, normalized in float64, then stored in
    the net's dtype), compares the centered difference (L(p + h u) - L(p - h u)) / 2h
    (2 n_directions loss evaluations, in parallel) with grad . u from backprop.  It costs
    2 n_directions evaluations instead of 2 n_params, but it is weaker than
    check_gradients: it checks a projection of the gradient, so an error in a few
    elements (a small layer, a bias) can be diluted below the threshold, and it cannot
    say where an error is, nor which elements sit at kinks.  Directions whose two values
    differ by less than check_gradients' rounding bound count as agreeing where that
    bound could not hide a wrong derivative, else as unresolved; with none resolved
    (float32, typically) the verdict is "unchecked".  Returns a
    :class:`DirectionalCheck`."""
    if reg is not None and regularizer is not None:
        raise ValueError("pass reg (an L2 strength) or regularizer, not both")
    regularizer = reg if reg is not None else regularizer
    eps = check_scalar(eps, "eps", low=0.0, low_open=True)
    h = check_scalar(h, "h", low=0.0, low_open=True)
    if not np.isfinite(h):
        raise ValueError(f"h must be finite, got {h}")
    from ._validation import check_positive_int, check_random_state
    from .evaluate import build_evaluator
    n_directions = check_positive_int(n_directions, "n_directions")
    rng = check_random_state(seed)
    ev = build_evaluator(model, loss, X, y, regularizer=regularizer)
    p = model.flat_params.astype(np.float64)
    u = rng.standard_normal((n_directions, ev.n_params))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u = u.astype(ev.dtype).astype(np.float64)
    points = np.concatenate([p + h * u, p - h * u]).astype(ev.dtype)
    values = ev.losses(points, n_threads=n_threads)
    steps = (points[:n_directions].astype(np.float64)
             - points[n_directions:].astype(np.float64))
    # the divisor: the actual distance along u between the stored points
    dist = np.einsum("ij,ij->i", steps, u)
    numerical = (values[:n_directions] - values[n_directions:]) / dist
    value, grad = analytic_gradient(model, loss, X, y, regularizer=regularizer)
    analytic = u @ grad.astype(np.float64)
    scale = np.maximum(np.maximum(np.abs(numerical), np.abs(analytic)), eps)
    errors = np.abs(numerical - analytic) / scale
    # within the bound a direction agrees if the bound could not hide a "wrong" error
    # there, else it is unresolved (float32)
    rounding = _rounding_bound(ev, value, h, "centered")
    within = np.abs(numerical - analytic) <= rounding
    tight = rounding <= WRONG * np.abs(analytic)         # per direction
    counted = np.where(within, 0.0, errors)[~within | tight]
    verdict = _verdict(float(counted.max())) if counted.size else "unchecked"
    return DirectionalCheck(numerical, analytic, errors, float(h), verdict)
