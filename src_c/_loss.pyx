# Loss kernels: the mean data loss and its gradient on the scores, in one pass.
#
# softmax cross-entropy, per row i of scores (N, K) with label y_i:
#     m = max_j s_ij;  Z = sum_j exp(s_ij - m)           (subtracting m: no overflow)
#     L_i = log Z - (s_iy - m);   dscores_ij = (exp(s_ij - m) / Z - [j == y_i]) / N
# Rows are independent, so any thread may take any row; the mean is the sum of the
# per-row losses in row order, hence the same bits for every thread count.
from libc.math cimport log1p, log1pf
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (FNN_SOFTMAX_BLOCK_ELEMS, FNN_SOFTMAX_MAX_ROWS, check, check_disjoint,
                      check_float, check_outputs, elementwise_loss_row,
                      check_shape, fexp, softmax_xent_block, threads_for)

cnp.import_array()

cdef void _softmax_xent(const floating* s, const Py_ssize_t* y, floating* d,
                        floating* row_loss, Py_ssize_t n, Py_ssize_t k,
                        int n_threads) noexcept nogil:
    """Blocks of rows (fastnn_loops.h's softmax_xent_block), blocks spread over threads."""
    cdef Py_ssize_t rows = FNN_SOFTMAX_BLOCK_ELEMS // k
    if rows < 1:
        rows = 1
    if rows > FNN_SOFTMAX_MAX_ROWS:
        rows = FNN_SOFTMAX_MAX_ROWS
    cdef Py_ssize_t n_blocks = (n + rows - 1) // rows, blk, r0, r1
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * k * 8, n_threads)   # an exp costs ~8 element-ops
    for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
        r0 = blk * rows
        r1 = r0 + rows
        if r1 > n:
            r1 = n
        softmax_xent_block(s + r0 * k, y + r0, d + r0 * k, row_loss + r0, r1 - r0, k, inv_n)


