"""The loss of a net at many parameter vectors, in compiled code and in parallel.

::

    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y, regularizer=L2(1e-3))
    params = np.stack([net.flat_params, other])     # (m, ev.n_params), net's dtype
    ev.losses(params)                               # (m,) float64

What is evaluated is the total loss a training step of a plan reports (the data loss,
a mean over all the rows of X, plus the penalties of the regularizers, summed in the
same order), with two differences from a step, chosen for gradient checks, landscapes
and searches, where the loss must be a deterministic function of the parameters:

* batch norm normalizes with the batch statistics of X (training mode), but its running
  statistics are left alone;
* dropout is switched off: it computes its evaluation-mode function (identity for
  inverted dropout, ``p * x`` for vanilla dropout), as the notes ask of gradient checks.
  (In training mode every evaluation would draw another mask.)

The loss's own parameters (a hierarchical softmax's W and b) are read, never varied:
a parameter vector is the net's ``flat_params`` only.

Each evaluation runs on one thread (src_c/_evaluate.pyx) with its own activation
buffers, calling the same nogil cores as the compiled plan; the net's weights are never
written.  So results are the same bits for any thread count.  :func:`reference_losses`
is the NumPy twin: it sets the net's flat parameters and runs the per-layer forward pass
(fastnn.plan.LayerPath's), the loss and the penalties.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import config
from . import regularization as _reg
from ._validation import check_positive_int
from .layers import BatchNorm, Dropout

if TYPE_CHECKING:
    from .net import Sequential

__all__ = ["Evaluator", "build_evaluator", "reference_losses"]


def _check_net(model):
    from .net import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential or MLP, got {type(model).__name__}")
    model._check_parameters()
    return model


def _resolve_threads(n_threads):
    if n_threads is None:
        return config.resolve_num_threads()
    return check_positive_int(n_threads, "n_threads")


class Evaluator:
    """The total loss of (model, loss, regularizer) on (X, y) at parameter vectors.

    Build it with :func:`build_evaluator`.  Attributes: ``n_params`` (the width of a
    parameter vector: ``model.flat_params.size``), ``dtype`` (the net's), ``n_rows``.
    It keeps pointers into X, y and the layout of the net's parameters: a parameter
    vector uses the layout of ``model.flat_params`` at build time (re-build after
    changing the architecture).
    """

    def __init__(self, model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike,
                 regularizer: Any = None) -> None:
        from . import _evaluate  # type: ignore[attr-defined]  # a compiled extension, no stub
        from .plan import (check_data, loss_spec, op_spec, regularization_spec,
                           regularized, _offset)
        net = _check_net(model)
        self.model, self.loss = net, loss
        self.regularizer = _reg.get(regularizer, "regularizer")
        self.dtype = net.dtype
        X, y = check_data(net, loss, X, y)
        if y.dtype.kind in "iu" and y.dtype != np.intp:
            y = y.astype(np.intp)
        self.n_rows = X.shape[0]
        if self.n_rows < 1:
            raise ValueError("X must have at least one row")
        flat = net.flat_params
        self.n_params = flat.size
        kinds = _evaluate.OP_KINDS
        ops: list[dict[str, Any]]
        ops, owner_ranges = [], []
        for position, (layer, act) in enumerate(net._fused):
            spec = op_spec(net, layer, act, position, kinds)
            if isinstance(layer, Dropout):
                if spec["mode"] == "inverted":      # identity when switched off
                    continue
                spec = {"kind": kinds["scale"], "n_in": spec["n_in"],
                        "n_out": spec["n_out"], "scale": spec["p"]}
            if isinstance(layer, BatchNorm) and self.n_rows < 2:
                raise ValueError("a net with batch norm needs at least 2 rows of X "
                                 "(its batch statistics)")
            for p in layer.params.values():
                owner_ranges.append((_offset(flat, p), p.size, len(ops)))
            ops.append(spec)
        owner = np.full(max(self.n_params, 1), len(ops), dtype=np.int32)
        for start, size, j in owner_ranges:
            owner[start:start + size] = j
        self._owner = owner
        K = net._fused[-1][0].n_out
        lspec = loss_spec(loss, K, _evaluate.LOSS_KINDS)
        loss_params = None
        if getattr(loss, "params", None):
            if loss.dtype != self.dtype:
                raise ValueError(f"the loss has dtype {loss.dtype}, the net {self.dtype}: "
                                 "a loss with parameters must share the net's dtype")
            loss_params = loss._own_flat()[0]
        self.penalized, _ = regularized(net, self.regularizer)
        penalties, _ = regularization_spec(net, self.penalized, [], _evaluate.PEN_KINDS)
        self.X, self.y = X, y
        self._ev = _evaluate.Evaluator(self.dtype, ops, lspec, penalties, X, y,
                                       self.n_params, owner, loss_params)

    def check_params(self, params: np.ndarray, name: str = "params",
                     ndim: int = 2) -> np.ndarray:
        """params as the compiled code takes it: a C-contiguous array of the net's dtype,
        (m, n_params) for ndim 2 or (n_params,) for ndim 1 (a 1-D vector is accepted
        for ndim 2 and becomes one row).  Raises TypeError for another dtype (no silent
        conversion: a float64 vector rounded to float32 is another point) and
        ValueError for another width or non-finite entries."""
        if not isinstance(params, np.ndarray):
            raise TypeError(f"{name} must be a numpy array of dtype {self.dtype}, got "
                            f"{type(params).__name__}")
        if params.dtype != self.dtype:
            raise TypeError(f"{name} must have the net's dtype {self.dtype}, got "
                            f"{params.dtype}")
        if ndim == 2 and params.ndim == 1:
            params = params[None, :]
        if params.ndim != ndim or params.shape[-1] != self.n_params:
            want = f"(m, {self.n_params})" if ndim == 2 else f"({self.n_params},)"
            raise ValueError(f"{name} must have shape {want} (the net's {self.n_params} "
                             f"parameters), got {params.shape}")
        if not np.all(np.isfinite(params)):
            raise ValueError(f"{name} contains NaN or infinity")
        return np.ascontiguousarray(params)

    def losses(self, params: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        """The total loss at each row of params.

        params : (m, n_params) array of the net's dtype (a (n_params,) vector counts as
            one row), in the layout of ``model.flat_params``.
        n_threads : threads to split the m evaluations over (default: fastnn's setting).
        Returns an (m,) float64 array; the same bits for any n_threads."""
        params = self.check_params(params)
        out = np.empty(params.shape[0], dtype=np.float64)
        return self._ev.losses(params, out, _resolve_threads(n_threads))

    def value(self, params: np.ndarray | None = None) -> float:
        """The total loss at one parameter vector (default: the net's current ones)."""
        params = self.model.flat_params if params is None else params
        return float(self.losses(params, n_threads=1)[0])

    def _numerical(self, params, indices, h, centered, kinks, n_threads):
        grad = np.empty(indices.size, dtype=self.dtype)
        self._ev.numerical_gradient(params, grad, indices, h, centered, kinks,
                                    _resolve_threads(n_threads))
        return grad


def build_evaluator(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
                    regularizer: Any = None) -> Evaluator:
    """An :class:`Evaluator` of the total loss of `model` with `loss` on (X, y).

    model : fastnn.net.Sequential (or MLP), the layers the compiled plan can run.
    loss : a fastnn.losses loss.
    X : (N, n_features) data, converted to the net's dtype; y : the loss's targets for
        N rows ((N,) integer labels or (N, A) targets).
    regularizer : None, an L2 strength, a regularizer or a list of them (as for
        build_plan); layers' own regularizers apply as in training.  Constraints
        (max-norm) act after an update, not on the loss, and are not evaluated.

    The result's ``.losses(params, n_threads=None)`` takes (m, n_params) parameter
    vectors in the net's dtype and returns (m,) float64 losses; ``.n_params`` is their
    width.  See the module docstring for batch norm and dropout."""
    return Evaluator(model, loss, X, y, regularizer)


def _training_modes(net):
    """Switch to what the evaluator computes (training mode, dropout off); returns
    the previous modes."""
    modes = [layer.training for layer in net.layers]
    for layer in net.layers:
        layer.train(not isinstance(layer, Dropout))
    return modes


class _Borrowed:
    """Run the per-layer path on a net and leave it as it was: flat parameters,
    layer modes, batch-norm running statistics, dropout steps, flat gradients."""

    def __init__(self, net):
        self.net = net

    def __enter__(self):
        net = self.net
        self.params = net.flat_params.copy()
        self.grads = net.flat_grads.copy()
        self.stats = [(layer, layer.running_mean.copy(), layer.running_var.copy())
                      for layer in net.layers if isinstance(layer, BatchNorm)]
        self.modes = _training_modes(net)
        return net

    def __exit__(self, *exc):
        net = self.net
        net.flat_params[...] = self.params
        net.flat_grads[...] = self.grads
        for layer, mean, var in self.stats:
            layer.running_mean[...] = mean
            layer.running_var[...] = var
        for layer, mode in zip(net.layers, self.modes):
            layer.train(mode)
        return False


def _layer_path_loss(net, loss, X, y, penalized):
    """One LayerPath-style forward pass, loss and penalties at the net's parameters."""
    scores = net._forward(X)
    data_loss = loss._forward(scores, y)
    reg_loss = 0.0
    for r, W, _ in penalized:
        reg_loss += r.penalty(W)
    return data_loss + reg_loss


def reference_losses(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike,
                     params: ArrayLike, *, regularizer: Any = None) -> np.ndarray:
    """The NumPy twin of ``build_evaluator(...).losses(params)``: for each row of params
    (m, n_params), set the net's flat parameters, run the per-layer forward pass (batch
    norm on batch statistics, dropout off), the loss and the penalties, in the order a
    LayerPath step does.  The net is left as it was.  Returns (m,) float64."""
    from .plan import check_data, regularized
    net = _check_net(model)
    X, y = check_data(net, loss, X, y)
    params = np.asarray(params)
    if params.ndim == 1:
        params = params[None, :]
    if params.ndim != 2 or params.shape[1] != net.flat_params.size:
        raise ValueError(f"params must have shape (m, {net.flat_params.size}) (the net's "
                         f"parameters), got {params.shape}")
    if params.dtype.kind not in "biuf" or not np.all(np.isfinite(params)):
        raise ValueError("params must be finite real numbers")
    penalized, _ = regularized(net, _reg.get(regularizer, "regularizer"))
    out = np.empty(params.shape[0])
    with _Borrowed(net):
        for r in range(params.shape[0]):
            net.flat_params[...] = params[r]
            out[r] = _layer_path_loss(net, loss, X, y, penalized)
    return out
