# Loss kernels, the mean data loss and its gradient on the scores in one pass: the def
# entry points.  Each checks its arrays (dtype, shape, contiguity, overlap) and labels /
# targets / tree, runs the nogil core of _loss_core.pxd (which holds the formulas and the
# threading design) and returns row_loss_mean of the per-row losses it wrote; a compiled
# training plan calls the same cores.
cimport numpy as cnp
from cython cimport floating

from _common cimport check, check_disjoint, check_float, check_outputs, check_shape
from _dispatch cimport (elementwise_loss_any, hs_backward_any, hs_forward_any,
                        row_loss_mean_any, softmax_xent_any, svm_any)
from _loss_core cimport EW_ATTR_HINGE, EW_ATTR_LOGISTIC, EW_L1, EW_L2

cnp.import_array()


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
    with nogil:
        softmax_xent_any(t, cnp.PyArray_DATA(scores), yp, cnp.PyArray_DATA(dscores),
                         cnp.PyArray_DATA(row_loss), n, k, n_threads)
    return _mean(row_loss, t, n)


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
    with nogil:
        svm_any(t, cnp.PyArray_DATA(scores), yp, cnp.PyArray_DATA(dscores),
                cnp.PyArray_DATA(row_loss), n, k, delta, squared, n_threads)
    return _mean(row_loss, t, n)


cdef double _mean(cnp.ndarray row_loss, int t, Py_ssize_t n):
    """row_loss_mean of the n per-row losses (row order, double, divided by n)."""
    cdef double mean
    with nogil:
        mean = row_loss_mean_any(t, cnp.PyArray_DATA(row_loss), n)
    return mean


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
    with nogil:
        elementwise_loss_any(t, kind, cnp.PyArray_DATA(scores), cnp.PyArray_DATA(y),
                             cnp.PyArray_DATA(dscores), cnp.PyArray_DATA(row_loss), n, a,
                             n_threads)
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
    (K, P) and depths (K,) intp describe the tree (see _loss_core.pxd).  All
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
    with nogil:
        hs_forward_any(t, cnp.PyArray_DATA(h), cnp.PyArray_DATA(W), cnp.PyArray_DATA(b), yp,
                       pp, cp, dp, cnp.PyArray_DATA(dz), cnp.PyArray_DATA(row_loss), n, d,
                       p, n_threads)
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
    with nogil:
        hs_backward_any(t, cnp.PyArray_DATA(h), cnp.PyArray_DATA(W), yp, pp, dp,
                        cnp.PyArray_DATA(dz), dh_p, cnp.PyArray_DATA(dW),
                        cnp.PyArray_DATA(db), n, d, m, p, n_threads)
