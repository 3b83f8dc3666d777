"""fastnn: fully connected neural networks on the CPU, fast and verified.

Hot paths run in Cython/OpenMP kernels, each with a NumPy twin in
:mod:`fastnn.reference` that defines the right answer; :func:`use_backend` switches.
"""
__version__ = "0.1.0"

# Importing fastnn changes no process-wide setting (environment, other libraries' thread
# pools): OMP_WAIT_POLICY and BLAS threads are the user's to choose.
from ._kernels import get_backend, use_backend
from .config import get_num_threads, set_num_threads, show_config, threads
from . import (datasets, gradcheck, init, io, layers, losses, net, optim, plan,
               preprocessing, regularization, search, trainer)
from .io import load, save

__all__ = [
    "__version__", "get_backend", "use_backend", "get_num_threads", "set_num_threads",
    "threads", "show_config", "datasets", "gradcheck", "init", "io", "layers", "losses",
    "net", "optim", "plan", "preprocessing", "regularization", "search", "trainer", "save",
    "load",
]
