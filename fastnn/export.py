"""Export a trained net to ONNX, for inference outside Python or fastnn.

:func:`to_onnx` turns a :class:`fastnn.net.Sequential` (an ``MLP`` included), or a
fitted fastnn scikit-learn estimator, into an ONNX model built with the ``onnx``
package (``pip install 'fastnn[onnx]'``) that computes what fastnn's own inference
forward computes (``Sequential.predict_scores``: evaluation mode, batch norm on its
running statistics, dropout at its test-time behaviour).

The graph
---------
input ``X``
    (N, D) of the net's dtype (float32 or float64); N is a dynamic dimension.
output ``scores``
    (N, K) of the net's dtype: the last layer's output, ``net.predict_scores(X)``.
output ``probabilities`` (optional)
    (N, K) of the net's dtype: ``"softmax"`` (``net.predict_proba(X)``) or
    ``"sigmoid"`` of the scores.  For an estimator, its output activation (see below).
output ``label`` (optional)
    (N,) int64: the index of the largest score (``net.predict(X)``; the first one on
    ties); for an estimator, the index into its ``classes_``.

Layers and their ONNX operators (opset 18):

========================  =====================================================
fastnn                    ONNX
========================  =====================================================
Linear                    Gemm, then its fused activation if it has one
ReLU / LeakyReLU          Relu / LeakyRelu (in a float64 net whose alpha float32
                          cannot hold: PRelu with one float64 slope)
Sigmoid / Tanh            Sigmoid / Tanh
PReLU                     PRelu (one slope per unit)
Maxout (k pieces)         Gemm, Reshape to (N, n_out, k), ReduceMax over the pieces
BatchNorm                 folded (default): into the preceding Linear's W and b when
                          that Linear has no activation of its own, else a Mul and
                          an Add; ``fold_batchnorm=False``: BatchNormalization
Dropout, mode="inverted"  nothing (the identity at inference)
Dropout, mode="vanilla"   Mul by p (vanilla dropout scales by p at inference)
========================  =====================================================

A layer of any other class (a user's own, or a subclass of fastnn's) is refused with a
TypeError naming it.  :class:`fastnn.losses.HierarchicalSoftmax` is a loss with
parameters, not a layer: ``to_onnx(net, path, hierarchical_softmax=loss)`` exports the
net (``scores`` are then its features h) and the tree's class probabilities (Gemm,
Gather of every class's path, log-sigmoid, ReduceSum, Exp) as ``probabilities``.

Precision: float32 nets give float32 graphs; onnxruntime's results agree with fastnn's to
about 1e-6 relative (different GEMM summation order, onnxruntime's own sigmoid and
tanh).  float64 nets give float64 graphs; onnxruntime runs every operator used here in
double.  Folding batch norm is computed in float64 and rounded once to the net's dtype.
BatchNormalization's ``epsilon`` is a float32 attribute in ONNX: an unfolded float64
batch norm gets eps rounded to float32, and its ``running_var`` initializer holds the
running variance plus the rounding difference (``eps - float32(eps)``, ~2.5e-13 for
the default 1e-5), so that var + epsilon is fastnn's.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import __version__
from .layers import (ACTIVATIONS, BatchNorm, Dropout, LeakyReLU, Linear, Maxout, PReLU, ReLU,
                     Sigmoid, Tanh)
from .losses import HierarchicalSoftmax
from .net import Sequential

if TYPE_CHECKING:
    import onnx             # an optional dependency (the onnx extra), imported on use

__all__ = ["to_onnx", "OPSET"]

#: The ONNX opset of the exported graphs (ReduceMax takes its axes as an input from 18).
OPSET = 18
#: The IR version that opset 18 needs; set explicitly so that an onnxruntime older than
#: the onnx package still loads the file (make_model would write the newest IR version).
_IR_VERSION = 8
#: The largest model a single protobuf file can hold.
_PROTOBUF_LIMIT = 2 ** 31 - 1

_ACT_OPS = {ACTIVATIONS["relu"]: "Relu", ACTIVATIONS["leaky_relu"]: "LeakyRelu",
            ACTIVATIONS["sigmoid"]: "Sigmoid", ACTIVATIONS["tanh"]: "Tanh"}
#: Activation layers: exported by their act_code, as a fused activation is.
_ACTIVATION_LAYERS = frozenset({ReLU, LeakyReLU, Sigmoid, Tanh})
_SUPPORTED = (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, PReLU, Maxout, BatchNorm, Dropout)
_PROBABILITIES = ("softmax", "sigmoid")
#: An estimator's out_activation_ -> the probabilities it exports (None: a regressor).
_ESTIMATOR_PROBABILITIES = {"softmax": "softmax", "logistic": "sigmoid", "identity": None}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fastnn.export needs the onnx package: pip install "
                          "'fastnn[onnx]'") from exc
    return onnx


class _Graph:
    """Nodes and initializers of one graph, with unique tensor names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = []
        self._names = {"X"}

    def _name(self, base):
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def const(self, base, array, dtype=None):
        """An initializer holding `array` (in the graph's dtype unless given)."""
        array = np.ascontiguousarray(array, dtype=self.dtype if dtype is None else dtype)
        name = self._name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, base, output=None, **attrs):
        """Add an `op` node; returns the name of its (single) output."""
        out = output if output is not None else self._name(base)
        if output is not None:
            self._names.add(output)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out],
                                                      name=self._name(f"{base}_{op}"),
                                                      **attrs))
        return out


