"""Optimization by search, the notes' first strategies, and the step-size sweep.

* :func:`random_search` -- strategy #1: draw ``tries`` independent random weight arrays
  ``scale * N(0, 1)`` and keep the one with the lowest loss.
* :func:`random_local_search` -- strategy #2: from ``w0``, propose
  ``w + step * N(0, 1)`` and move there only when the loss goes down.
* :func:`step_size_sweep` -- strategy #3's question of how far to step: the loss at
  ``w - s * grad`` for a range of step sizes ``s`` (by default the notes' 1e-10 ... 1e-1).
* :func:`compare_strategies` -- the three and gradient descent on the spiral's linear
  softmax classifier with the same budget of loss evaluations (see
  :func:`fastnn.plot.search_curves` and ``fastnn search``).

The loss
--------
``loss_fn`` is either

* a callable ``W -> float`` (W has the shape searched over), or
* a *batched loss*: any object with a method ``losses(batch)`` taking an (m, size) array
  -- m weight arrays, each flattened in C order, in the search's dtype -- and returning
  the m losses as an (m,) array.  The tries are then evaluated ``chunk`` at a time (64
  by default), one call per chunk, so an evaluator that runs the m losses in parallel
  (such as a compiled one for a fastnn net) is used as such.  If the object is also
  callable, ``losses`` is used.

The result never depends on how the tries are grouped: the random numbers are drawn
try by try, in order, from the seeded generator, and random local search evaluates a
chunk of proposals all from the current weights, keeps the tries up to the first one
accepted and proposes the rest again from the new weights (the same random draws), so
a batched loss gives the bits a one-at-a-time callable gives.

:func:`model_loss` turns a fastnn net, a loss and data into such a loss (a callable
with ``losses`` and ``gradient`` methods) over the net's flat parameter vector.

What a loss may return
----------------------
A real scalar (a Python or NumPy number, or a 0-d array).  Anything else (an array of
another shape, None, a string, a complex number, a bool) is a TypeError naming
``loss_fn``; NaN is a ValueError naming ``loss_fn`` and the try, since NaN cannot be
ranked (it means the loss is broken there, not that it is high).  Infinity is a valid
loss: +inf is worse than every finite loss and never accepted by local search.

``loss_fn`` gets its own copy of the weights (writeable, C-contiguous, in the search's
dtype): whatever it does with them, the search keeps what it evaluated.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, SupportsFloat, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _kernels
from ._validation import check_array, check_positive_int, check_random_state, check_scalar

if TYPE_CHECKING:
    from .evaluate import Evaluator
    from .net import Sequential

    class _BatchedLoss(Protocol):
        """A batched loss (see the module docstring): the (m,) losses of an (m, size)
        batch of flattened weight arrays."""

        def losses(self, batch: np.ndarray, /) -> ArrayLike: ...

    #: What the searches take as ``loss_fn``: a callable W -> float or a batched loss.
    _LossFn = Union[Callable[[np.ndarray], SupportsFloat], _BatchedLoss]
    #: What check_random_state takes as a seed.
    _Seed = Union[int, np.random.Generator, np.random.RandomState, None]

#: The step sizes of the notes' sweep: 1e-10, 1e-9, ..., 1e-1.
NOTES_STEP_SIZES = 10.0 ** np.arange(-10, 0)
#: Tries per call of a batched loss, unless told otherwise.
CHUNK = 64


# ---- results -----------------------------------------------------------------------------

@dataclass
class SearchResult:
    """What a search (or the gradient-descent run of :func:`compare_strategies`) found.

    Attributes
    ----------
    method : str
        "random search", "random local search" or "gradient descent".
    best_weights : ndarray, the searched shape, the search's dtype
        The weights of ``best_loss`` (a copy the search owns).
    best_loss : float
        Random search: the lowest loss of all tries.  Local search: the loss of the
        weights it ended at (the last accepted, or w0's).  Gradient descent: the loss
        of its last iterate.
    losses : ndarray (tries,), float64
        The loss of each try's weights, in order (gradient descent: after each step;
        its tries are its ``budget - 1`` steps).
    best_so_far : ndarray (tries,), float64
        After each try: the lowest loss so far (random search), the loss of the current
        accepted weights (local search; ``start_loss`` until a move is accepted), or
        the lowest loss so far (gradient descent).  Never increases.
    accepted : ndarray (tries,), bool
        Where the try became the new best (random search) or the move was taken (local
        search); gradient descent takes every step.
    start_loss : float
        The loss at the starting weights (local search, gradient descent); NaN for
        random search, which has none.
    evaluations : int
        Loss evaluations the run was charged: the tries, plus 1 for the start when
        there is one.  (A batched local search may evaluate some proposals twice, see
        ``calls``; they are not charged.)
    calls : int
        Weight arrays actually handed to the loss.
    """
    method: str
    best_weights: np.ndarray
    best_loss: float
    losses: np.ndarray
    best_so_far: np.ndarray
    accepted: np.ndarray
    start_loss: float = float("nan")
    evaluations: int = 0
    calls: int = 0

    @property
    def tries(self) -> int:
        """Number of tries (len(losses))."""
        return int(self.losses.shape[0])

    @property
    def curve(self) -> np.ndarray:
        """The best loss after each evaluation charged, (evaluations,) float64: the start
        (when there is one) and then ``best_so_far``.  What a plot against the number
        of loss evaluations shows."""
        if math.isnan(self.start_loss):
            return self.best_so_far.copy()
        return np.append(self.start_loss, self.best_so_far)


@dataclass
class SweepResult:
    """The loss after one step ``w - s * grad`` for each step size s.

    Attributes
    ----------
    step_sizes : ndarray (k,), float64, in the order given
    losses : ndarray (k,), float64: ``loss_fn(w - s * grad)`` for each step size
    start_loss : float: ``loss_fn(w)``
    best_step : float: the step size of the lowest loss (the first, on a tie)
    best_loss : float
    best_weights : ndarray, w's shape and dtype: ``w - best_step * grad``
    """
    step_sizes: np.ndarray
    losses: np.ndarray
    start_loss: float
    best_step: float
    best_loss: float
    best_weights: np.ndarray = field(repr=False)

    @property
    def table(self) -> np.ndarray:
        """The (step size, loss) table as a (k, 2) float64 array."""
        return np.column_stack([self.step_sizes, self.losses])

    def format(self) -> str:
        """The table as text, one line per step size, after the starting loss."""
        lines = [f"original loss: {self.start_loss:f}"]
        lines += [f"step size {s:.0e}: new loss {v:f}"
                  for s, v in zip(self.step_sizes, self.losses)]
        return "\n".join(lines)


# ---- evaluating a loss -------------------------------------------------------------------

class _Loss:
    """loss_fn wrapped: one interface for callables and batched losses, with the checks
    of what they return and a count of the weight arrays handed over."""

    def __init__(self, loss_fn):
        batched = getattr(loss_fn, "losses", None)
        if batched is not None and callable(batched):
            self.fn, self.batched = batched, True
        elif callable(loss_fn):
            self.fn, self.batched = loss_fn, False
        else:
            raise TypeError("loss_fn must be a callable W -> float or an object with a "
                            f"losses(batch) method, got {type(loss_fn).__name__}")
        self.calls = 0

    def __call__(self, cands, first, label):
        """Losses of the (m, *shape) candidates, as float64 (m,); the loss gets a copy.
        `first` numbers the first one in error messages, `label(i)` names try i."""
        m = cands.shape[0]
        self.calls += m
        if self.batched:
            out = self.fn(cands.reshape(m, -1).copy())
            arr = np.asarray(out) if not isinstance(out, np.ndarray) else out
            if arr.dtype.kind not in "fiu" or arr.shape != (m,):
                raise TypeError(f"loss_fn.losses must return an ({m},) array of real "
                                f"numbers for {m} weight arrays, got "
                                f"{_describe(out)}")
            vals = arr.astype(np.float64)
            bad = np.flatnonzero(np.isnan(vals))
            if bad.size:
                raise ValueError(f"loss_fn returned NaN for {label(first + int(bad[0]))}")
            return vals
        vals = np.empty(m)
        for j in range(m):
            vals[j] = _scalar(self.fn(cands[j].copy()), label(first + j))
        return vals


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def _scalar(value, what):
    """A loss value as a float; TypeError for a non-scalar, ValueError for NaN."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"loss_fn must return a real scalar, got a bool for {what}")
    if isinstance(value, numbers.Real):
        v = float(value)
    elif (isinstance(value, np.ndarray) and value.ndim == 0
          and value.dtype.kind in "fiu"):
        v = float(value)
    else:
        raise TypeError(f"loss_fn must return a real scalar, got {_describe(value)} for "
                        f"{what}")
    if math.isnan(v):
        raise ValueError(f"loss_fn returned NaN for {what}")
    return v


