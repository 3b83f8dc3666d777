# Shared by every kernel module: the C helpers of fastnn_math.h, row-major GEMM through
# scipy's BLAS (callable without the GIL), and the argument checks that keep a kernel
# from ever reading or writing out of bounds, whatever it is given.
cimport numpy as cnp
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "fastnn_math.h" nogil:
    int FNN_HAVE_OPENMP
    int fnn_omp_max_threads()
    int fnn_omp_num_procs()
    float fnn_expf(float x)
    double fnn_exp(double x)
    float fnn_tanhf(float x)
    double fnn_tanh(double x)
    float fnn_sigmoidf(float x)
    double fnn_sigmoid(double x)
    unsigned long long fnn_mix64(unsigned long long z)
    unsigned long long fnn_dropout_key(unsigned long long seed, unsigned long long step)
    unsigned long long FNN_GOLDEN


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return fnn_expf(x)
    else:
        return fnn_exp(x)


cdef inline floating ftanh(floating x) noexcept nogil:
    if floating is float:
        return fnn_tanhf(x)
    else:
        return fnn_tanh(x)


cdef inline floating fsigmoid(floating x) noexcept nogil:
    if floating is float:
        return fnn_sigmoidf(x)
    else:
        return fnn_sigmoid(x)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C.

    BLAS is column-major, and a row-major matrix read column-major is its transpose, so
    this computes C.T = op(B).T @ op(A).T: the operands swap places, the flags do not.
    lda/ldb/ldc are the row lengths of the arrays as stored."""
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)


cdef inline int check(cnp.ndarray a, str name, int ndim, int typenum,
                      bint writeable=False) except -1:
    """Raise unless `a` is a C-contiguous array of `ndim` dimensions and dtype `typenum`."""
    if cnp.PyArray_NDIM(a) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got an array of shape {(<object>a).shape}")
    if cnp.PyArray_TYPE(a) != typenum:
        raise TypeError(f"{name} has dtype {a.dtype}, expected "
                        f"{cnp.PyArray_DescrFromType(typenum)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} must be writeable")
    return 0


cdef inline int check_float(cnp.ndarray a, str name) except -1:
    """The dtype every other array of a kernel call must match: float32 or float64."""
    cdef int t = cnp.PyArray_TYPE(a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return t


cdef inline int check_shape(cnp.ndarray a, str name, Py_ssize_t d0, Py_ssize_t d1=-1) except -1:
    if cnp.PyArray_DIM(a, 0) != d0 or (d1 >= 0 and cnp.PyArray_DIM(a, 1) != d1):
        want = str((d0,)) if d1 < 0 else str((d0, d1))
        raise ValueError(f"{name} has shape {(<object>a).shape}, expected {want}")
    return 0


cdef inline int threads_for(Py_ssize_t work, int n_threads) noexcept nogil:
    """Threads worth waking for `work` element-operations: a parallel region costs a
    few microseconds, more than the work itself at spiral size."""
    if n_threads < 1:
        return 1
    if work < 32768:
        return 1
    return n_threads


cdef inline int check_same_shape(cnp.ndarray a, cnp.ndarray b, str name_a,
                                 str name_b) except -1:
    """Raise unless b has exactly a's shape."""
    cdef int i
    cdef bint same = cnp.PyArray_NDIM(a) == cnp.PyArray_NDIM(b)
    if same:
        for i in range(cnp.PyArray_NDIM(a)):
            if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, i):
                same = False
    if not same:
        raise ValueError(f"{name_b} has shape {(<object>b).shape}, expected "
                         f"{(<object>a).shape} like {name_a}")
    return 0


# ---- element-wise activations, shared by the fused affine kernels and _activation ----
# Codes shared with fastnn.layers.ACTIVATIONS and fastnn.reference.  Derivatives are
# read off the activation's *output* o, which is why leaky ReLU needs alpha >= 0
# (then o > 0 exactly when the input was > 0).
cdef enum:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_SIGMOID = 3
    ACT_TANH = 4
    N_ACT = 5


cdef inline void act_bias_forward(floating* y, const floating* b, Py_ssize_t n, int act,
                                  floating alpha) noexcept nogil:
    """y[c] = act(y[c] + b[c]) for c < n, in place (one pass, one branch per call)."""
    cdef Py_ssize_t c
    cdef floating v
    if act == ACT_RELU:
        for c in range(n):
            v = y[c] + b[c]
            y[c] = 0 if v < 0 else v
    elif act == ACT_LEAKY_RELU:
        for c in range(n):
            v = y[c] + b[c]
            y[c] = alpha * v if v < 0 else v
    elif act == ACT_SIGMOID:
        for c in range(n):
            y[c] = fsigmoid(y[c] + b[c])
    elif act == ACT_TANH:
        for c in range(n):
            y[c] = ftanh(y[c] + b[c])
    else:
        for c in range(n):
            y[c] = y[c] + b[c]


cdef inline void act_forward(floating* y, const floating* x, Py_ssize_t n, int act,
                             floating alpha) noexcept nogil:
    """y[c] = act(x[c]) for c < n."""
    cdef Py_ssize_t c
    cdef floating v
    if act == ACT_RELU:
        for c in range(n):
            v = x[c]
            y[c] = 0 if v < 0 else v
    elif act == ACT_LEAKY_RELU:
        for c in range(n):
            v = x[c]
            y[c] = alpha * v if v < 0 else v
    elif act == ACT_SIGMOID:
        for c in range(n):
            y[c] = fsigmoid(x[c])
    elif act == ACT_TANH:
        for c in range(n):
            y[c] = ftanh(x[c])
    else:
        for c in range(n):
            y[c] = x[c]


cdef inline void act_backward(floating* dz, const floating* g, const floating* o,
                              Py_ssize_t n, int act, floating alpha) noexcept nogil:
    """dz[c] = g[c] * act'(.) for c < n, the derivative computed from the output o:
    relu 1(o > 0), leaky 1 or alpha, sigmoid o (1 - o), tanh 1 - o^2."""
    cdef Py_ssize_t c
    cdef floating v
    if act == ACT_RELU:
        for c in range(n):
            v = g[c]                  # loaded unconditionally: the select vectorizes
            dz[c] = v if o[c] > 0 else 0
    elif act == ACT_LEAKY_RELU:
        for c in range(n):
            dz[c] = g[c] if o[c] > 0 else alpha * g[c]
    elif act == ACT_SIGMOID:
        for c in range(n):
            dz[c] = g[c] * (o[c] * (1 - o[c]))
    elif act == ACT_TANH:
        for c in range(n):
            dz[c] = g[c] * (1 - o[c] * o[c])
    else:
        for c in range(n):
            dz[c] = g[c]


cdef inline int check_act(int act, double alpha) except -1:
    """Raise unless act is a known code (and alpha >= 0 for leaky ReLU, see above)."""
    if act < 0 or act >= N_ACT:
        raise ValueError(f"activation code must be in [0, {<int>N_ACT}), got {act}")
    if act == ACT_LEAKY_RELU and not alpha >= 0:
        raise ValueError(f"alpha (the leaky ReLU slope) must be >= 0, got {alpha}")
    return 0
