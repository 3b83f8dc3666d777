# What the compiled kernels were built with and run on, and a test hook for the exp.
cimport numpy as cnp
from cython cimport floating

from _common cimport (FNN_HAVE_CLONES, FNN_HAVE_OPENMP, FNN_PARALLEL_MIN_WORK, check, check_float, check_same_shape,
                      exp_inplace)

cnp.import_array()


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FNN_HAVE_OPENMP)


def isa_dispatch():
    """True when the loops were compiled for several instruction sets (AVX-512, AVX2,
    baseline), picked at load time for this CPU."""
    return bool(FNN_HAVE_CLONES)


def parallel_min_work():
    """Element-operations below which a kernel runs on one thread whatever it is asked
    (tests use it to size the blocks that must exercise the threaded paths)."""
    return FNN_PARALLEL_MIN_WORK


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fnn_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fnn_omp_max_threads(void) { return 1; }
    #endif
    """
    int fnn_omp_max_threads() nogil


def omp_max_threads():
    """OpenMP's own thread setting for the calling thread, omp_get_max_threads(): it
    reflects OMP_NUM_THREADS and any limit threadpoolctl, joblib or Dask put on the
    OpenMP runtime.  1 when the kernels were built without OpenMP (they run serially)."""
    return fnn_omp_max_threads()


cdef void _exp(const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = x[i]
    exp_inplace(out, n)


def vector_exp(cnp.ndarray x not None, cnp.ndarray out not None):
    """out = exp(x) with the kernels' own exp (fastnn_math.h), for testing its accuracy."""
    cdef int t = check_float(x, "x")
    check(x, "x", 1, t)
    check(out, "out", 1, t, True)
    check_same_shape(x, out, "x", "out")
    if t == cnp.NPY_FLOAT32:
        _exp(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(out), x.shape[0])
    else:
        _exp(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(out), x.shape[0])
    return out
