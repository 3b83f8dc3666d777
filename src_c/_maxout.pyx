# Maxout units (Goodfellow et al. 2013): each output unit is the max of k affine pieces.
#
#   forward:  z = x @ W + b;  out[i, j] = max_p z[i, j*k + p];  arg[i, j] = the winning p
#   backward: dz[i, j*k + arg] = dout[i, j] (0 for the losing pieces);
#             db = sum_rows dz;  dW = x.T @ dz;  dx = dz @ W.T
#
# Layout: x (N, D), W (D, H*k), b (H*k,), z/dz (N, H*k), out/arg (N, H).  Column j*k + p
# of W is piece p of unit j, so a unit's k pieces sit next to each other in every row
# (W viewed as (D, H, k)).  Ties go to the first piece.  The products go through BLAS;
# the max and the scatter are one pass each over the (N, H*k) block.  db is reduced unit
# by unit, each unit by one thread in row order, so its bits do not depend on the
# thread count.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int32_t

from _common cimport (check, check_blas_dims, check_float, check_outputs, check_shape,
                      column_threads, gemm, maxout_rows, maxout_scatter_cols, split,
                      threads_for)

cnp.import_array()


cdef void _forward(const floating* x, const floating* w, const floating* b, floating* z,
                   floating* out, int32_t* arg, Py_ssize_t n, Py_ssize_t d, Py_ssize_t h,
                   Py_ssize_t k, int n_threads) noexcept nogil:
    cdef Py_ssize_t hk = h * k
    gemm(False, False, <int>n, <int>hk, <int>d, <floating>1, x, <int>d, w, <int>hk,
         <floating>0, z, <int>hk)
    cdef int nt = threads_for(n * hk, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        maxout_rows(z + r0 * hk, b, out + r0 * h, arg + r0 * h, r1 - r0, h, k)


cdef void _backward(const floating* dout, const floating* x, const floating* w,
                    const int32_t* arg, floating* dz, floating* dx, floating* dw,
                    floating* db, Py_ssize_t n, Py_ssize_t d, Py_ssize_t h, Py_ssize_t k,
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t hk = h * k
    cdef int nt = column_threads(n * hk, h, n_threads)
    cdef int t
    cdef Py_ssize_t c
    for c in range(hk):
        db[c] = 0
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        maxout_scatter_cols(dout, arg, dz, db, n, h, k, split(h, nt, t), split(h, nt, t + 1))
    gemm(True, False, <int>d, <int>hk, <int>n, <floating>1, x, <int>d, dz, <int>hk,
         <floating>0, dw, <int>hk)
    if dx != NULL:
        gemm(False, True, <int>n, <int>d, <int>hk, <floating>1, dz, <int>hk, w, <int>hk,
             <floating>0, dx, <int>d)


cdef Py_ssize_t _units(cnp.ndarray W, int k) except -1:
    if k < 1:
        raise ValueError(f"k (pieces per unit) must be >= 1, got {k}")
    if W.shape[1] % k != 0:
        raise ValueError(f"W has {W.shape[1]} columns, not a multiple of k = {k}")
    return W.shape[1] // k


def maxout_forward(cnp.ndarray x not None, cnp.ndarray W not None, cnp.ndarray b not None,
                   cnp.ndarray z not None, cnp.ndarray out not None,
                   cnp.ndarray arg not None, int k, int n_threads=1):
    """out[i, j] = max_p (x @ W + b)[i, j*k + p]; returns out.

    x (N, D), W (D, H*k), b (H*k,), z (N, H*k) scratch (receives x @ W, without b),
    out (N, H): C-contiguous, one dtype (float32 or float64).  arg (N, H) int32
    receives the winning piece (the first one on ties), which backward needs.
    """
    cdef int t = check_float(x, "x")
    check(x, "x", 2, t)
    check(W, "W", 2, t)
    check(b, "b", 1, t)
    check(z, "z", 2, t, True)
    check(out, "out", 2, t, True)
    check(arg, "arg", 2, cnp.NPY_INT32, True)
    cdef Py_ssize_t h = _units(W, k)
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    check_shape(W, "W", d, h * k)
    check_shape(b, "b", h * k)
    check_shape(z, "z", n, h * k)
    check_shape(out, "out", n, h)
    check_shape(arg, "arg", n, h)
    check_blas_dims(n, d, h * k)
    check_outputs(((z, "z"), (out, "out"), (arg, "arg")), ((x, "x"), (W, "W"), (b, "b")))
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(W),
                     <float*>cnp.PyArray_DATA(b), <float*>cnp.PyArray_DATA(z),
                     <float*>cnp.PyArray_DATA(out), <int32_t*>cnp.PyArray_DATA(arg),
                     n, d, h, k, n_threads)
    else:
        with nogil:
            _forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(W),
                     <double*>cnp.PyArray_DATA(b), <double*>cnp.PyArray_DATA(z),
                     <double*>cnp.PyArray_DATA(out), <int32_t*>cnp.PyArray_DATA(arg),
                     n, d, h, k, n_threads)
    return out