def _dtype_of(loss_fn, dtype):
    if dtype is None:
        dtype = getattr(loss_fn, "dtype", np.float64)
    dt = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _expected_shape(loss_fn):
    """The weights' shape a loss declares: its ``shape``, else ``(n_params,)`` (a
    compiled evaluator of a net has n_params), else None."""
    shape = getattr(loss_fn, "shape", None)
    if shape is not None:
        return tuple(int(d) for d in shape)
    n = getattr(loss_fn, "n_params", None)
    if isinstance(n, numbers.Integral) and not isinstance(n, bool):
        return (int(n),)
    return None


def _check_shape(shape, loss_fn) -> tuple[int, ...]:
    expected = _expected_shape(loss_fn)
    if shape is None:
        shape = expected
        if shape is None:
            raise TypeError("shape must be given (loss_fn has no shape or n_params "
                            "attribute)")
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of positive ints, got "
                        f"{type(shape).__name__}") from None
    if not shape:
        raise ValueError("shape must have at least one dimension, got ()")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"shape must be a tuple of positive ints, got {shape!r}")
        if d < 1:
            raise ValueError(f"shape must be a tuple of positive ints, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    if expected is not None and expected != shape:
        raise ValueError(f"shape {shape} is not the shape loss_fn takes, {expected}")
    return shape


def _check_weights(w, name, loss_fn, dtype) -> np.ndarray:
    """w as a fresh C-contiguous float array (dtype: the loss's, else w's float type)."""
    if dtype is None:
        dtype = getattr(loss_fn, "dtype", None)
    w = check_array(w, name, dtype=dtype, copy=True)
    expected = _expected_shape(loss_fn)
    if expected is not None and w.shape != expected:
        raise ValueError(f"{name} has shape {w.shape}, but loss_fn takes {expected}")
    return w


def _check_chunk(chunk):
    return check_positive_int(chunk, "chunk")


# ---- strategy #1: random search ----------------------------------------------------------

def random_search(loss_fn: _LossFn, shape: int | Sequence[int] | None, tries: int,
                  scale: float, seed: _Seed = None, *, dtype: DTypeLike | None = None,
                  chunk: int = CHUNK) -> SearchResult:
    """Strategy #1: try ``tries`` random weight arrays ``scale * N(0, 1)`` of ``shape``
    and keep the best.

    Parameters
    ----------
    loss_fn : callable W -> float, or a batched loss (see the module docstring)
    shape : tuple of positive ints (an int means (int,)): the weights' shape; None
        takes ``loss_fn.shape`` (a :func:`model_loss` has one), else
        ``(loss_fn.n_params,)`` (a compiled evaluator of a net has that)
    tries : int >= 1
    scale : finite number > 0: the standard deviation of every weight
    seed : None, int or numpy Generator/RandomState; the same seed gives the same
        result, whatever ``chunk``
    dtype : float32/float64; None takes ``loss_fn.dtype`` if there is one, else float64
        (the draws are made in float64 and rounded)
    chunk : tries per call of a batched loss (ignored for a plain callable)

    Returns a :class:`SearchResult` (``start_loss`` NaN, ``evaluations == tries``).  Ties
    keep the earlier try.
    """
    ev = _Loss(loss_fn)
    shape = _check_shape(shape, loss_fn)
    tries = check_positive_int(tries, "tries")
    scale = check_scalar(scale, "scale", low=0.0, low_open=True)
    dtype = _dtype_of(loss_fn, dtype)
    chunk = _check_chunk(chunk) if ev.batched else 1
    rng = check_random_state(seed)
    losses = np.empty(tries)
    accepted = np.zeros(tries, dtype=bool)
    best_i, best_loss, best_w = -1, math.inf, None
    label = (lambda i: f"try {i}")
    for start in range(0, tries, chunk):
        m = min(chunk, tries - start)
        cands = np.empty((m,) + shape, dtype=dtype)
        for j in range(m):                   # one draw per try, in order
            cands[j] = scale * rng.standard_normal(shape)
        vals = ev(cands, start, label)
        losses[start:start + m] = vals
        for j in range(m):
            if best_i < 0 or vals[j] < best_loss:
                best_i, best_loss, best_w = start + j, float(vals[j]), cands[j].copy()
                accepted[start + j] = True
    return SearchResult(method="random search",
                        best_weights=best_w,  # type: ignore[arg-type]  # set by try 0
                        best_loss=best_loss,
                        losses=losses, best_so_far=np.minimum.accumulate(losses),
                        accepted=accepted, evaluations=tries, calls=ev.calls)


# ---- strategy #2: random local search ----------------------------------------------------

def random_local_search(loss_fn: _LossFn, w0: ArrayLike, tries: int, step: float,
                        seed: _Seed = None, *, chunk: int = CHUNK) -> SearchResult:
    """Strategy #2: from ``w0``, propose ``w + step * N(0, 1)`` ``tries`` times and move
    to a proposal only when its loss is lower than the current one.

    Unlike the notes' loop (which starts from an infinite best loss, so it always takes
    its first proposal), the start is evaluated first: every move is downhill from w0.

    Parameters
    ----------
    loss_fn : callable W -> float, or a batched loss (see the module docstring)
    w0 : array of real numbers, finite: the start (copied).  Its dtype is the loss's
        (``loss_fn.dtype``) when it has one, else float32 stays float32 and anything
        else becomes float64; a ``loss_fn.shape`` (or ``(loss_fn.n_params,)``) must
        match.
    tries : int >= 1: proposals
    step : finite number > 0: the standard deviation of a move in every weight
    seed : None, int or numpy Generator/RandomState; the same seed gives the same
        result, whatever ``chunk``
    chunk : the most proposals per call of a batched loss.  Proposals of one call all
        start from the current weights, so those after an accepted one are proposed
        again; the size adapts to the acceptance rate seen (about two expected
        acceptances' worth) to waste few evaluations.

    Returns a :class:`SearchResult`: ``best_so_far`` is the loss of the current weights
    after each try (never increases), ``evaluations == tries + 1``.
    """
    ev = _Loss(loss_fn)
    w = _check_weights(w0, "w0", loss_fn, None)
    tries = check_positive_int(tries, "tries")
    step = check_scalar(step, "step", low=0.0, low_open=True)
    chunk = _check_chunk(chunk) if ev.batched else 1
    rng = check_random_state(seed)
    shape, dtype = w.shape, w.dtype
    current = float(ev(w[None], 0, lambda i: "w0")[0])
    start_loss = current
    losses = np.empty(tries)
    path = np.empty(tries)
    accepted = np.zeros(tries, dtype=bool)
    draws: list[np.ndarray] = []             # the noise of tries i, i+1, ..., drawn in order
    label = (lambda i: f"try {i}")
    i = n_seen = n_taken = 0
    while i < tries:
        # about two acceptances' worth of proposals, from the rate seen so far
        rate = (n_taken + 1) / (n_seen + 2)
        m = min(chunk, tries - i, max(1, int(2.0 / rate)))
        while len(draws) < m:
            draws.append(rng.standard_normal(shape))
        noise = np.stack(draws[:m])
        cands = (w + step * noise).astype(dtype, copy=False)
        vals = ev(cands, i, label)
        used = m
        for j in range(m):
            losses[i + j] = vals[j]
            if vals[j] < current:
                current = float(vals[j])
                w = cands[j].copy()
                accepted[i + j] = True
                path[i + j] = current
                used = j + 1
                break
            path[i + j] = current
        n_seen += used
        n_taken += int(accepted[i + used - 1])
        del draws[:used]
        i += used
    return SearchResult(method="random local search", best_weights=w, best_loss=current,
                        losses=losses, best_so_far=path, accepted=accepted,
                        start_loss=start_loss, evaluations=tries + 1, calls=ev.calls)


# ---- how far to step: the step-size sweep ------------------------------------------------

def step_size_sweep(loss_fn: _LossFn, w: ArrayLike, grad: ArrayLike,
                    step_sizes: ArrayLike = NOTES_STEP_SIZES, *,
                    chunk: int = CHUNK) -> SweepResult:
    """The loss after one step ``w - s * grad`` for every step size s: the notes' table
    (by default s = 1e-10, 1e-9, ..., 1e-1).  Small steps barely change the loss, large
    ones overshoot; where that happens depends on the scale of the data and the
    gradient (the spiral's, O(1) features, wants steps around 1).

    Parameters
    ----------
    loss_fn : callable W -> float, or a batched loss (see the module docstring)
    w : finite array of real numbers (its dtype: as for ``w0`` of random_local_search)
    grad : finite array of w's shape: the gradient at w (e.g. ``loss.gradient(w)[1]``
        of a :func:`model_loss`, or :func:`fastnn.gradcheck.numerical_gradient`)
    step_sizes : 1-D sequence of finite numbers >= 0, not empty
    chunk : step sizes per call of a batched loss

    Returns a :class:`SweepResult`.  ``loss_fn`` is evaluated len(step_sizes) + 1 times.
    """
    ev = _Loss(loss_fn)
    w = _check_weights(w, "w", loss_fn, None)
    grad = check_array(grad, "grad", dtype=np.float64)
    if grad.shape != w.shape:
        raise ValueError(f"grad has shape {grad.shape}, but w has shape {w.shape}")
    steps = check_array(step_sizes, "step_sizes", ndim=1, dtype=np.float64, copy=True)
    if np.any(steps < 0):
        bad = float(steps[np.argmax(steps < 0)])
        raise ValueError(f"step_sizes must be >= 0, got {bad}")
    chunk = _check_chunk(chunk) if ev.batched else 1
    start_loss = float(ev(w[None], 0, lambda i: "w")[0])
    losses = np.empty(steps.shape[0])
    label = (lambda i: f"step size {steps[i]:g}")
    for start in range(0, steps.shape[0], chunk):
        s = steps[start:start + chunk]
        cands = (w - s.reshape((-1,) + (1,) * w.ndim) * grad).astype(w.dtype, copy=False)
        losses[start:start + s.shape[0]] = ev(cands, start, label)
    best = int(np.argmin(losses))
    best_w = (w - steps[best] * grad).astype(w.dtype, copy=False)
    return SweepResult(step_sizes=steps, losses=losses, start_loss=start_loss,
                       best_step=float(steps[best]), best_loss=float(losses[best]),
                       best_weights=best_w)


# ---- the loss of a fastnn net ------------------------------------------------------------

class ModelLoss:
    """The full loss of a fastnn net on fixed data as a function of its flat parameter
    vector: ``loss(w) = data loss(net(X), y) + penalties``, computed by the net's and
    the loss's own kernels -- the loss :func:`fastnn.trainer.gradient_descent` records
    before a step, with one difference that makes it a function of w alone: dropout is
    off (its evaluation-mode identity, or scaling by p for vanilla dropout).  Batch
    norm normalizes with the statistics of X, as in training, and its running
    statistics are left alone.  (This is what the compiled evaluator of a net computes
    too.)

    Build it with :func:`model_loss`.  It is a callable ``w -> float`` and a batched
    loss (``losses(batch)``), so every search in this module takes it.

    Attributes: ``model``, ``loss``, ``regularizer``, ``X`` (N, D) and ``y`` as checked,
    ``shape`` ``(n_params,)``, ``dtype`` (the net's), ``calls`` (parameter vectors
    evaluated so far, gradients included).

    An evaluation puts w into ``model.flat_params`` and afterwards puts back everything
    it changed (parameters, gradients, layer modes, batch-norm running statistics), so
    searching never changes the net (a few copies of n_params, small beside the forward
    pass): ``model.flat_params[...] = result.best_weights`` to keep the best.
    Constraints (max-norm) are not applied: a search scores the weights it proposes.
    """

    def __init__(self, model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                 reg: float | None = None, regularizer: Any = None) -> None:
        from .layers import BatchNorm, Dropout
        from .net import Sequential
        from .plan import regularized
        from .regularization import get as get_regularizer
        from .trainer import _as_dtype
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a fastnn Sequential or MLP, got "
                            f"{type(model).__name__}")
        if not (hasattr(loss, "_forward") and hasattr(loss, "_check_y")):
            raise TypeError(f"loss must be a fastnn.losses loss, got {type(loss).__name__}")
        if getattr(loss, "params", None):
            raise ValueError("loss: a loss with its own parameters (a hierarchical "
                             "softmax) is not searched over; use a score loss")
        if reg is not None and regularizer is not None:
            raise ValueError("give reg (an L2 strength) or regularizer, not both")
        self.regularizer = get_regularizer(
            check_scalar(reg, "reg", low=0.0) if reg is not None else regularizer,
            "regularizer")
        self.model = model
        self.loss = _as_dtype(loss, model.dtype)
        self.X = check_array(X, "X", ndim=2, n_cols=model.n_features, dtype=model.dtype)
        self.y = self.loss._check_y(y, model._eval_forward(self.X, check=False))
        self._penalized = regularized(model, self.regularizer)[0]
        self.dtype = model.dtype
        self.shape = (int(model.flat_params.size),)
        self.calls = 0
        self._bn = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
        self._dropout = [layer for layer in model.layers if isinstance(layer, Dropout)]
        # the compiled evaluator, built by the first losses()
        self._evaluator: Evaluator | None = None

    def _check_w(self, w):
        w = np.asarray(w)
        if w.shape != self.shape:
            raise ValueError(f"w has shape {w.shape}; the model has {self.shape[0]} "
                             "parameters, so w must be a vector of that many")
        if w.dtype.kind not in "fiu":
            raise TypeError(f"w must hold real numbers, got dtype {w.dtype}")
        return w

    @contextlib.contextmanager
    def _borrow(self, w):
        """The net with parameters w, dropout off, batch norm on batch statistics;
        everything restored on exit."""
        w = self._check_w(w)
        net = self.model
        params, grads = net.flat_params.copy(), net.flat_grads.copy()
        stats = [(bn.running_mean.copy(), bn.running_var.copy()) for bn in self._bn]
        modes = [layer.training for layer in net.layers]
        try:
            net.flat_params[...] = w
            for layer in net.layers:
                layer.train(not any(layer is d for d in self._dropout))
            self.calls += 1
            yield net
        finally:
            net.flat_params[...] = params
            net.flat_grads[...] = grads
            for bn, (mean, var) in zip(self._bn, stats):
                bn.running_mean[...] = mean
                bn.running_var[...] = var
            for layer, mode in zip(net.layers, modes):
                layer.train(mode)

    def _data_loss(self, net):
        return float(self.loss._forward(np.ascontiguousarray(net._forward(self.X)), self.y))

    def __call__(self, w: ArrayLike) -> float:
        """The loss at the flat parameter vector w (n_params,)."""
        with self._borrow(w) as net:
            data = self._data_loss(net)
            return data + sum(r.penalty(W) for r, W, _ in self._penalized)

    def losses(self, batch: ArrayLike) -> np.ndarray:
        """The losses of the rows of ``batch`` (m, n_params): an (m,) float64 array,
        equal bit for bit to calling this object on each row.  On the compiled backend
        the rows are evaluated in parallel by :func:`fastnn.evaluate.build_evaluator`
        (built on first use); on the NumPy backend one after another."""
        batch = np.asarray(batch)
        if batch.ndim != 2 or batch.shape[1] != self.shape[0]:
            raise ValueError(f"batch must have shape (m, {self.shape[0]}), got {batch.shape}")
        if _kernels.backend() is not _kernels.COMPILED:
            return np.array([self(row) for row in batch], dtype=np.float64)
        if self._evaluator is None:
            from .evaluate import build_evaluator
            self._evaluator = build_evaluator(self.model, self.loss, self.X, self.y,
                                              regularizer=self.regularizer)
        batch = check_array(batch, "batch", ndim=2, dtype=self.dtype)
        self.calls += batch.shape[0]
        return self._evaluator.losses(batch)

    def gradient(self, w: ArrayLike) -> tuple[float, np.ndarray]:
        """(loss, grad) at w: the loss as ``self(w)`` and its gradient with respect to
        the flat parameters, (n_params,) in the net's dtype (a new array), by the
        net's backward pass and the penalties' kernels."""
        with self._borrow(w) as net:
            data = self._data_loss(net)
            net._backward(self.loss.backward())
            penalty = 0.0
            for r, W, dW in self._penalized:
                penalty += r.penalty_and_grad(W, dW)
            return data + penalty, net.flat_grads.copy()

    def accuracy(self, w: ArrayLike) -> float:
        """The fraction of rows the net with parameters w classifies right, as
        ``model.score`` computes it (evaluation mode; class-label losses only)."""
        w = self._check_w(w)
        net = self.model
        params = net.flat_params.copy()
        try:
            net.flat_params[...] = w
            return net.score(self.X, self.y)
        finally:
            net.flat_params[...] = params


