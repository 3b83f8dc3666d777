"""Losses: the mean data loss over a batch and its gradient on the scores.

Every score loss has one interface: ``forward(scores, y)`` (also ``loss(scores, y)``)
validates its arguments, returns the mean loss over the N rows as a Python float and,
in the same compiled pass, computes ``dscores`` = dL/dscores; ``backward()`` returns
that (N, K) buffer.  ``dscores`` and ``row_loss`` (the per-row losses, (N,)) are
buffers owned by the loss, overwritten by its next forward: copy them to keep them.
scores are (N, K) float32/float64 arrays, converted to the loss's ``dtype``.

Classification (y: (N,) integer labels in [0, K)):
    :class:`SoftmaxCrossEntropy`, :class:`MulticlassSVM`, :class:`SquaredHingeSVM`,
    and :class:`HierarchicalSoftmax`, which owns parameters (one logistic classifier
    per internal node of a binary tree over the classes) and so takes the features h
    of the last hidden layer instead of scores.
Attributes (y: (N, A), one binary label per score):
    :class:`AttributeHinge` (labels -1/+1), :class:`AttributeLogistic` (labels 0/1).
Regression (y: (N, M) real targets, or (N,) when M == 1):
    :class:`L2Regression`, :class:`L1Regression`.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _kernels, config, init as _init
from ._validation import (check_array, check_binary_labels, check_labels,
                          check_positive_int, check_scalar, float_dtype)
from .layers import BatchBuffers, HasWeights
from .reference import _log_sigmoid


class _ScoreLoss:
    """Shared machinery: validation, layer-owned buffers, dispatch to one kernel."""

    #: name of the kernel in fastnn._kernels.KERNELS
    _kernel: str | None = None

    def __init__(self, *, dtype: DTypeLike = np.float64) -> None:
        self.dtype = float_dtype(dtype)
        self._buffers = BatchBuffers(self.dtype)
        self.dscores = None
        self.row_loss = None

    def __getstate__(self):
        """Hyperparameters only: the batch buffers and the last pass's dscores/row_loss
        are re-made empty on unpickling."""
        state = self.__dict__.copy()
        state.pop("_buffers", None)
        for name in ("dscores", "row_loss"):
            if name in state:
                state[name] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._buffers = BatchBuffers(self.dtype)

    def forward(self, scores: ArrayLike, y: ArrayLike) -> float:
        """Mean loss over the batch (a float); computes dscores for backward()."""
        scores = check_array(scores, "scores", ndim=2, dtype=self.dtype)
        y = self._check_y(y, scores)
        return self._forward(scores, y)

    def __call__(self, scores: ArrayLike, y: ArrayLike) -> float:
        return self.forward(scores, y)

    def _check_y(self, y, scores):
        raise NotImplementedError

    def _forward(self, scores, y):
        """Unchecked forward: scores (N, K) of self.dtype and y already validated."""
        n, k = scores.shape
        self.dscores = self._buffers.get("dscores", n, (k,))
        self.row_loss = self._buffers.get("row_loss", n, ())
        return self._run(getattr(_kernels.backend(), self._kernel), scores, y)

    def _run(self, kernel, scores, y):
        return kernel(scores, y, self.dscores, self.row_loss, config._n_threads)

    def backward(self) -> np.ndarray:
        """dL/dscores of the last forward, shape (N, K)."""
        if self.dscores is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self.dscores

    def __repr__(self):
        return f"{type(self).__name__}({self._repr_args()})"

    def _repr_args(self):
        return ""


class _ClassLabelLoss(_ScoreLoss):
    def _check_y(self, y, scores):
        return check_labels(y, "y", n_samples=scores.shape[0], n_classes=scores.shape[1])


class SoftmaxCrossEntropy(_ClassLabelLoss):
    """Softmax classifier loss: L = mean_i [ -log softmax(s_i)[y_i] ].

    scores (N, K) float32/float64, y (N,) integer labels in [0, K).
    """

    _kernel = "softmax_cross_entropy"


class MulticlassSVM(_ClassLabelLoss):
    """Multiclass SVM loss (Weston-Watkins):
    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)``, averaged over the rows.

    The gradient is a subgradient: a margin of exactly 0 counts as inactive.
    scores (N, K) float32/float64, y (N,) integer labels in [0, K); delta > 0.
    """

    _kernel = "multiclass_svm"
    _squared = False

    def __init__(self, delta: float = 1.0, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype=dtype)
        self.delta = check_scalar(delta, "delta", low=0.0, low_open=True)

    def _run(self, kernel, scores, y):
        return kernel(scores, y, self.dscores, self.row_loss, self.delta, self._squared,
                      config._n_threads)

    def _repr_args(self):
        return f"delta={self.delta}"


class SquaredHingeSVM(MulticlassSVM):
    """Squared hinge multiclass SVM:
    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)**2``, averaged over the rows."""

    _squared = True


class AttributeHinge(_ScoreLoss):
    """One binary hinge classifier per attribute: ``L_i = sum_j max(0, 1 - y_ij s_ij)``.

    scores (N, A) float32/float64; y (N, A) with every entry -1 or +1.
    """

    _kernel = "attribute_hinge"

    def _check_y(self, y, scores):
        return check_binary_labels(y, "y", values=(-1, 1), shape=scores.shape,
                                   dtype=self.dtype)


class AttributeLogistic(_ScoreLoss):
    """One logistic classifier per attribute (binary cross-entropy on the scores):
    ``L_i = sum_j -[y_ij log sig(s_ij) + (1 - y_ij) log(1 - sig(s_ij))]``, gradient
    ``(sig(s) - y) / N``.  Computed as ``max(s, 0) - y s + log1p(exp(-|s|))``, which is
    exact and overflow-free for any finite score (s = +-1000 included).

    scores (N, A) float32/float64; y (N, A) with every entry 0 or 1 (or booleans).
    """

    _kernel = "attribute_logistic"

    def _check_y(self, y, scores):
        return check_binary_labels(y, "y", values=(0, 1), shape=scores.shape,
                                   dtype=self.dtype)


class _RegressionLoss(_ScoreLoss):
    def _check_y(self, y, scores):
        y = check_array(y, "y", dtype=self.dtype)
        if y.ndim == 1 and scores.shape[1] == 1:
            y = y.reshape(-1, 1)
        if y.shape != scores.shape:
            raise ValueError(f"y has shape {y.shape}, expected {scores.shape} "
                             "(one target per score)")
        return y


class L2Regression(_RegressionLoss):
    """Squared L2 norm of the error: ``L_i = ||s_i - y_i||^2`` (summed over the M
    outputs, not averaged), gradient ``2 (s - y) / N``.

    scores (N, M) float32/float64; y (N, M) finite real targets ((N,) when M == 1).
    """

    _kernel = "l2_regression"


class L1Regression(_RegressionLoss):
    """L1 norm of the error: ``L_i = sum_j |s_ij - y_ij|``, subgradient
    ``sign(s - y) / N`` (0 where s == y).

    scores (N, M) float32/float64; y (N, M) finite real targets ((N,) when M == 1).
    """

    _kernel = "l1_regression"


# ---- hierarchical softmax ---------------------------------------------------------------

def balanced_tree(n_classes: int) -> tuple[Any, Any]:
    """A balanced binary tree over classes 0..n_classes-1 as nested pairs: a class is
    an int, an internal node a 2-tuple (left, right).  Depth ceil(log2 n_classes);
    e.g. ``balanced_tree(5) == ((0, 1), (2, (3, 4)))``."""
    k = check_positive_int(n_classes, "n_classes", minimum=2)

    def build(lo, hi):            # recursion depth log2(k): no stack concern
        if hi - lo == 1:
            return lo
        mid = (lo + hi) // 2
        return (build(lo, mid), build(mid, hi))

    return build(0, k)


def tree_preorder(tree: tuple[Any, Any] | list[Any]) -> list[int]:
    """A class tree (nested pairs of class indices) as its pre-order walk: -1 for each
    internal node, the class for each leaf.  Iterative, so a chain-shaped tree of any
    depth is fine.  The tree is not checked (see :func:`compile_tree`)."""
    out: list[int] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (tuple, list)):
            out.append(-1)
            stack.extend(reversed(node))
        else:
            out.append(int(node))
    return out


def tree_from_preorder(walk: Sequence[int]) -> tuple[Any, Any]:
    """The nested pairs of a pre-order walk (:func:`tree_preorder`'s inverse).  Raises
    ValueError when ``walk`` is not the walk of a binary tree with two or more leaves."""
    walk = list(walk)
    if len(walk) < 3 or walk[0] != -1:
        raise ValueError("a tree walk starts with its root node (-1) and has at least 3 "
                         f"entries, got {walk[:5]!r}")
    # each open node collects its two children; a finished one becomes its parent's child
    open_nodes: list[list[Any]] = []
    for i, v in enumerate(walk):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < -1:
            raise ValueError(f"a tree walk holds -1 or class indices, got {v!r} at {i}")
        if v == -1:
            open_nodes.append([])
            continue
        done: Any = int(v)
        while True:
            if not open_nodes:
                raise ValueError(f"the tree walk goes on past its root's end at {i}")
            open_nodes[-1].append(done)
            if len(open_nodes[-1]) < 2:
                break
            done = tuple(open_nodes.pop())
            if not open_nodes:
                if i != len(walk) - 1:
                    raise ValueError(f"the tree walk goes on past its root's end at {i}")
                return done
    raise ValueError("the tree walk ends before its tree is complete")


def class_branches(codes: np.ndarray, depths: np.ndarray) -> list[str]:
    """Each class's root-to-leaf turns as 'L'/'R' strings, from :func:`compile_tree`'s
    codes and depths."""
    turn = np.where(codes > 0, "R", "L")
    return ["".join(turn[c, :depths[c]]) for c in range(len(depths))]


def compile_tree(tree: tuple[Any, Any] | list[Any], n_classes: int
                 ) -> tuple[tuple[Any, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Check a class tree and flatten it into the arrays the kernels walk.

    ``tree``: nested pairs, e.g. ``((0, 1), (2, (3, 4)))``: a leaf is an integer class
    index, an internal node a tuple (or list) of exactly two children.  Every class in
    [0, n_classes) must appear exactly once.  Internal nodes are numbered in pre-order
    (root 0, then the left subtree, then the right).

    Returns (tree, paths, codes, depths): ``tree`` as nested tuples of ints; ``paths``
    (K, P) intp, row c the internal nodes from the root to class c (padded with 0 past
    ``depths[c]``); ``codes`` (K, P) intp, +1 where the path turns right, -1 left (0 as
    padding); ``depths`` (K,) intp; P the depth of the deepest class.

    Raises ValueError naming the problem (a node with other than 2 children, a class
    outside [0, K), repeated or missing), TypeError for a leaf that is not an integer.
    """
    k = check_positive_int(n_classes, "n_classes", minimum=2)
    where_of: dict[int, str] = {}         # class -> where it was found
    path_of: list[Any] = [None] * k
    children: list[list[Any]] = []        # per internal node: [left, right] as built
    n_internal = 0
    # Iterative pre-order walk (a deep, chain-like tree must not hit Python's recursion
    # limit).  Entries: (node, where, path nodes, path codes, parent id, side).
    stack: list[tuple[Any, ...]] = [(tree, "tree", (), (), -1, 0)]
    while stack:
        node, where, pn, pc, parent, side = stack.pop()
        if isinstance(node, (tuple, list)):
            if len(node) != 2:
                raise ValueError(f"tree: {where} has {len(node)} children; every internal "
                                 "node must be a pair (left, right)")
            if n_internal >= k - 1:
                raise ValueError(f"tree: more internal nodes than a binary tree over "
                                 f"{k} classes can have ({k - 1}): a class repeats or a "
                                 "node contains itself")
            ident = n_internal
            n_internal += 1
            children.append([None, None])
            if parent >= 0:
                children[parent][side] = ("node", ident)
            stack.append((node[1], f"{where}[1]", pn + (ident,), pc + (1,), ident, 1))
            stack.append((node[0], f"{where}[0]", pn + (ident,), pc + (-1,), ident, 0))
        elif isinstance(node, numbers.Integral) and not isinstance(node, bool):
            c = int(node)
            if not 0 <= c < k:
                raise ValueError(f"tree: {where} = {c} is not a class index in [0, {k})")
            if c in where_of:
                raise ValueError(f"tree: class {c} appears twice ({where_of[c]} and "
                                 f"{where}); every class must appear exactly once")
            where_of[c] = where
            path_of[c] = (pn, pc)
            if parent >= 0:
                children[parent][side] = ("leaf", c)
        else:
            raise TypeError(f"tree: {where} is a {type(node).__name__}; a leaf must be an "
                            "integer class index and an internal node a pair")
    missing = [c for c in range(k) if c not in where_of]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise ValueError(f"tree: class(es) {shown} missing; every class in [0, {k}) must "
                         "appear exactly once")
    # Canonical nested tuples, built bottom-up (children have larger pre-order ids).
    built: list[Any] = [None] * n_internal
    for ident in range(n_internal - 1, -1, -1):
        built[ident] = tuple(built[v] if kind == "node" else v
                             for kind, v in children[ident])
    p = max(len(pn) for pn, _ in path_of)
    paths = np.zeros((k, p), dtype=np.intp)
    codes = np.zeros((k, p), dtype=np.intp)
    depths = np.empty(k, dtype=np.intp)
    for c, (pn, pc) in enumerate(path_of):
        depths[c] = len(pn)
        paths[c, :len(pn)] = pn
        codes[c, :len(pc)] = pc
    return built[0], paths, codes, depths


class HierarchicalSoftmax(HasWeights):
    """Hierarchical softmax: a layer and a loss in one, for many classes.

    The classes are the leaves of a binary tree; each of its K - 1 internal nodes holds
    a logistic classifier ``P(right | h) = sig(W[node] . h + b[node])`` over the input
    features h (the last hidden layer's activations).  The probability of a class is
    the product of the branch probabilities on its root-to-leaf path, so the K
    probabilities sum to 1, and the loss of an example, ``-log P(y | h)``, costs one
    dot product per node on its own path: O(D log K) for a balanced tree, against
    O(D K) for a flat softmax.

    Parameters
    ----------
    n_in : int
        Number of input features D.
    n_classes : int
        Number of classes K >= 2.
    tree : nested pairs or None
        The class tree, e.g. ``((0, 1), (2, (3, 4)))`` (see :func:`compile_tree`);
        None for :func:`balanced_tree`.  Related classes placed under one node share
        its classifier, so the tree matters for accuracy.
    init : str or callable
        Initializer of W (see :mod:`fastnn.init`); biases start at 0.
    seed : None, int or numpy Generator
    dtype : float32 or float64

    Attributes
    ----------
    W : (K - 1, D) array, one row per internal node (pre-order); b : (K - 1,) array.
    params, grads : dicts {"W", "b"} like a layer's.
    tree : the tree as nested tuples; paths, codes, depths : its flattened form.

    ``forward(h, y)`` (h (N, D), y (N,) labels) returns the mean loss; ``backward()``
    then writes ``grads`` and returns dL/dh (N, D), a buffer owned by this object.
    """


    def __init__(self, n_in: int, n_classes: int, *,
                 tree: tuple[Any, Any] | list[Any] | None = None,
                 init: str | Callable[..., np.ndarray] = "small_random",
                 seed: int | np.random.Generator | np.random.RandomState | None = None,
                 dtype: DTypeLike = np.float64) -> None:
        self.dtype = float_dtype(dtype)
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        if tree is None:
            tree = balanced_tree(self.n_classes)
        self.tree, self.paths, self.codes, self.depths = compile_tree(tree, self.n_classes)
        self.n_nodes = self.n_classes - 1
        self._own_weights(np.ascontiguousarray(
            _init.weights(init, self.n_in, self.n_nodes, seed, self.dtype).T),
            np.zeros(self.n_nodes, dtype=self.dtype))
        self._buffers = BatchBuffers(self.dtype)
        self._h = self._y = self._dz = None
        self.row_loss = None
        self.dh = None

    # -- loss -------------------------------------------------------------------------
    def _check_h(self, h: ArrayLike) -> np.ndarray:
        return check_array(h, "h", ndim=2, n_cols=self.n_in, dtype=self.dtype)

    def forward(self, h: ArrayLike, y: ArrayLike) -> float:
        """Mean of -log P(y_i | h_i) over the batch.  h (N, D), y (N,) labels in [0, K)."""
        h = self._check_h(h)
        return self._forward(h, self._check_y(y, h))

    def _check_y(self, y, h):
        return check_labels(y, "y", n_samples=h.shape[0], n_classes=self.n_classes)

    def __call__(self, h: ArrayLike, y: ArrayLike) -> float:
        return self.forward(h, y)

    def _forward(self, h, y):
        n = h.shape[0]
        dz = self._buffers.get("dz", n, (self.paths.shape[1],))
        row_loss = self._buffers.get("row_loss", n, ())
        loss = _kernels.backend().hierarchical_softmax_forward(
            h, self.W, self.b, y, self.paths, self.codes, self.depths, dz, row_loss,
            config._n_threads)
        self._h, self._y, self._dz, self.row_loss = h, y, dz, row_loss
        return loss

    def backward(self, input_grad: bool = True) -> np.ndarray | None:
        """Write grads (dW, db) of the last forward's loss; return dL/dh (N, D), or
        None when ``input_grad`` is False (then dh is not computed)."""
        if self._dz is None:
            raise RuntimeError("HierarchicalSoftmax.backward called before forward")
        dh = self._buffers.get("dh", self._h.shape[0], (self.n_in,)) if input_grad else None
        _kernels.backend().hierarchical_softmax_backward(
            self._h, self.W, self._y, self.paths, self.depths, self._dz, dh, self.dW,
            self.db, config._n_threads)
        self.dh = dh
        return dh

    # -- prediction -------------------------------------------------------------------
    def log_proba(self, h: ArrayLike) -> np.ndarray:
        """log P(c | h_i) for every class: (N, K), a new array of self.dtype.

        Costs O(N K depth) (every class's path), unlike the loss."""
        h = self._check_h(h)
        z = h @ self.W.T + self.b                        # (N, K - 1) node logits
        logp = np.zeros((h.shape[0], self.n_classes), dtype=self.dtype)
        for t in range(self.paths.shape[1]):
            cls = np.flatnonzero(self.depths > t)        # classes at least t + 1 deep
            u = z[:, self.paths[cls, t]] * self.codes[cls, t].astype(self.dtype)
            logp[:, cls] += _log_sigmoid(u)
        return logp

    def predict_proba(self, h: ArrayLike) -> np.ndarray:
        """P(c | h_i): (N, K), rows summing to 1."""
        return np.exp(self.log_proba(h))

    def predict(self, h: ArrayLike) -> np.ndarray:
        """Most probable class per row, (N,) intp."""
        return np.argmax(self.predict_proba(h), axis=1)

    @property
    def preorder(self) -> list[int]:
        """The tree as its pre-order walk: -1 for an internal node, c for the leaf of
        class c; e.g. ``[-1, -1, 0, 1, -1, 2, -1, 3, 4]`` for ``((0, 1), (2, (3, 4)))``.
        2K - 1 integers, equal exactly for equal trees (:func:`tree_from_preorder`
        rebuilds it): what a checkpoint records of the tree its weights belong to."""
        return tree_preorder(self.tree)

    @property
    def branches(self) -> list[str]:
        """Each class's turns from the root, ``'L'`` (left) and ``'R'`` (right): entry c
        is class c's path, e.g. ``['LL', 'LR', 'RL', 'RRL', 'RRR']`` for
        ``((0, 1), (2, (3, 4)))``."""
        return class_branches(self.codes, self.depths)

    def __repr__(self):
        return (f"HierarchicalSoftmax({self.n_in}, {self.n_classes}, "
                f"dtype={self.dtype.name})")
