# Loss kernels: the mean data loss and its gradient on the scores, in one pass.
#
# softmax cross-entropy, per row i of scores (N, K) with label y_i:
#     m = max_j s_ij;  Z = sum_j exp(s_ij - m)           (subtracting m: no overflow)
#     L_i = log Z - (s_iy - m);   dscores_ij = (exp(s_ij - m) / Z - [j == y_i]) / N
# Rows are independent, so any thread may take any row; the mean is the sum of the
# per-row losses in row order, hence the same bits for every thread count.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (FNN_SOFTMAX_BLOCK_ELEMS, FNN_SOFTMAX_MAX_ROWS, check, check_float,
                      check_shape, softmax_xent_block, threads_for)

cnp.import_array()

cdef void _softmax_xent(const floating* s, const Py_ssize_t* y, floating* d,
                        floating* row_loss, Py_ssize_t n, Py_ssize_t k,
                        int n_threads) noexcept nogil:
    """Blocks of rows (fastnn_loops.h's softmax_xent_block), blocks spread over threads."""
    cdef Py_ssize_t rows = FNN_SOFTMAX_BLOCK_ELEMS // k
    if rows < 1:
        rows = 1
    if rows > FNN_SOFTMAX_MAX_ROWS:
        rows = FNN_SOFTMAX_MAX_ROWS
    cdef Py_ssize_t n_blocks = (n + rows - 1) // rows, blk, r0, r1
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * k * 8, n_threads)   # an exp costs ~8 element-ops
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        r0 = blk * rows
        r1 = r0 + rows
        if r1 > n:
            r1 = n
        softmax_xent_block(s + r0 * k, y + r0, d + r0 * k, row_loss + r0, r1 - r0, k, inv_n)


cdef Py_ssize_t _first_bad_label(const Py_ssize_t* y, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= k:
            return i
    return -1


def softmax_cross_entropy(cnp.ndarray scores not None, cnp.ndarray y not None,
                          cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                          int n_threads=1):
    """Mean softmax cross-entropy over the batch; writes dscores and row_loss.

    scores (N, K) float32/float64, y (N,) intp labels in [0, K), dscores (N, K) and
    row_loss (N,) of the scores' dtype, all C-contiguous.  Returns a Python float.
    """
    cdef int t = check_float(scores, "scores")
    check(scores, "scores", 2, t)
    check(y, "y", 1, cnp.NPY_INTP)
    check(dscores, "dscores", 2, t, True)
    check(row_loss, "row_loss", 1, t, True)
    cdef Py_ssize_t n = scores.shape[0], k = scores.shape[1], i
    if n == 0 or k == 0:
        raise ValueError(f"scores must be non-empty, got shape {(<object>scores).shape}")
    check_shape(y, "y", n)
    check_shape(dscores, "dscores", n, k)
    check_shape(row_loss, "row_loss", n)
    cdef const Py_ssize_t* yp = <Py_ssize_t*>cnp.PyArray_DATA(y)
    cdef Py_ssize_t bad
    with nogil:
        bad = _first_bad_label(yp, n, k)
    if bad >= 0:
        raise ValueError(f"y[{bad}] = {y[bad]} is not a class index in [0, {k})")
    cdef double total = 0
    cdef float* lf
    cdef double* ld
    if t == cnp.NPY_FLOAT32:
        lf = <float*>cnp.PyArray_DATA(row_loss)
        with nogil:
            _softmax_xent(<float*>cnp.PyArray_DATA(scores), yp,
                          <float*>cnp.PyArray_DATA(dscores), lf, n, k, n_threads)
            for i in range(n):
                total += lf[i]
    else:
        ld = <double*>cnp.PyArray_DATA(row_loss)
        with nogil:
            _softmax_xent(<double*>cnp.PyArray_DATA(scores), yp,
                          <double*>cnp.PyArray_DATA(dscores), ld, n, k, n_threads)
            for i in range(n):
                total += ld[i]
    return total / n
