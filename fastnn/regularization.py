"""Weight penalties and constraints.

A regularizer has two methods, called by the trainer for every regularized parameter:

``penalty_and_grad(W, dW) -> float``
    Returns the penalty of W (added to the data loss) and adds its gradient into dW, in
    place, in one compiled pass.  Sums are accumulated in double in a fixed order, so the
    result does not depend on the thread count.
``constrain(W) -> None``
    Called after each parameter update: projects W back onto the allowed set, in place.
    A no-op for the penalties.

W and dW are C-contiguous float32 or float64 arrays of one shape and dtype (penalties
accept any shape, biases included); a weight matrix is (n_in, n_out), so column j holds
the incoming weights of unit j.

========================  =============================================  ==================
regularizer               penalty                                        gradient
========================  =============================================  ==================
``L2(reg)``               ``0.5 * reg * sum(w**2)`` (the notes' form)    ``reg * w``
``L1(reg)``               ``reg * sum(|w|)``                             ``reg * sign(w)``
``ElasticNet(l1, l2)``    ``l1 * sum(|w|) + l2 * sum(w**2)``             ``l1*sign(w) + 2*l2*w``
``MaxNorm(c=3)``          0; after each update every column with         --
                          ``||w||_2 > c`` is scaled onto ``||w||_2 = c``
``NONE``                  0 (switches regularization off for a layer)    --
========================  =============================================  ==================

sign(0) = 0: at w == 0 the L1 subgradient used is 0.  Note the factor conventions: L2
carries the notes' 1/2, the elastic net's w**2 term (as the notes write it) does not.

``Combined([L2(1e-3), MaxNorm(3)])`` (or just the list, wherever a regularizer is taken)
adds penalties and applies every constraint in order.  :func:`get` turns None, a float
(an L2 strength), a regularizer or a list into a regularizer.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _kernels, config
from ._validation import check_scalar


class Regularizer:
    """Base class: no penalty, no constraint.  Subclasses override what they do."""

    #: True when constrain() does something (the trainer skips the others' calls).
    has_constraint = False
    #: True when penalty_and_grad() can return non-zero or change dW.
    has_penalty = False

    def penalty_and_grad(self, W: np.ndarray, dW: np.ndarray) -> float:
        """Return the penalty of W and add its gradient into dW (in place)."""
        return 0.0

    def constrain(self, W: np.ndarray) -> None:
        """Project W onto the constraint set, in place (after a parameter update)."""
        return None

    def penalty(self, W: np.ndarray) -> float:
        """The penalty of W alone, leaving every gradient buffer untouched."""
        if not self.has_penalty:
            return 0.0
        return self.penalty_and_grad(W, np.zeros_like(W))

    def __repr__(self):
        return f"{type(self).__name__}()"


class NoRegularization(Regularizer):
    """No penalty and no constraint; use the :data:`NONE` instance, for instance as a
    layer's ``regularizer=`` to exempt it from the trainer's global regularizer."""

    def __repr__(self):
        return "NONE"

    def __reduce__(self):          # unpickles to the module's singleton
        return "NONE"


NONE = NoRegularization()


class _Strength(Regularizer):
    """A penalty with one strength ``reg`` computed by one compiled kernel."""

    #: name of the kernel in fastnn._kernels.KERNELS
    _kernel: str | None = None

    def __init__(self, reg: float = 1e-3) -> None:
        self.reg = check_scalar(reg, "reg", low=0.0)
        self.has_penalty = self.reg > 0

    def penalty_and_grad(self, W: np.ndarray, dW: np.ndarray) -> float:
        """Return the penalty of W and add its gradient to dW, in one compiled pass."""
        if self.reg == 0.0:
            return 0.0
        # _kernel: None here, a kernel's name in every subclass
        return getattr(_kernels.backend(), self._kernel)(  # type: ignore[arg-type]
            W, dW, self.reg, config._n_threads)

    def __repr__(self):
        return f"{type(self).__name__}(reg={self.reg})"


class L2(_Strength):
    """L2 regularization as the notes define it: ``0.5 * reg * sum(W**2)``, gradient
    ``reg * W`` (the 0.5 makes the gradient that simple).  Biases are not penalized
    unless a layer asks (``Linear(..., regularize_bias=True)``)."""

    _kernel = "l2_penalty"


class L1(_Strength):
    """L1 regularization: ``reg * sum(|W|)``, subgradient ``reg * sign(W)`` (exactly 0
    where a weight is exactly 0).  Drives weights towards exact sparsity."""

    _kernel = "l1_penalty"


class ElasticNet(Regularizer):
    """Elastic net, as the notes write it: ``l1 * sum(|W|) + l2 * sum(W**2)``, gradient
    ``l1 * sign(W) + 2 * l2 * W`` (no 1/2 on the squared term, unlike :class:`L2`)."""

    def __init__(self, l1: float = 1e-3, l2: float = 1e-3) -> None:
        self.l1 = check_scalar(l1, "l1", low=0.0)
        self.l2 = check_scalar(l2, "l2", low=0.0)
        self.has_penalty = self.l1 > 0 or self.l2 > 0

    def penalty_and_grad(self, W: np.ndarray, dW: np.ndarray) -> float:
        """Return the penalty and add its gradient to dW, both sums in one pass."""
        if not self.has_penalty:
            return 0.0
        return _kernels.backend().elastic_net_penalty(W, dW, self.l1, self.l2,
                                                      config._n_threads)

    def __repr__(self):
        return f"ElasticNet(l1={self.l1}, l2={self.l2})"


class MaxNorm(Regularizer):
    """Max-norm constraint: after each update, every unit's incoming weight vector (a
    column of W, shape (n_in, n_out)) with ``||w||_2 > c`` is scaled by ``c / ||w||_2``
    (projected gradient descent); columns already inside the ball are left untouched.
    Typical c: 3 or 4.  No penalty: penalty_and_grad returns 0 and leaves dW alone.

    Applied by the trainer to the weight matrices only (a bias is no weight vector)."""

    has_constraint = True

    def __init__(self, c: float = 3.0) -> None:
        self.c = check_scalar(c, "c", low=0.0, low_open=True)

    def constrain(self, W: np.ndarray) -> None:
        """Project every column of the 2-D W onto ||w||_2 <= c, in place."""
        _kernels.backend().max_norm_constrain(W, self.c, config._n_threads)

    def __repr__(self):
        return f"MaxNorm(c={self.c})"


class Combined(Regularizer):
    """Several regularizers at once: penalties (and gradients) add up, constraints are
    applied in the order given, e.g. ``Combined([L2(1e-3), MaxNorm(3)])``."""

    parts: tuple[Regularizer, ...]

    def __init__(self, regularizers: Iterable[Regularizer | float | list[Any]
                                              | tuple[Any, ...] | None]) -> None:
        if isinstance(regularizers, Regularizer) or not hasattr(regularizers, "__iter__"):
            raise TypeError("regularizers must be a list of regularizers, got "
                            f"{type(regularizers).__name__}")
        parts: list[Regularizer] = []
        for i, r in enumerate(regularizers):
            r = get(r, f"regularizers[{i}]")
            parts.extend(r.parts if isinstance(r, Combined) else [r])
        self.parts = tuple(parts)
        self._penalties = tuple(r for r in self.parts if r.has_penalty)
        self._constraints = tuple(r for r in self.parts if r.has_constraint)
        self.has_penalty = bool(self._penalties)
        self.has_constraint = bool(self._constraints)

    def penalty_and_grad(self, W: np.ndarray, dW: np.ndarray) -> float:
        total = 0.0
        for r in self._penalties:
            total += r.penalty_and_grad(W, dW)
        return total

    def constrain(self, W: np.ndarray) -> None:
        for r in self._constraints:
            r.constrain(W)

    def __repr__(self):
        return f"Combined([{', '.join(map(repr, self.parts))}])"


def get(regularizer: Regularizer | float | list[Any] | tuple[Any, ...] | None,
        name: str = "regularizer") -> Regularizer:
    """A regularizer from None (:data:`NONE`), a number (an :class:`L2` strength), a
    regularizer (itself) or a list/tuple of those (:class:`Combined`)."""
    if regularizer is None:
        return NONE
    if isinstance(regularizer, Regularizer):
        return regularizer
    if isinstance(regularizer, numbers.Real) and not isinstance(regularizer, bool):
        return L2(check_scalar(regularizer, name, low=0.0))
    if isinstance(regularizer, (list, tuple)):
        return Combined(regularizer)
    raise TypeError(f"{name} must be None, an L2 strength, a fastnn.regularization "
                    f"regularizer or a list of them, got {type(regularizer).__name__}")
