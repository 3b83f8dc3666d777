# Shared by every kernel module: the C helpers of fastnn_math.h, row-major GEMM through
# scipy's BLAS (callable without the GIL), and the argument checks that keep a kernel
# from ever reading or writing out of bounds, whatever it is given.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "fastnn_math.h" nogil:
    int FNN_HAVE_OPENMP
    int FNN_PARALLEL_MIN_WORK
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
    """exp of fastnn_math.h (<= 2 ulp), for loops written in Cython."""
    if floating is float:
        return fnn_expf(x)
    else:
        return fnn_exp(x)


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
    if not cnp.PyArray_ISNOTSWAPPED(a) or not cnp.PyArray_ISALIGNED(a):
        # same type number, other byte order or an odd address: the kernels would
        # misread it (or fault in a SIMD load)
        raise ValueError(f"{name} must be aligned and in native byte order")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} must be writeable")
    return 0


cdef inline int check_disjoint(cnp.ndarray out, str out_name, cnp.ndarray a, str a_name,
                               bint allow_same=False) except -1:
    """Raise if output `out` shares memory with `a` (both C-contiguous, so each is one
    address range).  allow_same: the very same buffer is fine (element-wise kernels
    that document in-place use); a partial overlap never is."""
    if a is None or out is None:
        return 0
    cdef char* o0 = <char*>cnp.PyArray_DATA(out)
    cdef char* o1 = o0 + cnp.PyArray_NBYTES(out)
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* a1 = a0 + cnp.PyArray_NBYTES(a)
    if o0 < a1 and a0 < o1:
        if allow_same and o0 == a0 and o1 == a1:
            return 0
        raise ValueError(f"{out_name} must not share memory with {a_name}")
    return 0


cdef inline int check_outputs(tuple outputs, tuple inputs) except -1:
    """Every (array, name) of `outputs` apart from every input and from each other
    (None entries are skipped).  For kernels called a few times per step."""
    cdef Py_ssize_t i, j
    for i in range(len(outputs)):
        o, oname = outputs[i]
        for a, aname in inputs:
            check_disjoint(o, oname, a, aname)
        for j in range(i + 1, len(outputs)):
            check_disjoint(o, oname, outputs[j][0], outputs[j][1])
    return 0


cdef inline int check_blas_dims(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) except -1:
    """BLAS takes 32-bit int sizes: refuse larger ones instead of letting them wrap."""
    if a > 2147483647 or b > 2147483647 or c > 2147483647:
        raise ValueError("matrix dimensions above 2**31 - 1 are not supported by BLAS")
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
    """Threads worth waking for `work` element-operations: one below
    FNN_PARALLEL_MIN_WORK (fastnn_math.h), where waking the passive OpenMP workers
    would cost more than the work."""
    if n_threads < 1:
        return 1
    if work < FNN_PARALLEL_MIN_WORK:
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


# ---- the per-ISA loops of fastnn_loops.h, one fused-type function each ----
# _loops.pxd is rendered by setup.py from _loops.pxd.tp (the one list of the loops);
# every name in it is cimported from here.
from _loops cimport *


cdef inline int column_threads(Py_ssize_t work, Py_ssize_t columns,
                               int n_threads) noexcept nogil:
    """threads_for, but no more threads than columns (for column-split reductions)."""
    cdef int nt = threads_for(work, n_threads)
    return <int>columns if nt > columns else nt


cdef inline Py_ssize_t split(Py_ssize_t total, int parts, int t) noexcept nogil:
    """Start of part t when [0, total) is cut into `parts` near-equal contiguous parts."""
    return total * t // parts


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


# ---- GEMM on fastnn's own thread team, with BLAS single-threaded (fastnn_blas.h) ----
# A large GEMM is cut into a grid of output blocks that depends on (m, n, k) only, never
# on the thread count; each block is one single-threaded BLAS call reducing over the full
# inner dimension, and threads take whole blocks.  Every output element is therefore
# computed by the same call whatever the thread count: bit-identical at 1, 2 or N threads.
cdef enum:
    SMALL_ROWS_PER_BLOCK = 16     # rows a fused small-GEMM epilogue finishes at a time


cdef inline bint small_gemm_fits(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n,
                                 Py_ssize_t k) noexcept nogil:
    """Whether team_gemm would run this product in the small-GEMM loops with a tiny k
    (then a caller may run it row block by row block itself, same bits)."""
    return (m * n * k < GEMM_SPLIT_MIN_WORK
            and fnn_small_gemm_case(ta, tb, m, n, k) == FNN_SMALL_TINY_K)


cdef extern from "fastnn_blas.h" nogil:
    int fnn_blas_serial_begin(const void* gemm_addr)
    void fnn_blas_serial_end(int prev)
    int fnn_blas_controlled(const void* gemm_addr)