def _bn_scale_shift(bn):
    """(s, t) in float64 with ``bn(x) == x * s + t`` at inference."""
    s = bn.gamma.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    t = bn.beta.astype(np.float64) - bn.running_mean.astype(np.float64) * s
    return s, t


def _activation(g, h, code, alpha, base):
    op = _ACT_OPS.get(code)
    if op is None:                      # 0: no activation
        return h
    if op != "LeakyRelu":
        return g.node(op, [h], base)
    if g.dtype == np.float64 and float(np.float32(alpha)) != alpha:
        # LeakyRelu's alpha is a float32 attribute: a float64 slope that float32 cannot
        # hold exactly goes in as PRelu's one shared slope, a float64 tensor
        return g.node("PRelu", [h, g.const(f"{base}.alpha", [alpha])], base)
    return g.node(op, [h], base, alpha=float(alpha))


def _check_layers(net):
    for i, layer in enumerate(net.layers):
        if type(layer) not in _SUPPORTED:
            names = ", ".join(c.__name__ for c in _SUPPORTED)
            raise TypeError(f"layers[{i}] ({type(layer).__module__}."
                            f"{type(layer).__qualname__}) has no ONNX export; to_onnx "
                            f"exports fastnn's own {names} (not subclasses)")


def _build_net(g, net, fold_batchnorm):
    """Add the net's layers to g, from input "X"; returns its output's name."""
    h = "X"
    layers = net.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        base = f"layers.{i}"
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Linear):
            W, b = layer.W, layer.b
            if fold_batchnorm and layer._act == 0 and isinstance(nxt, BatchNorm):
                s, t = _bn_scale_shift(nxt)
                W = layer.W.astype(np.float64) * s
                b = layer.b.astype(np.float64) * s + t
                base = f"layers.{i}-{i + 1}"
                i += 1                  # the batch norm is inside this Gemm now
            h = g.node("Gemm", [h, g.const(f"{base}.W", W), g.const(f"{base}.b", b)],
                       base)
            h = _activation(g, h, layer._act, layer.alpha, base)
        elif type(layer) in _ACTIVATION_LAYERS:
            h = _activation(g, h, layer.act_code, layer.alpha, base)
        elif isinstance(layer, PReLU):
            h = g.node("PRelu", [h, g.const(f"{base}.alpha", layer.alpha)], base)
        elif isinstance(layer, Maxout):
            z = g.node("Gemm", [h, g.const(f"{base}.W", layer.W),
                                g.const(f"{base}.b", layer.b)], base)
            if layer.k == 1:
                h = z
            else:
                # column j*k + p is piece p of unit j: (N, n_out*k) -> (N, n_out, k)
                shape = g.const(f"{base}.shape", [-1, layer.n_out, layer.k], np.int64)
                pieces = g.node("Reshape", [z, shape], base)
                axes = g.const(f"{base}.axes", [2], np.int64)
                h = g.node("ReduceMax", [pieces, axes], base, keepdims=0)
        elif isinstance(layer, BatchNorm):
            if fold_batchnorm:
                s, t = _bn_scale_shift(layer)
                h = g.node("Mul", [h, g.const(f"{base}.scale", s)], base)
                h = g.node("Add", [h, g.const(f"{base}.shift", t)], base)
            else:
                # epsilon is a float32 attribute: a float64 net's running_var carries
                # the difference, so that var + eps is fastnn's to one rounding
                eps32 = float(np.float32(layer.eps))
                var = layer.running_var + (layer.eps - eps32) if g.dtype == np.float64 \
                    else layer.running_var
                h = g.node("BatchNormalization",
                           [h, g.const(f"{base}.gamma", layer.gamma),
                            g.const(f"{base}.beta", layer.beta),
                            g.const(f"{base}.running_mean", layer.running_mean),
                            g.const(f"{base}.running_var", var)],
                           base, epsilon=eps32)
        elif isinstance(layer, Dropout):
            if layer.mode == "vanilla" and layer.p != 1.0:
                # the same product fastnn's evaluation forward computes: x * dtype(p)
                h = g.node("Mul", [h, g.const(f"{base}.p", g.dtype.type(layer.p))], base)
        else:                           # _check_layers has refused it
            raise AssertionError(type(layer))
        i += 1
    return h


