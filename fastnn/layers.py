"""Layers: they own their parameters, gradients and every buffer their kernels write.

A layer's ``forward(x)`` returns a view of a buffer the layer owns, overwritten by its
next forward; ``backward(dout)`` writes the parameter gradients (``grads``) and returns
the gradient on its input (also a layer-owned view), or None when asked not to compute
it.  Buffers are sized for the largest batch seen and reused, so a training step
allocates nothing once the first step has run.  Copy an output to keep it.

Arrays are float32 or float64, fixed per layer by ``dtype``.  The public ``forward`` and
``backward`` validate their argument (and convert it to the layer's dtype, copying);
containers such as :class:`fastnn.net.Sequential` validate once and then call the
unchecked ``_forward`` / ``_backward``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _kernels, config, init as _init
from . import regularization as _regularization
from ._validation import (check_array, check_positive_int, check_scalar, float_dtype,
                          seed_to_uint64)

if TYPE_CHECKING:
    from typing_extensions import Self

#: The kernels' activation codes (the enum of src_c/_common.pxd, mirrored by reference).
ACTIVATIONS = {None: 0, "identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}


def activation_code(activation: str | None) -> int:
    """The kernels' code for an activation name (None or "identity", "relu", "leaky_relu",
    "sigmoid", "tanh")."""
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        names = sorted(k for k in ACTIVATIONS if k is not None)
        raise ValueError(f"unknown activation {activation!r}; choose one of {names}") from None


class BatchBuffers:
    """Named arrays of shape (n, *tail) that hold the rows of the current batch.

    Storage grows to the largest batch seen; smaller batches get views of the first n
    rows, which are C-contiguous because only the leading axis is cut."""

    def __init__(self, dtype: DTypeLike) -> None:
        self.dtype = np.dtype(dtype)
        self._store: dict[str, np.ndarray] = {}
        self._views: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, tail: Iterable[int],
            dtype: DTypeLike | None = None) -> np.ndarray:
        """The buffer `name` as an (n, *tail) array of `dtype` (default: the owner's)."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        tail = tuple(tail)
        view = self._views.get(name)
        if view is not None and view.shape == (n, *tail) and view.dtype == dtype:
            return view
        store = self._store.get(name)
        if (store is None or store.shape[0] < n or store.shape[1:] != tail
                or store.dtype != dtype):
            store = np.empty((n, *tail), dtype=dtype)
            self._store[name] = store
        view = store[:n]
        self._views[name] = view
        return view


class Slot:
    """A parameter or gradient attribute that may live in a flat buffer.

    A net keeps all its parameters in one contiguous array and all gradients in another
    (``Sequential.flat_params`` / ``flat_grads``); each layer's ``W``, ``b``, ``gamma``, ...
    is then a view into them.  Reading the attribute gives that view; assigning to it
    copies the new values into the view (shape checked, dtype converted), so the flat
    buffers, an optimizer's state beside them and a compiled plan's pointers stay valid.
    """

    def __set_name__(self, owner, name):
        self.name = name
        self.key = "_slot_" + name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.key]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, obj, value):
        current = obj.__dict__.get(self.key)
        if current is None:             # first assignment: the layer's own array
            obj.__dict__[self.key] = value
            return
        value = np.asarray(value)
        if value.shape != current.shape:
            raise ValueError(f"{self.name} has shape {current.shape}; cannot assign an "
                             f"array of shape {value.shape}")
        current[...] = value

    def rebind(self, obj: object, array: np.ndarray) -> None:
        """Make `array` (a view into a flat buffer) the attribute's storage."""
        obj.__dict__[self.key] = array


