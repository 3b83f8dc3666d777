"""Training plans: whole training steps for one (net, loss, regularizer, optimizer,
batch size), checked once when built.

:func:`build_plan` returns a :class:`CompiledPlan` on the compiled backend -- a Cython
object that runs k complete steps (gather the batch, forward, loss, backward, penalties,
update, constraints) in one call without the GIL, on the net's flat parameters -- or a
:class:`LayerPath` on the NumPy backend, which runs the same steps through the layer
objects and the kernels of the active backend.  Both have one interface::

    plan = build_plan(net, loss, optimizer=Adam(), regularizer=L2(1e-4), batch_size=64)
    plan.bind(X, y)                         # checked once
    losses, data_losses = plan.run(k, indices)   # k steps; indices (k * batch,) int64

The layer path is the oracle: the compiled plan calls the same nogil cores in the same
order, so after N steps the weights are equal bit for bit (the tests check it for every
layer type and both dtypes).  A plan trains in training mode (dropout on, batch norm on
batch statistics).  It is valid as long as the net's architecture is: changing a
parameter's value needs no rebuild, while a layer added, removed or re-shaped, another
dtype or batch size, or another backend needs a new plan (``plan.matches(...)`` tells).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import _kernels, config
from . import optim as _optim
from . import regularization as _reg
from ._validation import check_array, check_positive_int
from .layers import (BatchNorm, Dropout, ElementwiseActivation, Linear, Maxout, PReLU)
from .losses import (AttributeHinge, AttributeLogistic, HierarchicalSoftmax, L1Regression,
                     L2Regression, MulticlassSVM, SoftmaxCrossEntropy, SquaredHingeSVM)

if TYPE_CHECKING:
    from typing_extensions import Self

    from .layers import Layer
    from .net import Sequential

#: element-wise losses, by class, with the kernels' kind code (_loss_core.pxd)
_ELEMENTWISE = {AttributeHinge: 0, AttributeLogistic: 1, L2Regression: 2, L1Regression: 3}


def _offset(flat, array):
    """Position of `array` (a view into the 1-D `flat`) in `flat`, in elements."""
    start = array.__array_interface__["data"][0] - flat.__array_interface__["data"][0]
    return start // flat.itemsize


def regularized(net: Sequential, regularizer: _reg.Regularizer
                ) -> tuple[list[tuple[_reg.Regularizer, np.ndarray, np.ndarray]],
                           list[tuple[_reg.Regularizer, np.ndarray]]]:
    """What a step regularizes, in the order the penalties are summed:
    ([(regularizer, param, grad)], [(regularizer, W)]) from the global regularizer and
    each layer's ``regularizer`` / ``regularize_bias``.  Every layer with a weight matrix
    ``W`` (Linear, Maxout) is regularized; gains and shifts (BatchNorm, PReLU) are not."""
    penalized, constrained = [], []
    for layer in net.layers:
        if "W" not in layer.params:
            continue
        r = getattr(layer, "regularizer", None)
        r = regularizer if r is None else r
        if r.has_penalty:
            penalized.append((r, layer.W, layer.dW))  # type: ignore[attr-defined]  # has "W"
            if getattr(layer, "regularize_bias", False):
                penalized.append((r, layer.b, layer.db))  # type: ignore[attr-defined]
        if r.has_constraint:
            constrained.append((r, layer.W))  # type: ignore[attr-defined]
    return penalized, constrained


#: Layer settings a compiled plan copies when it is built (a change needs a new plan).
_LAYER_SETTINGS = ("p", "mode", "seed", "alpha", "momentum", "eps")


def _settings(layer):
    """The layer's scalar settings a plan copies (PReLU's alpha, an array, is a
    parameter the plan reads in place)."""
    return tuple((name, getattr(layer, name)) for name in _LAYER_SETTINGS
                 if isinstance(getattr(layer, name, None), (int, float, str)))


def _signature(net, loss, batch_size):
    """What a plan depends on besides parameter values."""
    layers = tuple((id(layer), type(layer), tuple(p.shape for p in layer.params.values()),
                    _settings(layer))
                   for layer in net.layers)
    return (id(net.flat_params), layers, net.dtype, batch_size, id(loss),
            _kernels.get_backend())


def _state_pairs(dst: tuple[np.ndarray, ...], src: Iterable[ArrayLike],
                 what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(plan array, saved array) pairs of optimizer state, refused (ValueError) unless
    there are as many as the plan keeps, each of the plan's shape and dtype."""
    arrays = tuple(np.asarray(a) for a in src)
    if len(arrays) != len(dst):
        raise ValueError(f"{what} has {len(arrays)} arrays, the plan's optimizer keeps "
                         f"{len(dst)}")
    for j, (d, a) in enumerate(zip(dst, arrays)):
        if d.shape != a.shape or d.dtype != a.dtype:
            raise ValueError(f"{what}[{j}] is {a.dtype} {a.shape}, the plan's "
                             f"{d.dtype} {d.shape}")
    return list(zip(dst, arrays))


