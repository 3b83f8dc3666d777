# Nogil cores of the loss kernels (the mean data loss and its gradient on the scores, in
# one pass), shared by the def kernels of _loss.pyx and by anything that cimports them (a
# training plan).  Every core writes the per-row losses into row_loss; the mean the def
# kernels return is row_loss_mean(row_loss, n): the per-row losses summed in row order,
# in double, divided by n, so it has the same bits for every thread count.  Rows are
# independent (each is computed by one thread, with the same code whatever the split);
# the one reduction over the batch, hierarchical softmax's dW / db, is described below.
# A core whose work resolves to one thread runs its rows / blocks in the same order
# without entering a parallel region.  The cores check nothing (labels in range, tree
# arrays valid, y entries +-1 or 0/1: the def kernels do) and allocate nothing.
#
# softmax cross-entropy, per row i of scores (N, K) with label y_i:
#     m = max_j s_ij;  Z = sum_j exp(s_ij - m)           (subtracting m: no overflow)
#     L_i = log Z - (s_iy - m);   dscores_ij = (exp(s_ij - m) / Z - [j == y_i]) / N
# Rows go in blocks (fastnn_loops.h's softmax_xent_block), blocks spread over threads.
from libc.math cimport log1p, log1pf
from cython cimport floating
from cython.parallel cimport prange

from _common cimport (FNN_SOFTMAX_BLOCK_ELEMS, FNN_SOFTMAX_MAX_ROWS, elementwise_loss_row,
                      fexp, softmax_loss_block, softmax_xent_block, threads_for)


cdef inline double row_loss_mean(const floating* row_loss, Py_ssize_t n) noexcept nogil:
    """The n per-row losses summed in row order, in double, divided by n (n >= 1)."""
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(n):
        total += row_loss[i]
    return total / n


cdef inline void _softmax_xent_rows(const floating* s, const Py_ssize_t* y, floating* d,
                                    floating* row_loss, Py_ssize_t n, Py_ssize_t k,
                                    Py_ssize_t rows, Py_ssize_t blk,
                                    floating inv_n) noexcept nogil:
    cdef Py_ssize_t r0 = blk * rows
    cdef Py_ssize_t r1 = r0 + rows
    if r1 > n:
        r1 = n
    softmax_xent_block(s + r0 * k, y + r0, d + r0 * k, row_loss + r0, r1 - r0, k, inv_n)


cdef inline void softmax_xent_core(const floating* s, const Py_ssize_t* y, floating* d,
                                   floating* row_loss, Py_ssize_t n, Py_ssize_t k,
                                   int n_threads) noexcept nogil:
    """Softmax cross-entropy of scores s (n, k) with labels y (n,) in [0, k).

    Writes d (n, k) = dL/ds of the mean loss and row_loss (n,) = L_i; n, k >= 1; d and
    row_loss disjoint from s, y and each other."""
    cdef Py_ssize_t rows = FNN_SOFTMAX_BLOCK_ELEMS // k
    if rows < 1:
        rows = 1
    if rows > FNN_SOFTMAX_MAX_ROWS:
        rows = FNN_SOFTMAX_MAX_ROWS
    cdef Py_ssize_t n_blocks = (n + rows - 1) // rows, blk
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * k * 8, n_threads)   # an exp costs ~8 element-ops
    if nt <= 1:
        for blk in range(n_blocks):
            _softmax_xent_rows(s, y, d, row_loss, n, k, rows, blk, inv_n)
    else:
        for blk in prange(n_blocks, nogil=True, schedule="static", num_threads=nt):
            _softmax_xent_rows(s, y, d, row_loss, n, k, rows, blk, inv_n)


cdef inline void softmax_loss_core(const floating* s, const Py_ssize_t* y, floating* d,
                                   floating* row_loss, Py_ssize_t n,
                                   Py_ssize_t k) noexcept nogil:
    """The row losses of softmax_xent_core, the same bits, on one thread (what evaluating
    a loss at many parameter vectors needs): without the gradient where a row's
    exponentials fit the loss-only loop's stack; d (n, k) is written only for rows wider
    than that, through softmax_xent_core."""
    if k > FNN_SOFTMAX_BLOCK_ELEMS:
        softmax_xent_core(s, y, d, row_loss, n, k, 1)
    else:
        softmax_loss_block(s, y, row_loss, n, k)