class Parametrized:
    """Parameter and mode bookkeeping shared by layers and losses that own parameters.

    Subclasses list their parameters in ``_param_slots`` as (parameter attribute,
    gradient attribute) pairs of :class:`Slot` attributes, and set ``dtype``."""

    #: True in training mode, False in evaluation mode (dropout, batch norm differ).
    training = True
    #: ((parameter attribute, gradient attribute), ...) in storage order.
    _param_slots: tuple[tuple[str, str], ...] = ()
    #: float32 or float64, set by every subclass.
    dtype: np.dtype[Any]

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name (the object's own arrays: write into them, in place)."""
        return {p: getattr(self, p) for p, _ in self._param_slots}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients by name, written by the last backward."""
        return {p: getattr(self, g) for p, g in self._param_slots}

    @property
    def n_params(self) -> int:
        """Number of learnable scalars (the sizes of all parameters)."""
        return sum(p.size for p in self.params.values())

    def _bind(self, flat_params, flat_grads, offset):
        """Move every parameter (and gradient) into the flat buffers from `offset` on,
        keeping its values; returns the offset after the last one."""
        cls = type(self)
        for p, g in self._param_slots:
            value = getattr(self, p)
            end = offset + value.size
            view = flat_params[offset:end].reshape(value.shape)
            view[...] = value
            getattr(cls, p).rebind(self, view)
            gview = flat_grads[offset:end].reshape(value.shape)
            gview[...] = getattr(self, g)
            getattr(cls, g).rebind(self, gview)
            offset = end
        return offset

    def _own_flat(self):
        """(flat parameters, flat gradients) of this object alone, made on first use
        (a loss with parameters, trained beside a net)."""
        flat = getattr(self, "_flat", None)
        if flat is None or flat[0].size != self.n_params:
            flat = bind_flat([self], self.dtype)
            self._flat = flat
        return flat

    def set_params(self, **values: ArrayLike) -> None:
        """Copy new values into named parameters (shape must match; dtype converts)."""
        params = self.params
        for name, value in values.items():
            if name not in params:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; "
                                 f"it has {sorted(params)}")
            value = check_array(value, name, dtype=self.dtype)
            if value.shape != params[name].shape:
                raise ValueError(f"{name} has shape {value.shape}, expected "
                                 f"{params[name].shape}")
            params[name][...] = value

    # -- pickling: parameters and state, never buffers ------------------------------------
    #: Attributes that only cache the last forward/backward (inputs, outputs, masks,
    #: per-batch buffers): pickled as None, so a pickle holds what defines the object.
    _TRANSIENT = ("_x", "_last_out", "_mask", "_xhat", "_arg", "_h", "_y", "_dz", "dh",
                  "dscores", "row_loss")

    def __getstate__(self):
        """Parameters, hyperparameters and state (batch norm running statistics, dropout
        seed and step); not the batch buffers, the cached inputs and outputs of the last
        pass, nor the gradients (re-made as zeros on unpickling).  A parameter that is a
        view into a net's flat array is pickled as its own values only."""
        state = self.__dict__.copy()
        state.pop("_buffers", None)
        state.pop("_flat", None)         # a loss's own flat arrays: re-made on first use
        for _, g in self._param_slots:
            state.pop("_slot_" + g, None)
        for name in self._TRANSIENT:
            if name in state:
                state[name] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for p, g in self._param_slots:
            param = self.__dict__.get("_slot_" + p)
            if param is not None:
                self.__dict__["_slot_" + g] = np.zeros_like(param)
        if "dtype" in state:
            self._buffers = BatchBuffers(self.dtype)

    def train(self, mode: bool = True) -> Self:
        """Switch to training mode (or evaluation mode when mode is False); returns self."""
        self.training = bool(mode)
        return self

    def eval(self) -> Self:
        """Switch to evaluation mode: dropout is the identity, batch norm uses its
        running statistics.  Returns self."""
        return self.train(False)


class Layer(Parametrized):
    """Base class.  Subclasses implement _forward/_backward and list their parameters."""

    def __init__(self, dtype: DTypeLike = np.float64) -> None:
        self.dtype = float_dtype(dtype)
        self._buffers = BatchBuffers(self.dtype)

    # -- passes -------------------------------------------------------------------
    def forward(self, x: ArrayLike) -> np.ndarray:
        """Validated forward pass: x (N, n_in) -> output view (N, n_out)."""
        # _forward/_backward: defined by every subclass, not by this base
        return self._forward(self._check_input(x))  # type: ignore[attr-defined]

    def backward(self, dout: ArrayLike) -> np.ndarray | None:
        """Validated backward pass: dout like the last output -> dx view or None."""
        out = getattr(self, "_last_out", None)
        if out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        dout = check_array(dout, "dout", dtype=self.dtype)
        if dout.shape != out.shape:
            raise ValueError(f"dout has shape {dout.shape}, expected {out.shape} "
                             "(the shape of the last forward output)")
        return self._backward(dout)  # type: ignore[attr-defined]

    def _check_input(self, x):
        """x as (N, n_in) of the layer's dtype (any width when the layer has no n_in)."""
        return check_array(x, "x", ndim=2, n_cols=getattr(self, "n_in", None),
                           dtype=self.dtype)

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"

    def _repr_args(self):
        return ""


class HasWeights(Parametrized):
    """Owns a weight matrix ``W`` and a bias ``b`` with their gradients ``dW``, ``db``
    (Linear, Maxout, HierarchicalSoftmax)."""

    W, b, dW, db = Slot(), Slot(), Slot(), Slot()
    _param_slots = (("W", "dW"), ("b", "db"))

    def _own_weights(self, W, b):
        self.W, self.b = W, b
        self.dW, self.db = np.zeros_like(W), np.zeros_like(b)


class Linear(HasWeights, Layer):
    """Fully connected layer, optionally fused with its activation:
    ``out = act(x @ W + b)`` with x (N, n_in), W (n_in, n_out), b (n_out,).

    Parameters
    ----------
    n_in, n_out : int
    activation : None, "relu", "leaky_relu", "sigmoid" or "tanh"
        Applied in the same compiled pass as the bias (forward) and the bias gradient
        (backward); its derivative is computed from the output.
    alpha : float >= 0
        Leaky ReLU's slope for negative inputs.
    init : str or callable
        Weight initializer (see :mod:`fastnn.init`); biases start at ``bias_init``.
    input_grad : bool
        Whether backward computes dx when the layer is used on its own; inside a net
        the net decides (every layer's but the first's).
    seed : None, int or numpy Generator
    dtype : float32 or float64
    regularizer : None or a regularizer (see :mod:`fastnn.regularization`)
        Overrides the trainer's global regularizer for this layer (a float is an L2
        strength, a list combines); ``regularization.NONE`` exempts the layer.  None:
        the layer follows the trainer's.
    regularize_bias : bool
        Whether the regularizer (the layer's or the trainer's) also penalizes b
        (constraints apply to W only).
    """

    def __init__(self, n_in: int, n_out: int, *, activation: str | None = None,
                 alpha: float = 0.01, init: str | Callable[..., np.ndarray] = "small_random",
                 bias_init: float = 0.0, input_grad: bool = True,
                 seed: int | np.random.Generator | np.random.RandomState | None = None,
                 dtype: DTypeLike = np.float64,
                 regularizer: (_regularization.Regularizer | float | list[Any]
                               | tuple[Any, ...] | None) = None,
                 regularize_bias: bool = False) -> None:
        super().__init__(dtype)
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_out = check_positive_int(n_out, "n_out")
        self.activation = activation
        self._act = activation_code(activation)
        # >= 0: the backward pass reads the derivative off the output's sign
        self.alpha = check_scalar(alpha, "alpha", low=0.0)
        self.input_grad = bool(input_grad)
        self.regularizer = (None if regularizer is None
                            else _regularization.get(regularizer, "regularizer"))
        self.regularize_bias = bool(regularize_bias)
        self._own_weights(_init.weights(init, self.n_in, self.n_out, seed, self.dtype),
                          np.full(self.n_out, check_scalar(bias_init, "bias_init"),
                                  dtype=self.dtype))
        self._x = None
        self._last_out = None

    def _forward(self, x, act=None, alpha=None):
        """act/alpha override the layer's own activation (used when a container fuses
        the activation layer that follows this one)."""
        if act is None:
            act, alpha = self._act, self.alpha
        out = self._buffers.get("out", x.shape[0], (self.n_out,))
        _kernels.backend().affine_forward(x, self.W, self.b, out, act, alpha,
                                          config._n_threads)
        self._x, self._last_out, self._run_act, self._run_alpha = x, out, act, alpha
        return out

    def _backward(self, dout, input_grad=None):
        n = dout.shape[0]
        act = self._run_act
        dz = self._buffers.get("dz", n, (self.n_out,)) if act != 0 else None
        want_dx = self.input_grad if input_grad is None else input_grad
        dx = self._buffers.get("dx", n, (self.n_in,)) if want_dx else None
        _kernels.backend().affine_backward(dout, self._x, self.W, self._last_out, dz, dx,
                                           self.dW, self.db, act, self._run_alpha,
                                           config._n_threads)
        return dx

    def _repr_args(self):
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return f"{self.n_in}, {self.n_out}{act}, dtype={self.dtype.name}"


class ElementwiseActivation(Layer):
    """Base of the element-wise activations: ``out = act(x)``, any shape, one compiled
    pass forward and one backward (the derivative is computed from the output).

    After a :class:`Linear` without activation in a :class:`fastnn.net.Sequential`, the
    activation runs inside the Linear kernel instead (its own buffers are then unused).
    """

    #: The kernels' activation code (see ACTIVATIONS); set by each subclass.
    act_code = 0
    #: Slope below zero (only leaky ReLU uses it).
    alpha = 0.0

    def __init__(self, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        self._last_out = None

    def _forward(self, x):
        out = self._buffers.get("out", x.shape[0], x.shape[1:])
        _kernels.backend().activation_forward(x, out, self.act_code, self.alpha,
                                              config._n_threads)
        self._last_out = out
        return out

    def _backward(self, dout):
        dx = self._buffers.get("dx", dout.shape[0], dout.shape[1:])
        _kernels.backend().activation_backward(dout, self._last_out, dx, self.act_code,
                                               self.alpha, config._n_threads)
        return dx

    def _check_input(self, x):
        return check_array(x, "x", dtype=self.dtype)


class ReLU(ElementwiseActivation):
    """max(0, x), element-wise."""

    act_code = ACTIVATIONS["relu"]


class Dropout(Layer):
    """Dropout with ``p`` the probability of *keeping* a unit, mask ~ Bernoulli(p).

    mode="inverted" (default, recommended): in training ``out = x * mask / p``, in
    evaluation mode the identity (forward returns x itself and backward dout itself,
    not copies in layer-owned buffers).  mode="vanilla" (the notes' first version): in
    training ``out = x * mask``, in evaluation mode ``out = p * x``.  Either way the
    test-time output equals the expected training output; vanilla just puts the
    scaling on the test-time path.

    The mask of the t-th training forward is a pure function of (seed, t, element
    index), the same in both modes, so a run is reproducible from its seed for any
    thread count, and ``step`` can be stored and restored.
    """

    MODES = ("inverted", "vanilla")

    def __init__(self, p: float = 0.5, *, mode: str = "inverted",
                 seed: int | np.random.Generator | np.random.RandomState | None = None,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        self.p = check_scalar(p, "p", low=0.0, high=1.0, low_open=True)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.seed = seed_to_uint64(seed)
        self.step = 0
        self._mask = None
        self._last_out = None
        self._run_training = True

    def _forward(self, x):
        self._run_training = self.training
        if not self.training:
            self._mask = None
            if self.mode == "inverted":
                self._last_out = x
                return x
            out = self._buffers.get("out", x.shape[0], x.shape[1:])
            np.multiply(x, self.dtype.type(self.p), out=out)
            self._last_out = out
            return out
        out = self._buffers.get("out", x.shape[0], x.shape[1:])
        mask = self._buffers.get("mask", x.shape[0], x.shape[1:], np.uint8)
        if self.mode == "inverted":
            _kernels.backend().dropout_forward(x, out, mask, self.p, self.seed, self.step,
                                               config._n_threads)
        else:
            _kernels.backend().dropout_forward_scaled(x, out, mask, self.p, 1.0, self.seed,
                                                      self.step, config._n_threads)
        self.step += 1
        self._mask, self._last_out = mask, out
        return out

    def _backward(self, dout):
        if not self._run_training:   # evaluation mode: identity or the scaling by p
            if self.mode == "inverted":
                return dout
            dx = self._buffers.get("dx", dout.shape[0], dout.shape[1:])
            np.multiply(dout, self.dtype.type(self.p), out=dx)
            return dx
        dx = self._buffers.get("dx", dout.shape[0], dout.shape[1:])
        if self.mode == "inverted":
            _kernels.backend().dropout_backward(dout, self._mask, dx, self.p,
                                                config._n_threads)
        else:
            _kernels.backend().dropout_backward_scaled(dout, self._mask, dx, 1.0,
                                                       config._n_threads)
        return dx

    def _check_input(self, x):
        return check_array(x, "x", dtype=self.dtype)

    def _repr_args(self):
        mode = "" if self.mode == "inverted" else f", mode={self.mode!r}"
        return f"p={self.p}{mode}"


class LeakyReLU(ElementwiseActivation):
    """x where x >= 0, alpha * x below zero (alpha >= 0: the backward pass reads the
    derivative off the output's sign)."""

    act_code = ACTIVATIONS["leaky_relu"]

    def __init__(self, alpha: float = 0.01, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype=dtype)
        self.alpha = check_scalar(alpha, "alpha", low=0.0)

    def _repr_args(self):
        return f"alpha={self.alpha}"


class Sigmoid(ElementwiseActivation):
    """1 / (1 + exp(-x)), element-wise; derivative out * (1 - out)."""

    act_code = ACTIVATIONS["sigmoid"]


class Tanh(ElementwiseActivation):
    """tanh(x), element-wise; derivative 1 - out**2."""

    act_code = ACTIVATIONS["tanh"]


class PReLU(Layer):
    """Parametric ReLU: ``out = x`` where x > 0, ``alpha[c] * x`` elsewhere, with one
    learned slope per unit (column).

    Parameters
    ----------
    n_units : int
        Columns of the input, x (N, n_units).
    alpha_init : float
        The slopes' initial value (0.25); any real number (the gradient uses the input,
        so negative slopes are fine).
    dtype : float32 or float64

    ``params`` = {"alpha": (n_units,)}; its gradient is reduced over the batch column by
    column in row order (the same bits for any thread count).
    """

    def __init__(self, n_units: int, *, alpha_init: float = 0.25,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        self.n_units = check_positive_int(n_units, "n_units")
        self.alpha = np.full(self.n_units, check_scalar(alpha_init, "alpha_init"),
                             dtype=self.dtype)
        self.dalpha = np.zeros_like(self.alpha)
        self._x = None
        self._last_out = None

    alpha, dalpha = Slot(), Slot()
    _param_slots = (("alpha", "dalpha"),)
    n_in = property(lambda self: self.n_units)
    n_out = property(lambda self: self.n_units)

    def _check_input(self, x):
        return check_array(x, "x", ndim=2, n_cols=self.n_units, dtype=self.dtype)

    def _forward(self, x):
        out = self._buffers.get("out", x.shape[0], (self.n_units,))
        _kernels.backend().prelu_forward(x, self.alpha, out, config._n_threads)
        self._x, self._last_out = x, out
        return out

    def _backward(self, dout):
        dx = self._buffers.get("dx", dout.shape[0], (self.n_units,))
        _kernels.backend().prelu_backward(dout, self._x, self.alpha, dx, self.dalpha,
                                          config._n_threads)
        return dx

    def _repr_args(self):
        return f"{self.n_units}, dtype={self.dtype.name}"


class Maxout(HasWeights, Layer):
    """Maxout units: each of the n_out outputs is the max of k affine pieces,
    ``out[:, j] = max_p (x @ W + b)[:, j*k + p]``.

    Layout: W (n_in, n_out*k), b (n_out*k,); column ``j*k + p`` is piece p of unit j
    (``W.reshape(n_in, n_out, k)[:, j, p]``).  Backward routes each output's gradient
    to its winning piece (the first one on ties).  ReLU is the special case k = 2 with
    one piece fixed at zero; Maxout doubles (k-folds) the parameters instead.

    Parameters
    ----------
    n_in, n_out : int
    k : int >= 1
        Pieces per unit.
    init : str or callable
        Weight initializer for the (n_in, n_out*k) matrix (see :mod:`fastnn.init`);
        biases start at ``bias_init``.
    input_grad : bool
        Whether backward computes dx when the layer is used on its own; inside a net
        the net decides (every layer's but the first's).
    seed : None, int or numpy Generator
    dtype : float32 or float64
    """

    def __init__(self, n_in: int, n_out: int, k: int = 2, *,
                 init: str | Callable[..., np.ndarray] = "small_random",
                 bias_init: float = 0.0, input_grad: bool = True,
                 seed: int | np.random.Generator | np.random.RandomState | None = None,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_out = check_positive_int(n_out, "n_out")
        self.k = check_positive_int(k, "k")
        self.input_grad = bool(input_grad)
        self._own_weights(_init.weights(init, self.n_in, self.n_out * self.k, seed, self.dtype),
                          np.full(self.n_out * self.k, check_scalar(bias_init, "bias_init"),
                                  dtype=self.dtype))
        self._x = None
        self._last_out = None

    def _forward(self, x):
        n = x.shape[0]
        z = self._buffers.get("z", n, (self.n_out * self.k,))
        out = self._buffers.get("out", n, (self.n_out,))
        arg = self._buffers.get("arg", n, (self.n_out,), np.int32)
        _kernels.backend().maxout_forward(x, self.W, self.b, z, out, arg, self.k,
                                          config._n_threads)
        self._x, self._last_out, self._arg = x, out, arg
        return out

    def _backward(self, dout, input_grad=None):
        n = dout.shape[0]
        dz = self._buffers.get("dz", n, (self.n_out * self.k,))
        want_dx = self.input_grad if input_grad is None else input_grad
        dx = self._buffers.get("dx", n, (self.n_in,)) if want_dx else None
        _kernels.backend().maxout_backward(dout, self._x, self.W, self._arg, dz, dx,
                                           self.dW, self.db, self.k, config._n_threads)
        return dx

    def _repr_args(self):
        return f"{self.n_in}, {self.n_out}, k={self.k}, dtype={self.dtype.name}"


class BatchNorm(Layer):
    """Batch normalization of each feature (column) over the batch, then a learned
    scale and shift: ``out = gamma * (x - mean) / sqrt(var + eps) + beta``.

    Meant to sit after a Linear layer (without activation) and before the
    nonlinearity.  In training mode mean and var are the batch's (var biased, over N)
    and the running averages are updated,
    ``running = momentum * running + (1 - momentum) * batch``; in evaluation mode the
    running averages are used instead (they start at mean 0, var 1).

    Parameters
    ----------
    n_features : int
    momentum : float in [0, 1)
    eps : float > 0
    dtype : float32 or float64

    ``params`` = {"gamma": ones, "beta": zeros}, each (n_features,);
    ``running_mean`` and ``running_var`` are state, not parameters.
    """

    def __init__(self, n_features: int, *, momentum: float = 0.9, eps: float = 1e-5,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        self.n_features = check_positive_int(n_features, "n_features")
        self.momentum = check_scalar(momentum, "momentum", low=0.0, high=1.0,
                                     high_open=True)
        self.eps = check_scalar(eps, "eps", low=0.0, low_open=True)
        h = self.n_features
        self.gamma = np.ones(h, dtype=self.dtype)
        self.beta = np.zeros(h, dtype=self.dtype)
        self.dgamma = np.zeros_like(self.gamma)
        self.dbeta = np.zeros_like(self.beta)
        self.running_mean = np.zeros(h, dtype=self.dtype)
        self.running_var = np.ones(h, dtype=self.dtype)
        self._mean = np.zeros(h, dtype=self.dtype)      # statistics of the last forward
        self._inv_std = np.ones(h, dtype=self.dtype)
        self._last_out = None
        self._run_training = True

    gamma, beta, dgamma, dbeta = Slot(), Slot(), Slot(), Slot()
    _param_slots = (("gamma", "dgamma"), ("beta", "dbeta"))
    # state, not parameters; Slots too, so that assigning them copies in place and a
    # training plan, which holds pointers to them, keeps updating what the layer reads
    running_mean, running_var = Slot(), Slot()

    def __getstate__(self):
        # the last forward's batch statistics are a buffer of backward's; the running
        # statistics are state and stay
        state = super().__getstate__()
        state.pop("_mean", None)
        state.pop("_inv_std", None)
        return state

    def __setstate__(self, state):
        for name in ("running_mean", "running_var"):     # pickled before they were Slots
            if name in state:
                state["_slot_" + name] = state.pop(name)
        super().__setstate__(state)
        self._mean = np.zeros(self.n_features, dtype=self.dtype)
        self._inv_std = np.ones(self.n_features, dtype=self.dtype)
    n_in = property(lambda self: self.n_features)
    n_out = property(lambda self: self.n_features)

    def _forward(self, x):
        n = x.shape[0]
        out = self._buffers.get("out", n, (self.n_features,))
        xhat = self._buffers.get("xhat", n, (self.n_features,))
        _kernels.backend().batchnorm_forward(x, self.gamma, self.beta, self.running_mean,
                                             self.running_var, out, xhat, self._mean,
                                             self._inv_std, self.training, self.momentum,
                                             self.eps, config._n_threads)
        self._xhat, self._last_out, self._run_training = xhat, out, self.training
        return out

    def _backward(self, dout):
        dx = self._buffers.get("dx", dout.shape[0], (self.n_features,))
        _kernels.backend().batchnorm_backward(dout, self._xhat, self.gamma, self._inv_std,
                                              dx, self.dgamma, self.dbeta,
                                              self._run_training, config._n_threads)
        return dx

    def _repr_args(self):
        return f"{self.n_features}, momentum={self.momentum}, dtype={self.dtype.name}"


def bind_flat(owners: Sequence[Parametrized],
              dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
    """Put the parameters of `owners` (layers, or a loss with parameters) into one new
    flat parameter array and their gradients into one flat gradient array, in order;
    every parameter attribute becomes a view.  Returns (flat_params, flat_grads), 1-D
    C-contiguous arrays of `dtype`."""
    total = sum(owner.n_params for owner in owners)
    flat_params = np.empty(total, dtype=dtype)
    flat_grads = np.zeros(total, dtype=dtype)
    offset = 0
    for owner in owners:
        offset = owner._bind(flat_params, flat_grads, offset)
    return flat_params, flat_grads
