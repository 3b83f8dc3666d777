# Standalone element-wise activations, forward and backward.
#
#   activation_forward:  out = act(x)                  any shape, act a code of _common.pxd
#   activation_backward: dx = dout * act'(out)         the derivative read off the output
#   prelu_forward:       out = x if x > 0 else alpha[c] * x      x (N, H), alpha (H,)
#   prelu_backward:      dx = dout * (1 or alpha[c]);  dalpha[c] = sum_i 1(x <= 0) dout x
#
# The element-wise kernels split the flattened array into fixed blocks, so every element
# is computed by the same code whatever the thread count.  PReLU's dalpha is a reduction
# over the batch: columns are split across threads and each column is summed in row
# order, so its bits do not depend on the thread count either.  (PReLU needs its input,
# not its output, for the backward pass: a learned slope may turn negative.)
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (ACT_SIGMOID, act_backward, act_forward, check, check_act,
                      check_disjoint, check_float, check_same_shape, check_shape,
                      column_threads, prelu_backward_cols, prelu_rows, split, threads_for)

cnp.import_array()

DEF BLOCK = 8192   # elements per parallel work item


cdef inline int _threads(Py_ssize_t n, int act, int n_threads) noexcept nogil:
    # sigmoid/tanh cost an exp per element: worth threads at smaller sizes
    return threads_for(n * (1 if act < ACT_SIGMOID else 8), n_threads)


cdef void _act_forward(const floating* x, floating* out, Py_ssize_t n, int act,
                       floating alpha, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, e0, e1
    cdef int nt = _threads(n, act, n_threads)
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        e0 = blk * BLOCK
        e1 = e0 + BLOCK
        if e1 > n:
            e1 = n
        act_forward(x + e0, out + e0, e1 - e0, act, alpha)


cdef void _act_backward(const floating* dout, const floating* out, floating* dx,
                        Py_ssize_t n, int act, floating alpha, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_blocks = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, e0, e1
    cdef int nt = threads_for(n, n_threads)
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        e0 = blk * BLOCK
        e1 = e0 + BLOCK
        if e1 > n:
            e1 = n
        act_backward(dout + e0, out + e0, dx + e0, e1 - e0, act, alpha)


def activation_forward(cnp.ndarray x not None, cnp.ndarray out not None, int activation,
                       double alpha=0.0, int n_threads=1):
    """out[:] = act(x), element-wise; returns out.

    x, out: same shape (any), C-contiguous, one dtype (float32 or float64).
    activation: 0 identity, 1 relu, 2 leaky_relu (slope `alpha` >= 0 below zero),
    3 sigmoid, 4 tanh.  out may be x (in place).
    """
    cdef int t = check_float(x, "x")
    cdef int nd = cnp.PyArray_NDIM(x)
    check(x, "x", nd, t)
    check(out, "out", nd, t, True)
    check_same_shape(x, out, "x", "out")
    check_disjoint(out, "out", x, "x", True)
    check_act(activation, alpha)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _act_forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(out), n,
                         activation, <float>alpha, n_threads)
    else:
        with nogil:
            _act_forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(out), n,
                         activation, alpha, n_threads)
    return out


def activation_backward(cnp.ndarray dout not None, cnp.ndarray out not None,
                        cnp.ndarray dx not None, int activation, double alpha=0.0,
                        int n_threads=1):
    """dx[:] = dout * act'(.) computed from the forward *output* `out`; returns dx.

    relu: 1(out > 0); leaky_relu: 1 or alpha; sigmoid: out (1 - out);
    tanh: (1 - out)(1 + out).
    dout, out, dx: same shape, C-contiguous, one dtype.  dx may be dout.
    """
    cdef int t = check_float(dout, "dout")
    cdef int nd = cnp.PyArray_NDIM(dout)
    check(dout, "dout", nd, t)
    check(out, "out", nd, t)
    check(dx, "dx", nd, t, True)
    check_same_shape(dout, out, "dout", "out")
    check_same_shape(dout, dx, "dout", "dx")
    check_disjoint(dx, "dx", dout, "dout", True)
    check_disjoint(dx, "dx", out, "out", True)
    check_act(activation, alpha)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(dout)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _act_backward(<float*>cnp.PyArray_DATA(dout), <float*>cnp.PyArray_DATA(out),
                          <float*>cnp.PyArray_DATA(dx), n, activation, <float>alpha,
                          n_threads)
    else:
        with nogil:
            _act_backward(<double*>cnp.PyArray_DATA(dout), <double*>cnp.PyArray_DATA(out),
                          <double*>cnp.PyArray_DATA(dx), n, activation, alpha, n_threads)
    return dx


