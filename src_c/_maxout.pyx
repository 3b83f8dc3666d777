# Checked entry points of the maxout layer; the arithmetic is in _maxout_core.pxd
# (shared with the training plan).
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int32_t

from _common cimport check, check_blas_dims, check_float, check_outputs, check_shape
from _dispatch cimport maxout_backward_any, maxout_forward_any

cnp.import_array()


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
    with nogil:
        maxout_forward_any(t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(W), cnp.PyArray_DATA(b),
                           cnp.PyArray_DATA(z), cnp.PyArray_DATA(out),
                           <int32_t*>cnp.PyArray_DATA(arg), n, d, h, k, n_threads)
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
    with nogil:
        maxout_backward_any(t, cnp.PyArray_DATA(dout), cnp.PyArray_DATA(x),
                            cnp.PyArray_DATA(W), a, cnp.PyArray_DATA(dz), dx_p,
                            cnp.PyArray_DATA(dW), cnp.PyArray_DATA(db), n, d, h, k,
                            n_threads)
