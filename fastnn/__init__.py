"""fastnn: fully connected neural networks on the CPU, fast and verified.

Hot paths run in Cython/OpenMP kernels, each with a NumPy twin in
:mod:`fastnn.reference` that defines the right answer; :func:`use_backend` switches.
"""
__version__ = "0.1.0"

import os as _os

# libgomp's idle workers spin for ~300,000 iterations after each parallel region (the
# default), and compete for the cores with the BLAS threads of the GEMM that usually
# comes next: affine+ReLU forward+backward at 256x1024x1024 took 21 ms instead of 13 on
# 2 cores.  A short spin keeps back-to-back regions fast and frees the cores quickly.
# libgomp reads this once, when it is loaded (by the first kernel module below), and
# a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from ._kernels import get_backend, use_backend
from .config import get_num_threads, set_num_threads, show_config
from . import datasets, gradcheck, init, layers, losses, net, optim, regularization, trainer

__all__ = [
    "__version__", "get_backend", "use_backend", "get_num_threads", "set_num_threads",
    "show_config", "datasets", "gradcheck", "init", "layers", "losses", "net", "optim",
    "regularization", "trainer",
]
