"""Threads and build information.

One thread setting drives both fastnn's OpenMP kernels and the BLAS they call:
``set_num_threads(n)`` (or the environment variable FASTNN_NUM_THREADS at import),
defaulting to the cores this process may run on.  BLAS pools are limited through
threadpoolctl so that OpenMP and BLAS threads never oversubscribe the cores.
"""
import os
import platform

from . import _kernels
from ._validation import check_positive_int

_n_threads = 1
_blas_limits = None


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Use ``n`` threads in fastnn's kernels and in the BLAS library they call."""
    global _n_threads, _blas_limits
    n = check_positive_int(n, "n")
    from threadpoolctl import threadpool_limits
    _blas_limits = threadpool_limits(limits=n, user_api="blas")
    _n_threads = n


def get_num_threads():
    """Threads fastnn's kernels use."""
    return _n_threads


def _init_threads():
    env = os.environ.get("FASTNN_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FASTNN_NUM_THREADS must be an integer, got {env!r}") from None
        set_num_threads(n)
    else:
        global _n_threads
        _n_threads = _available_cores()


def show_config(print_out=True):
    """Print and return what fastnn runs on.

    Returns a dict: version, backend ("compiled" or "numpy"), openmp (compiled in?),
    isa_dispatch (element-wise loops built for several instruction sets?),
    num_threads, cores, blas (one entry per BLAS library loaded, from threadpoolctl),
    python, numpy, platform.
    """
    import numpy as np
    from threadpoolctl import threadpool_info

    from . import __version__
    openmp = isa_dispatch = None
    if _kernels.COMPILED is not None:
        from . import _runtime
        openmp = _runtime.openmp_enabled()
        isa_dispatch = _runtime.isa_dispatch()
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "filepath",
                                   "threading_layer", "architecture")}
        for info in threadpool_info() if info.get("user_api") == "blas"
    ]
    info = {
        "version": __version__,
        "backend": _kernels.get_backend(),
        "compiled_available": _kernels.COMPILED is not None,
        "openmp": openmp,
        "isa_dispatch": isa_dispatch,
        "num_threads": get_num_threads(),
        "cores": _available_cores(),
        "blas": blas,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    if print_out:
        print(f"fastnn {info['version']}")
        print(f"  backend        : {info['backend']}"
              + ("" if info["compiled_available"] else " (compiled kernels NOT available)"))
        print(f"  OpenMP         : {'yes' if openmp else 'no'}")
        print("  SIMD loops     : "
              + ("per-ISA clones (AVX-512, AVX2, baseline), picked at load time"
                 if isa_dispatch else "compiled for the baseline instruction set"))
        print(f"  threads        : {info['num_threads']} (of {info['cores']} cores)")
        for b in blas:
            print(f"  BLAS           : {b['internal_api']} {b['version']} "
                  f"({b['num_threads']} threads, {b['architecture']}) {b['filepath']}")
        print(f"  python / numpy : {info['python']} / {info['numpy']}")
        print(f"  platform       : {info['platform']}")
    return info


_init_threads()
