# Nogil cores of batch normalization (Ioffe & Szegedy 2015) over the rows of an (N, H)
# batch, shared by the def kernels of _batchnorm.pyx and by anything that cimports them
# (a training plan).
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
# count; the element-wise passes split rows.  When a pass resolves to one thread it runs
# the whole range without entering a parallel region.  The variance is taken about the
# mean in a second pass (no E[x^2] - E[x]^2 cancellation).  The cores check nothing and
# allocate nothing: the (H,) statistics live in the caller's mean / inv_std buffers.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _common cimport (bn_backward_cols, bn_col_stats, bn_dx_rows, bn_normalize_rows,
                      column_threads, split, threads_for)


cdef inline void _bn_column_stats(const floating* x, floating* mean, floating* var,
                                  Py_ssize_t n, Py_ssize_t h, int n_threads) noexcept nogil:
    """mean = column means of x, var = column mean squared deviations (two passes)."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    if nt <= 1:
        bn_col_stats(x, mean, var, n, h, 0, h)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        bn_col_stats(x, mean, var, n, h, split(h, nt, t), split(h, nt, t + 1))


cdef inline void _bn_normalize(const floating* x, const floating* gamma,
                               const floating* beta, const floating* mean,
                               const floating* inv_std, floating* xhat, floating* out,
                               Py_ssize_t n, Py_ssize_t h, int n_threads) noexcept nogil:
    cdef int nt = threads_for(n * h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    if nt <= 1:
        bn_normalize_rows(x, gamma, beta, mean, inv_std, xhat, out, n, h)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        bn_normalize_rows(x + r0 * h, gamma, beta, mean, inv_std, xhat + r0 * h,
                          out + r0 * h, r1 - r0, h)


cdef inline void batchnorm_forward_core(const floating* x, const floating* gamma,
                                        const floating* beta, floating* running_mean,
                                        floating* running_var, floating* out,
                                        floating* xhat, floating* mean, floating* inv_std,
                                        Py_ssize_t n, Py_ssize_t h, bint training,
                                        floating momentum, floating eps,
                                        int n_threads) noexcept nogil:
    """Batch-norm forward of x (n, h).

    Reads x (n, h), gamma, beta (h,); writes out, xhat (n, h) and mean, inv_std (h,) =
    the statistics used (the batch's in training, the running ones in eval); in training
    updates running_mean, running_var (h,) in place.  Every output disjoint from the
    inputs and from each other.  training needs n >= 2; momentum in [0, 1), eps > 0."""
    cdef Py_ssize_t c
    if training:
        # inv_std holds the batch variance until it is inverted below
        _bn_column_stats(x, mean, inv_std, n, h, n_threads)
        for c in range(h):
            running_mean[c] = momentum * running_mean[c] + (1 - momentum) * mean[c]
            running_var[c] = momentum * running_var[c] + (1 - momentum) * inv_std[c]
    else:
        for c in range(h):
            mean[c] = running_mean[c]
            inv_std[c] = running_var[c]
    for c in range(h):
        inv_std[c] = 1 / sqrt(inv_std[c] + eps)
    _bn_normalize(x, gamma, beta, mean, inv_std, xhat, out, n, h, n_threads)


cdef inline void batchnorm_backward_core(const floating* dout, const floating* xhat,
                                         const floating* gamma, const floating* inv_std,
                                         floating* dx, floating* dgamma, floating* dbeta,
                                         Py_ssize_t n, Py_ssize_t h, bint training,
                                         int n_threads) noexcept nogil:
    """Batch-norm gradients from dout (n, h) and forward's xhat (n, h), inv_std (h,).

    Writes dgamma, dbeta (h,) and, unless dx is NULL, dx (n, h); gamma (h,) as in
    forward; `training` must be the mode of the forward pass.  Outputs disjoint from the
    inputs and from each other."""
    cdef int nt = column_threads(n * h, h, n_threads)
    cdef int t
    cdef Py_ssize_t r0, r1
    if nt <= 1:
        bn_backward_cols(dout, xhat, dgamma, dbeta, n, h, 0, h)
    else:
        for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
            bn_backward_cols(dout, xhat, dgamma, dbeta, n, h, split(h, nt, t),
                             split(h, nt, t + 1))
    if dx == NULL:
        return
    nt = threads_for(n * h, n_threads)
    if nt <= 1:
        bn_dx_rows(dout, xhat, gamma, inv_std, dgamma, dbeta, dx, n, h, n, training)
        return
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        r0 = split(n, nt, t)
        r1 = split(n, nt, t + 1)
        bn_dx_rows(dout + r0 * h, xhat + r0 * h, gamma, inv_std, dgamma, dbeta, dx + r0 * h,
                   r1 - r0, h, n, training)