def _hierarchical_proba(g, h, hs, output):
    """P(class | h) of a HierarchicalSoftmax over features h: (N, K).

    Node logits z = h @ W.T + b (N, K-1); for every (class, depth) pair u = code * z at
    the path's node; log P(c) = sum over the path of log sig(u), with log sig(u) =
    -(relu(-u) + log(1 + exp(-|u|))) (as fastnn computes it, without overflow; ONNX has
    no log1p, and log(1 + e) is exact to an ulp of 1, an absolute error in log P, hence
    a relative one in P).  Padding entries (code 0) are masked out."""
    k, depth = hs.paths.shape
    z = g.node("Gemm", [h, g.const("hsm.W", hs.W), g.const("hsm.b", hs.b)], "hsm",
               transB=1)
    u = g.node("Gather", [z, g.const("hsm.paths", hs.paths.reshape(-1), np.int64)], "hsm",
               axis=1)
    u = g.node("Mul", [u, g.const("hsm.codes", hs.codes.reshape(-1))], "hsm")
    e = g.node("Exp", [g.node("Neg", [g.node("Abs", [u], "hsm")], "hsm")], "hsm")
    soft = g.node("Log", [g.node("Add", [e, g.const("hsm.one", g.dtype.type(1))], "hsm")],
                  "hsm")
    nls = g.node("Add", [g.node("Relu", [g.node("Neg", [u], "hsm")], "hsm"), soft], "hsm")
    nls = g.node("Mul", [nls, g.const("hsm.mask", (hs.codes != 0).reshape(-1))], "hsm")
    nls = g.node("Reshape", [nls, g.const("hsm.shape", [-1, k, depth], np.int64)], "hsm")
    nlp = g.node("ReduceSum", [nls, g.const("hsm.axes", [2], np.int64)], "hsm",
                 keepdims=0)
    return g.node("Exp", [g.node("Neg", [nlp], "hsm")], "hsm", output=output)


def _unwrap(model):
    """(net, estimator or None)."""
    if isinstance(model, Sequential):
        return model, None
    if isinstance(model, HierarchicalSoftmax):
        raise TypeError("a HierarchicalSoftmax is the loss of a net, not a net: export the "
                        "net with to_onnx(net, path, hierarchical_softmax=loss)")
    if hasattr(model, "model_") and hasattr(model, "out_activation_"):
        net = model.model_
        if not isinstance(net, Sequential):
            raise TypeError(f"{type(model).__name__}.model_ is a {type(net).__name__}, "
                            "not a fastnn Sequential")
        if model.out_activation_ not in _ESTIMATOR_PROBABILITIES:
            raise ValueError(f"{type(model).__name__}.out_activation_ is "
                             f"{model.out_activation_!r}; to_onnx knows "
                             f"{sorted(_ESTIMATOR_PROBABILITIES)}")
        return net, model
    if hasattr(model, "out_activation") or hasattr(model, "hidden_layer_sizes"):
        raise TypeError(f"{type(model).__name__} is not fitted (it has no model_ and "
                        "out_activation_): fit it before exporting")
    raise TypeError(f"to_onnx exports a fastnn Sequential or a fitted fastnn estimator "
                    f"(with model_ and out_activation_), got {type(model).__name__}")


def _check_hierarchical(hs, net, estimator, probabilities, n_outputs):
    if type(hs) is not HierarchicalSoftmax:
        raise TypeError(f"hierarchical_softmax must be a fastnn HierarchicalSoftmax, got "
                        f"{type(hs).__name__}")
    if estimator is not None:
        raise ValueError("hierarchical_softmax goes with a Sequential, not an estimator")
    if hs.dtype != net.dtype:
        raise ValueError(f"hierarchical_softmax is {hs.dtype.name}, the net "
                         f"{np.dtype(net.dtype).name}")
    if n_outputs is not None and hs.n_in != n_outputs:
        raise ValueError(f"hierarchical_softmax takes {hs.n_in} features, the net gives "
                         f"{n_outputs}")
    if probabilities not in ("auto", None, False):
        raise ValueError(f"probabilities={probabilities!r}: with a hierarchical_softmax "
                         "the probabilities are its own ('auto', or None for none)")


