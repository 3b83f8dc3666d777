# Nogil cores of the standalone element-wise activations and PReLU, shared by the def
# kernels of _activation.pyx and by anything that cimports them (a training plan).
#
#   act_forward_core:    out = act(x)                  flat arrays of n elements
#   act_backward_core:   dx = dout * act'(out)         the derivative read off the output
#   prelu_forward_core:  out = x if x > 0 else alpha[c] * x      x (N, H), alpha (H,)
#   prelu_backward_core: dx = dout * (1 or alpha[c]);  dalpha[c] = sum_i 1(x <= 0) dout x
#
# The element-wise cores split the flattened array into fixed blocks of ACT_BLOCK
# elements, so every element is computed by the same code whatever the thread count.
# PReLU's forward splits rows (element-wise too).  PReLU's dalpha is a reduction over the
# batch: columns are split across threads and each column is summed in row order, so its
# bits do not depend on the thread count either.  When a call resolves to one thread it
# runs the same blocks / ranges in the same order without entering a parallel region.
# (PReLU needs its input, not its output, for the backward pass: a learned slope may
# turn negative.)  The cores check nothing and allocate nothing: the caller passes
# valid C-contiguous buffers of the documented sizes.
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (ACT_SIGMOID, act_backward, act_forward, column_threads,
                      prelu_backward_cols, prelu_rows, split, threads_for)

cdef enum:
    ACT_BLOCK = 8192   # elements per parallel work item


cdef inline int _act_threads(Py_ssize_t n, int act, int n_threads) noexcept nogil:
    # sigmoid/tanh cost an exp per element: worth threads at smaller sizes
    return threads_for(n * (1 if act < ACT_SIGMOID else 8), n_threads)


cdef inline void _act_forward_block(const floating* x, floating* out, Py_ssize_t n,
                                    Py_ssize_t blk, int act, floating alpha) noexcept nogil:
    cdef Py_ssize_t e0 = blk * ACT_BLOCK
    cdef Py_ssize_t e1 = e0 + ACT_BLOCK
    if e1 > n:
        e1 = n
    act_forward(x + e0, out + e0, e1 - e0, act, alpha)


cdef inline void _act_backward_block(const floating* dout, const floating* out, floating* dx,
                                     Py_ssize_t n, Py_ssize_t blk, int act,
                                     floating alpha) noexcept nogil:
    cdef Py_ssize_t e0 = blk * ACT_BLOCK
    cdef Py_ssize_t e1 = e0 + ACT_BLOCK
    if e1 > n:
        e1 = n
    act_backward(dout + e0, out + e0, dx + e0, e1 - e0, act, alpha)


cdef inline void act_forward_core(const floating* x, floating* out, Py_ssize_t n, int act,
                                  floating alpha, int n_threads) noexcept nogil:
    """out[e] = act(x[e]) for e < n.

    x, out: n elements each (out may be x, in place).  act: an ACT_* code of _common.pxd
    (valid, alpha >= 0 for leaky ReLU: check_act); alpha: the leaky ReLU slope."""
    cdef Py_ssize_t n_blocks = (n + ACT_BLOCK - 1) // ACT_BLOCK
    cdef Py_ssize_t blk
    cdef int nt = _act_threads(n, act, n_threads)
    if nt <= 1:
        for blk in range(n_blocks):
            _act_forward_block(x, out, n, blk, act, alpha)
    else:
        for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
            _act_forward_block(x, out, n, blk, act, alpha)


cdef inline void act_backward_core(const floating* dout, const floating* out, floating* dx,
                                   Py_ssize_t n, int act, floating alpha,
                                   int n_threads) noexcept nogil:
    """dx[e] = dout[e] * act'(.) read off the forward output out[e], for e < n.

    dout, out, dx: n elements each (dx may be dout or out).  act, alpha as forward."""
    cdef Py_ssize_t n_blocks = (n + ACT_BLOCK - 1) // ACT_BLOCK
    cdef Py_ssize_t blk
    cdef int nt = threads_for(n, n_threads)
    if nt <= 1:
        for blk in range(n_blocks):
            _act_backward_block(dout, out, dx, n, blk, act, alpha)
    else:
        for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
            _act_backward_block(dout, out, dx, n, blk, act, alpha)


# ---- PReLU: a learned slope per unit ----

cdef inline void prelu_forward_core(const floating* x, const floating* alpha, floating* out,
                                    Py_ssize_t n, Py_ssize_t h, int n_threads) noexcept nogil:
    """out[i, c] = x[i, c] if x[i, c] > 0 else alpha[c] * x[i, c].

    x, out: (n, h) row-major, disjoint; alpha: (h,).  Rows split across threads."""
    cdef int nt = threads_for(n * h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    if nt <= 1:
        prelu_rows(x, alpha, out, n, h)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        prelu_rows(x + r0 * h, alpha, out + r0 * h, r1 - r0, h)


cdef inline void prelu_backward_core(const floating* dout, const floating* x,
                                     const floating* alpha, floating* dx, floating* dalpha,
                                     Py_ssize_t n, Py_ssize_t h,
                                     int n_threads) noexcept nogil:
    """dalpha[c] = sum over rows i (in row order) of dout[i, c] * x[i, c] where
    x[i, c] <= 0; and, unless dx is NULL, dx[i, c] = dout[i, c] if x[i, c] > 0 else
    alpha[c] * dout[i, c].

    dout, x, dx: (n, h) row-major; alpha, dalpha: (h,); dx and dalpha disjoint from the
    inputs and each other.  dx and dalpha in one pass; columns split across threads."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    if nt <= 1:
        prelu_backward_cols(dout, x, alpha, dx, dalpha, n, h, 0, h)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        prelu_backward_cols(dout, x, alpha, dx, dalpha, n, h, split(h, nt, t),
                            split(h, nt, t + 1))
