# Batch normalization (Ioffe & Szegedy 2015) over the rows of an (N, H) batch.
#
#   training:  mean = (1/N) sum_i x;  var = (1/N) sum_i (x - mean)^2   (biased, per column)
#              running_mean <- momentum * running_mean + (1 - momentum) * mean  (same for var)
#   eval:      mean, var = running_mean, running_var
#   both:      inv_std = 1 / sqrt(var + eps);  xhat = (x - mean) * inv_std
#              out = gamma * xhat + beta
#
#   backward:  dbeta = sum_i dout;  dgamma = sum_i dout * xhat
#              training: dx = gamma * inv_std * (dout - dbeta / N - xhat * dgamma / N)
#              eval:     dx = gamma * inv_std * dout      (the statistics are constants)
#
# The column reductions (sum, squared deviations, dbeta, dgamma) split the columns across
# threads and sum each column in row order, so their bits do not depend on the thread
# count; the element-wise passes split rows.  The variance is taken about the mean in a
# second pass (no E[x^2] - E[x]^2 cancellation).
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport (bn_backward_cols, bn_col_stats, bn_dx_rows, bn_normalize_rows,
                      check, check_float, check_outputs, check_shape, column_threads,
                      split, threads_for)

cnp.import_array()


cdef void _column_stats(const floating* x, floating* mean, floating* var, Py_ssize_t n,
                        Py_ssize_t h, int n_threads) noexcept nogil:
    """mean = column means of x, var = column mean squared deviations (two passes)."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        bn_col_stats(x, mean, var, n, h, split(h, nt, t), split(h, nt, t + 1))


cdef void _normalize(const floating* x, const floating* gamma, const floating* beta,
                     const floating* mean, const floating* inv_std, floating* xhat,
                     floating* out, Py_ssize_t n, Py_ssize_t h, int n_threads) noexcept nogil:
    cdef int nt = threads_for(n * h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        bn_normalize_rows(x + r0 * h, gamma, beta, mean, inv_std, xhat + r0 * h,
                          out + r0 * h, r1 - r0, h)


cdef void _forward(const floating* x, const floating* gamma, const floating* beta,
                   floating* running_mean, floating* running_var, floating* out,
                   floating* xhat, floating* mean, floating* inv_std, Py_ssize_t n,
                   Py_ssize_t h, bint training, floating momentum, floating eps,
                   int n_threads) noexcept nogil:
    cdef Py_ssize_t c
    if training:
        # inv_std holds the batch variance until it is inverted below
        _column_stats(x, mean, inv_std, n, h, n_threads)
        for c in range(h):
            running_mean[c] = momentum * running_mean[c] + (1 - momentum) * mean[c]
            running_var[c] = momentum * running_var[c] + (1 - momentum) * inv_std[c]
    else:
        for c in range(h):
            mean[c] = running_mean[c]
            inv_std[c] = running_var[c]
    for c in range(h):
        inv_std[c] = 1 / sqrt(inv_std[c] + eps)
    _normalize(x, gamma, beta, mean, inv_std, xhat, out, n, h, n_threads)


cdef void _backward(const floating* dout, const floating* xhat, const floating* gamma,
                    const floating* inv_std, floating* dx, floating* dgamma,
                    floating* dbeta, Py_ssize_t n, Py_ssize_t h, bint training,
                    int n_threads) noexcept nogil:
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        bn_backward_cols(dout, xhat, dgamma, dbeta, n, h, split(h, nt, t), split(h, nt, t + 1))
    if dx == NULL:
        return
    nt = threads_for(n * h, n_threads)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        bn_dx_rows(dout + r0 * h, xhat + r0 * h, gamma, inv_std, dgamma, dbeta, dx + r0 * h,
                   r1 - r0, h, n, training)


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
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(gamma),
                     <float*>cnp.PyArray_DATA(beta), <float*>cnp.PyArray_DATA(running_mean),
                     <float*>cnp.PyArray_DATA(running_var), <float*>cnp.PyArray_DATA(out),
                     <float*>cnp.PyArray_DATA(xhat), <float*>cnp.PyArray_DATA(mean),
                     <float*>cnp.PyArray_DATA(inv_std), n, h, training, <float>momentum,
                     <float>eps, n_threads)
    else:
        with nogil:
            _forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(gamma),
                     <double*>cnp.PyArray_DATA(beta), <double*>cnp.PyArray_DATA(running_mean),
                     <double*>cnp.PyArray_DATA(running_var), <double*>cnp.PyArray_DATA(out),
                     <double*>cnp.PyArray_DATA(xhat), <double*>cnp.PyArray_DATA(mean),
                     <double*>cnp.PyArray_DATA(inv_std), n, h, training, momentum, eps,
                     n_threads)
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
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _backward(<float*>cnp.PyArray_DATA(dout), <float*>cnp.PyArray_DATA(xhat),
                      <float*>cnp.PyArray_DATA(gamma), <float*>cnp.PyArray_DATA(inv_std),
                      <float*>dx_p, <float*>cnp.PyArray_DATA(dgamma),
                      <float*>cnp.PyArray_DATA(dbeta), n, h, training, n_threads)
    else:
        with nogil:
            _backward(<double*>cnp.PyArray_DATA(dout), <double*>cnp.PyArray_DATA(xhat),
                      <double*>cnp.PyArray_DATA(gamma), <double*>cnp.PyArray_DATA(inv_std),
                      <double*>dx_p, <double*>cnp.PyArray_DATA(dgamma),
                      <double*>cnp.PyArray_DATA(dbeta), n, h, training, n_threads)
    return dx