def _head(model, estimator, n_outputs, probabilities, label):
    """(probabilities kind or None, binary: sigmoid of one score as two columns)."""
    if estimator is None:
        if probabilities == "auto" or probabilities is None or probabilities is False:
            probabilities = None
        elif probabilities not in _PROBABILITIES:
            raise ValueError(f"probabilities must be None, 'softmax' or 'sigmoid', got "
                             f"{probabilities!r}")
        return probabilities, False
    auto = _ESTIMATOR_PROBABILITIES[estimator.out_activation_]
    if probabilities is None or probabilities is False:
        kind = None
    elif probabilities == "auto" or (auto is not None and probabilities == auto):
        kind = auto
    else:
        raise ValueError(f"for an estimator, probabilities is 'auto' (from its "
                         f"out_activation_ {estimator.out_activation_!r}: {auto!r}) or "
                         f"None, got {probabilities!r}")
    # identity outputs are a regressor's, or a hinge classifier's: that one has classes_
    if label and auto is None and getattr(estimator, "classes_", None) is None:
        raise ValueError(f"label: {type(model).__name__} is a regressor (out_activation_ "
                         "'identity', no classes_); it has no class labels")
    if label and (getattr(estimator, "_multilabel", False)
                  or (auto == "sigmoid" and n_outputs > 1)):
        raise ValueError(f"label: {type(model).__name__} has {n_outputs} outputs, one per "
                         "label (multilabel); label exports one class per row")
    return kind, auto == "sigmoid" and n_outputs == 1


#: The metadata_props keys fastnn writes itself.
_OWN_METADATA = ("fastnn_version", "dtype", "fold_batchnorm")


def _out_width(net):
    for layer in reversed(net.layers):
        n_out = getattr(layer, "n_out", None)
        if n_out is not None:
            return n_out
    return None