# ---- PReLU: a learned slope per unit ----

cdef void _prelu_forward(const floating* x, const floating* alpha, floating* out,
                         Py_ssize_t n, Py_ssize_t h, int n_threads) noexcept nogil:
    cdef int nt = threads_for(n * h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        prelu_rows(x + r0 * h, alpha, out + r0 * h, r1 - r0, h)


cdef void _prelu_backward(const floating* dout, const floating* x, const floating* alpha,
                          floating* dx, floating* dalpha, Py_ssize_t n, Py_ssize_t h,
                          int n_threads) noexcept nogil:
    """dx (unless NULL) and dalpha in one pass; columns split across threads, each
    column's dalpha summed in row order."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        prelu_backward_cols(dout, x, alpha, dx, dalpha, n, h, split(h, nt, t),
                            split(h, nt, t + 1))


def prelu_forward(cnp.ndarray x not None, cnp.ndarray alpha not None,
                  cnp.ndarray out not None, int n_threads=1):
    """out = x where x > 0, alpha[c] * x elsewhere; returns out.

    x (N, H), alpha (H,), out (N, H): C-contiguous, one dtype (float32 or float64).
    """
    cdef int t = check_float(x, "x")
    check(x, "x", 2, t)
    check(alpha, "alpha", 1, t)
    check(out, "out", 2, t, True)
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1]
    check_shape(alpha, "alpha", h)
    check_shape(out, "out", n, h)
    check_disjoint(out, "out", x, "x")
    check_disjoint(out, "out", alpha, "alpha")
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _prelu_forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(alpha),
                           <float*>cnp.PyArray_DATA(out), n, h, n_threads)
    else:
        with nogil:
            _prelu_forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(alpha),
                           <double*>cnp.PyArray_DATA(out), n, h, n_threads)
    return out


def prelu_backward(cnp.ndarray dout not None, cnp.ndarray x not None,
                   cnp.ndarray alpha not None, cnp.ndarray dx, cnp.ndarray dalpha not None,
                   int n_threads=1):
    """Gradients of PReLU given dout = dL/dout and the forward input x.

    Writes dalpha (H,) = column sums of dout * x over the rows where x <= 0, and, unless
    dx is None, dx (N, H) = dout where x > 0, alpha[c] * dout elsewhere.
    """
    cdef int t = check_float(dout, "dout")
    check(dout, "dout", 2, t)
    check(x, "x", 2, t)
    check(alpha, "alpha", 1, t)
    check(dalpha, "dalpha", 1, t, True)
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1]
    check_shape(dout, "dout", n, h)
    check_shape(alpha, "alpha", h)
    check_shape(dalpha, "dalpha", h)
    for a, aname in ((dout, "dout"), (x, "x"), (alpha, "alpha")):
        check_disjoint(dalpha, "dalpha", a, aname)
    cdef void* dx_p = NULL
    if dx is not None:
        check(dx, "dx", 2, t, True)
        check_shape(dx, "dx", n, h)
        for a, aname in ((dout, "dout"), (x, "x"), (alpha, "alpha"), (dalpha, "dalpha")):
            check_disjoint(dx, "dx", a, aname)
        dx_p = cnp.PyArray_DATA(dx)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _prelu_backward(<float*>cnp.PyArray_DATA(dout), <float*>cnp.PyArray_DATA(x),
                            <float*>cnp.PyArray_DATA(alpha), <float*>dx_p,
                            <float*>cnp.PyArray_DATA(dalpha), n, h, n_threads)
    else:
        with nogil:
            _prelu_backward(<double*>cnp.PyArray_DATA(dout), <double*>cnp.PyArray_DATA(x),
                            <double*>cnp.PyArray_DATA(alpha), <double*>dx_p,
                            <double*>cnp.PyArray_DATA(dalpha), n, h, n_threads)
    return dx
