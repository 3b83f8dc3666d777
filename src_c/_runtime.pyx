# What the compiled kernels were built with and run on, and test hooks for the exp and
# for team_gemm (the GEMM every layer runs: small-GEMM loops, BLAS block grid).
cimport numpy as cnp
from cython cimport floating

from _common cimport (FNN_HAVE_CLONES, FNN_HAVE_OPENMP, FNN_PARALLEL_MIN_WORK, check,
                      check_blas_dims, check_disjoint, check_float, check_same_shape,
                      check_shape, dgemm, exp_inplace, fnn_blas_controlled,
                      fnn_small_gemm_case, FNN_SMALL_NONE, gemm_blocks, gemm_edge)
from _dispatch cimport team_gemm_any

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


def blas_threads_controlled():
    """True when fastnn found the thread setter of the BLAS it calls (so that BLAS runs
    single-threaded inside fastnn's calls and results do not depend on the threads)."""
    return bool(fnn_blas_controlled(<const void*>dgemm))


def gemm_path(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint trans_a=False,
              bint trans_b=False):
    """How team_gemm runs an (m, n, k) product: ("small", case) in fastnn_gemm_small.inc's
    loops, or ("blas", blocks of its shape-only grid)."""
    cdef int nb = gemm_blocks(m, n, k)
    cdef int case = fnn_small_gemm_case(trans_a, trans_b, m, n, k)
    if nb == 1 and case != FNN_SMALL_NONE:
        return ("small", case)
    return ("blas", nb)


def gemm_grid(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k):
    """The block grid team_gemm cuts an (m, n, k) product into when it goes to BLAS:
    (by_cols, edges), block i being C's columns (by_cols) or rows [edges[i], edges[i+1]).
    The one definition (_common.pxd's gemm_blocks and gemm_edge), for benchmarks that
    time the blocks' BLAS calls alone."""
    if m < 0 or n < 0 or k < 0:
        raise ValueError(f"m, n and k must be >= 0, got {(m, n, k)}")
    cdef int nb = gemm_blocks(m, n, k)
    cdef bint by_cols = n >= m
    cdef Py_ssize_t side = n if by_cols else m
    return bool(by_cols), tuple(gemm_edge(side, nb, i) for i in range(nb + 1))


def matmul(cnp.ndarray a not None, cnp.ndarray b not None, cnp.ndarray out not None,
           bint trans_a=False, bint trans_b=False, int n_threads=1):
    """out = op(a) @ op(b) through team_gemm, the product every layer runs.  a, b, out:
    2-D, C-contiguous, one float dtype; op transposes when asked.  Returns out."""
    cdef int t = check_float(a, "a")
    check(a, "a", 2, t)
    check(b, "b", 2, t)
    check(out, "out", 2, t, True)
    cdef Py_ssize_t m = a.shape[1] if trans_a else a.shape[0]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    cdef Py_ssize_t kb = b.shape[1] if trans_b else b.shape[0]
    cdef Py_ssize_t n = b.shape[0] if trans_b else b.shape[1]
    if kb != k:
        raise ValueError(f"op(a) is {m}x{k} but op(b) is {kb}x{n}")
    check_shape(out, "out", m, n)
    check_blas_dims(m, n, k)
    check_disjoint(out, "out", a, "a")
    check_disjoint(out, "out", b, "b")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    with nogil:
        team_gemm_any(t, trans_a, trans_b, <int>m, <int>n, <int>k, 1,
                      cnp.PyArray_DATA(a), <int>a.shape[1], cnp.PyArray_DATA(b),
                      <int>b.shape[1], 0, cnp.PyArray_DATA(out), <int>n, n_threads)
    return out