def to_onnx(model: Any, path: str | os.PathLike[str] | None = None, *,
            fold_batchnorm: bool = True, probabilities: str | Literal[False] | None = "auto",
            label: bool = False, hierarchical_softmax: HierarchicalSoftmax | None = None,
            name: str | None = None,
            metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """Export a net (or a fitted fastnn estimator) as an ONNX model; write it to path.

    Parameters
    ----------
    model : fastnn.net.Sequential (an MLP included), or a fitted fastnn scikit-learn
        estimator: any object with ``model_`` (its Sequential) and ``out_activation_``
        (``"softmax"``, ``"logistic"`` or ``"identity"``; with ``"identity"`` it is a
        regressor unless it has ``classes_``, as a hinge-loss classifier does).
    path : str, os.PathLike or None
        Where to write the ``.onnx`` file, atomically (a temporary file in the same
        directory, fsynced, renamed over path); None writes nothing.
    fold_batchnorm : bool
        True (default): every BatchNorm becomes part of the preceding Linear's W and b
        (when that Linear has no activation of its own), otherwise one Mul and one Add;
        the exported graph then has no BatchNormalization.  False: BatchNormalization
        nodes holding gamma, beta and the running statistics.
    probabilities : "auto", None, "softmax" or "sigmoid"
        The optional output ``probabilities`` ((N, K), the net's dtype).  For a
        Sequential, "auto" and None mean none; "softmax" is ``net.predict_proba``.  For
        an estimator, "auto" (default) follows ``out_activation_`` as ``predict_proba``
        does: softmax of the scores; logistic: the sigmoid of each score, and for a
        single score (binary classification) the two columns ``[1 - p, p]``; identity
        (a regressor): none.  None leaves it out.
    label : bool
        Add the output ``label``, (N,) int64: ``argmax`` of the scores (``net.predict``),
        or for an estimator with one logistic output ``score > 0`` (its ``predict``): the
        index into the estimator's ``classes_``.  A regressor or a multilabel estimator
        (one output per label) has none (ValueError).
    hierarchical_softmax : fastnn.losses.HierarchicalSoftmax or None
        The loss a Sequential was trained with, when it is a hierarchical softmax: the
        net's output (``scores``) is then its features h (N, D), and ``probabilities``
        (N, K) is ``loss.predict_proba(h)`` (unless probabilities is None), ``label``
        ``loss.predict(h)``.
    name : str or None
        The graph's name (default: the model's class name).
    metadata : dict of str -> str, or None
        Stored in the model's ``metadata_props`` (onnxruntime:
        ``session.get_modelmeta().custom_metadata_map``), beside fastnn's own
        ``fastnn_version``, ``dtype`` and ``fold_batchnorm``; e.g. the class names.

    Returns
    -------
    onnx.ModelProto, checked by ``onnx.checker.check_model``.  Input ``X`` (N, D) and
    output ``scores`` (N, K), of the net's dtype (float32 or float64), N dynamic.

    Raises
    ------
    ImportError without the onnx package; TypeError for a model that is neither, or a
    layer with no ONNX export (named); ValueError for an invalid option.
    """
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise TypeError(f"fold_batchnorm must be True or False, got {fold_batchnorm!r}")
    if not isinstance(label, (bool, np.bool_)):
        raise TypeError(f"label must be True or False, got {label!r}")
    if path is not None:
        path = os.fspath(path)        # TypeError for anything else, before any work
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    props = {} if metadata is None else dict(metadata)
    for key, value in props.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata maps str to str; got {key!r}: {value!r}")
    taken = sorted(set(props) & set(_OWN_METADATA))
    if taken:
        raise ValueError(f"metadata: {taken} are keys fastnn writes itself "
                         f"({', '.join(_OWN_METADATA)})")
    net, estimator = _unwrap(model)
    _check_layers(net)
    n_outputs = _out_width(net)
    hs = hierarchical_softmax
    if hs is not None:
        _check_hierarchical(hs, net, estimator, probabilities, n_outputs)
        kind, binary = (None if probabilities is None or probabilities is False
                        else "hierarchical"), False
    else:
        kind, binary = _head(model, estimator, n_outputs, probabilities, label)
    onnx = _onnx()
    helper = onnx.helper
    dtype = np.dtype(net.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)

    g = _Graph(onnx, dtype)
    h = _build_net(g, net, bool(fold_batchnorm))
    # the net's output becomes "scores": rename the node that makes it (or copy X)
    if h == "X":
        g.node("Identity", ["X"], "scores", output="scores")
    else:
        for node in g.nodes:
            for j, out in enumerate(node.output):
                if out == h:
                    node.output[j] = "scores"
    scores = "scores"
    outputs = [helper.make_tensor_value_info("scores", elem, ["N", n_outputs])]
    proba = None
    if hs is not None:
        if kind is not None or label:
            proba = _hierarchical_proba(g, scores, hs, "probabilities" if kind else None)
    elif kind == "softmax":
        proba = g.node("Softmax", [scores], "head", output="probabilities", axis=1)
    elif binary and kind == "sigmoid":
        # [1 - p, p], the estimator's predict_proba for one logistic output
        p = g.node("Sigmoid", [scores], "head")
        q = g.node("Sub", [g.const("one", dtype.type(1)), p], "head")
        proba = g.node("Concat", [q, p], "head", axis=1, output="probabilities")
    elif kind == "sigmoid":
        proba = g.node("Sigmoid", [scores], "head", output="probabilities")
    if kind is not None:
        width = 2 if binary else hs.n_classes if hs is not None else n_outputs
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["N", width]))
    if label:
        if binary:
            # predict's rule, score > 0, as the argmax of [-s, s] (a tie is class 0);
            # the argmax of [1 - p, p] would call a tiny positive score, whose p rounds
            # to 0.5, class 0
            by = g.node("Concat", [g.node("Neg", [scores], "head"), scores], "head", axis=1)
        else:
            by = proba if hs is not None else scores
        g.node("ArgMax", [by], "head", output="label", axis=1, keepdims=0)
        outputs.append(helper.make_tensor_value_info("label", onnx.TensorProto.INT64,
                                                     ["N"]))

    graph = helper.make_graph(
        g.nodes, name or type(model).__name__,
        [helper.make_tensor_value_info("X", elem, ["N", net.n_features])],
        outputs, initializer=g.initializers)
    onnx_model = helper.make_model(graph, producer_name="fastnn",
                                   producer_version=__version__,
                                   opset_imports=[helper.make_opsetid("", OPSET)])
    onnx_model.ir_version = _IR_VERSION
    onnx_model.doc_string = repr(net)
    props.update(zip(_OWN_METADATA, (__version__, dtype.name, str(bool(fold_batchnorm)))))
    helper.set_model_props(onnx_model, props)
    size = onnx_model.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise ValueError(f"the model is {size} bytes; one ONNX protobuf file holds at most "
                         "2 GiB")
    onnx.checker.check_model(onnx_model, full_check=True)
    if path is not None:
        from .io import _atomic_write
        _atomic_write(path, onnx_model.SerializeToString())
    return onnx_model
