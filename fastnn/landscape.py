"""Loss landscapes: the loss along a ray and over a plane through the current weights.

The notes' slices: pick a random direction W1 and evaluate L(W + a W1) over a range of
a (1-D), or two directions W1, W2 and evaluate L(W + a W1 + b W2) over a grid (2-D).
Every grid point is a parameter vector; all of them go through the compiled evaluator
(fastnn.evaluate) in one call, in parallel.  The loss is the evaluator's: data loss +
penalties, batch norm on batch statistics, dropout off.

Directions are (n_params,) arrays in the layout of ``model.flat_params``: random (normal
draws) or given, optionally filter-normalized (Li et al.'s fix for comparing slices of
nets of different weight scales): each unit's piece of a direction -- the column of a
weight matrix W (n_in, n_out) feeding one output unit -- is rescaled to the norm of the
same column of the weights; biases, gains and other 1-D parameters are rescaled as one
piece to their norm.  (A piece whose direction norm is 0 stays 0.)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_positive_int, check_random_state

if TYPE_CHECKING:
    from .net import Sequential

__all__ = ["Landscape", "loss_line", "loss_plane", "filter_normalize", "random_direction"]


@dataclass
class Landscape:
    """A slice of the loss: ``losses`` is (len(alphas),) for a line, (len(betas),
    len(alphas)) for a plane (rows follow b, columns a, as an image is drawn);
    ``directions`` the (n_params,) direction arrays used (in the net's dtype)."""
    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    directions: tuple


def _pieces(model):
    """(start, shape) of every parameter array in the flat vector."""
    from .plan import _offset
    flat = model.flat_params
    for layer in model.layers:
        for p in layer.params.values():
            if p.size:
                yield _offset(flat, p), p.shape


def filter_normalize(model: Sequential, direction: ArrayLike) -> np.ndarray:
    """direction (n_params,) rescaled piece by piece to the weights' norms (see the
    module docstring); returns a new float64 array."""
    d = np.array(direction, dtype=np.float64)
    w = model.flat_params.astype(np.float64)
    if d.shape != w.shape:
        raise ValueError(f"direction must have shape {w.shape} (one entry per element of "
                         f"model.flat_params), got {d.shape}")
    for start, shape in _pieces(model):
        n = int(np.prod(shape))
        dp = d[start:start + n].reshape(shape)
        wp = w[start:start + n].reshape(dp.shape)
        if dp.ndim == 2:             # one piece per output unit: the columns
            dn = np.linalg.norm(dp, axis=0)
            wn = np.linalg.norm(wp, axis=0)
            scale = np.divide(wn, dn, out=np.zeros_like(dn), where=dn > 0)
            dp *= scale[None, :]
        else:
            dn, wn = np.linalg.norm(dp), np.linalg.norm(wp)
            dp *= wn / dn if dn > 0 else 0.0
        d[start:start + n] = dp.ravel()
    return d


def random_direction(model: Sequential, *,
                     seed: int | np.random.Generator | np.random.RandomState | None = None,
                     filter_normalized: bool = False) -> np.ndarray:
    """A (n_params,) direction of standard normal draws (filter-normalized on request),
    in the net's dtype."""
    rng = check_random_state(seed)
    d = rng.standard_normal(model.flat_params.size)
    if filter_normalized:
        d = filter_normalize(model, d)
    return d.astype(model.dtype)


def _direction(model, direction, name, seed, filter_normalized) -> np.ndarray:
    n = model.flat_params.size
    if direction is None:
        return random_direction(model, seed=seed, filter_normalized=filter_normalized)
    d = np.asarray(direction)
    if d.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {d.dtype}")
    if d.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one entry per element of "
                         f"model.flat_params), got {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contains NaN or infinity")
    if filter_normalized:
        d = filter_normalize(model, d)
    return d.astype(model.dtype)


