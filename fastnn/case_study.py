"""The notes' spiral case study: a linear softmax classifier and a 2-layer ReLU net,
trained by full-batch gradient descent from W = 0.01 * randn, b = 0."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import datasets
from .layers import Dropout, Layer, Linear
from .losses import SoftmaxCrossEntropy
from .net import Sequential
from .trainer import StepHistory, gradient_descent
from ._validation import check_random_state, float_dtype


@dataclass
class Result:
    """A trained model, its training history and its final training accuracy."""
    name: str
    net: Sequential
    history: StepHistory
    accuracy: float


def linear_classifier(n_features: int, n_classes: int, *,
                      seed: int | np.random.Generator | np.random.RandomState | None = None,
                      dtype: DTypeLike = np.float64) -> Sequential:
    """The softmax linear classifier: one Linear layer, W = 0.01 * randn."""
    return Sequential([Linear(n_features, n_classes, seed=seed, dtype=dtype)])


#: How the case study names a hidden layer's activation.
ACTIVATION_NAMES = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "sigmoid": "sigmoid",
                    "tanh": "tanh"}


def two_layer_net(n_features: int, n_hidden: int, n_classes: int, *,
                  seed: int | np.random.Generator | np.random.RandomState | None = None,
                  dtype: DTypeLike = np.float64, activation: str = "relu",
                  dropout: float | None = None) -> Sequential:
    """The 2-layer net: Linear+ReLU (fused) then Linear, both W = 0.01 * randn.

    activation: the hidden layer's ("relu", "leaky_relu", "sigmoid", "tanh");
    dropout: None, or the probability of keeping a hidden unit (inverted dropout after
    the hidden layer; its seed is drawn from ``seed`` between the two layers)."""
    if activation not in ACTIVATION_NAMES:
        raise ValueError(f"activation must be one of {sorted(ACTIVATION_NAMES)}, "
                         f"got {activation!r}")
    rng = check_random_state(seed)
    layers: list[Layer] = [Linear(n_features, n_hidden, activation=activation, seed=rng,
                                  dtype=dtype)]
    if dropout is not None:
        layers.append(Dropout(dropout, seed=rng, dtype=dtype))
    layers.append(Linear(n_hidden, n_classes, seed=rng, dtype=dtype))
    return Sequential(layers)


def net_name(hidden: int, activation: str = "relu", dropout: float | None = None) -> str:
    """The 2-layer net's name in the log and the plots."""
    keep = "" if dropout is None else f", dropout keeping {dropout:g}"
    return f"2-layer {ACTIVATION_NAMES[activation]} net (h = {hidden}{keep})"


def train(net: Sequential, X: ArrayLike, y: ArrayLike, *, steps: int,
          step_size: float = 1.0, reg: float = 1e-3, log_every: int = 0,
          log: Callable[[str], Any] = print, name: str = "") -> Result:
    """Train net on (X, y) with the case study's loop; return a Result."""
    history = gradient_descent(net, SoftmaxCrossEntropy(dtype=net.dtype), X, y, steps=steps,
                               step_size=step_size, reg=reg, log_every=log_every, log=log)
    return Result(name=name, net=net, history=history, accuracy=net.score(X, y))


def run(*, seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64,
        hidden: int = 100, linear_steps: int = 200, steps: int = 10_000,
        step_size: float = 1.0, reg: float = 1e-3, n_per_class: int = 100,
        n_classes: int = 3, log: Callable[[str], Any] = print, activation: str = "relu",
        dropout: float | None = None, train_net: Callable[..., Result] | None = None
        ) -> tuple[np.ndarray, np.ndarray, Result, Result]:
    """The whole case study: data, then the linear classifier, then the 2-layer net.

    activation, dropout: the 2-layer net's hidden layer (see :func:`two_layer_net`).
    train_net: None (the notes' full-batch gradient descent, ``steps`` steps), or
    ``train_net(net, X, y, name=..., log=...) -> Result`` to train the 2-layer net some
    other way (it logs its own header; the final line is logged here).

    Data and weights are drawn, in the notes' order, from numpy's legacy
    ``RandomState(seed)`` stream (the generator the notes' ``np.random.randn`` uses), so
    seed 0 reproduces the notes' data set.  ``seed`` may also be a Generator.

    Returns (X, y, linear_result, net_result)."""
    dtype = float_dtype(dtype)
    rng = np.random.RandomState(seed) if isinstance(seed, int) else check_random_state(seed)
    X, y = datasets.spiral(n_per_class, n_classes, seed=rng)
    X = X.astype(dtype)
    results = []
    for name, net, n_steps, every, custom in (
        ("linear softmax classifier", linear_classifier(2, n_classes, seed=rng, dtype=dtype),
         linear_steps, 10, None),
        (net_name(hidden, activation, dropout),
         two_layer_net(2, hidden, n_classes, seed=rng, dtype=dtype, activation=activation,
                       dropout=dropout), steps, 1000, train_net),
    ):
        if custom is not None:
            r = custom(net, X, y, name=name, log=log)
        else:
            log(f"== {name}: {n_steps} steps, step size {step_size:g}, reg {reg:g}, "
                f"{np.dtype(dtype).name}")
            r = train(net, X, y, steps=n_steps, step_size=step_size, reg=reg,
                      log_every=every, log=log, name=name)
        log(f"final loss {r.history.loss[-1]:f}; training accuracy: {r.accuracy:.2f}; "
            f"{r.history.seconds:.3f} s ({r.history.us_per_step:.1f} us/step)")
        results.append(r)
    return X, y, results[0], results[1]
