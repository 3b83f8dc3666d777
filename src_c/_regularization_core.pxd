# Nogil cores of the weight penalties and the max-norm constraint, shared by the def
# kernels of _regularization.pyx and by anything that cimports them (a training plan).
#
# penalty_core returns the penalty of W and adds its gradient into dW in the same pass
# over memory:
#     PEN_L2       0.5 * reg * sum(w^2)             g += reg * w
#     PEN_L1       reg * sum(|w|)                   g += reg * sign(w)     (0 at w == 0)
#     PEN_ELASTIC  l1 * sum(|w|) + l2 * sum(w^2)    g += l1 * sign(w) + 2 * l2 * w
# The gradient coefficients are rounded once to W's dtype (<floating>reg, <floating>l1,
# <floating>(2.0 * l2)); the penalty is formed in double.  Its sums are accumulated in
# double over fixed blocks of PEN_BLOCK elements (each block in PEN_LANES lanes, in a
# fixed order), and the block sums are added in block order: the blocks are the same for
# any thread count, so is the result.  Threads write their block sums into the caller's
# scratch (penalty_scratch_len(n) doubles); one thread (or one block) sums the blocks as
# it goes, with no parallel region and without touching the scratch.
#
# max_norm_core projects every column of W (a unit's incoming weights) onto the ball
# ||w||_2 <= c.  Columns are split among threads in chunks of MAX_NORM_COLS; each
# column's sum of squares runs down the rows in order, so it too is independent of the
# thread count; one thread runs the chunks in order without a parallel region.  Its
# scratch (n_out doubles) is the caller's as well.  The cores check nothing and allocate
# nothing.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, sqrt

from _common cimport threads_for

cdef enum:
    PEN_L2 = 0
    PEN_L1 = 1
    PEN_ELASTIC = 2

cdef enum:
    PEN_LANES = 8
    PEN_BLOCK = 8192       # elements per reduction block (64 KiB of float64)
    MAX_NORM_COLS = 64     # columns per max-norm work item


