# Inverted dropout, out = x * mask / p, and its "vanilla" variant (any scale): the def
# entry points.  Each checks its arrays (dtype, shape, contiguity, overlap) and p, then
# runs the nogil core of _dropout_core.pxd, which holds the mask generator and the
# threading design; a compiled training plan calls the same cores.
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint64_t

from _common cimport check, check_disjoint, check_float, check_same_shape
from _dispatch cimport dropout_backward_any, dropout_forward_any
from _dropout_core cimport keep_threshold_value, dropout_key as dropout_key_core

cnp.import_array()


cdef uint64_t keep_threshold(double p) except? 0:
    """floor(p * 2**32): a 32-bit draw r keeps its element when r < this."""
    if not (0.0 < p <= 1.0):
        raise ValueError(f"p (the probability of keeping a unit) must be in (0, 1], got {p}")
    return keep_threshold_value(p)


def dropout_forward(cnp.ndarray x not None, cnp.ndarray out not None,
                    cnp.ndarray mask not None, double p, uint64_t seed, uint64_t step,
                    int n_threads=1):
    """Inverted dropout (training mode): out = x * mask / p, mask written as 0/1 uint8.

    x, out: same shape, float32/float64, C-contiguous (out may be x); mask: same
    shape, uint8.  The mask is a pure function of (seed, step, element index).
    Returns out.
    """
    keep_threshold(p)               # p is checked before 1 / p is formed
    return dropout_forward_scaled(x, out, mask, p, 1.0 / p, seed, step, n_threads)


def dropout_backward(cnp.ndarray dout not None, cnp.ndarray mask not None,
                     cnp.ndarray dx not None, double p, int n_threads=1):
    """dx = dout * mask / p with the mask forward drew.  Returns dx."""
    keep_threshold(p)
    return dropout_backward_scaled(dout, mask, dx, 1.0 / p, n_threads)


def dropout_key(uint64_t seed, uint64_t step):
    """The generator key for (seed, step), exposed so tests can pin the NumPy twin to it."""
    return dropout_key_core(seed, step)


def dropout_forward_scaled(cnp.ndarray x not None, cnp.ndarray out not None,
                           cnp.ndarray mask not None, double p, double scale, uint64_t seed,
                           uint64_t step, int n_threads=1):
    """out = x * mask * scale with the mask of dropout_forward (same p, seed, step).

    scale = 1/p is inverted dropout (dropout_forward); scale = 1 is the notes' "vanilla"
    dropout, which instead multiplies by p at test time.  Returns out.
    """
    cdef int t = check_float(x, "x")
    cdef int nd = cnp.PyArray_NDIM(x)
    check(x, "x", nd, t)
    check(out, "out", nd, t, True)
    check(mask, "mask", nd, cnp.NPY_UINT8, True)
    check_same_shape(x, out, "x", "out")
    check_same_shape(x, mask, "x", "mask")
    check_disjoint(out, "out", x, "x", True)      # element-wise: in place is fine
    check_disjoint(mask, "mask", x, "x")
    check_disjoint(mask, "mask", out, "out")
    cdef uint64_t thr = keep_threshold(p)
    cdef uint64_t key = dropout_key_core(seed, step)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    with nogil:
        dropout_forward_any(t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(out),
                            <uint8_t*>cnp.PyArray_DATA(mask), n, key, thr, scale, n_threads)
    return out


def dropout_backward_scaled(cnp.ndarray dout not None, cnp.ndarray mask not None,
                            cnp.ndarray dx not None, double scale, int n_threads=1):
    """dx = dout * mask * scale (the backward of dropout_forward_scaled).  Returns dx."""
    cdef int t = check_float(dout, "dout")
    cdef int nd = cnp.PyArray_NDIM(dout)
    check(dout, "dout", nd, t)
    check(mask, "mask", nd, cnp.NPY_UINT8)
    check(dx, "dx", nd, t, True)
    check_same_shape(dout, mask, "dout", "mask")
    check_same_shape(dout, dx, "dout", "dx")
    check_disjoint(dx, "dx", dout, "dout", True)
    check_disjoint(dx, "dx", mask, "mask")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(dout)
    with nogil:
        dropout_backward_any(t, cnp.PyArray_DATA(dout), <uint8_t*>cnp.PyArray_DATA(mask),
                             cnp.PyArray_DATA(dx), n, scale, n_threads)
    return dx
