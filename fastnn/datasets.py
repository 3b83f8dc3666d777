"""Toy data sets from the notes."""
from __future__ import annotations

import numpy as np

from ._validation import check_positive_int, check_random_state, check_scalar


def spiral(n_per_class: int = 100, n_classes: int = 3, *, noise: float = 0.2,
           seed: int | np.random.Generator | np.random.RandomState | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The spiral data set of the case study: ``n_classes`` interleaved arms in 2-D.

    Class j has ``n_per_class`` points at radius r in [0, 1] and angle
    t = 4j + 4r + noise * N(0, 1), i.e. (x1, x2) = (r sin t, r cos t).

    Returns
    -------
    X : ndarray of shape (n_per_class * n_classes, 2), float64
    y : ndarray of shape (n_per_class * n_classes,), intp, class j in rows
        [j * n_per_class, (j + 1) * n_per_class)
    """
    n = check_positive_int(n_per_class, "n_per_class")
    k = check_positive_int(n_classes, "n_classes")
    noise = check_scalar(noise, "noise", low=0.0)
    rng = check_random_state(seed)
    X = np.empty((n * k, 2))
    y = np.empty(n * k, dtype=np.intp)
    r = np.linspace(0.0, 1.0, n)
    for j in range(k):
        rows = slice(n * j, n * (j + 1))
        t = np.linspace(4.0 * j, 4.0 * (j + 1), n) + noise * rng.standard_normal(n)
        X[rows, 0] = r * np.sin(t)
        X[rows, 1] = r * np.cos(t)
        y[rows] = j
    return X, y