# ---------------------------------------------------------------------------------------
# Margin (SVM) losses, per row i of scores (N, K) with label y_i, margin m_j =
# s_ij - s_iy + delta for j != y_i:
#     hinge (Weston-Watkins):  L_i = sum_j max(0, m_j)
#         dscores_ij = [m_j > 0] / N,               dscores_iy = -sum_{j != y} dscores_ij
#     squared hinge:           L_i = sum_j max(0, m_j)^2
#         dscores_ij = 2 max(0, m_j) / N,           dscores_iy = -sum_{j != y} dscores_ij
# At a kink (m_j == 0 exactly) the subgradient taken is 0.  Rows are split across threads.

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


cdef inline void svm_core(const floating* s, const Py_ssize_t* y, floating* d,
                          floating* row_loss, Py_ssize_t n, Py_ssize_t k, floating delta,
                          bint squared, int n_threads) noexcept nogil:
    """Multiclass SVM (squared hinge when `squared`) of scores s (n, k), labels y (n,)
    in [0, k), margin delta.

    Writes d (n, k) = dL/ds of the mean loss and row_loss (n,) = L_i; n, k >= 1; d and
    row_loss disjoint from s, y and each other."""
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * k, n_threads)
    if nt <= 1:
        for i in range(n):
            row_loss[i] = _svm_row(s + i * k, y[i], d + i * k, k, delta, squared, inv_n)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            row_loss[i] = _svm_row(s + i * k, y[i], d + i * k, k, delta, squared, inv_n)


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
# The kind codes are those of fastnn_loops.inc's elementwise_loss_row.  Rows are split
# across threads.
cdef enum:
    EW_ATTR_HINGE = 0
    EW_ATTR_LOGISTIC = 1
    EW_L2 = 2
    EW_L1 = 3


cdef inline void elementwise_loss_core(int kind, const floating* s, const floating* y,
                                       floating* d, floating* row_loss, Py_ssize_t n,
                                       Py_ssize_t a, int n_threads) noexcept nogil:
    """Element-wise loss `kind` (an EW_* code) of scores s (n, a) against targets y (n, a).

    Writes d (n, a) = dL/ds of the mean loss and row_loss (n,) = L_i; n, a >= 1; d and
    row_loss disjoint from s, y and each other."""
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * a * (8 if kind == EW_ATTR_LOGISTIC else 1), n_threads)
    if nt <= 1:
        for i in range(n):
            row_loss[i] = elementwise_loss_row(kind, s + i * a, y + i * a, d + i * a, a,
                                               inv_n)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            row_loss[i] = elementwise_loss_row(kind, s + i * a, y + i * a, d + i * a, a,
                                               inv_n)


# ---------------------------------------------------------------------------------------
# Hierarchical softmax over a binary tree of the K classes (K - 1 internal nodes, each
# with a weight row W[node] (D,) and a bias b[node]).  The tree is three intp arrays:
# class c's path from the root is paths[c, :depths[c]] (node indices) with
# codes[c, t] = +1 where it turns right, -1 left.  With z = W[node] . h_i + b[node],
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
# (The per-node work counts use db as scratch before db itself is computed; the range
# bounds live in a fixed array of HS_MAX_SPLIT + 1 on the stack: nothing is allocated.)

cdef enum:
    HS_DOT_LANES = 8
    HS_MAX_SPLIT = 256     # most threads the dW reduction is split across


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _hs_dot(const floating* a, const floating* b,
                             Py_ssize_t n) noexcept nogil:
    """a . b with HS_DOT_LANES independent partial sums (vectorizable; fixed order)."""
    cdef floating acc[HS_DOT_LANES]
    cdef Py_ssize_t j = 0, l
    cdef floating total = 0
    for l in range(HS_DOT_LANES):
        acc[l] = 0
    while j + HS_DOT_LANES <= n:
        for l in range(HS_DOT_LANES):
            acc[l] += a[j + l] * b[j + l]
        j += HS_DOT_LANES
    while j < n:
        total += a[j] * b[j]
        j += 1
    for l in range(HS_DOT_LANES):
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
        z = _hs_dot(w + node * d, hrow, d) + b[node]
        u = z if code[t] > 0 else -z
        e = fexp(-u if u >= 0 else u)                   # exp(-|u|) <= 1
        loss += (-u if u < 0 else <floating>0) + _log1p(e)
        g = e / (1 + e) if u >= 0 else 1 / (1 + e)      # sig(-u)
        dz[t] = (-g if code[t] > 0 else g) * inv_n
    for t in range(depth, p):
        dz[t] = 0
    return loss


