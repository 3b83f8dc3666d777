"""fastnn: fully connected neural networks on the CPU, fast and verified.

Hot paths run in Cython/OpenMP kernels, each with a NumPy twin in
:mod:`fastnn.reference` that defines the right answer; :func:`use_backend` switches.
"""
__version__ = "0.1.0"

import os as _os

# OpenMP workers that busy-wait between parallel regions take the cores from the BLAS
# threads of the GEMM that usually comes next (and from numpy's pool): on 2 cores,
# affine+ReLU fwd+bwd at 256x1024x1024 took 21 ms spinning by default, 13 ms with a
# short spin, 10.1 ms passive (its three GEMMs alone: 9.8 ms), and a softmax after
# GEMMs took 0.6-8 ms instead of 0.05 ms.  Passive workers sleep between regions: a
# region then costs ~30 us to wake them, which the kernels avoid for small work (see
# threads_for).  libgomp reads this once, when it is loaded by the first kernel module
# below; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from ._kernels import get_backend, use_backend
from .config import get_num_threads, set_num_threads, show_config
from . import datasets, gradcheck, init, layers, losses, net, optim, regularization, trainer

__all__ = [
    "__version__", "get_backend", "use_backend", "get_num_threads", "set_num_threads",
    "show_config", "datasets", "gradcheck", "init", "layers", "losses", "net", "optim",
    "regularization", "trainer",
]