cdef enum:
    # multiply-adds below which a GEMM is one block (a block must repay a BLAS call's
    # fixed cost and its re-packing of the shared operand)
    GEMM_SPLIT_MIN_WORK = 1 << 22
    # rows or columns per block, at least: each block re-packs the operand it shares
    # with the others, so fewer, larger blocks cost less (at 784-1024-1024-10, batch 256:
    # 4 to 8 blocks per product)
    GEMM_MIN_BLOCK = 128
    GEMM_MAX_BLOCKS = 16
    GEMM_ALIGN = 16           # block edges on multiples of 16 rows/columns


cdef inline int gemm_blocks(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Blocks of the output grid of an (m, n, k) GEMM: split along the longer output side."""
    cdef Py_ssize_t side = n if n >= m else m
    cdef Py_ssize_t nb
    if m * n * k < GEMM_SPLIT_MIN_WORK:
        return 1
    nb = side // GEMM_MIN_BLOCK
    if nb > GEMM_MAX_BLOCKS:
        nb = GEMM_MAX_BLOCKS
    return <int>nb if nb > 1 else 1


cdef inline Py_ssize_t gemm_edge(Py_ssize_t side, int nb, int i) noexcept nogil:
    """Start of block i of nb along a side of length `side` (aligned, last one exact)."""
    cdef Py_ssize_t e
    if i >= nb:
        return side
    e = (side * i // nb + GEMM_ALIGN - 1) // GEMM_ALIGN * GEMM_ALIGN
    return e if e < side else side


cdef inline void gemm_block(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                            const floating* a, int lda, const floating* b, int ldb,
                            floating beta, floating* c, int ldc, bint by_cols,
                            Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Rows [lo, hi) of C (by_cols False) or its columns [lo, hi) (by_cols True)."""
    if hi <= lo:
        return
    if by_cols:      # C[:, lo:hi] = op(A) @ op(B)[:, lo:hi]
        gemm(trans_a, trans_b, m, <int>(hi - lo), k, alpha, a, lda,
             b + (lo * ldb if trans_b else lo), ldb, beta, c + lo, ldc)
    else:            # C[lo:hi] = op(A)[lo:hi] @ op(B)
        gemm(trans_a, trans_b, <int>(hi - lo), n, k, alpha,
             a + (lo if trans_a else lo * lda), lda, b, ldb, beta, c + lo * ldc, ldc)


cdef inline void team_gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                           const floating* a, int lda, const floating* b, int ldb,
                           floating beta, floating* c, int ldc, int n_threads) noexcept nogil:
    """gemm() on the block grid of gemm_blocks, blocks shared by up to n_threads threads,
    BLAS single-threaded for the duration.  No parallel region when it would run one
    thread.  A small product with one tiny side (alpha 1, beta 0) runs in
    fastnn_gemm_small.inc's loops instead of BLAS, which would pack both operands."""
    cdef int nb = gemm_blocks(m, n, k)
    cdef bint by_cols = n >= m
    cdef Py_ssize_t side = n if by_cols else m
    cdef int nt = n_threads if n_threads < nb else nb
    cdef int blk
    cdef int prev
    if m == 0 or n == 0:
        return
    if (nb == 1 and alpha == 1 and beta == 0 and k > 0
            and small_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc) == 0):
        return
    if floating is float:
        prev = fnn_blas_serial_begin(<const void*>sgemm)
    else:
        prev = fnn_blas_serial_begin(<const void*>dgemm)
    if nt <= 1:
        for blk in range(nb):
            gemm_block(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                       by_cols, gemm_edge(side, nb, blk), gemm_edge(side, nb, blk + 1))
    else:
        # dynamic: a thread the OS set aside does not hold the others up (the blocks are
        # independent, so the bits do not depend on who computes which)
        for blk in prange(nb, nogil=True, schedule="dynamic", num_threads=nt):
            gemm_block(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                       by_cols, gemm_edge(side, nb, blk), gemm_edge(side, nb, blk + 1))
    fnn_blas_serial_end(prev)


# ---- activation codes ----
# Shared with fastnn.layers.ACTIVATIONS and fastnn.reference.
# Derivatives are read off the activation's *output* o, which is why leaky ReLU needs
# alpha >= 0 (then o > 0 exactly when the input was > 0).
cdef enum:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_SIGMOID = 3
    ACT_TANH = 4
    N_ACT = 5


cdef inline int check_act(int act, double alpha) except -1:
    """Raise unless act is a known code (and alpha >= 0 for leaky ReLU, see above)."""
    if act < 0 or act >= N_ACT:
        raise ValueError(f"activation code must be in [0, {<int>N_ACT}), got {act}")
    if act == ACT_LEAKY_RELU and not alpha >= 0:
        raise ValueError(f"alpha (the leaky ReLU slope) must be >= 0, got {alpha}")
    return 0