def model_loss(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
               reg: float | None = None, regularizer: Any = None) -> ModelLoss:
    """The full loss of a fastnn net as a function of its flat parameters: a
    :class:`ModelLoss`, to hand to the searches.

    Parameters
    ----------
    model : fastnn.net.Sequential or MLP
    loss : a fastnn.losses score loss (SoftmaxCrossEntropy, MulticlassSVM, ...); it
        computes in the net's dtype
    X : (N, D) data, converted once to the net's dtype (NaN/inf rejected)
    y : the loss's targets
    reg, regularizer : an L2 strength, or a fastnn.regularization regularizer (or a
        list), as for :func:`fastnn.trainer.gradient_descent`; give at most one.
        Default: no penalty (the notes' case study uses ``reg=1e-3``).

    Example::

        f = model_loss(net, SoftmaxCrossEntropy(), X, y, reg=1e-3)
        result = random_local_search(f, net.flat_params, tries=1000, step=0.1, seed=0)
        net.flat_params[...] = result.best_weights
    """
    return ModelLoss(model, loss, X, y, reg=reg, regularizer=regularizer)


# ---- the example: the strategies side by side --------------------------------------------

@dataclass
class Comparison:
    """What :func:`compare_strategies` ran.

    Attributes
    ----------
    results : dict name -> SearchResult, in the order "random search", "random local
        search", "gradient descent"; each charged ``budget`` loss evaluations
    accuracy : dict name -> float: training accuracy of each one's best weights
    sweep : SweepResult: the step-size sweep at the common start w0 along the analytic
        gradient (not charged to the budget)
    budget : int
    start_loss : float: the loss at w0
    """
    results: dict
    accuracy: dict
    sweep: SweepResult
    budget: int
    start_loss: float

    def format(self) -> str:
        """A summary table: best loss and training accuracy per strategy."""
        lines = [f"{self.budget} loss evaluations each, from loss {self.start_loss:f}:"]
        for name, r in self.results.items():
            lines.append(f"  {name:<20} best loss {r.best_loss:f}  training accuracy "
                         f"{self.accuracy[name]:.2f}")
        return "\n".join(lines)


