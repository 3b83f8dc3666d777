"""Stateless layer functions with the CS231n assignment signatures, compiled underneath.

Code written against the course's ``layers.py`` runs unchanged after
``from fastnn.functional import *``: every ``*_forward`` returns ``(out, cache)`` and
every ``*_backward(dout, cache)`` returns the gradients in the course's order.  Unlike
the layer classes, these allocate their outputs (they keep no state between calls).

Arrays may be float32 or float64 (mixed inputs compute in float64); ``x`` of shape
(N, d_1, ..., d_k) is flattened per example where the course does so.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _kernels, config
from ._validation import check_array, check_labels, check_scalar, seed_to_uint64

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "affine_relu_forward", "affine_relu_backward", "batchnorm_forward",
    "batchnorm_backward", "batchnorm_backward_alt", "dropout_forward", "dropout_backward",
    "svm_loss", "softmax_loss",
]

_IDENTITY, _RELU = 0, 1


def _dtype(*arrays):
    """float32 when every array is float32, else float64 (the data-follows rule)."""
    if all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _affine(x, w, b, act):
    x = np.asarray(x)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"x must have shape (N, d_1, ..., d_k), none of them 0, got "
                         f"{x.shape}")
    dt = _dtype(x, w, b)
    n = x.shape[0]
    x2 = check_array(x.reshape(n, -1), "x", ndim=2, dtype=dt)
    w = check_array(w, "w", ndim=2, n_rows=x2.shape[1], dtype=dt)
    b = check_array(b, "b", ndim=1, n_rows=w.shape[1], dtype=dt)
    out = np.empty((n, w.shape[1]), dt)
    _kernels.backend().affine_forward(x2, w, b, out, act, 0.0, config._n_threads)
    return out, (x.shape, x2, w, b, out, act)


def _affine_backward(dout, cache):
    x_shape, x2, w, b, out, act = cache
    dout = check_array(dout, "dout", ndim=2, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout has shape {dout.shape}, expected {out.shape}")
    dx2, dw, db = np.empty_like(x2), np.empty_like(w), np.empty_like(b)
    dz = np.empty_like(out) if act else None
    _kernels.backend().affine_backward(dout, x2, w, out, dz, dx2, dw, db, act, 0.0,
                                       config._n_threads)
    return dx2.reshape(x_shape), dw, db


def affine_forward(x: ArrayLike, w: ArrayLike,
                   b: ArrayLike) -> tuple[np.ndarray, tuple[Any, ...]]:
    """out = x.reshape(N, D) @ w + b.  x (N, d_1, ..., d_k), w (D, M), b (M,).

    Returns (out (N, M), cache)."""
    return _affine(x, w, b, _IDENTITY)


def affine_backward(dout: ArrayLike, cache: tuple[Any, ...]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (dx of x's shape, dw (D, M), db (M,))."""
    return _affine_backward(dout, cache)


def affine_relu_forward(x: ArrayLike, w: ArrayLike,
                        b: ArrayLike) -> tuple[np.ndarray, tuple[Any, ...]]:
    """relu(affine(x)), in one fused kernel.  Returns (out, cache)."""
    return _affine(x, w, b, _RELU)