def maxout_backward(cnp.ndarray dout not None, cnp.ndarray x not None,
                    cnp.ndarray W not None, cnp.ndarray arg not None,
                    cnp.ndarray dz not None, cnp.ndarray dx, cnp.ndarray dW not None,
                    cnp.ndarray db not None, int k, int n_threads=1):
    """Gradients of maxout given dout (N, H) and the forward's arg (N, H) int32.

    Writes dz (N, H*k) (dout routed to each unit's winning piece), dW (D, H*k),
    db (H*k,) and, unless dx is None, dx (N, D).  Winning pieces outside [0, k) are a
    ValueError (arg is read as an index).
    """
    cdef int t = check_float(dout, "dout")
    check(dout, "dout", 2, t)
    check(x, "x", 2, t)
    check(W, "W", 2, t)
    check(arg, "arg", 2, cnp.NPY_INT32)
    check(dz, "dz", 2, t, True)
    check(dW, "dW", 2, t, True)
    check(db, "db", 1, t, True)
    cdef Py_ssize_t h = _units(W, k)
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    check_shape(W, "W", d, h * k)
    check_shape(dout, "dout", n, h)
    check_shape(arg, "arg", n, h)
    check_shape(dz, "dz", n, h * k)
    check_shape(dW, "dW", d, h * k)
    check_shape(db, "db", h * k)
    # arg indexes memory: one cheap scan keeps a corrupted arg from writing out of bounds
    cdef const int32_t* a = <int32_t*>cnp.PyArray_DATA(arg)
    cdef Py_ssize_t e
    cdef bint bad = False
    with nogil:
        for e in range(n * h):
            if a[e] < 0 or a[e] >= k:
                bad = True
    if bad:
        raise ValueError(f"arg holds a piece index outside [0, {k})")
    cdef void* dx_p = NULL
    if dx is not None:
        check(dx, "dx", 2, t, True)
        check_shape(dx, "dx", n, d)
        dx_p = cnp.PyArray_DATA(dx)
    check_blas_dims(n, d, h * k)
    check_outputs(((dz, "dz"), (dx, "dx"), (dW, "dW"), (db, "db")),
                  ((dout, "dout"), (x, "x"), (W, "W"), (arg, "arg")))
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _backward(<float*>cnp.PyArray_DATA(dout), <float*>cnp.PyArray_DATA(x),
                      <float*>cnp.PyArray_DATA(W), a, <float*>cnp.PyArray_DATA(dz),
                      <float*>dx_p, <float*>cnp.PyArray_DATA(dW),
                      <float*>cnp.PyArray_DATA(db), n, d, h, k, n_threads)
    else:
        with nogil:
            _backward(<double*>cnp.PyArray_DATA(dout), <double*>cnp.PyArray_DATA(x),
                      <double*>cnp.PyArray_DATA(W), a, <double*>cnp.PyArray_DATA(dz),
                      <double*>dx_p, <double*>cnp.PyArray_DATA(dW),
                      <double*>cnp.PyArray_DATA(db), n, d, h, k, n_threads)