cdef inline Py_ssize_t penalty_scratch_len(Py_ssize_t n) noexcept nogil:
    """Doubles of scratch penalty_core needs for n weights: two per block."""
    return 2 * ((n + PEN_BLOCK - 1) // PEN_BLOCK)


cdef inline floating _pen_sign(floating x) noexcept nogil:
    """-1, 0 or 1 (0 at +-0: the subgradient of |x| the penalties use)."""
    return <floating>(x > 0) - <floating>(x < 0)


cdef inline void _l2_block(const floating* w, floating* g, Py_ssize_t n, floating reg,
                           double* sq) noexcept nogil:
    """g += reg * w; sq[0] = sum(w * w)."""
    cdef double acc[PEN_LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(PEN_LANES):
        acc[l] = 0
    while i + PEN_LANES <= n:
        for l in range(PEN_LANES):
            acc[l] += <double>w[i + l] * w[i + l]
            g[i + l] += reg * w[i + l]
        i += PEN_LANES
    while i < n:
        total += <double>w[i] * w[i]
        g[i] += reg * w[i]
        i += 1
    for l in range(PEN_LANES):
        total += acc[l]
    sq[0] = total


cdef inline void _l1_block(const floating* w, floating* g, Py_ssize_t n, floating reg,
                           double* ab) noexcept nogil:
    """g += reg * sign(w); ab[0] = sum(|w|)."""
    cdef double acc[PEN_LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(PEN_LANES):
        acc[l] = 0
    while i + PEN_LANES <= n:
        for l in range(PEN_LANES):
            acc[l] += fabs(<double>w[i + l])
            g[i + l] += reg * _pen_sign(w[i + l])
        i += PEN_LANES
    while i < n:
        total += fabs(<double>w[i])
        g[i] += reg * _pen_sign(w[i])
        i += 1
    for l in range(PEN_LANES):
        total += acc[l]
    ab[0] = total


cdef inline double _sum_abs(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum(|w|) in double, lane-blocked in a fixed order."""
    cdef double acc[PEN_LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(PEN_LANES):
        acc[l] = 0
    while i + PEN_LANES <= n:
        for l in range(PEN_LANES):
            acc[l] += fabs(<double>w[i + l])
        i += PEN_LANES
    while i < n:
        total += fabs(<double>w[i])
        i += 1
    for l in range(PEN_LANES):
        total += acc[l]
    return total


cdef inline double _sum_sq(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum(w * w) in double, lane-blocked in a fixed order."""
    cdef double acc[PEN_LANES]
    cdef Py_ssize_t i = 0, l
    cdef double total = 0
    for l in range(PEN_LANES):
        acc[l] = 0
    while i + PEN_LANES <= n:
        for l in range(PEN_LANES):
            acc[l] += <double>w[i + l] * w[i + l]
        i += PEN_LANES
    while i < n:
        total += <double>w[i] * w[i]
        i += 1
    for l in range(PEN_LANES):
        total += acc[l]
    return total


cdef inline void _elastic_block(const floating* w, floating* g, Py_ssize_t n, floating l1,
                                floating l2x2, double* sums) noexcept nogil:
    """g += l1 * sign(w) + l2x2 * w; sums[0] = sum(|w|), sums[1] = sum(w * w).

    Three simple loops over a block that stays in cache: gcc vectorizes each of them,
    but not the one loop that does all three (mixed float/double lanes)."""
    cdef Py_ssize_t i
    sums[0] = _sum_abs(w, n)
    sums[1] = _sum_sq(w, n)
    for i in range(n):
        g[i] += l1 * _pen_sign(w[i]) + l2x2 * w[i]


cdef inline void _pen_block(int kind, const floating* w, floating* g, Py_ssize_t n,
                            Py_ssize_t blk, floating ga, floating gb,
                            double* sums) noexcept nogil:
    """Block blk of the n weights: gradient added, sums[0] (and for elastic net sums[1])
    written; sums[1] is set to 0 first, so it stays 0 for L2 and L1."""
    cdef Py_ssize_t i0 = blk * PEN_BLOCK
    cdef Py_ssize_t m = n - i0 if n - i0 < PEN_BLOCK else PEN_BLOCK
    sums[1] = 0
    if kind == PEN_L2:
        _l2_block(w + i0, g + i0, m, ga, sums)
    elif kind == PEN_L1:
        _l1_block(w + i0, g + i0, m, ga, sums)
    else:
        _elastic_block(w + i0, g + i0, m, ga, gb, sums)


cdef inline double penalty_core(int kind, const floating* w, floating* g, Py_ssize_t n,
                                 double a, double b, double* scratch,
                                 int n_threads) noexcept nogil:
    """The penalty `kind` of the n weights w; its gradient is added into g.

    kind PEN_L2 or PEN_L1: a = reg (b unused); PEN_ELASTIC: a = l1, b = l2 (all finite,
    >= 0).  Returns 0.5 * a * sum(w^2), a * sum(|w|) or a * sum(|w|) + b * sum(w^2), the
    very values the def kernels return.  w, g: n elements each, disjoint.  scratch:
    penalty_scratch_len(n) doubles, overwritten (read only when the call runs on more
    than one thread, but always pass it)."""
    cdef Py_ssize_t nb = (n + PEN_BLOCK - 1) // PEN_BLOCK
    cdef Py_ssize_t blk
    cdef double one[2]
    cdef double s1 = 0, s2 = 0
    cdef floating ga = <floating>a
    cdef floating gb = <floating>(2.0 * b) if kind == PEN_ELASTIC else 0
    cdef int nt = threads_for(n, n_threads)
    if nt <= 1 or nb <= 1:
        # The same blocks, summed in the same order, without a parallel region.
        for blk in range(nb):
            _pen_block(kind, w, g, n, blk, ga, gb, one)
            s1 += one[0]
            s2 += one[1]
    else:
        for blk in prange(nb, nogil=True, schedule="static", num_threads=nt):
            _pen_block(kind, w, g, n, blk, ga, gb, scratch + 2 * blk)
        for blk in range(nb):
            s1 += scratch[2 * blk]
            s2 += scratch[2 * blk + 1]
    if kind == PEN_L2:
        return 0.5 * a * s1
    elif kind == PEN_L1:
        return a * s1
    return a * s1 + b * s2


cdef inline Py_ssize_t _max_norm_chunk(floating* w, Py_ssize_t n_in, Py_ssize_t n_out,
                                       double c, double* scale,
                                       Py_ssize_t ch) noexcept nogil:
    """Columns [ch * MAX_NORM_COLS, ...) of w: norms, then the scaling; returns how many
    of them were scaled."""
    cdef Py_ssize_t i, j, here = 0
    cdef Py_ssize_t j0 = ch * MAX_NORM_COLS
    cdef Py_ssize_t j1 = j0 + MAX_NORM_COLS if j0 + MAX_NORM_COLS < n_out else n_out
    cdef floating* row
    cdef double nrm
    for j in range(j0, j1):
        scale[j] = 0
    for i in range(n_in):
        row = w + i * n_out
        for j in range(j0, j1):
            scale[j] = scale[j] + <double>row[j] * row[j]
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
    return here


cdef inline Py_ssize_t max_norm_core(floating* w, Py_ssize_t n_in, Py_ssize_t n_out,
                                     double c, double* scale, int n_threads) noexcept nogil:
    """Scale every column of w (n_in, n_out), in place, whose L2 norm exceeds c (finite,
    > 0) by c / norm; columns inside the ball are left bit-for-bit untouched.  Norms in
    double; each scaled weight rounded once.  scale: n_out doubles of scratch,
    overwritten.  Returns the number of columns scaled."""
    cdef Py_ssize_t n_chunks = (n_out + MAX_NORM_COLS - 1) // MAX_NORM_COLS
    cdef Py_ssize_t ch, clipped = 0
    cdef int nt = threads_for(n_in * n_out, n_threads)
    if n_chunks < 2:
        nt = 1
    if nt <= 1:
        for ch in range(n_chunks):
            clipped += _max_norm_chunk(w, n_in, n_out, c, scale, ch)
    else:
        for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=nt):
            clipped += _max_norm_chunk(w, n_in, n_out, c, scale, ch)
    return clipped
