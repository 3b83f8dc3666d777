"""The one dispatch point between the compiled kernels and their NumPy twins.

Everything that runs a hot path asks :func:`backend` for the active kernel set and
calls it; :func:`use_backend` switches the set for the whole process (or, used as a
context manager, for a block).  The compiled set is the default.  If the extensions
cannot be imported, fastnn warns and runs the twins; FASTNN_REQUIRE_COMPILED=1 makes
that an ImportError instead (the test suite sets it, so a silent fallback fails CI).
"""
import importlib
import os
import types
import warnings

from . import reference

#: Every kernel, by name, with the extension module that compiles it.
KERNELS = {
    "affine_forward": "_affine",
    "affine_backward": "_affine",
    "softmax_cross_entropy": "_loss",
    "dropout_forward": "_dropout",
    "dropout_backward": "_dropout",
    "dropout_forward_scaled": "_dropout",
    "dropout_backward_scaled": "_dropout",
    "activation_forward": "_activation",
    "activation_backward": "_activation",
    "prelu_forward": "_activation",
    "prelu_backward": "_activation",
    "maxout_forward": "_maxout",
    "maxout_backward": "_maxout",
    "batchnorm_forward": "_batchnorm",
    "batchnorm_backward": "_batchnorm",
    "numerical_gradient": "_numgrad",
    "sgd_update": "_optim",
    "optimizer_update": "_optim",
    "learning_rate": "_optim",
    "l2_penalty": "_regularization",
    "l1_penalty": "_regularization",
    "elastic_net_penalty": "_regularization",
    "max_norm_constrain": "_regularization",
    "multiclass_svm": "_loss",
    "attribute_hinge": "_loss",
    "attribute_logistic": "_loss",
    "l2_regression": "_loss",
    "l1_regression": "_loss",
    "hierarchical_softmax_forward": "_loss",
    "hierarchical_softmax_backward": "_loss",
    "shuffled_rows": "_plan",
}

BACKENDS = ("compiled", "numpy")


def _namespace(name, lookup):
    ns = types.SimpleNamespace(name=name)
    for kernel, module in KERNELS.items():
        setattr(ns, kernel, lookup(kernel, module))
    return ns


NUMPY = _namespace("numpy", lambda kernel, module: getattr(reference, kernel))

try:
    _modules = {m: importlib.import_module(f"fastnn.{m}") for m in set(KERNELS.values())}
    COMPILED = _namespace("compiled", lambda kernel, module: getattr(_modules[module], kernel))
    COMPILED_IMPORT_ERROR = None
except ImportError as exc:  # the package was used from a source tree that was never built
    if os.environ.get("FASTNN_REQUIRE_COMPILED", "") not in ("", "0"):
        raise ImportError("fastnn's compiled kernels cannot be imported and "
                          "FASTNN_REQUIRE_COMPILED is set: " + str(exc)) from exc
    COMPILED = None
    COMPILED_IMPORT_ERROR = exc
    warnings.warn("fastnn's compiled kernels cannot be imported (" + str(exc) + "); "
                  "running the NumPy twins, which are much slower. "
                  "Reinstall with `pip install .`", RuntimeWarning, stacklevel=2)

_active = COMPILED if COMPILED is not None else NUMPY
if os.environ.get("FASTNN_BACKEND", "compiled") == "numpy":
    _active = NUMPY


def backend():
    """The active kernel set: a namespace with one attribute per kernel and `name`."""
    return _active


def get_backend():
    """Name of the active backend: "compiled" or "numpy"."""
    return _active.name


class _BackendSwitch:
    """Returned by use_backend: the switch already happened; `with` undoes it on exit."""

    def __init__(self, previous):
        self._previous = previous

    def __enter__(self):
        return backend()

    def __exit__(self, *exc):
        global _active
        _active = self._previous
        return False


def use_backend(name):
    """Run the compiled kernels (``"compiled"``) or their NumPy twins (``"numpy"``).

    Takes effect at once for the whole process; as a context manager
    (``with fastnn.use_backend("numpy"): ...``) the previous backend comes back on exit.
    """
    global _active
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "compiled" and COMPILED is None:
        raise RuntimeError("the compiled kernels are not available: "
                           + str(COMPILED_IMPORT_ERROR))
    previous = _active
    _active = COMPILED if name == "compiled" else NUMPY
    return _BackendSwitch(previous)
