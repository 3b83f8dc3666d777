# Cores of the fused affine + element-wise activation layer (identity, relu, leaky_relu,
# sigmoid, tanh: the codes of _common.pxd), shared by the checked entry points of
# _affine.pyx and by the training plan (_plan.pyx), which must compute the same bits.
#
#   forward:  out = act(x @ W + b)                    x (N, D), W (D, H), b (H,), out (N, H)
#   backward: dz = dout * act'(out);  db = sum_rows dz;  dW = x.T @ dz;  dx = dz @ W.T
#
# The products are team_gemm calls (a shape-only block grid, BLAS single-threaded);
# bias, activation, its derivative and the db reduction happen in one pass over the
# (N, H) block.  The derivative is read off the cached *output*, so forward keeps nothing
# else.  db is reduced column by column, each column by one thread in row order, so no
# bit depends on the thread count.  No parallel region is entered for one thread.
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (ACT_SIGMOID, SMALL_ROWS_PER_BLOCK, act_backward_cols, bias_act_rows,
                      column_threads, small_gemm, small_gemm_fits, split, team_gemm,
                      threads_for)


cdef inline void affine_forward_core(const floating* x, const floating* w, const floating* b,
                                     floating* out, Py_ssize_t n, Py_ssize_t d, Py_ssize_t h,
                                     int act, floating alpha, int n_threads) noexcept nogil:
    """out (n, h) = act(x (n, d) @ w (d, h) + b (h,))."""
    # sigmoid/tanh cost an exp per element: worth threads at smaller sizes
    cdef int nt = threads_for(n * h * (1 if act < ACT_SIGMOID else 8), n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    if small_gemm_fits(False, False, n, h, d) and nt <= 1:
        # few inputs (the spiral's 2): the product and its epilogue block by block, so
        # each block of out is written once and finished while it is in L1
        r0 = 0
        while r0 < n:
            r1 = r0 + SMALL_ROWS_PER_BLOCK
            if r1 > n:
                r1 = n
            small_gemm(False, False, r1 - r0, h, d, x + r0 * d, d, w, h, out + r0 * h, h)
            bias_act_rows(out + r0 * h, b, r1 - r0, h, act, alpha)
            r0 = r1
        return
    team_gemm(False, False, <int>n, <int>h, <int>d, <floating>1, x, <int>d, w, <int>h,
              <floating>0, out, <int>h, n_threads)
    if nt <= 1:
        bias_act_rows(out, b, n, h, act, alpha)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        bias_act_rows(out + split(n, nt, t) * h, b, split(n, nt, t + 1) - split(n, nt, t),
                      h, act, alpha)


cdef inline void affine_epilogue_backward_core(const floating* dout, const floating* out,
                                               floating* dz, floating* db, Py_ssize_t n,
                                               Py_ssize_t h, int act, floating alpha,
                                               int n_threads) noexcept nogil:
    """dz = dout * act'(out) and db = column sums of dz, one pass, columns split across
    threads (act == 0 reads dout and writes no dz)."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    if nt <= 1:
        act_backward_cols(dout, out, dz, db, n, h, 0, h, act, alpha)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        act_backward_cols(dout, out, dz, db, n, h, split(h, nt, t), split(h, nt, t + 1), act,
                          alpha)


cdef inline void affine_backward_core(const floating* dout, const floating* x,
                                      const floating* w, const floating* out, floating* dz,
                                      floating* dx, floating* dw, floating* db, Py_ssize_t n,
                                      Py_ssize_t d, Py_ssize_t h, int act, floating alpha,
                                      int n_threads) noexcept nogil:
    """Writes dz (n, h) scratch (unused, may be NULL, when act is identity), db (h,),
    dw (d, h) and, unless dx is NULL, dx (n, d)."""
    affine_epilogue_backward_core(dout, out, dz, db, n, h, act, alpha, n_threads)
    cdef const floating* g = <const floating*>dz if act != 0 else dout
    team_gemm(True, False, <int>d, <int>h, <int>n, <floating>1, x, <int>d, g, <int>h,
              <floating>0, dw, <int>h, n_threads)
    if dx != NULL:
        team_gemm(False, True, <int>n, <int>d, <int>h, <floating>1, g, <int>h, w, <int>h,
                  <floating>0, dx, <int>d, n_threads)
