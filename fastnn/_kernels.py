"""The one dispatch point between the compiled kernels and their NumPy twins.

Everything that runs a hot path asks :func:`backend` for the active kernel set and
calls it; :func:`use_backend` switches the set for the whole process (or, used as a
context manager, for a block).  The compiled set is the default, and a missing or
broken compiled extension makes ``import fastnn`` raise an ImportError that says what to
do: fastnn never falls back to the twins (7x slower) on its own.  The twins run only
when asked for: FASTNN_BACKEND=numpy in the environment (then fastnn imports without
its extensions, and ``use_backend("compiled")`` raises that ImportError), or
``use_backend("numpy")``.
"""
from __future__ import annotations

import importlib
import os
import types
from pathlib import Path
from typing import Any

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


def _unbuilt_checkout():
    """The source checkout this package was imported from, if it is one (its setup.py
    and src_c/ beside the package), else None."""
    root = Path(__file__).resolve().parent.parent
    if (root / "setup.py").is_file() and (root / "src_c").is_dir():
        return root
    return None


def _import_error_text(exc):
    """What to do about extensions that cannot be imported, for the ImportError."""
    checkout = _unbuilt_checkout()
    if checkout is not None:
        what = (f"fastnn was imported from its source checkout ({checkout}), where its "
                "compiled kernels have not been built (or were built for another Python "
                "or NumPy)")
        fix = ("install it with `pip install .` and run from outside the checkout (run "
               "`pytest` as a command, not `python -m pytest`), or build it in place "
               "with `pip install -e .`")
    else:
        what = "fastnn's compiled kernels cannot be imported: the installation is broken"
        fix = ("reinstall it (`pip install --force-reinstall --no-cache-dir fastnn`, or "
               "`pip install .` from a source checkout; building needs a C compiler)")
    return (f"{what} ({type(exc).__name__}: {exc}). To fix: {fix}. To run the much "
            "slower NumPy twins instead, set FASTNN_BACKEND=numpy.")


_requested = os.environ.get("FASTNN_BACKEND", "").strip() or "compiled"
if _requested not in BACKENDS:
    raise ImportError(f"FASTNN_BACKEND must be one of {BACKENDS}, got {_requested!r}")

try:
    _modules = {m: importlib.import_module(f"fastnn.{m}")
                for m in sorted(set(KERNELS.values()) | {"_runtime"})}
    COMPILED = _namespace("compiled", lambda kernel, module: getattr(_modules[module], kernel))
    COMPILED_IMPORT_ERROR = None
except ImportError as exc:
    if _requested != "numpy":
        raise ImportError(_import_error_text(exc)) from exc
    # The NumPy backend was asked for: run without the extensions, and say why if the
    # compiled one is asked for later.
    COMPILED = None
    COMPILED_IMPORT_ERROR = exc

_active = NUMPY if _requested == "numpy" else COMPILED


def backend() -> Any:
    """The active kernel set: a namespace with one attribute per kernel and `name`."""
    return _active


def get_backend() -> str:
    """Name of the active backend: "compiled" or "numpy"."""
    return _active.name


class _BackendSwitch:
    """Returned by use_backend: the switch already happened; `with` undoes it on exit."""

    def __init__(self, previous):
        self._previous = previous

    def __enter__(self) -> Any:
        return backend()

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = self._previous


def use_backend(name: str) -> _BackendSwitch:
    """Run the compiled kernels (``"compiled"``) or their NumPy twins (``"numpy"``).

    Takes effect at once for the whole process; as a context manager
    (``with fastnn.use_backend("numpy"): ...``) the previous backend comes back on exit.
    """
    global _active
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "compiled" and COMPILED is None:
        raise ImportError(_import_error_text(COMPILED_IMPORT_ERROR)) from COMPILED_IMPORT_ERROR
    previous = _active
    _active = COMPILED if name == "compiled" else NUMPY
    return _BackendSwitch(previous)
