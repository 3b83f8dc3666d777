# What the compiled kernels were built with and run on.
from _common cimport FNN_HAVE_OPENMP, fnn_omp_max_threads, fnn_omp_num_procs


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FNN_HAVE_OPENMP)


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return fnn_omp_max_threads()


def omp_num_procs():
    """Processors OpenMP sees (1 without OpenMP)."""
    return fnn_omp_num_procs()