#: The step sizes compare_strategies sweeps: the notes' 1e-10 ... 1e-1 and on to 1e3,
#: since the spiral's O(1) features put the overshoot near a step of 10.
SPIRAL_STEP_SIZES = 10.0 ** np.arange(-10, 4)


def compare_strategies(X: ArrayLike, y: ArrayLike, budget: int = 1000, seed: _Seed = 0, *,
                       scale: float = 1.0, step: float = 0.1, step_size: float = 1.0,
                       reg: float = 1e-3, dtype: DTypeLike = np.float64,
                       step_sizes: ArrayLike = SPIRAL_STEP_SIZES) -> Comparison:
    """The notes' strategies on a linear softmax classifier (W (D, K), b (K,), the
    spiral case study's), each given the same budget of loss evaluations.

    * random search: ``budget`` draws of every parameter from ``scale * N(0, 1)``;
    * random local search: from w0 (W = 0.01 * randn, b = 0, as the case study starts),
      ``budget - 1`` proposals of standard deviation ``step`` (the start is the first
      evaluation);
    * gradient descent (:func:`fastnn.trainer.gradient_descent`, step ``step_size``):
      from w0, ``budget - 1`` steps and the loss of the last iterate.  A step costs one
      loss evaluation and one backward pass of about the same cost, and is charged as
      one evaluation: the analytic gradient comes almost for free, which is the point;
      a numerical gradient would cost 2 x n_params evaluations per step instead.

    All share the loss: softmax cross-entropy + ``0.5 * reg * sum(W**2)``.  Also sweeps
    ``step_sizes`` from w0 along the gradient there (:func:`step_size_sweep`).

    Parameters
    ----------
    X : (N, D) data, y : (N,) labels in [0, K) (K = max(y) + 1), e.g.
        ``fastnn.datasets.spiral(100, 3, seed=0)``
    budget : int >= 2
    seed : None, int or numpy Generator: w0, then random search's draws, then local
        search's
    scale, step, step_size, reg : as above
    dtype : the classifier's, float32 or float64

    Returns a :class:`Comparison`.
    """
    from .case_study import linear_classifier
    from .losses import SoftmaxCrossEntropy
    from .trainer import gradient_descent
    from ._validation import check_labels, float_dtype
    budget = check_positive_int(budget, "budget", minimum=2)
    dtype = float_dtype(dtype)
    X = check_array(X, "X", ndim=2, dtype=dtype)
    y = check_labels(y, "y", n_samples=X.shape[0])
    scale = check_scalar(scale, "scale", low=0.0, low_open=True)
    step = check_scalar(step, "step", low=0.0, low_open=True)
    step_size = check_scalar(step_size, "step_size", low=0.0, low_open=True)
    reg = check_scalar(reg, "reg", low=0.0)
    rng = check_random_state(seed)
    n_classes = int(y.max()) + 1
    net = linear_classifier(X.shape[1], n_classes, seed=rng, dtype=dtype)
    w0 = net.flat_params.copy()
    f = model_loss(net, SoftmaxCrossEntropy(dtype=dtype), X, y, reg=reg)
    start_loss = f(w0)
    results = {
        "random search": random_search(f, f.shape, budget, scale, rng),
        "random local search": random_local_search(f, w0, budget - 1, step, rng),
    }
    # gradient descent by the training engine, on the same net from the same start
    net.flat_params[...] = w0
    hist = gradient_descent(net, f.loss, X, y, steps=budget - 1, step_size=step_size,
                            regularizer=f.regularizer)
    w_last = net.flat_params.copy()
    # hist.loss[i] is the loss at the weights before step i: w0's first
    losses = np.append(hist.loss[1:], f(w_last))
    results["gradient descent"] = SearchResult(
        method="gradient descent", best_weights=w_last, best_loss=float(losses[-1]),
        losses=losses, best_so_far=np.minimum.accumulate(np.append(hist.loss[0], losses))[1:],
        accepted=np.ones(budget - 1, dtype=bool), start_loss=float(hist.loss[0]),
        evaluations=budget, calls=budget)
    accuracy = {name: f.accuracy(r.best_weights) for name, r in results.items()}
    _, grad = f.gradient(w0)
    sweep = step_size_sweep(f, w0, grad, step_sizes)
    net.flat_params[...] = w0
    return Comparison(results=results, accuracy=accuracy, sweep=sweep, budget=budget,
                      start_loss=start_loss)
