# Standalone element-wise activations and PReLU, forward and backward: the def entry
# points.  Each checks its arrays (dtype, shape, contiguity, overlap, activation code)
# and runs the nogil core of _activation_core.pxd, which holds the formulas and the
# threading design; a compiled training plan calls the same cores.
#
#   activation_forward / activation_backward: any shape, flattened
#   prelu_forward / prelu_backward:           x (N, H), alpha (H,)
cimport numpy as cnp

from _common cimport (check, check_act, check_disjoint, check_float, check_same_shape,
                      check_shape)
from _dispatch cimport (act_backward_any, act_forward_any, prelu_backward_any,
                        prelu_forward_any)

cnp.import_array()


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
    with nogil:
        act_forward_any(t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(out), n, activation, alpha,
                        n_threads)
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
    with nogil:
        act_backward_any(t, cnp.PyArray_DATA(dout), cnp.PyArray_DATA(out),
                         cnp.PyArray_DATA(dx), n, activation, alpha, n_threads)
    return dx


# ---- PReLU: a learned slope per unit ----

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
    with nogil:
        prelu_forward_any(t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(alpha),
                          cnp.PyArray_DATA(out), n, h, n_threads)
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
    with nogil:
        prelu_backward_any(t, cnp.PyArray_DATA(dout), cnp.PyArray_DATA(x),
                           cnp.PyArray_DATA(alpha), dx_p, cnp.PyArray_DATA(dalpha), n, h,
                           n_threads)
    return dx