def _grid(values, name, default) -> np.ndarray:
    if values is None:
        values = default
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        count = check_positive_int(int(values), name)
        # (one point: the weights themselves, the middle of [-1, 1])
        values = np.linspace(-1.0, 1.0, count) if count > 1 else np.zeros(1)
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a count or a non-empty 1-D array of offsets, "
                         f"got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def loss_line(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
              direction: ArrayLike | None = None, alphas: int | ArrayLike = 101,
              regularizer: Any = None, filter_normalized: bool = False,
              seed: int | np.random.Generator | np.random.RandomState | None = None,
              n_threads: int | None = None) -> Landscape:
    """The loss along the ray L(W + a W1) (the notes' 1-D slice).

    model, loss, X, y, regularizer : as for fastnn.evaluate.build_evaluator.
    direction : W1, (n_params,) in the layout of model.flat_params, or None for a random
        one (seed); filter_normalized rescales it (module docstring).
    alphas : a count (that many points on [-1, 1]; one point: a = 0) or a 1-D array of
        offsets a.
    Returns a :class:`Landscape` with losses (len(alphas),) float64.  Each point is
    W + a W1 formed in float64 and stored in the net's dtype."""
    from .evaluate import build_evaluator
    alphas = _grid(alphas, "alphas", 101)
    d = _direction(model, direction, "direction", seed, filter_normalized)
    ev = build_evaluator(model, loss, X, y, regularizer=regularizer)
    w = model.flat_params.astype(np.float64)
    points = (w[None, :] + alphas[:, None] * d.astype(np.float64)[None, :]).astype(ev.dtype)
    return Landscape(alphas, np.zeros(0), ev.losses(points, n_threads=n_threads), (d,))


def loss_plane(model: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *,
               directions: Sequence[ArrayLike | None] | None = None,
               alphas: int | ArrayLike = 101, betas: int | ArrayLike | None = None,
               regularizer: Any = None, filter_normalized: bool = False,
               seed: int | np.random.Generator | np.random.RandomState | None = None,
               n_threads: int | None = None) -> Landscape:
    """The loss over the plane L(W + a W1 + b W2) (the notes' 2-D slice).

    directions : None (two random directions from seed) or a pair (W1, W2), each
        (n_params,) in the layout of model.flat_params, or None for a random one from
        seed; filter_normalized rescales them.
    alphas, betas : counts or 1-D arrays of offsets (betas defaults to alphas).
    Returns a :class:`Landscape` with losses (len(betas), len(alphas)) float64:
    losses[i, j] = L(W + alphas[j] W1 + betas[i] W2)."""
    from .evaluate import build_evaluator
    alphas = _grid(alphas, "alphas", 101)
    betas = alphas if betas is None else _grid(betas, "betas", 101)
    rng = check_random_state(seed)          # (also for one direction of a given pair)
    if directions is None:
        directions = (None, None)
    elif len(directions) != 2:
        raise ValueError(f"directions must be a pair (W1, W2), got {len(directions)}")
    d1 = _direction(model, directions[0], "directions[0]", rng, filter_normalized)
    d2 = _direction(model, directions[1], "directions[1]", rng, filter_normalized)
    ev = build_evaluator(model, loss, X, y, regularizer=regularizer)
    w = model.flat_params.astype(np.float64)
    out = np.empty((betas.size, alphas.size))
    base = w[None, :] + alphas[:, None] * d1.astype(np.float64)[None, :]
    d2f = d2.astype(np.float64)
    # a row of the grid at a time keeps the points' memory at len(alphas) vectors
    rows = max(1, min(betas.size, (1 << 24) // max(alphas.size * w.size, 1)))
    for i0 in range(0, betas.size, rows):
        block = betas[i0:i0 + rows]
        pts = (base[None, :, :] + block[:, None, None] * d2f[None, None, :])
        pts = pts.reshape(-1, w.size).astype(ev.dtype)
        out[i0:i0 + block.size] = ev.losses(pts, n_threads=n_threads).reshape(block.size, -1)
    return Landscape(alphas, betas, out, (d1, d2))