class _Plan:
    """What both plans share: the checks, the data binding, the optimizer state."""

    # the bound data: arrays once bind() ran, None before (a step checks that first)
    _X: Any
    _y: Any
    _w: np.ndarray | None

    def __init__(self, net: Sequential, loss: Any, optimizer: str | _optim.Optimizer,
                 regularizer: Any, batch_size: int) -> None:
        from .net import Sequential
        if not isinstance(net, Sequential):
            raise TypeError(f"net must be a fastnn Sequential or MLP, got {type(net).__name__}")
        net._check_parameters()
        self.net = net
        self.loss = loss
        self.optimizer = _optim.get(optimizer)
        self.regularizer = _reg.get(regularizer, "regularizer")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.dtype = net.dtype
        self._signature = _signature(net, loss, self.batch_size)
        self.penalized, self.constrained = regularized(net, self.regularizer)
        n = net.flat_params.size
        self.state = tuple(self.optimizer.init_state(n, self.dtype))
        self.loss_flat = None
        self.loss_state: tuple[np.ndarray, ...] = ()
        if getattr(loss, "params", None):
            if loss.dtype != self.dtype:
                raise ValueError(f"the loss has dtype {loss.dtype}, the net {self.dtype}: "
                                 "a loss with parameters must share the net's dtype")
            self.loss_flat = loss._own_flat()
            self.loss_state = tuple(self.optimizer.init_state(self.loss_flat[0].size,
                                                              self.dtype))
        self.t = 0
        self._X = self._y = self._w = None

    def set_lr(self, lr: float) -> None:
        """Change the optimizer's base learning rate from the next step on."""
        self.optimizer.set_lr(lr)

    def learning_rate(self) -> float:
        """The learning rate the next step will use."""
        return float(self.optimizer.schedule(self.t))

    def _changing_arrays(self):
        """Every array a step writes that outlives it: flat parameters, optimizer state
        (a loss's own too), batch-norm running statistics."""
        arrays = [self.net.flat_params] + list(self.state)
        if self.loss_flat is not None:
            arrays += [self.loss_flat[0]] + list(self.loss_state)
        for layer in self.net.layers:
            if hasattr(layer, "running_mean"):
                arrays += [layer.running_mean, layer.running_var]
        return arrays

    def snapshot(self, into: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a step changes, copied: flat parameters, optimizer state, step count,
        dropout steps, batch-norm running statistics.  `into`: a previous snapshot whose
        arrays are reused (no allocation)."""
        arrays = self._changing_arrays()
        if into is None:
            into = {"arrays": [a.copy() for a in arrays]}
        else:
            for dst, src in zip(into["arrays"], arrays):
                dst[...] = src
        into["t"] = self.t
        into["steps"] = [layer.step for layer in self.net.layers if hasattr(layer, "step")]
        return into

    def restore(self, snap: dict[str, Any]) -> None:
        """Go back to a snapshot (in place: every pointer stays valid)."""
        for dst, src in zip(self._changing_arrays(), snap["arrays"]):
            dst[...] = src
        dropouts = [layer for layer in self.net.layers if hasattr(layer, "step")]
        for layer, step in zip(dropouts, snap["steps"]):
            layer.step = step
        self._set_counters(snap["t"])

    def set_state(self, state: Iterable[ArrayLike], t: int,
                  loss_state: Iterable[ArrayLike] | None = None) -> None:
        """Resume: copy optimizer state arrays (as ``plan.state`` holds them) into the
        plan and set the step count to t (the updates made so far); the dropout steps are
        read from the layers.  loss_state: None (left as it is) or the state of a loss's
        own parameters, as ``plan.loss_state`` holds it.  Shapes and dtypes must match;
        everything is checked before anything is copied."""
        pairs = _state_pairs(self.state, state, "state")
        if loss_state is not None:
            pairs += _state_pairs(self.loss_state, loss_state, "loss_state")
        t = check_positive_int(t, "t", minimum=0)
        for dst, src in pairs:
            dst[...] = src
        self._set_counters(t)

    def _set_counters(self, t):
        self.t = t

    def matches(self, net: Sequential, loss: Any, batch_size: int) -> bool:
        """True when this plan can train (net, loss) at this batch size as it is now."""
        return self._signature == _signature(net, loss, batch_size)

    def _check_current(self):
        if self._signature != _signature(self.net, self.loss, self.batch_size):
            raise RuntimeError("the net (a layer's settings included), the loss or the "
                               "backend changed since this plan was built; build a new "
                               "plan (fastnn.plan.build_plan)")

    def bind(self, X: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None) -> Self:
        """Check the training data once: X (N, D) becomes a C-contiguous array of the
        net's dtype (copied only when it is not one already), y the loss's targets.

        weights: None, or (N,) per-row weights (finite, >= 0; kept as float64).  A step
        then minimizes the weighted mean of its batch's row losses,
        ``sum_i w_i L_i / sum_i w_i``: row i's dscores are scaled by
        ``B w_i / sum_i w_i`` (computed in double, rounded to the net's dtype) before the
        backward pass; a batch whose weights sum to 0 changes nothing but the penalties.
        Not with a hierarchical softmax (its own gradients are not per row)."""
        X, y = check_data(self.net, self.loss, X, y)
        if weights is not None:
            if isinstance(self.loss, HierarchicalSoftmax):
                raise ValueError("weights: a hierarchical softmax cannot weight rows")
            weights = check_array(weights, "weights", ndim=1, n_rows=X.shape[0],
                                  dtype=np.float64)
            if np.any(weights < 0):
                raise ValueError("weights must be >= 0")
        self._X, self._y, self._w = X, y, weights
        return self

    def _output_width(self):
        return self.net._fused[-1][0].n_out

    @staticmethod
    def _outputs(k: int, losses: np.ndarray | None,
                 data_losses: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        losses = np.empty(k) if losses is None else losses
        data_losses = np.empty(k) if data_losses is None else data_losses
        return losses, data_losses

    def _check_run(self, k: int,
                   indices: ArrayLike | None) -> tuple[int, np.ndarray | None]:
        self._check_current()
        if self._X is None:
            raise RuntimeError("bind(X, y) must be called before run")
        k = check_positive_int(k, "k", minimum=0)
        n = self._X.shape[0]
        if indices is None:
            if n != self.batch_size:
                raise ValueError(f"without indices every step takes all {n} rows, but the "
                                 f"plan's batch size is {self.batch_size}")
        else:
            indices = np.asarray(indices)
            if indices.dtype != np.int64 or indices.shape != (k * self.batch_size,):
                raise ValueError(f"indices must be a ({k * self.batch_size},) int64 array "
                                 f"(k * batch_size), got {indices.dtype} {indices.shape}")
            # (the compiled plan checks each index against [0, N) itself)
        return k, indices


def check_data(net: Sequential, loss: Any, X: ArrayLike,
               y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) checked for (net, loss): X (N, n_features) a C-contiguous array of the
    net's dtype (copied only when it is not one already), y the loss's targets for N
    rows of the net's output width (float targets in the net's dtype), contiguous."""
    X = check_array(X, "X", ndim=2, n_cols=net.n_features, dtype=net.dtype)
    y = loss._check_y(y, ShapeOnly(X.shape[0], net._fused[-1][0].n_out))
    if y.dtype.kind == "f" and y.dtype != net.dtype:  # type: ignore[union-attr]  # an array now
        y = y.astype(net.dtype)  # type: ignore[union-attr]  # (y: _check_y's; loss is duck-typed)
    return X, np.ascontiguousarray(y)


def _weigh_rows(dscores, row_loss, w):
    """The compiled plan's _weigh_rows, step for step (the same bits): the weighted mean
    of the row losses (sums in row order, in double) and dscores' rows scaled in place."""
    total = float(np.cumsum(w)[-1])            # cumsum: sequential, like the C loop
    acc = float(np.cumsum(w * row_loss.astype(np.float64))[-1])
    scale = (dscores.shape[0] * w) / total if total > 0 else np.zeros_like(w)
    dscores *= scale.astype(dscores.dtype)[:, None]
    return acc / total if total > 0 else 0.0


class ShapeOnly:
    """Stands in for scores when only their shape is needed (target checks)."""

    def __init__(self, n: int, k: int) -> None:
        self.shape = (n, k)
        self.ndim = 2


class LayerPath(_Plan):
    """Training steps through the layer objects, one kernel call at a time: the NumPy
    backend's plan, and the oracle the compiled plan is tested against."""

    backend = "layers"

    def run(self, k: int, indices: ArrayLike | None = None, losses: np.ndarray | None = None,
            data_losses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run k steps; returns (losses, data_losses), each step's total and data loss."""
        k, indices = self._check_run(k, indices)
        n = self._X.shape[0]
        if indices is not None and indices.size and (indices.min() < 0 or indices.max() >= n):
            bad = int(np.flatnonzero((indices < 0) | (indices >= n))[0])
            raise ValueError(f"indices[{bad}] = {indices[bad]} is not a row of the data set "
                             f"[0, {n})")
        losses, data_losses = self._outputs(k, losses, data_losses)
        net, loss, opt = self.net, self.loss, self.optimizer
        modes = [layer.training for layer in net.layers]
        net.train()
        try:
            for s in range(k):
                if indices is None:
                    X, y, w = self._X, self._y, self._w
                else:
                    rows = indices[s * self.batch_size:(s + 1) * self.batch_size]
                    X, y = self._X[rows], self._y[rows]
                    w = None if self._w is None else self._w[rows]
                scores = net._forward(X)
                data_loss = loss._forward(scores, y)
                dscores = loss.backward()
                if w is not None:
                    data_loss = _weigh_rows(dscores, loss.row_loss, w)
                net._backward(dscores)
                reg_loss = 0.0
                for r, W, dW in self.penalized:
                    reg_loss += r.penalty_and_grad(W, dW)
                self.t += 1          # update t uses the schedule's rate at t - 1
                opt.update(net.flat_params, net.flat_grads, self.state, self.t)
                if self.loss_flat is not None:
                    opt.update(self.loss_flat[0], self.loss_flat[1], self.loss_state,
                               self.t)
                for r, W in self.constrained:
                    r.constrain(W)
                losses[s] = data_loss + reg_loss
                data_losses[s] = data_loss
        finally:
            for layer, mode in zip(net.layers, modes):
                layer.train(mode)
        return losses, data_losses

    def sync(self) -> None:
        """Nothing to write back: the layers were run directly."""


class CompiledPlan(_Plan):
    """Whole training steps in compiled code (fastnn._plan.Plan), k per call."""

    backend = "compiled"

    def __init__(self, net: Sequential, loss: Any, optimizer: str | _optim.Optimizer,
                 regularizer: Any, batch_size: int) -> None:
        super().__init__(net, loss, optimizer, regularizer, batch_size)
        from . import _plan  # type: ignore[attr-defined]  # a compiled extension, no stub
        self._dropouts: list[Dropout] = []
        ops = [self._op(layer, act, i, _plan.OP_KINDS)
               for i, (layer, act) in enumerate(net._fused)]
        loss_spec = self._loss_spec(_plan.LOSS_KINDS)
        penalties, constraints = self._regularization_spec(_plan.PEN_KINDS)
        opt = self.optimizer
        rate, every = opt.schedule.params
        h1, h2, eps = opt.hyper
        opt_spec = {"kind": opt.kind, "lr": float(opt.lr), "hyper": (h1, h2, eps),
                    "schedule": opt.schedule.kind, "rate": float(rate),
                    "every": int(every), "t": self.t}
        lp, lg = self.loss_flat if self.loss_flat is not None else (None, None)
        self._plan = _plan.Plan(self.dtype, self.batch_size, net.n_features, ops, loss_spec,
                                penalties, constraints, opt_spec, net.flat_params,
                                net.flat_grads, self.state, lp, lg, self.loss_state)
        self._lr = float(opt.lr)        # the base rate the compiled plan holds

    # -- building ------------------------------------------------------------------------
    def _op(self, layer, act, position, kinds):
        if isinstance(layer, Dropout):
            self._dropouts.append(layer)
        return op_spec(self.net, layer, act, position, kinds)

    def _loss_spec(self, kinds):
        return loss_spec(self.loss, self._output_width(), kinds)

    def _regularization_spec(self, kinds):
        return regularization_spec(self.net, self.penalized, self.constrained, kinds)

    def _sync_lr(self):
        """The optimizer's base rate into the compiled plan, also when it was changed on
        the optimizer itself (``optimizer.set_lr``), as the layer path reads it there."""
        if self.optimizer.lr != self._lr:
            self._plan.set_lr(self.optimizer.lr)
            self._lr = self.optimizer.lr

    def _set_counters(self, t):
        """Step count and dropout steps from the layers into the compiled plan."""
        self.t = t
        self._plan.set_t(t)
        self.set_dropout_steps([layer.step for layer in self._dropouts])

    def set_dropout_steps(self, steps: Sequence[int]) -> None:
        """The step counter of every dropout layer, in layer order, for the next step's
        masks (the layers' own counters are written back by sync); data parallelism
        gives each block of a batch its own."""
        self._plan.set_dropout_steps(list(steps))

    # -- running -------------------------------------------------------------------------
    def bind(self, X: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None) -> Self:
        super().bind(X, y, weights)
        y = self._y
        if y.dtype.kind in "iu" and y.dtype != np.intp:  # type: ignore[union-attr]  # an array
            y = y.astype(np.intp)  # type: ignore[union-attr]  # (y: self._y, bound)
            self._y = y
        self._plan.bind_data(self._X, self._y, self._w)
        return self

    def run(self, k: int, indices: ArrayLike | None = None, losses: np.ndarray | None = None,
            data_losses: np.ndarray | None = None,
            n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run k steps; returns (losses, data_losses), each step's total and data loss
        (float64 arrays of k entries, or the arrays given, filled)."""
        k, indices = self._check_run(k, indices)
        losses, data_losses = self._outputs(k, losses, data_losses)
        nt = config.resolve_num_threads() if n_threads is None else n_threads
        self._sync_lr()
        self._plan.run(k, indices, losses, data_losses, nt)
        self.sync()
        return losses, data_losses

    def gradient(self, indices: ArrayLike | None = None, n_threads: int | None = None) -> float:
        """Half a step, for data parallelism: forward, loss and backward of one batch
        (`indices`: None for the whole bound data set, or ``batch_size`` int64 rows); the
        data-loss gradient is left in ``net.flat_grads`` and the (weighted) mean data loss
        returned.  Nothing is updated.  ``gradient(i); apply()`` is ``run(1, i)`` bit
        for bit."""
        self._check_current()
        if self._X is None:
            raise RuntimeError("bind(X, y) must be called before gradient")
        if indices is not None:
            indices = np.ascontiguousarray(indices, dtype=np.int64)
        nt = config.resolve_num_threads() if n_threads is None else n_threads
        out = self._plan.gradient(indices, nt)
        self.sync()
        return out

    def apply(self, n_threads: int | None = None) -> float:
        """The other half of a step, on whatever ``net.flat_grads`` holds (say, a sum
        of shard gradients over MPI ranks): penalty gradients added (once), the optimizer
        update, constraints.  Returns the penalty; the step count advances by one."""
        self._check_current()
        nt = config.resolve_num_threads() if n_threads is None else n_threads
        self._sync_lr()
        out = self._plan.apply(nt)
        self.sync()
        return out

    def sync(self) -> None:
        """Write the compiled plan's counters back: the step count, and the dropout steps
        to the layers.  run() does it; after an interruption (Ctrl-C arriving between
        the compiled call's return and the end of run) call it to catch up."""
        self.t = self._plan.t
        for layer, step in zip(self._dropouts, self._plan.dropout_steps()):
            layer.step = step


# -- the compiled ops, shared by the plan and the loss evaluator (fastnn.evaluate) ---------
def op_spec(net: Sequential, layer: Layer, act: ElementwiseActivation | None, position: int,
            kinds: Mapping[str, int]) -> dict[str, Any]:
    """The compiled op of `layer` (with its fused activation `act`, or None) at
    `position` in ``net._fused``: a dict of the kind codes in `kinds` (the plan's
    OP_KINDS), the sizes, and the offsets of the parameters in ``net.flat_params``."""
    flat = net.flat_params
    if isinstance(layer, Linear):
        code, alpha = ((act.act_code, act.alpha) if act is not None
                       else (layer._act, layer.alpha))
        return {"kind": kinds["affine"], "act": code, "alpha": float(alpha),
                "n_in": layer.n_in, "n_out": layer.n_out,
                "p0": _offset(flat, layer.W), "p1": _offset(flat, layer.b)}
    if isinstance(layer, Maxout):
        return {"kind": kinds["maxout"], "n_in": layer.n_in, "n_out": layer.n_out,
                "k": layer.k, "p0": _offset(flat, layer.W), "p1": _offset(flat, layer.b)}
    width = _width_before(net, position)
    if isinstance(layer, ElementwiseActivation):
        return {"kind": kinds["act"], "act": layer.act_code, "alpha": float(layer.alpha),
                "n_in": width, "n_out": width}
    if isinstance(layer, PReLU):
        return {"kind": kinds["prelu"], "n_in": width, "n_out": width,
                "p0": _offset(flat, layer.alpha)}
    if isinstance(layer, Dropout):
        return {"kind": kinds["dropout"], "n_in": width, "n_out": width,
                "p": float(layer.p), "mode": layer.mode,
                "scale": 1.0 / layer.p if layer.mode == "inverted" else 1.0,
                "thr": int(layer.p * 4294967296.0), "seed": layer.seed,
                "step": layer.step}
    if isinstance(layer, BatchNorm):
        return {"kind": kinds["batchnorm"], "n_in": width, "n_out": width,
                "p0": _offset(flat, layer.gamma), "p1": _offset(flat, layer.beta),
                "mean": layer._mean, "inv_std": layer._inv_std,
                "running_mean": layer.running_mean, "running_var": layer.running_var,
                "momentum": layer.momentum, "eps": layer.eps}
    raise ValueError(f"the compiled plan cannot run the layer {type(layer).__name__}; "
                     "train this net on the NumPy backend (fastnn.use_backend('numpy'))")


def _width_before(net, position):
    """Width of the activations entering op `position` (layers without n_in)."""
    for layer, _ in reversed(net._fused[:position]):
        width = getattr(layer, "n_out", None)
        if width is not None:
            return width
    if net.n_features is None:
        raise ValueError("the compiled plan needs the input width: start the net with "
                         "a layer that has n_in")
    return net.n_features


def loss_spec(loss: Any, K: int, kinds: Mapping[str, int]) -> dict[str, Any]:
    """The compiled loss of `loss` on K outputs (kind codes from `kinds`)."""
    kind = type(loss)
    if kind is SoftmaxCrossEntropy:
        return {"kind": kinds["softmax"]}
    if kind in (MulticlassSVM, SquaredHingeSVM):
        return {"kind": kinds["svm"], "delta": float(loss.delta),
                "squared": bool(loss._squared)}
    if kind in _ELEMENTWISE:
        return {"kind": kinds["elementwise"], "ew_kind": _ELEMENTWISE[kind], "y_width": K}
    if kind is HierarchicalSoftmax:
        if loss.n_in != K:
            raise ValueError(f"the hierarchical softmax takes {loss.n_in} features but "
                             f"the net gives {K}")
        return {"kind": kinds["hierarchical"], "n_nodes": loss.n_nodes,
                "max_depth": loss.paths.shape[1], "paths": loss.paths,
                "codes": loss.codes, "depths": loss.depths}
    raise ValueError(f"the compiled plan cannot run the loss {kind.__name__}")


def regularization_spec(net: Sequential,
                        penalized: Sequence[tuple[_reg.Regularizer, np.ndarray, np.ndarray]],
                        constrained: Sequence[tuple[_reg.Regularizer, np.ndarray]],
                        kinds: Mapping[str, int]
                        ) -> tuple[list[tuple[int, float, float, int, int, int]],
                                   list[tuple[float, int, int, int]]]:
    """(penalties, constraints) of what :func:`regularized` returned, as the
    compiled plan takes them (offsets into ``net.flat_params``)."""
    flat = net.flat_params
    penalties = []
    for r, W, _ in penalized:
        parts = r.parts if isinstance(r, _reg.Combined) else (r,)
        first = True
        for part in parts:
            if not part.has_penalty:
                continue
            if isinstance(part, _reg.L2):
                spec = (kinds["l2"], part.reg, 0.0)
            elif isinstance(part, _reg.L1):
                spec = (kinds["l1"], part.reg, 0.0)
            elif isinstance(part, _reg.ElasticNet):
                spec = (kinds["elastic"], part.l1, part.l2)
            else:
                raise ValueError(f"the compiled plan cannot run the penalty {part!r}")
            penalties.append(spec + (_offset(flat, W), W.size, int(first)))
            first = False
    constraints = []
    for r, W in constrained:
        parts = r.parts if isinstance(r, _reg.Combined) else (r,)
        for part in parts:
            if not part.has_constraint:
                continue
            if not isinstance(part, _reg.MaxNorm):
                raise ValueError(f"the compiled plan cannot run the constraint {part!r}")
            constraints.append((float(part.c), _offset(flat, W), W.shape[0], W.shape[1]))
    return penalties, constraints


def build_plan(net: Sequential, loss: Any, *, optimizer: str | _optim.Optimizer = "sgd",
               regularizer: Any = None, batch_size: int) -> LayerPath | CompiledPlan:
    """The plan for training `net` with `loss` on the active backend: a CompiledPlan on
    the compiled backend, a LayerPath on the NumPy backend.

    Parameters
    ----------
    net : fastnn.net.Sequential (or MLP)
    loss : a fastnn.losses loss
    optimizer : a fastnn.optim optimizer or its name
    regularizer : None, an L2 strength, a regularizer or a list of them
    batch_size : int, the rows of every step

    Raises ValueError for a layer, loss, penalty or constraint the compiled plan cannot
    run (never a silent slow path)."""
    if _kernels.get_backend() == "numpy":
        return LayerPath(net, loss, optimizer, regularizer, batch_size)
    return CompiledPlan(net, loss, optimizer, regularizer, batch_size)
