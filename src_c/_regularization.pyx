# Weight penalties and constraints.
#
# A penalty kernel returns the penalty of W and adds its gradient into dW in the same
# pass over memory.  Its sums are accumulated in double over fixed blocks of BLOCK
# elements (each block in 8 lanes, in a fixed order), and the block sums are added in
# block order: the blocks are the same for any thread count, so is the result.
#
# max_norm_constrain projects every column of W (a unit's incoming weights) onto the
# ball ||w||_2 <= c.  Columns are split among threads in chunks; each column's sum of
# squares runs down the rows in order, so it too is independent of the thread count.
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, fabs, sqrt
from libc.stdlib cimport free, malloc

from _common cimport check, check_disjoint, check_float, check_same_shape, threads_for

cnp.import_array()

DEF LANES = 8
DEF BLOCK = 8192       # elements per reduction block (64 KiB of float64)
DEF COLS = 64          # columns per max-norm work item

DEF KIND_L2 = 0
DEF KIND_L1 = 1
DEF KIND_ELASTIC = 2


cdef inline floating _sign(floating x) noexcept nogil:
    """-1, 0 or 1 (0 at +-0: the subgradient of |x| the penalties use)."""
    return <floating>(x > 0) - <floating>(x < 0)


cdef void _l2_block(const floating* w, floating* g, Py_ssize_t n, floating reg,
                    double* sq) noexcept nogil:
    """g += reg * w; sq[0] = sum(w * w)."""
    cdef double acc[LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(LANES):
        acc[l] = 0
    while i + LANES <= n:
        for l in range(LANES):
            acc[l] += <double>w[i + l] * w[i + l]
            g[i + l] += reg * w[i + l]
        i += LANES
    while i < n:
        total += <double>w[i] * w[i]
        g[i] += reg * w[i]
        i += 1
    for l in range(LANES):
        total += acc[l]
    sq[0] = total


cdef void _l1_block(const floating* w, floating* g, Py_ssize_t n, floating reg,
                    double* ab) noexcept nogil:
    """g += reg * sign(w); ab[0] = sum(|w|)."""
    cdef double acc[LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(LANES):
        acc[l] = 0
    while i + LANES <= n:
        for l in range(LANES):
            acc[l] += fabs(<double>w[i + l])
            g[i + l] += reg * _sign(w[i + l])
        i += LANES
    while i < n:
        total += fabs(<double>w[i])
        g[i] += reg * _sign(w[i])
        i += 1
    for l in range(LANES):
        total += acc[l]
    ab[0] = total


cdef double _sum_abs(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum(|w|) in double, lane-blocked in a fixed order."""
    cdef double acc[LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(LANES):
        acc[l] = 0
    while i + LANES <= n:
        for l in range(LANES):
            acc[l] += fabs(<double>w[i + l])
        i += LANES
    while i < n:
        total += fabs(<double>w[i])
        i += 1
    for l in range(LANES):
        total += acc[l]
    return total


cdef double _sum_sq(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum(w * w) in double, lane-blocked in a fixed order."""
    cdef double acc[LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(LANES):
        acc[l] = 0
    while i + LANES <= n:
        for l in range(LANES):
            acc[l] += <double>w[i + l] * w[i + l]
        i += LANES
    while i < n:
        total += <double>w[i] * w[i]
        i += 1
    for l in range(LANES):
        total += acc[l]
    return total


cdef void _elastic_block(const floating* w, floating* g, Py_ssize_t n, floating l1,
                         floating l2x2, double* sums) noexcept nogil:
    """g += l1 * sign(w) + l2x2 * w; sums[0] = sum(|w|), sums[1] = sum(w * w).

    Three simple loops over a block that stays in cache: gcc vectorizes each of them,
    but not the one loop that does all three (mixed float/double lanes)."""
    cdef Py_ssize_t i
    sums[0] = _sum_abs(w, n)
    sums[1] = _sum_sq(w, n)
    for i in range(n):
        g[i] += l1 * _sign(w[i]) + l2x2 * w[i]


cdef void _block(int kind, const floating* w, floating* g, Py_ssize_t n, floating a,
                 floating b, double* sums) noexcept nogil:
    if kind == KIND_L2:
        _l2_block(w, g, n, a, sums)
    elif kind == KIND_L1:
        _l1_block(w, g, n, a, sums)
    else:
        _elastic_block(w, g, n, a, b, sums)


cdef int _penalty(int kind, const floating* w, floating* g, Py_ssize_t n, floating a,
                  floating b, double* s1, double* s2, int n_threads) noexcept nogil:
    """Run the blocks of one penalty; s1/s2 get the block sums added in block order.
    Returns -1 (and does nothing) if the per-block scratch cannot be allocated."""
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, i0, m
    cdef double one[2]
    cdef double* part
    cdef int nt = threads_for(n, n_threads)
    s1[0] = 0
    s2[0] = 0
    if nt <= 1 or nb <= 1:
        # The same blocks, summed in the same order, without a parallel region.
        for blk in range(nb):
            i0 = blk * BLOCK
            m = n - i0 if n - i0 < BLOCK else BLOCK
            one[1] = 0
            _block(kind, w + i0, g + i0, m, a, b, one)
            s1[0] += one[0]
            s2[0] += one[1]
        return 0
    part = <double*>malloc(2 * nb * sizeof(double))
    if part == NULL:
        return -1
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nt):
        i0 = blk * BLOCK
        m = n - i0 if n - i0 < BLOCK else BLOCK
        part[2 * blk + 1] = 0
        _block(kind, w + i0, g + i0, m, a, b, part + 2 * blk)
    for blk in range(nb):
        s1[0] += part[2 * blk]
        s2[0] += part[2 * blk + 1]
    free(part)
    return 0


cdef int _check_pair(cnp.ndarray W, cnp.ndarray dW) except -1:
    """W and dW: one float dtype, one shape (any ndim), C-contiguous, dW writeable."""
    cdef int t = check_float(W, "W")
    cdef int nd = cnp.PyArray_NDIM(W)
    check(W, "W", nd, t)
    check(dW, "dW", nd, t, True)
    check_same_shape(W, dW, "W", "dW")
    check_disjoint(dW, "dW", W, "W")
    return t


cdef int _check_strength(double value, str name) except -1:
    if not value >= 0 or value == INFINITY:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return 0


cdef tuple _run(int kind, cnp.ndarray W, cnp.ndarray dW, double a, double b,
                int n_threads):
    """(sum|W| or sum W**2, sum W**2) after adding the gradient into dW."""
    cdef int t = _check_pair(W, dW)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(W)
    cdef double s1 = 0, s2 = 0
    cdef int rc
    if t == cnp.NPY_FLOAT32:
        with nogil:
            rc = _penalty(kind, <float*>cnp.PyArray_DATA(W), <float*>cnp.PyArray_DATA(dW),
                          n, <float>a, <float>b, &s1, &s2, n_threads)
    else:
        with nogil:
            rc = _penalty(kind, <double*>cnp.PyArray_DATA(W),
                          <double*>cnp.PyArray_DATA(dW), n, a, b, &s1, &s2, n_threads)
    if rc != 0:
        raise MemoryError("fastnn: no memory for the penalty's block sums")
    return s1, s2


def l2_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double reg,
               int n_threads=1):
    """L2 regularization as the notes define it: returns 0.5 * reg * sum(W**2) and
    adds its gradient reg * W to dW in place.

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  The sum is
    accumulated in double, in an order that does not depend on n_threads.
    """
    _check_strength(reg, "reg")
    s = _run(KIND_L2, W, dW, reg, 0.0, n_threads)
    return 0.5 * reg * s[0]


def l1_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double reg,
               int n_threads=1):
    """L1 regularization: returns reg * sum(|W|) and adds its subgradient
    reg * sign(W) to dW in place (0 where W is exactly 0).

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  Sum in double.
    """
    _check_strength(reg, "reg")
    s = _run(KIND_L1, W, dW, reg, 0.0, n_threads)
    return reg * s[0]


def elastic_net_penalty(cnp.ndarray W not None, cnp.ndarray dW not None, double l1,
                        double l2, int n_threads=1):
    """Elastic net as the notes write it: returns l1 * sum(|W|) + l2 * sum(W**2) and
    adds l1 * sign(W) + 2 * l2 * W to dW in place, in one pass.

    W, dW: same shape (any ndim), float32/float64, C-contiguous.  Sums in double.
    """
    _check_strength(l1, "l1")
    _check_strength(l2, "l2")
    s = _run(KIND_ELASTIC, W, dW, l1, 2.0 * l2, n_threads)
    return l1 * s[0] + l2 * s[1]


cdef Py_ssize_t _max_norm(floating* w, Py_ssize_t n_in, Py_ssize_t n_out, double c,
                          double* scale, int n_threads) noexcept nogil:
    """Scale every column of w (n_in, n_out) whose norm exceeds c down to norm c.
    scale: n_out doubles of scratch.  Returns the number of columns scaled."""
    cdef Py_ssize_t n_chunks = (n_out + COLS - 1) // COLS
    cdef Py_ssize_t ch, i, j, j0, j1, clipped = 0, here
    cdef floating* row
    cdef double nrm
    cdef int nt = threads_for(n_in * n_out, n_threads)
    if n_chunks < 2:
        nt = 1
    for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=nt):
        j0 = ch * COLS
        j1 = j0 + COLS if j0 + COLS < n_out else n_out
        for j in range(j0, j1):
            scale[j] = 0
        for i in range(n_in):
            row = w + i * n_out
            for j in range(j0, j1):
                scale[j] = scale[j] + <double>row[j] * row[j]
        here = 0
        for j in range(j0, j1):
            nrm = sqrt(scale[j])
            if nrm > c:
                scale[j] = c / nrm
                here = here + 1
            else:
                scale[j] = 1.0
        if here > 0:       # columns inside the ball are multiplied by exactly 1.0
            for i in range(n_in):
                row = w + i * n_out
                for j in range(j0, j1):
                    row[j] = <floating>(<double>row[j] * scale[j])
        clipped += here
    return clipped


