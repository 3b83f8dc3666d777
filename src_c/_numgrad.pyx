# Numerical gradient by finite differences over every element of a parameter array.
#
# The loss is a Python callable, so this loop holds the GIL; what it saves over a Python
# loop is the per-element indexing and boxing.  Each perturbed element is restored in a
# `finally`, so the array is unchanged even when the callable raises.
cimport numpy as cnp

from _common cimport check, check_disjoint, check_float, check_same_shape

cnp.import_array()


cdef inline double _call(object f, object x) except? -1.0:
    v = f(x)
    try:
        return float(v)
    except TypeError:
        raise TypeError(f"the loss callable must return a scalar, got {type(v).__name__}")



def numerical_gradient(f, cnp.ndarray x not None, cnp.ndarray grad not None, double h,
                       bint centered=True):
    """grad[i] = (f(x + h e_i) - f(x - h e_i)) / (actual step), or the forward difference.

    f(x) -> scalar; x: writeable C-contiguous float32/float64, perturbed in place and
    restored; grad: x's shape and dtype.  The divisor is the difference of the two
    evaluation points as stored in x's dtype, which is 2h (or h) up to rounding.
    Returns grad.
    """
    cdef int t = check_float(x, "x")
    cdef int nd = cnp.PyArray_NDIM(x)
    check(x, "x", nd, t, True)
    check(grad, "grad", nd, t, True)
    check_same_shape(x, grad, "x", "grad")
    check_disjoint(grad, "grad", x, "x")
    if not h > 0:
        raise ValueError(f"h must be positive, got {h}")
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(x)
    cdef double fx = 0.0, fp, fm, xp, xm, old
    cdef float* x32 = <float*>cnp.PyArray_DATA(x)
    cdef double* x64 = <double*>cnp.PyArray_DATA(x)
    cdef float* g32 = <float*>cnp.PyArray_DATA(grad)
    cdef double* g64 = <double*>cnp.PyArray_DATA(grad)
    cdef bint single = t == cnp.NPY_FLOAT32
    if not centered:
        fx = _call(f, x)
    for i in range(n):
        old = x32[i] if single else x64[i]
        try:
            if single:
                x32[i] = <float>(old + h)
                xp = x32[i]
            else:
                x64[i] = old + h
                xp = x64[i]
            fp = _call(f, x)
            if centered:
                if single:
                    x32[i] = <float>(old - h)
                    xm = x32[i]
                else:
                    x64[i] = old - h
                    xm = x64[i]
                fm = _call(f, x)
            else:
                xm = old
                fm = fx
        finally:
            if single:
                x32[i] = <float>old
            else:
                x64[i] = old
        if xp == xm:
            raise ValueError(f"h = {h} is below the resolution of x[{i}] = {old} in "
                             f"{x.dtype}: x + h rounds to x; use a larger h or float64")
        if single:
            g32[i] = <float>((fp - fm) / (xp - xm))
        else:
            g64[i] = (fp - fm) / (xp - xm)
    return grad
