# Checked entry points of the fused affine + activation layer; the arithmetic is in
# _affine_core.pxd (shared with the training plan).
cimport numpy as cnp
from cython cimport floating

from _dispatch cimport affine_backward_any, affine_forward_any
from _common cimport (ACT_IDENTITY, check, check_act, check_blas_dims, check_disjoint,
                      check_float, check_shape)

cnp.import_array()


def affine_forward(cnp.ndarray x not None, cnp.ndarray W not None, cnp.ndarray b not None,
                   cnp.ndarray out not None, int activation=0, double alpha=0.0,
                   int n_threads=1):
    """out[:] = act(x @ W + b); returns out.

    x (N, D), W (D, H), b (H,), out (N, H): C-contiguous, one dtype (float32 or float64).
    activation: 0 identity, 1 relu, 2 leaky_relu (slope `alpha` >= 0 below zero),
    3 sigmoid, 4 tanh.
    """
    cdef int t = check_float(x, "x")
    check(x, "x", 2, t)
    check(W, "W", 2, t)
    check(b, "b", 1, t)
    check(out, "out", 2, t, True)
    check_act(activation, alpha)
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], h = W.shape[1]
    check_shape(W, "W", d, h)
    check_shape(b, "b", h)
    check_shape(out, "out", n, h)
    check_blas_dims(n, d, h)
    check_disjoint(out, "out", x, "x")
    check_disjoint(out, "out", W, "W")
    check_disjoint(out, "out", b, "b")
    with nogil:
        affine_forward_any(t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(W), cnp.PyArray_DATA(b),
                           cnp.PyArray_DATA(out), n, d, h, activation, alpha, n_threads)
    return out


def affine_backward(cnp.ndarray dout not None, cnp.ndarray x not None,
                    cnp.ndarray W not None, cnp.ndarray out not None, cnp.ndarray dz,
                    cnp.ndarray dx, cnp.ndarray dW not None, cnp.ndarray db not None,
                    int activation=0, double alpha=0.0, int n_threads=1):
    """Gradients of out = act(x @ W + b) given dout = dL/dout.

    Writes dW (D, H), db (H,) and, unless dx is None, dx (N, D).  dz (N, H) is scratch
    for dL/d(x @ W + b); it may be None when activation is 0 (identity).  `out` is the
    forward output (the activation's derivative is computed from it).
    """
    cdef int t = check_float(dout, "dout")
    check(dout, "dout", 2, t)
    check(x, "x", 2, t)
    check(W, "W", 2, t)
    check(out, "out", 2, t)
    check(dW, "dW", 2, t, True)
    check(db, "db", 1, t, True)
    check_act(activation, alpha)
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], h = W.shape[1]
    check_shape(W, "W", d, h)
    check_shape(dout, "dout", n, h)
    check_shape(out, "out", n, h)
    check_shape(dW, "dW", d, h)
    check_shape(db, "db", h)
    cdef void* dz_p = NULL
    cdef void* dx_p = NULL
    if activation != ACT_IDENTITY:
        if dz is None:
            raise ValueError("dz scratch is required unless activation is identity")
        check(dz, "dz", 2, t, True)
        check_shape(dz, "dz", n, h)
        dz_p = cnp.PyArray_DATA(dz)
    if dx is not None:
        check(dx, "dx", 2, t, True)
        check_shape(dx, "dx", n, d)
        dx_p = cnp.PyArray_DATA(dx)
    check_blas_dims(n, d, h)
    # every output apart from every input and from each other (the GEMMs and the
    # restrict-qualified epilogue loops assume it)
    for o, oname in ((dz if dz_p != NULL else None, "dz"), (dx, "dx"), (dW, "dW"), (db, "db")):
        for a, aname in ((dout, "dout"), (x, "x"), (W, "W"), (out, "out")):
            check_disjoint(o, oname, a, aname)
    check_disjoint(dW, "dW", db, "db")
    if dz_p != NULL:
        check_disjoint(dz, "dz", dW, "dW")
        check_disjoint(dz, "dz", db, "db")
        check_disjoint(dz, "dz", dx, "dx")
    check_disjoint(dx, "dx", dW, "dW")
    check_disjoint(dx, "dx", db, "db")
    with nogil:
        affine_backward_any(t, cnp.PyArray_DATA(dout), cnp.PyArray_DATA(x),
                            cnp.PyArray_DATA(W), cnp.PyArray_DATA(out), dz_p, dx_p,
                            cnp.PyArray_DATA(dW), cnp.PyArray_DATA(db), n, d, h, activation,
                            alpha, n_threads)
