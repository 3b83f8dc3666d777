# Cores of the maxout layer (Goodfellow et al. 2013), shared by _maxout.pyx's checked
# entry points and the training plan: each output unit is the max of k affine pieces.
#
#   forward:  z = x @ W + b;  out[i, j] = max_p z[i, j*k + p];  arg[i, j] = the winning p
#   backward: dz[i, j*k + arg] = dout[i, j] (0 for the losing pieces);
#             db = sum_rows dz;  dW = x.T @ dz;  dx = dz @ W.T
#
# Layout: x (N, D), W (D, H*k), b (H*k,), z/dz (N, H*k), out/arg (N, H).  Column j*k + p
# of W is piece p of unit j.  Ties go to the first piece.  The products are team_gemm
# calls; the max and the scatter are one pass each over the (N, H*k) block.  db is reduced
# unit by unit, each unit by one thread in row order: no bit depends on the thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t

from _common cimport (column_threads, maxout_rows, maxout_scatter_cols, split, team_gemm,
                      threads_for)


cdef inline void maxout_forward_core(const floating* x, const floating* w, const floating* b,
                                     floating* z, floating* out, int32_t* arg, Py_ssize_t n,
                                     Py_ssize_t d, Py_ssize_t h, Py_ssize_t k,
                                     int n_threads) noexcept nogil:
    """z (n, h*k) = x @ w; out (n, h) = max over each unit's pieces of z + b; arg (n, h)
    the winning piece."""
    cdef Py_ssize_t hk = h * k
    team_gemm(False, False, <int>n, <int>hk, <int>d, <floating>1, x, <int>d, w, <int>hk,
              <floating>0, z, <int>hk, n_threads)
    cdef int nt = threads_for(n * hk, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    if nt <= 1:
        maxout_rows(z, b, out, arg, n, h, k)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        maxout_rows(z + r0 * hk, b, out + r0 * h, arg + r0 * h, r1 - r0, h, k)


cdef inline void maxout_backward_core(const floating* dout, const floating* x,
                                      const floating* w, const int32_t* arg, floating* dz,
                                      floating* dx, floating* dw, floating* db, Py_ssize_t n,
                                      Py_ssize_t d, Py_ssize_t h, Py_ssize_t k,
                                      int n_threads) noexcept nogil:
    """Writes dz (n, h*k) scratch, db (h*k,), dw (d, h*k) and, unless NULL, dx (n, d)."""
    cdef Py_ssize_t hk = h * k
    cdef int nt = column_threads(n * hk, h, n_threads)
    cdef int t
    cdef Py_ssize_t c
    for c in range(hk):
        db[c] = 0
    if nt <= 1:
        maxout_scatter_cols(dout, arg, dz, db, n, h, k, 0, h)
    else:
        for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
            maxout_scatter_cols(dout, arg, dz, db, n, h, k, split(h, nt, t),
                                split(h, nt, t + 1))
    team_gemm(True, False, <int>d, <int>hk, <int>n, <floating>1, x, <int>d, dz, <int>hk,
              <floating>0, dw, <int>hk, n_threads)
    if dx != NULL:
        team_gemm(False, True, <int>n, <int>d, <int>hk, <floating>1, dz, <int>hk, w, <int>hk,
                  <floating>0, dx, <int>d, n_threads)