def affine_relu_backward(dout: ArrayLike, cache: tuple[Any, ...]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (dx, dw, db) of relu(affine(x))."""
    return _affine_backward(dout, cache)


def relu_forward(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """max(0, x) element-wise, any shape.  Returns (out, cache)."""
    x = check_array(x, "x")
    out = np.empty_like(x)
    _kernels.backend().activation_forward(x, out, _RELU, 0.0, config._n_threads)
    return out, out


def relu_backward(dout: ArrayLike, cache: np.ndarray) -> np.ndarray:
    """dx = dout where the forward input was > 0, else 0."""
    out = cache
    dout = check_array(dout, "dout", dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout has shape {dout.shape}, expected {out.shape}")
    dx = np.empty_like(out)
    _kernels.backend().activation_backward(dout, out, dx, _RELU, 0.0, config._n_threads)
    return dx


def batchnorm_forward(x: ArrayLike, gamma: ArrayLike, beta: ArrayLike,
                      bn_param: dict[str, Any]) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Batch normalization, the course's signature.

    x (N, D), gamma and beta (D,); bn_param: "mode" ("train" or "test"), optional
    "eps" (1e-5), "momentum" (0.9), "running_mean" and "running_var" (zeros when
    absent, as in the course), which are updated in the dict in train mode.
    Returns (out (N, D), cache)."""
    if not isinstance(bn_param, dict):
        raise TypeError(f"bn_param must be a dict, got {type(bn_param).__name__}")
    mode = bn_param.get("mode")
    if mode not in ("train", "test"):
        raise ValueError(f"bn_param['mode'] must be 'train' or 'test', got {mode!r}")
    dt = _dtype(x, gamma, beta)
    x = check_array(x, "x", ndim=2, dtype=dt)
    d = x.shape[1]
    gamma = check_array(gamma, "gamma", ndim=1, n_rows=d, dtype=dt)
    beta = check_array(beta, "beta", ndim=1, n_rows=d, dtype=dt)
    eps = check_scalar(bn_param.get("eps", 1e-5), "bn_param['eps']", low=0.0, low_open=True)
    momentum = check_scalar(bn_param.get("momentum", 0.9), "bn_param['momentum']",
                            low=0.0, high=1.0, high_open=True)
    stats = {}
    for key in ("running_mean", "running_var"):
        value = bn_param.get(key)
        value = np.zeros(d, dt) if value is None else \
            check_array(value, f"bn_param[{key!r}]", ndim=1, n_rows=d, dtype=dt, copy=True)
        stats[key] = value
    out, xhat = np.empty_like(x), np.empty_like(x)
    mean, inv_std = np.empty(d, dt), np.empty(d, dt)
    training = mode == "train"
    _kernels.backend().batchnorm_forward(x, gamma, beta, stats["running_mean"],
                                         stats["running_var"], out, xhat, mean, inv_std,
                                         training, momentum, eps, config._n_threads)
    bn_param.update(stats)
    return out, (xhat, gamma, inv_std, training)


def batchnorm_backward(dout: ArrayLike, cache: tuple[Any, ...]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (dx (N, D), dgamma (D,), dbeta (D,))."""
    xhat, gamma, inv_std, training = cache
    dout = check_array(dout, "dout", ndim=2, dtype=xhat.dtype)
    if dout.shape != xhat.shape:
        raise ValueError(f"dout has shape {dout.shape}, expected {xhat.shape}")
    dx, dgamma, dbeta = np.empty_like(xhat), np.empty_like(gamma), np.empty_like(gamma)
    _kernels.backend().batchnorm_backward(dout, xhat, gamma, inv_std, dx, dgamma, dbeta,
                                          training, config._n_threads)
    return dx, dgamma, dbeta


#: The course's simplified-derivation variant computes the same gradients.
batchnorm_backward_alt = batchnorm_backward


def dropout_forward(x: ArrayLike,
                    dropout_param: dict[str, Any]) -> tuple[ArrayLike, tuple[Any, ...]]:
    """Inverted dropout, the course's signature.

    dropout_param: "p" (probability of keeping a unit), "mode" ("train" or "test"),
    optional "seed": with a seed every call draws the same mask (the course re-seeds
    numpy on each call), without one each call draws a fresh mask.
    Returns (out, cache); in test mode out is x itself."""
    if not isinstance(dropout_param, dict):
        raise TypeError(f"dropout_param must be a dict, got {type(dropout_param).__name__}")
    if dropout_param.get("p") is None:
        raise ValueError("dropout_param['p'] (the probability of keeping a unit) is required")
    p = check_scalar(dropout_param["p"], "dropout_param['p']", low=0.0, high=1.0,
                     low_open=True)
    mode = dropout_param.get("mode")
    if mode not in ("train", "test"):
        raise ValueError(f"dropout_param['mode'] must be 'train' or 'test', got {mode!r}")
    if mode == "test":
        return x, (p, mode, None)
    x = check_array(x, "x")
    seed = seed_to_uint64(dropout_param.get("seed"), "dropout_param['seed']")
    out, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    _kernels.backend().dropout_forward(x, out, mask, p, seed, 0, config._n_threads)
    return out, (p, mode, mask)


def dropout_backward(dout: ArrayLike, cache: tuple[Any, ...]) -> ArrayLike:
    """Returns dx: dout * mask / p in train mode, dout in test mode."""
    p, mode, mask = cache
    if mode == "test":
        return dout
    dout = check_array(dout, "dout")
    if dout.shape != mask.shape:
        raise ValueError(f"dout has shape {dout.shape}, expected {mask.shape}")
    dx = np.empty_like(dout)
    _kernels.backend().dropout_backward(dout, mask, dx, p, config._n_threads)
    return dx


def _loss(kernel, x, y, **kwargs):
    x = check_array(x, "x", ndim=2)
    y = check_labels(y, "y", n_samples=x.shape[0], n_classes=x.shape[1])
    dx = np.empty_like(x)
    row_loss = np.empty(x.shape[0], x.dtype)
    loss = getattr(_kernels.backend(), kernel)(x, y, dx, row_loss, **kwargs,
                                               n_threads=config._n_threads)
    return loss, dx


def svm_loss(x: ArrayLike, y: ArrayLike) -> tuple[float, np.ndarray]:
    """Multiclass SVM (Weston-Watkins, margin 1): x (N, C) scores, y (N,) labels.
    Returns (mean loss, dx)."""
    return _loss("multiclass_svm", x, y, delta=1.0, squared=False)


def softmax_loss(x: ArrayLike, y: ArrayLike) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy: x (N, C) scores, y (N,) labels.  Returns (mean loss, dx)."""
    return _loss("softmax_cross_entropy", x, y)
