# Parameter updates, in place.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from _common cimport check, check_disjoint, check_float, check_same_shape, threads_for

cnp.import_array()


cdef void _sgd(floating* w, const floating* g, Py_ssize_t n, floating lr,
               int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    for i in prange(n, nogil=True, schedule="static",
                    num_threads=threads_for(n, n_threads)):
        w[i] = w[i] - lr * g[i]


def sgd_update(cnp.ndarray param not None, cnp.ndarray grad not None, double step_size,
               int n_threads=1):
    """Vanilla gradient descent, in place: param -= step_size * grad.

    param, grad: same shape, float32/float64, C-contiguous.  Returns param."""
    cdef int t = check_float(param, "param")
    cdef int nd = cnp.PyArray_NDIM(param)
    check(param, "param", nd, t, True)
    check(grad, "grad", nd, t)
    check_same_shape(param, grad, "param", "grad")
    check_disjoint(param, "param", grad, "grad")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(param)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _sgd(<float*>cnp.PyArray_DATA(param), <float*>cnp.PyArray_DATA(grad), n,
                 <float>step_size, n_threads)
    else:
        with nogil:
            _sgd(<double*>cnp.PyArray_DATA(param), <double*>cnp.PyArray_DATA(grad), n,
                 step_size, n_threads)
    return param
