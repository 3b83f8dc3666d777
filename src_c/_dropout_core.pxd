# Nogil cores of dropout, shared by the def kernels of _dropout.pyx and by anything that
# cimports them (a training plan).
#
# out = x * mask * scale, mask_e ~ Bernoulli(p), p = probability of keeping.  Inverted
# dropout (fastnn's dropout_forward) uses scale = 1 / p, rounded once from double to the
# array's dtype: <floating>(1.0 / p); the notes' "vanilla" dropout uses scale = 1 and
# multiplies by p at test time instead.  The backward is dx = dout * mask * scale.
#
# The mask comes from a counter-based generator: counter c gives the 64-bit word
# mix64(key + (c + 1) * GOLDEN), whose low 32 bits decide element 2c and whose high 32
# bits decide element 2c + 1 (kept when the 32-bit draw is < keep_threshold_value(p) =
# floor(p * 2**32)), with key = dropout_key(seed, step).  No state is shared, so threads
# split the counters freely (DROPOUT_BLOCK counters per work item, the same blocks for any
# thread count) and the mask is the same for any thread count; with one thread (or one
# block) the blocks run in order without entering a parallel region.
# fastnn.reference.dropout_forward reproduces the mask bit for bit in NumPy.  The cores
# check nothing and allocate nothing.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint64_t

from _common cimport (FNN_GOLDEN, dropout_backward_block, dropout_pairs, fnn_dropout_key,
                      fnn_mix64)

cdef enum:
    DROPOUT_BLOCK = 4096   # counters per parallel work item (8192 elements)


cdef inline uint64_t dropout_key(uint64_t seed, uint64_t step) noexcept nogil:
    """The generator key of training step `step` of a run seeded `seed`."""
    return fnn_dropout_key(seed, step)


cdef inline uint64_t keep_threshold_value(double p) noexcept nogil:
    """floor(p * 2**32): a 32-bit draw r keeps its element when r < this.
    p must be in (0, 1] (the def kernels check it)."""
    return <uint64_t>(p * 4294967296.0)


cdef inline void _dropout_forward_block(const floating* x, floating* out, uint8_t* mask,
                                        Py_ssize_t n_full, Py_ssize_t blk, uint64_t key,
                                        uint64_t thr, floating scale) noexcept nogil:
    cdef Py_ssize_t c0 = blk * DROPOUT_BLOCK
    cdef Py_ssize_t c1 = c0 + DROPOUT_BLOCK
    if c1 > n_full:
        c1 = n_full
    dropout_pairs(x, out, mask, c0, c1, key, thr, scale)


cdef inline void dropout_forward_core(const floating* x, floating* out, uint8_t* mask,
                                      Py_ssize_t n, uint64_t key, uint64_t thr,
                                      floating scale, int n_threads) noexcept nogil:
    """mask[e] = 1 if element e is kept else 0; out[e] = x[e] * scale if kept else 0.

    x, out: n elements (out may be x); mask: n bytes, disjoint from both.
    key = dropout_key(seed, step); thr = keep_threshold_value(p)."""
    cdef Py_ssize_t n_full = n // 2            # counters whose both elements exist
    cdef Py_ssize_t n_blocks = (n_full + DROPOUT_BLOCK - 1) // DROPOUT_BLOCK
    cdef Py_ssize_t blk, e
    cdef uint64_t z
    cdef int nt = n_threads if n_blocks > 1 and n_threads > 1 else 1
    if nt == 1:
        for blk in range(n_blocks):
            _dropout_forward_block(x, out, mask, n_full, blk, key, thr, scale)
    else:
        for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
            _dropout_forward_block(x, out, mask, n_full, blk, key, thr, scale)
    if n % 2:                                   # odd n: the last element, low half of its word
        e = n - 1
        z = fnn_mix64(key + <uint64_t>(n_full + 1) * FNN_GOLDEN)
        mask[e] = (z & 0xFFFFFFFFu) < thr
        out[e] = x[e] * scale if mask[e] else 0


cdef inline void _dropout_backward_block(const floating* dout, const uint8_t* mask,
                                         floating* dx, Py_ssize_t n, Py_ssize_t blk,
                                         floating scale) noexcept nogil:
    cdef Py_ssize_t e0 = blk * 2 * DROPOUT_BLOCK
    cdef Py_ssize_t e1 = e0 + 2 * DROPOUT_BLOCK
    if e1 > n:
        e1 = n
    dropout_backward_block(dout + e0, mask + e0, dx + e0, e1 - e0, scale)


cdef inline void dropout_backward_core(const floating* dout, const uint8_t* mask,
                                       floating* dx, Py_ssize_t n, floating scale,
                                       int n_threads) noexcept nogil:
    """dx[e] = dout[e] * scale if mask[e] else 0, for e < n.

    dout, dx: n elements (dx may be dout); mask: the n bytes forward wrote."""
    cdef Py_ssize_t n_blocks = (n + 2 * DROPOUT_BLOCK - 1) // (2 * DROPOUT_BLOCK)
    cdef Py_ssize_t blk
    cdef int nt = n_threads if n_blocks > 1 and n_threads > 1 else 1
    if nt == 1:
        for blk in range(n_blocks):
            _dropout_backward_block(dout, mask, dx, n, blk, scale)
    else:
        for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
            _dropout_backward_block(dout, mask, dx, n, blk, scale)