def max_norm_constrain(cnp.ndarray W not None, double c, int n_threads=1):
    """Max-norm constraint, in place: every column of W (n_in, n_out) -- the incoming
    weight vector of one unit -- whose L2 norm exceeds c is scaled by c / norm onto the
    ball ||w||_2 <= c; columns already inside are left bit-for-bit untouched.

    W: 2-D, float32/float64, C-contiguous, writeable.  Norms are computed in double;
    the scaled weight is rounded once to W's dtype.  Returns the number of columns
    that were scaled.
    """
    cdef int t = check_float(W, "W")
    check(W, "W", 2, t, True)
    if not (c > 0) or c == INFINITY:
        raise ValueError(f"c (the max norm) must be a finite number > 0, got {c}")
    cdef Py_ssize_t n_in = cnp.PyArray_DIM(W, 0), n_out = cnp.PyArray_DIM(W, 1)
    cdef Py_ssize_t clipped
    if n_in == 0 or n_out == 0:
        return 0
    cdef double* scale = <double*>malloc(n_out * sizeof(double))
    if scale == NULL:
        raise MemoryError("fastnn: no memory for max-norm scratch")
    try:
        if t == cnp.NPY_FLOAT32:
            with nogil:
                clipped = _max_norm(<float*>cnp.PyArray_DATA(W), n_in, n_out, c, scale,
                                    n_threads)
        else:
            with nogil:
                clipped = _max_norm(<double*>cnp.PyArray_DATA(W), n_in, n_out, c, scale,
                                    n_threads)
    finally:
        free(scale)
    return clipped
