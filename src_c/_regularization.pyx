# Weight penalties and the max-norm constraint: the def entry points.  Each checks its
# arrays and strengths, then runs the nogil core of _regularization_core.pxd, which holds
# the formulas and the threading design; a compiled training plan calls the same cores.
# The cores allocate nothing: the def kernels pass them their scratch (a penalty's block
# sums on the stack when they fit, else a NumPy array; max-norm's column scales from
# malloc), which is fine here as they are not the per-step path of a compiled plan.
cimport numpy as cnp
from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc

from _common cimport check, check_disjoint, check_float, check_same_shape
from _dispatch cimport max_norm_any, penalty_any
from _regularization_core cimport PEN_ELASTIC, PEN_L1, PEN_L2, penalty_scratch_len

cnp.import_array()

cdef enum:
    STACK_SCRATCH = 64   # doubles of block sums kept on the stack (n <= 32 blocks)


cdef int _check_pair(cnp.ndarray W, cnp.ndarray dW) except -1:
    """W and dW: one float dtype, one shape (any ndim), C-contiguous, dW writeable."""
    cdef int t = check_float(W, "W")
    cdef int nd = cnp.PyArray_NDIM(W)
    check(W, "W", nd, t)
    check(dW, "dW", nd, t, True)
    check_same_shape(W, dW, "W", "dW")
    check_disjoint(dW, "dW", W, "W")
    return t


cdef int _check_strength(double value, str name) except -1:
    if not value >= 0 or value == INFINITY:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return 0


cdef double _run(int kind, cnp.ndarray W, cnp.ndarray dW, double a, double b,
                 int n_threads) except? -1:
    """penalty_core on (W, dW): the penalty, after its gradient was added into dW."""
    cdef int t = _check_pair(W, dW)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(W)
    cdef cnp.npy_intp n_scratch = penalty_scratch_len(n)
    cdef double on_stack[STACK_SCRATCH]
    cdef double* scratch = on_stack
    cdef cnp.ndarray heap
    cdef double value
    if n_scratch > STACK_SCRATCH:
        heap = cnp.PyArray_EMPTY(1, &n_scratch, cnp.NPY_FLOAT64, 0)
        scratch = <double*>cnp.PyArray_DATA(heap)
    with nogil:
        value = penalty_any(t, kind, cnp.PyArray_DATA(W), cnp.PyArray_DATA(dW), n, a, b,
                            scratch, n_threads)
    return value


def l2_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double reg,
               int n_threads=1):
    """L2 regularization as the notes define it: returns 0.5 * reg * sum(W**2) and
    adds its gradient reg * W to dW in place.

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  The sum is
    accumulated in double, in an order that does not depend on n_threads.
    """
    _check_strength(reg, "reg")
    return _run(PEN_L2, W, dW, reg, 0.0, n_threads)


def l1_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double reg,
               int n_threads=1):
    """L1 regularization: returns reg * sum(|W|) and adds its subgradient
    reg * sign(W) to dW in place (0 where W is exactly 0).

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  Sum in double.
    """
    _check_strength(reg, "reg")
    return _run(PEN_L1, W, dW, reg, 0.0, n_threads)


def elastic_net_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double l1,
                        double l2, int n_threads=1):
    """Elastic net as the notes write it: returns l1 * sum(|W|) + l2 * sum(W**2) and
    adds l1 * sign(W) + 2 * l2 * W to dW in place, in one pass.

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  Sums in double.
    """
    _check_strength(l1, "l1")
    _check_strength(l2, "l2")
    return _run(PEN_ELASTIC, W, dW, l1, l2, n_threads)


def max_norm_constrain(cnp.ndarray W not None, double c, int n_threads=1):
    """Max-norm constraint, in place: every column of W (n_in, n_out) -- the incoming
    weight vector of one unit -- whose L2 norm exceeds c is scaled by c / norm onto the
    ball ||w||_2 <= c; columns already inside are left bit-for-bit untouched.

    W: 2-D, float32/float64, C-contiguous, writeable.  Norms are computed in double;
    the scaled weight is rounded once to W's dtype.  Returns the number of columns
    that were scaled.
    """
    cdef int t = check_float(W, "W")
    check(W, "W", 2, t, True)
    if not (c > 0) or c == INFINITY:
        raise ValueError(f"c (the max norm) must be a finite number > 0, got {c}")
    cdef Py_ssize_t n_in = cnp.PyArray_DIM(W, 0), n_out = cnp.PyArray_DIM(W, 1)
    cdef Py_ssize_t clipped
    if n_in == 0 or n_out == 0:
        return 0
    cdef double* scale = <double*>malloc(n_out * sizeof(double))
    if scale == NULL:
        raise MemoryError("fastnn: no memory for max-norm scratch")
    try:
        with nogil:
            clipped = max_norm_any(t, cnp.PyArray_DATA(W), n_in, n_out, c, scale, n_threads)
    finally:
        free(scale)
    return clipped
