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
import numpy as np

from . import _kernels, config, init as _init
from . import regularization as _regularization
from ._validation import (check_array, check_positive_int, check_scalar, float_dtype,
                          seed_to_uint64)

ACTIVATIONS = {None: 0, "identity": 0, "relu": 1, "leaky_relu": 2}


def activation_code(activation):
    """The kernels' code for an activation name (None or "identity", "relu", "leaky_relu")."""
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        names = sorted(k for k in ACTIVATIONS if k is not None)
        raise ValueError(f"unknown activation {activation!r}; choose one of {names}") from None


class BatchBuffers:
    """Named arrays of shape (n, *tail) that hold the rows of the current batch.

    Storage grows to the largest batch seen; smaller batches get views of the first n
    rows, which are C-contiguous because only the leading axis is cut."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self._store = {}
        self._views = {}

    def get(self, name, n, tail, dtype=None):
        view = self._views.get(name)
        if view is not None and view.shape[0] == n:
            return view
        store = self._store.get(name)
        if store is None or store.shape[0] < n or store.shape[1:] != tuple(tail):
            store = np.empty((n, *tail), dtype=dtype or self.dtype)
            self._store[name] = store
        view = store[:n]
        self._views[name] = view
        return view


class Layer:
    """Base class.  Subclasses implement _forward/_backward and list their parameters."""

    #: True in training mode, False in evaluation mode (dropout, batch norm differ).
    training = True

    def __init__(self, dtype=np.float64):
        self.dtype = float_dtype(dtype)
        self._buffers = BatchBuffers(self.dtype)

    # -- parameters ---------------------------------------------------------------
    @property
    def params(self):
        """Parameters by name (the layer's own arrays: write into them, in place)."""
        return {}

    @property
    def grads(self):
        """Gradients by name, written by the last backward."""
        return {}

    @property
    def n_params(self):
        return sum(p.size for p in self.params.values())

    def set_params(self, **values):
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

    # -- modes --------------------------------------------------------------------
    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- passes -------------------------------------------------------------------
    def forward(self, x):
        """Validated forward pass: x (N, n_in) -> output view (N, n_out)."""
        return self._forward(self._check_input(x))

    def backward(self, dout):
        """Validated backward pass: dout like the last output -> dx view or None."""
        out = getattr(self, "_last_out", None)
        if out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        dout = check_array(dout, "dout", dtype=self.dtype)
        if dout.shape != out.shape:
            raise ValueError(f"dout has shape {dout.shape}, expected {out.shape} "
                             "(the shape of the last forward output)")
        return self._backward(dout)

    def _check_input(self, x):
        return check_array(x, "x", ndim=2, dtype=self.dtype)

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"

    def _repr_args(self):
        return ""


class Linear(Layer):
    """Fully connected layer, optionally fused with its activation:
    ``out = act(x @ W + b)`` with x (N, n_in), W (n_in, n_out), b (n_out,).

    Parameters
    ----------
    n_in, n_out : int
    activation : None, "relu" or "leaky_relu"
        Applied in the same compiled pass as the bias (forward) and the bias gradient
        (backward).
    alpha : float
        Leaky ReLU's slope for negative inputs.
    init : str or callable
        Weight initializer (see :mod:`fastnn.init`); biases start at ``bias_init``.
    input_grad : bool
        Whether backward computes dx.  The first layer of a net does not need it.
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

    def __init__(self, n_in, n_out, *, activation=None, alpha=0.01, init="small_random",
                 bias_init=0.0, input_grad=True, seed=None, dtype=np.float64,
                 regularizer=None, regularize_bias=False):
        super().__init__(dtype)
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_out = check_positive_int(n_out, "n_out")
        self.activation = activation
        self._act = activation_code(activation)
        self.alpha = check_scalar(alpha, "alpha")
        self.input_grad = bool(input_grad)
        self.regularizer = (None if regularizer is None
                            else _regularization.get(regularizer, "regularizer"))
        self.regularize_bias = bool(regularize_bias)
        self.W = _init.weights(init, self.n_in, self.n_out, seed, self.dtype)
        self.b = np.full(self.n_out, check_scalar(bias_init, "bias_init"), dtype=self.dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._x = None
        self._last_out = None

    @property
    def params(self):
        return {"W": self.W, "b": self.b}

    @property
    def grads(self):
        return {"W": self.dW, "b": self.db}

    def _check_input(self, x):
        return check_array(x, "x", ndim=2, n_cols=self.n_in, dtype=self.dtype)

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


class ReLU(Layer):
    """max(0, x), element-wise.  After a Linear layer in a Sequential it is fused into
    the Linear kernel; on its own it runs as one in-place ufunc pass."""

    def _forward(self, x):
        out = self._buffers.get("out", x.shape[0], x.shape[1:])
        np.maximum(x, 0, out=out)
        self._last_out = out
        return out

    def _backward(self, dout):
        dx = self._buffers.get("dx", dout.shape[0], dout.shape[1:])
        np.multiply(dout, self._last_out > 0, out=dx)
        return dx

    def _check_input(self, x):
        return check_array(x, "x", dtype=self.dtype)


class Dropout(Layer):
    """Inverted dropout: in training, ``out = x * mask / p`` with mask ~ Bernoulli(p),
    ``p`` the probability of *keeping* a unit; in evaluation mode, the identity.

    The mask of the t-th training forward is a pure function of (seed, t, element
    index), so a run is reproducible from its seed for any thread count, and
    ``step`` can be stored and restored.
    """

    def __init__(self, p=0.5, *, seed=None, dtype=np.float64):
        super().__init__(dtype)
        self.p = check_scalar(p, "p", low=0.0, high=1.0, low_open=True)
        self.seed = seed_to_uint64(seed)
        self.step = 0
        self._mask = None
        self._last_out = None

    def _forward(self, x):
        if not self.training:
            self._mask = None
            self._last_out = x
            return x
        out = self._buffers.get("out", x.shape[0], x.shape[1:])
        mask = self._buffers.get("mask", x.shape[0], x.shape[1:], np.uint8)
        _kernels.backend().dropout_forward(x, out, mask, self.p, self.seed, self.step,
                                           config._n_threads)
        self.step += 1
        self._mask, self._last_out = mask, out
        return out

    def _backward(self, dout):
        if self._mask is None:        # evaluation mode: identity
            return dout
        dx = self._buffers.get("dx", dout.shape[0], dout.shape[1:])
        _kernels.backend().dropout_backward(dout, self._mask, dx, self.p, config._n_threads)
        return dx

    def _check_input(self, x):
        return check_array(x, "x", dtype=self.dtype)

    def _repr_args(self):
        return f"p={self.p}"