cdef Py_ssize_t _first_bad_label(const Py_ssize_t* y, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= k:
            return i
    return -1


cdef int _check_labels(cnp.ndarray y, Py_ssize_t n, Py_ssize_t k) except -1:
    """Raise unless every one of the n intp labels of y is a class index in [0, k)."""
    cdef Py_ssize_t bad
    with nogil:
        bad = _first_bad_label(<Py_ssize_t*>cnp.PyArray_DATA(y), n, k)
    if bad >= 0:
        raise ValueError(f"y[{bad}] = {y[bad]} is not a class index in [0, {k})")
    return 0


cdef int _check_class_loss(cnp.ndarray scores, cnp.ndarray y, cnp.ndarray dscores,
                           cnp.ndarray row_loss) except -1:
    """The arguments of a loss on (N, K) scores and class labels: shapes, dtypes, no
    overlap, every label in [0, K).  Returns the scores' type number."""
    cdef int t = check_float(scores, "scores")
    check(scores, "scores", 2, t)
    check(y, "y", 1, cnp.NPY_INTP)
    check(dscores, "dscores", 2, t, True)
    check(row_loss, "row_loss", 1, t, True)
    cdef Py_ssize_t n = scores.shape[0], k = scores.shape[1]
    if n == 0 or k == 0:
        raise ValueError(f"scores must be non-empty, got shape {(<object>scores).shape}")
    check_shape(y, "y", n)
    check_shape(dscores, "dscores", n, k)
    check_shape(row_loss, "row_loss", n)
    check_disjoint(dscores, "dscores", scores, "scores")
    check_disjoint(dscores, "dscores", y, "y")
    check_disjoint(row_loss, "row_loss", scores, "scores")
    check_disjoint(row_loss, "row_loss", dscores, "dscores")
    _check_labels(y, n, k)
    return t


def softmax_cross_entropy(cnp.ndarray scores not None, cnp.ndarray y not None,
                          cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                          int n_threads=1):
    """Mean softmax cross-entropy over the batch; writes dscores and row_loss.

    scores (N, K) float32/float64, y (N,) intp labels in [0, K), dscores (N, K) and
    row_loss (N,) of the scores' dtype, all C-contiguous.  Returns a Python float.
    """
    cdef int t = _check_class_loss(scores, y, dscores, row_loss)
    cdef Py_ssize_t n = scores.shape[0], k = scores.shape[1]
    cdef const Py_ssize_t* yp = <Py_ssize_t*>cnp.PyArray_DATA(y)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _softmax_xent(<float*>cnp.PyArray_DATA(scores), yp,
                          <float*>cnp.PyArray_DATA(dscores),
                          <float*>cnp.PyArray_DATA(row_loss), n, k, n_threads)
    else:
        with nogil:
            _softmax_xent(<double*>cnp.PyArray_DATA(scores), yp,
                          <double*>cnp.PyArray_DATA(dscores),
                          <double*>cnp.PyArray_DATA(row_loss), n, k, n_threads)
    return _mean(row_loss, t, n)


# ---------------------------------------------------------------------------------------
# Margin (SVM) losses, per row i of scores (N, K) with label y_i, margin m_j =
# s_ij - s_iy + delta for j != y_i:
#     hinge (Weston-Watkins):  L_i = sum_j max(0, m_j)
#         dscores_ij = [m_j > 0] / N,               dscores_iy = -sum_{j != y} dscores_ij
#     squared hinge:           L_i = sum_j max(0, m_j)^2
#         dscores_ij = 2 max(0, m_j) / N,           dscores_iy = -sum_{j != y} dscores_ij
# At a kink (m_j == 0 exactly) the subgradient taken is 0.  Rows are independent; the
# mean is the per-row losses summed in row order (thread-count independent).

cdef inline floating _svm_row(const floating* s, Py_ssize_t yi, floating* d, Py_ssize_t k,
                              floating delta, bint squared,
                              floating inv_n) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating sy = s[yi], m, g, loss = 0, gy = 0
    for j in range(k):
        m = s[j] - sy + delta
        if m > 0 and j != yi:
            if squared:
                loss += m * m
                g = 2 * m * inv_n
            else:
                loss += m
                g = inv_n
        else:
            g = 0
        d[j] = g
        gy += g
    d[yi] = -gy
    return loss


cdef void _svm(const floating* s, const Py_ssize_t* y, floating* d, floating* row_loss,
               Py_ssize_t n, Py_ssize_t k, floating delta, bint squared,
               int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * k, n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        row_loss[i] = _svm_row(s + i * k, y[i], d + i * k, k, delta, squared, inv_n)


def multiclass_svm(cnp.ndarray scores not None, cnp.ndarray y not None,
                   cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                   double delta=1.0, bint squared=False, int n_threads=1):
    """Mean multiclass SVM loss (Weston-Watkins; squared hinge when `squared`).

    scores (N, K) float32/float64, y (N,) intp labels in [0, K), dscores (N, K) and
    row_loss (N,) of the scores' dtype, all C-contiguous; delta the margin.  Writes
    dscores = dL/dscores and the per-row losses; returns the mean as a Python float.
    """
    cdef int t = _check_class_loss(scores, y, dscores, row_loss)
    cdef Py_ssize_t n = scores.shape[0], k = scores.shape[1]
    cdef const Py_ssize_t* yp = <Py_ssize_t*>cnp.PyArray_DATA(y)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _svm(<float*>cnp.PyArray_DATA(scores), yp, <float*>cnp.PyArray_DATA(dscores),
                 <float*>cnp.PyArray_DATA(row_loss), n, k, <float>delta, squared,
                 n_threads)
    else:
        with nogil:
            _svm(<double*>cnp.PyArray_DATA(scores), yp,
                 <double*>cnp.PyArray_DATA(dscores), <double*>cnp.PyArray_DATA(row_loss),
                 n, k, delta, squared, n_threads)
    return _mean(row_loss, t, n)


cdef double _mean(cnp.ndarray row_loss, int t, Py_ssize_t n):
    """The per-row losses summed in row order, in double, divided by n."""
    cdef double total = 0
    cdef Py_ssize_t i
    cdef const float* lf
    cdef const double* ld
    if t == cnp.NPY_FLOAT32:
        lf = <float*>cnp.PyArray_DATA(row_loss)
        with nogil:
            for i in range(n):
                total += lf[i]
    else:
        ld = <double*>cnp.PyArray_DATA(row_loss)
        with nogil:
            for i in range(n):
                total += ld[i]
    return total / n


# ---------------------------------------------------------------------------------------
# Element-wise losses: scores and targets y of one shape (N, A), L_i = sum_j l(s_ij, y_ij),
# dscores_ij = l'(s_ij, y_ij) / N.
#   attribute hinge     (y = +-1):  l = max(0, 1 - y s),         l' = -y [1 - y s > 0]
#   attribute logistic  (y = 0/1):  l = -[y log sig(s) + (1 - y) log(1 - sig(s))]
#                                     = max(s, 0) - y s + log1p(exp(-|s|)),  l' = sig(s) - y
#       (the notes' y - sig(s) is the gradient of the log-likelihood, which is maximized;
#        this is the loss, minimized).  exp only ever sees -|s| <= 0: no overflow, and
#       sig(s) = 1 / (1 + e) for s >= 0, e / (1 + e) below, with e = exp(-|s|).
#   L2 regression:                  l = (s - y)^2,                l' = 2 (s - y)
#   L1 regression:                  l = |s - y|,                  l' = sign(s - y), 0 at 0
DEF EW_ATTR_HINGE = 0
DEF EW_ATTR_LOGISTIC = 1
DEF EW_L2 = 2
DEF EW_L1 = 3


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef void _elementwise(int kind, const floating* s, const floating* y, floating* d,
                       floating* row_loss, Py_ssize_t n, Py_ssize_t a,
                       int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * a * (8 if kind == EW_ATTR_LOGISTIC else 1), n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        row_loss[i] = elementwise_loss_row(kind, s + i * a, y + i * a, d + i * a, a, inv_n)


cdef Py_ssize_t _first_not_binary(const floating* y, Py_ssize_t size,
                                  floating lo, floating hi) noexcept nogil:
    """Index of the first element of y that is neither lo nor hi (NaN included), or -1.

    A branch-free count first: random +-1 labels make an early-exit test mispredict
    every other element (20 ms for 4M labels instead of 1)."""
    cdef Py_ssize_t i, bad = 0
    for i in range(size):
        bad += (y[i] != lo) & (y[i] != hi)
    if bad == 0:
        return -1
    for i in range(size):
        if not (y[i] == lo or y[i] == hi):
            return i
    return -1


cdef object _elementwise_loss(int kind, cnp.ndarray scores, cnp.ndarray y,
                              cnp.ndarray dscores, cnp.ndarray row_loss, int n_threads):
    cdef int t = check_float(scores, "scores")
    check(scores, "scores", 2, t)
    check(y, "y", 2, t)
    check(dscores, "dscores", 2, t, True)
    check(row_loss, "row_loss", 1, t, True)
    cdef Py_ssize_t n = scores.shape[0], a = scores.shape[1]
    if n == 0 or a == 0:
        raise ValueError(f"scores must be non-empty, got shape {(<object>scores).shape}")
    check_shape(y, "y", n, a)
    check_shape(dscores, "dscores", n, a)
    check_shape(row_loss, "row_loss", n)
    check_disjoint(dscores, "dscores", scores, "scores")
    check_disjoint(dscores, "dscores", y, "y")
    check_disjoint(row_loss, "row_loss", scores, "scores")
    check_disjoint(row_loss, "row_loss", dscores, "dscores")
    cdef Py_ssize_t bad = -1
    cdef double lo = -1.0 if kind == EW_ATTR_HINGE else 0.0
    if kind == EW_ATTR_HINGE or kind == EW_ATTR_LOGISTIC:
        if t == cnp.NPY_FLOAT32:
            with nogil:
                bad = _first_not_binary(<float*>cnp.PyArray_DATA(y), n * a, <float>lo, 1)
        else:
            with nogil:
                bad = _first_not_binary(<double*>cnp.PyArray_DATA(y), n * a, lo, 1)
        if bad >= 0:
            raise ValueError(f"y[{bad // a}, {bad % a}] = {y[bad // a, bad % a]}: "
                             f"labels must be {lo:g} or 1")
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _elementwise(kind, <float*>cnp.PyArray_DATA(scores),
                         <float*>cnp.PyArray_DATA(y),
                         <float*>cnp.PyArray_DATA(dscores),
                         <float*>cnp.PyArray_DATA(row_loss), n, a, n_threads)
    else:
        with nogil:
            _elementwise(kind, <double*>cnp.PyArray_DATA(scores),
                         <double*>cnp.PyArray_DATA(y), <double*>cnp.PyArray_DATA(dscores),
                         <double*>cnp.PyArray_DATA(row_loss), n, a, n_threads)
    return _mean(row_loss, t, n)


def attribute_hinge(cnp.ndarray scores not None, cnp.ndarray y not None,
                    cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                    int n_threads=1):
    """Mean per-attribute binary hinge loss.  scores, y, dscores (N, A) and row_loss (N,),
    one float dtype, C-contiguous; y entries -1 or +1.  Returns the mean."""
    return _elementwise_loss(EW_ATTR_HINGE, scores, y, dscores, row_loss, n_threads)


def attribute_logistic(cnp.ndarray scores not None, cnp.ndarray y not None,
                       cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                       int n_threads=1):
    """Mean per-attribute logistic (binary cross-entropy on logits) loss.  scores, y,
    dscores (N, A) and row_loss (N,), one float dtype, C-contiguous; y entries 0 or 1.
    Returns the mean."""
    return _elementwise_loss(EW_ATTR_LOGISTIC, scores, y, dscores, row_loss, n_threads)


def l2_regression(cnp.ndarray scores not None, cnp.ndarray y not None,
                  cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                  int n_threads=1):
    """Mean squared L2 norm ||s_i - y_i||^2.  scores, y, dscores (N, M) and row_loss (N,),
    one float dtype, C-contiguous.  Returns the mean."""
    return _elementwise_loss(EW_L2, scores, y, dscores, row_loss, n_threads)


def l1_regression(cnp.ndarray scores not None, cnp.ndarray y not None,
                  cnp.ndarray dscores not None, cnp.ndarray row_loss not None,
                  int n_threads=1):
    """Mean L1 norm ||s_i - y_i||_1 (subgradient sign(s - y), 0 at 0).  scores, y, dscores
    (N, M) and row_loss (N,), one float dtype, C-contiguous.  Returns the mean."""
    return _elementwise_loss(EW_L1, scores, y, dscores, row_loss, n_threads)


# ---------------------------------------------------------------------------------------
# Hierarchical softmax over a binary tree of the K classes (K - 1 internal nodes, each
# with a weight row W[node] (D,) and a bias b[node]).  The tree reaches the kernels as
# three intp arrays: class c's path from the root is paths[c, :depths[c]] (node indices)
# with codes[c, t] = +1 where it turns right, -1 left.  With z = W[node] . h_i + b[node],
#     P(turn right at node) = sig(z),  P(turn left) = sig(-z) = 1 - sig(z),
# so P(c | h_i) = prod_t sig(codes[c, t] * z_t) and, with u_t = codes[c, t] * z_t,
#     L_i = -log P(y_i | h_i) = sum_t softplus(-u_t),
#     softplus(-u) = -log sig(u) = max(-u, 0) + log1p(exp(-|u|))   (exp never overflows)
#     dL_i/dz_t = -codes[c, t] * sig(-u_t)
# Only the example's own path is walked: O(depth * D) per row, depth ~ log2 K for a
# balanced tree.  forward writes dz[i, t] = dL/dz_t / N (zero past the path's end);
# backward turns dz into
#     dh_i = sum_t dz[i, t] W[path_t]          (rows in parallel: no sharing)
#     dW[node] = sum over (i, t) with path_t = node of dz[i, t] h_i,   db[node] likewise.
# dW is the one reduction over the batch.  It is split by NODES: thread r owns the rows
# [lo_r, hi_r) of dW (a contiguous range of pre-order node ids) and walks all examples in
# row order, path steps in path order, adding only the steps at its own nodes.  Each
# element of dW is thus summed by one thread in one fixed order whatever the split, so
# the result is bit-identical for any thread count, with no scratch and no merge.  The
# ranges are balanced by work (visits per node, counted first), since the root is on
# every path.  (A split by columns, tried first, makes both threads write the cache line
# that straddles the split in every row they touch, as rows are not line-aligned; on 2
# cores, 2048x300 with K = 100, it gained nothing from a second thread where this split
# gains ~1.3x, ~1.6x with K = 10000: one quiet run on a shared host, so indicative.)
# The walk over dz is repeated per thread but is O(N * depth), small next to the
# O(N * depth * D) multiply-adds.  db is reduced serially in row order.
# (The per-node work counts use db as scratch before db itself is computed.)

DEF DOT_LANES = 8


cdef inline floating _dot(const floating* a, const floating* b,
                          Py_ssize_t n) noexcept nogil:
    """a . b with DOT_LANES independent partial sums (vectorizable; fixed order)."""
    cdef floating acc[DOT_LANES]
    cdef Py_ssize_t j = 0, l
    cdef floating total = 0
    for l in range(DOT_LANES):
        acc[l] = 0
    while j + DOT_LANES <= n:
        for l in range(DOT_LANES):
            acc[l] += a[j + l] * b[j + l]
        j += DOT_LANES
    while j < n:
        total += a[j] * b[j]
        j += 1
    for l in range(DOT_LANES):
        total += acc[l]
    return total


cdef inline floating _hs_row(const floating* hrow, const floating* w, const floating* b,
                             const Py_ssize_t* path, const Py_ssize_t* code,
                             Py_ssize_t depth, floating* dz, Py_ssize_t d, Py_ssize_t p,
                             floating inv_n) noexcept nogil:
    cdef Py_ssize_t t, node
    cdef floating z, u, e, g, loss = 0
    for t in range(depth):
        node = path[t]
        z = _dot(w + node * d, hrow, d) + b[node]
        u = z if code[t] > 0 else -z
        e = fexp(-u if u >= 0 else u)                   # exp(-|u|) <= 1
        loss += (-u if u < 0 else <floating>0) + _log1p(e)
        g = e / (1 + e) if u >= 0 else 1 / (1 + e)      # sig(-u)
        dz[t] = (-g if code[t] > 0 else g) * inv_n
    for t in range(depth, p):
        dz[t] = 0
    return loss


cdef void _hs_forward(const floating* h, const floating* w, const floating* b,
                      const Py_ssize_t* y, const Py_ssize_t* paths, const Py_ssize_t* codes,
                      const Py_ssize_t* depths, floating* dz, floating* row_loss,
                      Py_ssize_t n, Py_ssize_t d, Py_ssize_t p,
                      int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * p * (d + 8), n_threads)
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        row_loss[i] = _hs_row(h + i * d, w, b, paths + y[i] * p, codes + y[i] * p,
                              depths[y[i]], dz + i * p, d, p, inv_n)


cdef inline void _hs_dh_row(const floating* w, const Py_ssize_t* path, Py_ssize_t depth,
                            const floating* dz, floating* dh, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t t, j
    cdef const floating* wr
    cdef floating g
    for j in range(d):
        dh[j] = 0
    for t in range(depth):
        wr = w + path[t] * d
        g = dz[t]
        for j in range(d):
            dh[j] += g * wr[j]


DEF MAX_SPLIT = 256     # most threads the dW reduction is split across


cdef void _hs_backward(const floating* h, const floating* w, const Py_ssize_t* y,
                       const Py_ssize_t* paths, const Py_ssize_t* depths,
                       const floating* dz, floating* dh, floating* dw, floating* db,
                       Py_ssize_t n, Py_ssize_t d, Py_ssize_t m, Py_ssize_t p,
                       int n_threads) noexcept nogil:
    cdef Py_ssize_t i, r, s, j, lo, hi, node, c
    cdef Py_ssize_t bounds[MAX_SPLIT + 1]
    cdef double total, acc
    cdef floating g
    cdef const floating* hrow
    cdef floating* wrow
    cdef int nt
    if dh != NULL:
        nt = threads_for(n * p * d, n_threads)
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            _hs_dh_row(w, paths + y[i] * p, depths[y[i]], dz + i * p, dh + i * d, d)
    # dW by node ranges (see the header comment): the result does not depend on nt.
    nt = threads_for(n * p * d + m * d, n_threads)
    if nt > m:
        nt = <int>m
    if nt > MAX_SPLIT:
        nt = MAX_SPLIT
    if nt < 1:
        nt = 1
    bounds[0] = 0
    bounds[nt] = m
    if nt > 1:
        # work per node: its visits plus one for zeroing its row (db is the scratch)
        for node in range(m):
            db[node] = 1
        for i in range(n):
            c = y[i]
            for s in range(depths[c]):
                db[paths[c * p + s]] += 1
        total = 0
        for node in range(m):
            total += db[node]
        acc = 0
        r = 1
        for node in range(m):
            acc += db[node]
            while r < nt and acc >= total * r / nt:
                bounds[r] = node + 1
                r += 1
        while r < nt:
            bounds[r] = m
            r += 1
    for r in prange(nt, nogil=True, schedule="static", num_threads=nt):
        lo = bounds[r]
        hi = bounds[r + 1]
        for node in range(lo, hi):
            wrow = dw + node * d
            for j in range(d):
                wrow[j] = 0
        for i in range(n):
            c = y[i]
            hrow = h + i * d
            for s in range(depths[c]):
                node = paths[c * p + s]
                if node >= lo and node < hi:
                    g = dz[i * p + s]
                    wrow = dw + node * d
                    for j in range(d):
                        wrow[j] += g * hrow[j]
    for node in range(m):
        db[node] = 0
    for i in range(n):
        c = y[i]
        for s in range(depths[c]):
            db[paths[c * p + s]] += dz[i * p + s]


cdef Py_ssize_t _first_bad_path(const Py_ssize_t* paths, const Py_ssize_t* codes,
                                const Py_ssize_t* depths, Py_ssize_t k, Py_ssize_t p,
                                Py_ssize_t m) noexcept nogil:
    """First class whose path would leave the arrays (depth outside [0, p], a node outside
    [0, m)) or, when codes is given, has a code other than +-1; -1 when all are fine."""
    cdef Py_ssize_t c, t
    for c in range(k):
        if depths[c] < 0 or depths[c] > p:
            return c
        for t in range(depths[c]):
            if paths[c * p + t] < 0 or paths[c * p + t] >= m:
                return c
            if codes != NULL and codes[c * p + t] != 1 and codes[c * p + t] != -1:
                return c
    return -1


cdef int _check_tree(cnp.ndarray paths, cnp.ndarray codes, cnp.ndarray depths,
                     Py_ssize_t m) except -1:
    """Validate the tree arrays (codes may be None); m is the number of internal nodes."""
    check(paths, "paths", 2, cnp.NPY_INTP)
    check(depths, "depths", 1, cnp.NPY_INTP)
    cdef Py_ssize_t k = paths.shape[0], p = paths.shape[1]
    if k == 0:
        raise ValueError("paths must have one row per class, got none")
    check_shape(depths, "depths", k)
    cdef const Py_ssize_t* cp = NULL
    if codes is not None:
        check(codes, "codes", 2, cnp.NPY_INTP)
        check_shape(codes, "codes", k, p)
        cp = <Py_ssize_t*>cnp.PyArray_DATA(codes)
    with nogil:
        bad = _first_bad_path(<Py_ssize_t*>cnp.PyArray_DATA(paths), cp,
                              <Py_ssize_t*>cnp.PyArray_DATA(depths), k, p, m)
    if bad >= 0:
        raise ValueError(f"the path of class {bad} is invalid: depths must be in [0, {p}], "
                         f"path nodes in [0, {m}) and codes +-1")
    return 0


def hierarchical_softmax_forward(cnp.ndarray h not None, cnp.ndarray W not None,
                                 cnp.ndarray b not None, cnp.ndarray y not None,
                                 cnp.ndarray paths not None, cnp.ndarray codes not None,
                                 cnp.ndarray depths not None, cnp.ndarray dz not None,
                                 cnp.ndarray row_loss not None, int n_threads=1):
    """Mean hierarchical softmax loss -log P(y_i | h_i); writes dz and row_loss.

    h (N, D), W (M, D) and b (M,) for the M = K - 1 internal nodes, dz (N, P) and
    row_loss (N,): one float dtype.  y (N,) intp classes in [0, K); paths and codes
    (K, P) and depths (K,) intp describe the tree (see the comment above).  All
    C-contiguous.  dz[i, t] = dL/dz_t for the t-th node on row i's path (0 past its end).
    """
    cdef int t = check_float(h, "h")
    check(h, "h", 2, t)
    check(W, "W", 2, t)
    check(b, "b", 1, t)
    check(y, "y", 1, cnp.NPY_INTP)
    check(dz, "dz", 2, t, True)
    check(row_loss, "row_loss", 1, t, True)
    cdef Py_ssize_t n = h.shape[0], d = h.shape[1], m = W.shape[0]
    if n == 0:
        raise ValueError(f"h must be non-empty, got shape {(<object>h).shape}")
    check_shape(W, "W", m, d)
    check_shape(b, "b", m)
    check_shape(y, "y", n)
    _check_tree(paths, codes, depths, m)
    cdef Py_ssize_t k = paths.shape[0], p = paths.shape[1]
    check_shape(dz, "dz", n, p)
    check_shape(row_loss, "row_loss", n)
    check_outputs(((dz, "dz"), (row_loss, "row_loss")),
                  ((h, "h"), (W, "W"), (b, "b"), (y, "y"), (paths, "paths"),
                   (codes, "codes"), (depths, "depths")))
    _check_labels(y, n, k)
    cdef const Py_ssize_t* yp = <Py_ssize_t*>cnp.PyArray_DATA(y)
    cdef const Py_ssize_t* pp = <Py_ssize_t*>cnp.PyArray_DATA(paths)
    cdef const Py_ssize_t* cp = <Py_ssize_t*>cnp.PyArray_DATA(codes)
    cdef const Py_ssize_t* dp = <Py_ssize_t*>cnp.PyArray_DATA(depths)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _hs_forward(<float*>cnp.PyArray_DATA(h), <float*>cnp.PyArray_DATA(W),
                        <float*>cnp.PyArray_DATA(b), yp, pp, cp, dp,
                        <float*>cnp.PyArray_DATA(dz), <float*>cnp.PyArray_DATA(row_loss),
                        n, d, p, n_threads)
    else:
        with nogil:
            _hs_forward(<double*>cnp.PyArray_DATA(h), <double*>cnp.PyArray_DATA(W),
                        <double*>cnp.PyArray_DATA(b), yp, pp, cp, dp,
                        <double*>cnp.PyArray_DATA(dz), <double*>cnp.PyArray_DATA(row_loss),
                        n, d, p, n_threads)
    return _mean(row_loss, t, n)


def hierarchical_softmax_backward(cnp.ndarray h not None, cnp.ndarray W not None,
                                  cnp.ndarray y not None, cnp.ndarray paths not None,
                                  cnp.ndarray depths not None, cnp.ndarray dz not None,
                                  cnp.ndarray dh, cnp.ndarray dW not None,
                                  cnp.ndarray db not None, int n_threads=1):
    """Gradients of the hierarchical softmax loss from the dz of its forward.

    Writes dW (M, D), db (M,) and, unless dh is None, dh (N, D) = dL/dh.  Shapes and
    dtypes as in hierarchical_softmax_forward.  dW and db do not depend on n_threads.
    """
    cdef int t = check_float(h, "h")
    check(h, "h", 2, t)
    check(W, "W", 2, t)
    check(y, "y", 1, cnp.NPY_INTP)
    check(dz, "dz", 2, t)
    check(dW, "dW", 2, t, True)
    check(db, "db", 1, t, True)
    cdef Py_ssize_t n = h.shape[0], d = h.shape[1], m = W.shape[0]
    check_shape(W, "W", m, d)
    check_shape(y, "y", n)
    _check_tree(paths, None, depths, m)
    cdef Py_ssize_t k = paths.shape[0], p = paths.shape[1]
    check_shape(dz, "dz", n, p)
    check_shape(dW, "dW", m, d)
    check_shape(db, "db", m)
    cdef void* dh_p = NULL
    if dh is not None:
        check(dh, "dh", 2, t, True)
        check_shape(dh, "dh", n, d)
        dh_p = cnp.PyArray_DATA(dh)
    check_outputs(((dh, "dh"), (dW, "dW"), (db, "db")),
                  ((h, "h"), (W, "W"), (y, "y"), (paths, "paths"), (depths, "depths"),
                   (dz, "dz")))
    _check_labels(y, n, k)
    cdef const Py_ssize_t* yp = <Py_ssize_t*>cnp.PyArray_DATA(y)
    cdef const Py_ssize_t* pp = <Py_ssize_t*>cnp.PyArray_DATA(paths)
    cdef const Py_ssize_t* dp = <Py_ssize_t*>cnp.PyArray_DATA(depths)
    if t == cnp.NPY_FLOAT32:
        with nogil:
            _hs_backward(<float*>cnp.PyArray_DATA(h), <float*>cnp.PyArray_DATA(W), yp, pp,
                         dp, <float*>cnp.PyArray_DATA(dz), <float*>dh_p,
                         <float*>cnp.PyArray_DATA(dW), <float*>cnp.PyArray_DATA(db),
                         n, d, m, p, n_threads)
    else:
        with nogil:
            _hs_backward(<double*>cnp.PyArray_DATA(h), <double*>cnp.PyArray_DATA(W), yp, pp,
                         dp, <double*>cnp.PyArray_DATA(dz), <double*>dh_p,
                         <double*>cnp.PyArray_DATA(dW), <double*>cnp.PyArray_DATA(db),
                         n, d, m, p, n_threads)
