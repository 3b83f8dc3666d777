# Weight penalties: the penalty and its gradient in one pass over the weights.
cimport numpy as cnp
from cython cimport floating

from _common cimport check, check_float, check_same_shape

cnp.import_array()

DEF LANES = 8


cdef double _l2(const floating* w, floating* g, Py_ssize_t n, floating reg) noexcept nogil:
    """g += reg * w; returns sum(w * w) (lane-blocked, in a fixed order)."""
    cdef double acc[LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(LANES):
        acc[l] = 0
    while i + LANES <= n:
        for l in range(LANES):
            acc[l] += <double>w[i + l] * w[i + l]
            g[i + l] += reg * w[i + l]
        i += LANES
    while i < n:
        total += <double>w[i] * w[i]
        g[i] += reg * w[i]
        i += 1
    for l in range(LANES):
        total += acc[l]
    return total


def l2_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double reg):
    """L2 regularization as the notes define it: returns 0.5 * reg * sum(W**2) and
    adds its gradient reg * W to dW in place.

    W, dW: same shape, float32/float64, C-contiguous.  The sum is accumulated in double.
    """
    cdef int t = check_float(W, "W")
    cdef int nd = cnp.PyArray_NDIM(W)
    check(W, "W", nd, t)
    check(dW, "dW", nd, t, True)
    check_same_shape(W, dW, "W", "dW")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(W)
    cdef double s
    if t == cnp.NPY_FLOAT32:
        with nogil:
            s = _l2(<float*>cnp.PyArray_DATA(W), <float*>cnp.PyArray_DATA(dW), n,
                    <float>reg)
    else:
        with nogil:
            s = _l2(<double*>cnp.PyArray_DATA(W), <double*>cnp.PyArray_DATA(dW), n, reg)
    return 0.5 * reg * s
