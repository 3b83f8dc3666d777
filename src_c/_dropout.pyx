# Inverted dropout: out = x * mask / p, mask_e ~ Bernoulli(p), p = probability of keeping.
#
# The mask comes from a counter-based generator: counter c gives the 64-bit word
# mix64(key + (c + 1) * GOLDEN), whose low 32 bits decide element 2c and whose high 32
# bits decide element 2c + 1 (kept when the 32-bit draw is < floor(p * 2**32)), with
# key = fnn_dropout_key(seed, step).  No state is shared, so threads split the counters
# freely and the mask is the same for any thread count; fastnn.reference.dropout_forward
# reproduces it bit for bit in NumPy.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint64_t

from _common cimport (FNN_GOLDEN, check, check_disjoint, check_float, check_same_shape, dropout_backward_block,
                      dropout_pairs, fnn_dropout_key, fnn_mix64)

cnp.import_array()

DEF BLOCK = 4096   # counters per parallel work item (8192 elements)


cdef void _forward(const floating* x, floating* out, uint8_t* mask, Py_ssize_t n,
                   uint64_t key, uint64_t thr, floating scale, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_full = n // 2            # counters whose both elements exist
    cdef Py_ssize_t n_blocks = (n_full + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, c0, c1, e
    cdef uint64_t z
    cdef int nt = n_threads if n_blocks > 1 and n_threads > 1 else 1
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        c0 = blk * BLOCK
        c1 = c0 + BLOCK
        if c1 > n_full:
            c1 = n_full
        dropout_pairs(x, out, mask, c0, c1, key, thr, scale)
    if n % 2:                                   # odd n: the last element, low half of its word
        e = n - 1
        z = fnn_mix64(key + <uint64_t>(n_full + 1) * FNN_GOLDEN)
        mask[e] = (z & 0xFFFFFFFFu) < thr
        out[e] = x[e] * scale if mask[e] else 0


cdef void _backward(const floating* dout, const uint8_t* mask, floating* dx, Py_ssize_t n,
                    floating scale, int n_threads) noexcept nogil:
    cdef Py_ssize_t n_blocks = (n + 2 * BLOCK - 1) // (2 * BLOCK)
    cdef Py_ssize_t blk, e0, e1
    cdef int nt = n_threads if n_blocks > 1 and n_threads > 1 else 1
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        e0 = blk * 2 * BLOCK
        e1 = e0 + 2 * BLOCK
        if e1 > n:
            e1 = n
        dropout_backward_block(dout + e0, mask + e0, dx + e0, e1 - e0, scale)


cdef uint64_t keep_threshold(double p) except? 0:
    """floor(p * 2**32): a 32-bit draw r keeps its element when r < this."""
    if not (0.0 < p <= 1.0):
        raise ValueError(f"p (the probability of keeping a unit) must be in (0, 1], got {p}")
    return <uint64_t>(p * 4294967296.0)


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
    return fnn_dropout_key(seed, step)


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
    cdef uint64_t key = fnn_dropout_key(seed, step)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(out),
                     <uint8_t*>cnp.PyArray_DATA(mask), n, key, thr, <float>scale, n_threads)
    else:
        with nogil:
            _forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(out),
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
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _backward(<float*>cnp.PyArray_DATA(dout), <uint8_t*>cnp.PyArray_DATA(mask),
                      <float*>cnp.PyArray_DATA(dx), n, <float>scale, n_threads)
    else:
        with nogil:
            _backward(<double*>cnp.PyArray_DATA(dout), <uint8_t*>cnp.PyArray_DATA(mask),
                      <double*>cnp.PyArray_DATA(dx), n, scale, n_threads)
    return dx
