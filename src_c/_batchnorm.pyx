# Batch normalization over the rows of an (N, H) batch: the def entry points.  Each
# checks its arrays (dtype, shape, contiguity, overlap) and hyper-parameters, then runs
# the nogil core of _batchnorm_core.pxd, which holds the formulas and the threading
# design; a compiled training plan calls the same cores.
cimport numpy as cnp

from _common cimport check, check_float, check_outputs, check_shape
from _dispatch cimport batchnorm_backward_any, batchnorm_forward_any

cnp.import_array()


cdef int _check_hyper(double momentum, double eps) except -1:
    if not (0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return 0


def batchnorm_forward(cnp.ndarray x not None, cnp.ndarray gamma not None,
                      cnp.ndarray beta not None, cnp.ndarray running_mean not None,
                      cnp.ndarray running_var not None, cnp.ndarray out not None,
                      cnp.ndarray xhat not None, cnp.ndarray mean not None,
                      cnp.ndarray inv_std not None, bint training, double momentum,
                      double eps, int n_threads=1):
    """Batch normalization forward; returns out.

    x, out, xhat (N, H); gamma, beta, running_mean, running_var, mean, inv_std (H,):
    C-contiguous, one dtype (float32 or float64).  Writes out, xhat (the normalized
    input), mean and inv_std = 1 / sqrt(var + eps) (the statistics used: the batch's in
    training, the running ones in eval).  In training the running averages are updated
    in place: running = momentum * running + (1 - momentum) * batch statistic, with the
    biased batch variance.
    """
    cdef int t = check_float(x, "x")
    check(x, "x", 2, t)
    check(gamma, "gamma", 1, t)
    check(beta, "beta", 1, t)
    check(running_mean, "running_mean", 1, t, True)
    check(running_var, "running_var", 1, t, True)
    check(out, "out", 2, t, True)
    check(xhat, "xhat", 2, t, True)
    check(mean, "mean", 1, t, True)
    check(inv_std, "inv_std", 1, t, True)
    _check_hyper(momentum, eps)
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1]
    for a, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var"), (mean, "mean"), (inv_std, "inv_std")):
        check_shape(a, name, h)
    check_shape(out, "out", n, h)
    check_shape(xhat, "xhat", n, h)
    if training and n < 2:
        raise ValueError(f"x needs at least 2 rows in training mode (batch statistics), "
                         f"got {n}")
    check_outputs(((out, "out"), (xhat, "xhat"), (mean, "mean"), (inv_std, "inv_std"),
                   (running_mean, "running_mean"), (running_var, "running_var")),
                  ((x, "x"), (gamma, "gamma"), (beta, "beta")))
    with nogil:
        batchnorm_forward_any(
            t, cnp.PyArray_DATA(x), cnp.PyArray_DATA(gamma), cnp.PyArray_DATA(beta),
            cnp.PyArray_DATA(running_mean), cnp.PyArray_DATA(running_var),
            cnp.PyArray_DATA(out), cnp.PyArray_DATA(xhat), cnp.PyArray_DATA(mean),
            cnp.PyArray_DATA(inv_std), n, h, training, momentum, eps, n_threads)
    return out


def batchnorm_backward(cnp.ndarray dout not None, cnp.ndarray xhat not None,
                       cnp.ndarray gamma not None, cnp.ndarray inv_std not None,
                       cnp.ndarray dx, cnp.ndarray dgamma not None,
                       cnp.ndarray dbeta not None, bint training, int n_threads=1):
    """Gradients of batch normalization given dout (N, H) and forward's xhat, inv_std.

    Writes dgamma, dbeta (H,) and, unless dx is None, dx (N, H).  `training` must be
    the mode of the forward pass (in eval mode the statistics are constants).
    """
    cdef int t = check_float(dout, "dout")
    check(dout, "dout", 2, t)
    check(xhat, "xhat", 2, t)
    check(gamma, "gamma", 1, t)
    check(inv_std, "inv_std", 1, t)
    check(dgamma, "dgamma", 1, t, True)
    check(dbeta, "dbeta", 1, t, True)
    cdef Py_ssize_t n = dout.shape[0], h = dout.shape[1]
    check_shape(xhat, "xhat", n, h)
    for a, name in ((gamma, "gamma"), (inv_std, "inv_std"), (dgamma, "dgamma"),
                    (dbeta, "dbeta")):
        check_shape(a, name, h)
    cdef void* dx_p = NULL
    if dx is not None:
        check(dx, "dx", 2, t, True)
        check_shape(dx, "dx", n, h)
        dx_p = cnp.PyArray_DATA(dx)
    check_outputs(((dx, "dx"), (dgamma, "dgamma"), (dbeta, "dbeta")),
                  ((dout, "dout"), (xhat, "xhat"), (gamma, "gamma"), (inv_std, "inv_std")))
    with nogil:
        batchnorm_backward_any(
            t, cnp.PyArray_DATA(dout), cnp.PyArray_DATA(xhat), cnp.PyArray_DATA(gamma),
            cnp.PyArray_DATA(inv_std), dx_p, cnp.PyArray_DATA(dgamma),
            cnp.PyArray_DATA(dbeta), n, h, training, n_threads)
    return dx
