"""Networks: a stack of layers run as one forward and one backward pass."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._validation import check_array, check_labels, check_positive_int, check_random_state
from .layers import (BatchNorm, Dropout, ElementwiseActivation, Layer, LeakyReLU, Linear, Maxout,
                     ReLU, Sigmoid, Tanh, bind_flat)


class Sequential:
    """Layers applied in order: ``scores = layers[-1](...layers[0](X))``.

    A :class:`~fastnn.layers.Linear` without activation followed by an element-wise
    activation layer (:class:`~fastnn.layers.ReLU`, ``LeakyReLU``, ``Sigmoid``,
    ``Tanh``) runs as one fused affine+activation kernel (the activation layer's own
    buffers are then not used).  All layers must share one dtype.

    The first layer gets no input gradient unless ``backward(..., input_grad=True)``.
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("layers must not be empty")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] is a {type(layer).__name__}, not a fastnn Layer")
        dtypes = {layer.dtype for layer in layers}
        if len(dtypes) > 1:
            raise ValueError(f"all layers must share one dtype, got {sorted(map(str, dtypes))}")
        width, source = None, None
        for i, layer in enumerate(layers):
            n_in = getattr(layer, "n_in", None)
            if n_in is not None and width is not None and n_in != width:
                raise ValueError(f"layers[{i}] ({type(layer).__name__}) takes {n_in} inputs "
                                 f"but {source} gives {width}")
            n_out = getattr(layer, "n_out", None)
            if n_out is not None:
                width, source = n_out, f"layers[{i}] ({type(layer).__name__})"
        self.layers = layers
        self.dtype = layers[0].dtype
        self._fused = self._fuse(layers)
        # the first layer that knows its input width: the layers before it (input
        # dropout, an activation) keep the width
        widths = (getattr(layer, "n_in", None) for layer in layers)
        self.n_features = next((w for w in widths if w is not None), None)
        self._bind_parameters()

    def _bind_parameters(self):
        """All parameters into ``flat_params``, all gradients into ``flat_grads``, in
        layer order; every layer's parameters become views into them.  A layer belongs
        to the last net built from it."""
        self._flat_params, self._flat_grads = bind_flat(self.layers, self.dtype)

    @property
    def flat_params(self) -> np.ndarray:
        """Every parameter of the net, (n_params,) of its dtype, in layer order: each
        layer's parameters are views into it.  Assigning copies into it (shape checked),
        so the views stay valid."""
        return self._flat_params

    @flat_params.setter
    def flat_params(self, value: ArrayLike) -> None:
        self._assign_flat(self._flat_params, value, "flat_params")

    @property
    def flat_grads(self) -> np.ndarray:
        """The gradients, laid out as :attr:`flat_params` (each layer's d-arrays are
        views into it); assigned the same way."""
        return self._flat_grads

    @flat_grads.setter
    def flat_grads(self, value: ArrayLike) -> None:
        self._assign_flat(self._flat_grads, value, "flat_grads")

    @staticmethod
    def _assign_flat(flat, value, name):
        value = np.asarray(value)
        if value.shape != flat.shape:
            raise ValueError(f"{name} must have shape {flat.shape}, got {value.shape}")
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
        flat[...] = value

    def _check_parameters(self):
        """Raise unless every layer's parameters still live in this net's flat array:
        a layer belongs to the last net built from it, and training an earlier net of
        it would write where its layers no longer read."""
        lo = self._flat_params.__array_interface__["data"][0]
        hi = lo + self._flat_params.nbytes
        for i, layer in enumerate(self.layers):
            for name, p in layer.params.items():
                start = p.__array_interface__["data"][0]
                if p.size and not (lo <= start and start + p.nbytes <= hi):
                    raise ValueError(
                        f"layers[{i}].{name} is no longer in this net's parameters: its "
                        "layer was put into another net since (a layer belongs to the "
                        "last net built from it); use that net, or build this one again")

    def __getstate__(self):
        # the flat buffers are pickled once, inside the layers, and re-made on load
        state = self.__dict__.copy()
        state.pop("_flat_params", None)
        state.pop("_flat_grads", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_parameters()

    def save(self, path: str | os.PathLike[str], *,
             metadata: dict[str, Any] | None = None) -> None:
        """Save this net to a safetensors model file, atomically; ``fastnn.load(path)``
        rebuilds it.  See :func:`fastnn.io.save`."""
        from .io import save
        save(self, path, metadata=metadata)

    @staticmethod
    def _fuse(layers):
        """[(layer, activation layer or None)], each Linear (without activation)
        followed by an element-wise activation merged into the Linear's kernel."""
        plan, i = [], 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if (isinstance(layer, Linear) and layer._act == 0
                    and isinstance(nxt, ElementwiseActivation)):
                plan.append((layer, nxt))
                i += 2
            else:
                plan.append((layer, None))
                i += 1
        return plan

    # -- passes -------------------------------------------------------------------
    def forward(self, X: ArrayLike, *, check_finite: bool = True) -> np.ndarray:
        """Scores for X (N, n_features): a view of the last layer's buffer."""
        return self._forward(self._check_X(X, check_finite))

    def _check_X(self, X, check_finite=True):
        return check_array(X, "X", ndim=2, n_cols=self.n_features, dtype=self.dtype,
                           check_finite=check_finite)

    def _forward(self, X):
        h = X
        for layer, act in self._fused:
            # the activation's alpha is read now, so a later change to it takes effect
            h = layer._forward(h, act.act_code, act.alpha) if act is not None else \
                layer._forward(h)
        return h

    def backward(self, dscores: ArrayLike, *, input_grad: bool = False) -> np.ndarray | None:
        """Backpropagate dscores (the gradient on the last forward's output) into every
        layer's grads.  Returns dL/dX when input_grad, else None."""
        last = self._fused[-1][0]
        out = getattr(last, "_last_out", None)
        if out is None:
            raise RuntimeError("backward called before forward")
        dscores = check_array(dscores, "dscores", dtype=self.dtype)
        if dscores.shape != out.shape:
            raise ValueError(f"dscores has shape {dscores.shape}, expected {out.shape}")
        return self._backward(dscores, input_grad)

    def _backward(self, dout, input_grad=False):
        for i in range(len(self._fused) - 1, -1, -1):
            layer = self._fused[i][0]
            if isinstance(layer, (Linear, Maxout)):
                # the net decides: dx for every layer but the first (a layer's own
                # input_grad=False serves it on its own, not inside a net)
                dout = layer._backward(dout, input_grad if i == 0 else True)
            else:
                dout = layer._backward(dout)
        return dout if input_grad else None

    # -- prediction ---------------------------------------------------------------
    def _eval_forward(self, X, check=True):
        modes = [layer.training for layer in self.layers]
        try:
            for layer in self.layers:
                layer.eval()
            return self._forward(self._check_X(X) if check else X)
        finally:
            for layer, mode in zip(self.layers, modes):
                layer.train(mode)

    def predict_scores(self, X: ArrayLike) -> np.ndarray:
        """Scores in evaluation mode (a new array)."""
        return self._eval_forward(X).copy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted class per row of X: argmax of the scores, (N,) intp."""
        return np.argmax(self._eval_forward(X), axis=1)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Softmax of the scores, (N, K), rows summing to 1."""
        s = self._eval_forward(X)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return p

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Mean accuracy of predict(X) against labels y."""
        pred = self.predict(X)
        y = check_labels(y, "y", n_samples=pred.shape[0])
        return float(np.mean(pred == y))

    # -- parameters -----------------------------------------------------------------
    def parameters(self) -> list[tuple[Layer, str, np.ndarray, np.ndarray]]:
        """[(layer, name, param, grad)] for every parameter, in layer order: views into
        ``flat_params`` and ``flat_grads``."""
        return [(layer, name, p, layer.grads[name])
                for layer in self.layers for name, p in layer.params.items()]

    @property
    def n_params(self) -> int:
        """Number of learnable parameters (weights and biases)."""
        return sum(layer.n_params for layer in self.layers)

    def train(self, mode: bool = True) -> Sequential:
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"


_ACTIVATION_LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}
#: The notes' advice: He initialization for the ReLU family, Glorot for sigmoid/tanh.
_DEFAULT_INIT = {"relu": "he_normal", "leaky_relu": "he_normal", "sigmoid": "glorot_normal",
                 "tanh": "glorot_normal"}


class MLP(Sequential):
    """A fully connected net from its layer sizes, e.g. ``MLP([3, 4, 4, 1])`` is the
    notes' 3-layer net (two hidden layers of 4): Linear layers with ``activation``
    between them and none after the last (it gives the scores).

    Parameters
    ----------
    sizes : sequence of int, at least 2: inputs, hidden widths..., outputs
    activation : "relu" (default), "leaky_relu", "sigmoid" or "tanh"
    init : initializer name or callable; default He for the ReLU family, Glorot for
        sigmoid and tanh (see :mod:`fastnn.init`)
    dropout : None or the probability p of *keeping* a hidden unit (inverted dropout
        after every hidden activation)
    batch_norm : insert BatchNorm after every hidden Linear, before its activation
    alpha : leaky ReLU's slope
    seed : None, int or numpy Generator (weights and dropout masks)
    dtype : float32 or float64

    Hidden Linear layers without batch norm run fused with their activation.
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "relu",
                 init: str | Any | None = None, dropout: float | None = None,
                 batch_norm: bool = False, alpha: float = 0.01,
                 seed: int | np.random.Generator | None = None,
                 dtype: DTypeLike = np.float64) -> None:
        try:
            sizes = [check_positive_int(s, "sizes") for s in sizes]
        except TypeError:
            if not hasattr(sizes, "__iter__"):
                raise TypeError("sizes must be a sequence of layer widths, got "
                                f"{type(sizes).__name__}") from None
            raise
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least 2 entries (inputs, outputs), got {sizes}")
        if activation not in _ACTIVATION_LAYERS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{sorted(_ACTIVATION_LAYERS)}")
        init = _DEFAULT_INIT[activation] if init is None else init
        rng = check_random_state(seed)
        act_kwargs: dict[str, Any] = {"alpha": alpha} if activation == "leaky_relu" else {}
        layers = []
        for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
            if batch_norm:
                layers += [Linear(n_in, n_out, init=init, seed=rng, dtype=dtype),
                           BatchNorm(n_out, dtype=dtype),
                           _ACTIVATION_LAYERS[activation](dtype=dtype, **act_kwargs)]
            else:
                layers.append(Linear(n_in, n_out, activation=activation, init=init, seed=rng,
                                     dtype=dtype, **act_kwargs))
            if dropout is not None:
                layers.append(Dropout(dropout, seed=rng, dtype=dtype))
        layers.append(Linear(sizes[-2], sizes[-1], init=init, seed=rng, dtype=dtype))
        super().__init__(layers)
        self.sizes = sizes
        self.activation = activation