cdef inline void hs_forward_core(const floating* h, const floating* w, const floating* b,
                                 const Py_ssize_t* y, const Py_ssize_t* paths,
                                 const Py_ssize_t* codes, const Py_ssize_t* depths,
                                 floating* dz, floating* row_loss, Py_ssize_t n,
                                 Py_ssize_t d, Py_ssize_t p, int n_threads) noexcept nogil:
    """Hierarchical softmax loss of h (n, d) with classes y (n,).

    w (m, d), b (m,): the m internal nodes; paths, codes (k, p) and depths (k,): the tree
    (see above), valid for m nodes.  Writes dz (n, p) (dz[i, t] = dL/dz_t of the mean
    loss, 0 past the path's end) and row_loss (n,) = L_i; n >= 1.  Rows split."""
    cdef Py_ssize_t i
    cdef floating inv_n = (<floating>1) / <floating>n
    cdef int nt = threads_for(n * p * (d + 8), n_threads)
    if nt <= 1:
        for i in range(n):
            row_loss[i] = _hs_row(h + i * d, w, b, paths + y[i] * p, codes + y[i] * p,
                                  depths[y[i]], dz + i * p, d, p, inv_n)
    else:
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


cdef inline void _hs_dw_nodes(const floating* h, const Py_ssize_t* y,
                              const Py_ssize_t* paths, const Py_ssize_t* depths,
                              const floating* dz, floating* dw, Py_ssize_t n, Py_ssize_t d,
                              Py_ssize_t p, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The rows [lo, hi) of dW: zeroed, then every path step at one of those nodes added,
    examples in row order, steps in path order."""
    cdef Py_ssize_t i, s, j, node, c
    cdef floating g
    cdef const floating* hrow
    cdef floating* wrow
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


cdef inline void hs_backward_core(const floating* h, const floating* w, const Py_ssize_t* y,
                                  const Py_ssize_t* paths, const Py_ssize_t* depths,
                                  const floating* dz, floating* dh, floating* dw,
                                  floating* db, Py_ssize_t n, Py_ssize_t d, Py_ssize_t m,
                                  Py_ssize_t p, int n_threads) noexcept nogil:
    """Gradients of the hierarchical softmax loss from forward's dz (n, p).

    h (n, d), w (m, d), y, paths, depths as in hs_forward_core.  Writes dw (m, d),
    db (m,) and, unless dh is NULL, dh (n, d); outputs disjoint from the inputs and from
    each other.  dw and db do not depend on n_threads (see above)."""
    cdef Py_ssize_t i, r, s, node, c
    cdef Py_ssize_t bounds[HS_MAX_SPLIT + 1]
    cdef double total, acc
    cdef int nt
    if dh != NULL:
        nt = threads_for(n * p * d, n_threads)
        if nt <= 1:
            for i in range(n):
                _hs_dh_row(w, paths + y[i] * p, depths[y[i]], dz + i * p, dh + i * d, d)
        else:
            for i in prange(n, nogil=True, schedule="static", num_threads=nt):
                _hs_dh_row(w, paths + y[i] * p, depths[y[i]], dz + i * p, dh + i * d, d)
    # dW by node ranges (see the comment above): the result does not depend on nt.
    nt = threads_for(n * p * d + m * d, n_threads)
    if nt > m:
        nt = <int>m
    if nt > HS_MAX_SPLIT:
        nt = HS_MAX_SPLIT
    if nt <= 1:
        _hs_dw_nodes(h, y, paths, depths, dz, dw, n, d, p, 0, m)
    else:
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
        bounds[0] = 0
        bounds[nt] = m
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
            _hs_dw_nodes(h, y, paths, depths, dz, dw, n, d, p, bounds[r], bounds[r + 1])
    for node in range(m):
        db[node] = 0
    for i in range(n):
        c = y[i]
        for s in range(depths[c]):
            db[paths[c * p + s]] += dz[i * p + s]
