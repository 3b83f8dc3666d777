# The optimizer updates and learning-rate schedules as nogil inline functions, for any
# module to cimport (the compiled training plan calls optimizer_update_core once per step
# on its flat parameter, gradient and state arrays).  Design:
#   * no checks, no allocation, no Python objects: callers validate (fastnn._optim does);
#   * one branch on `kind` per call, then a branch-free loop per optimizer that gcc
#     vectorizes; scalars are cast to the array's dtype once (derived ones such as 1 - b1
#     or Adam's bias corrections computed in double first) and each element is computed
#     in the dtype with the operations, in the order, of fastnn.reference.optimizer_update,
#     so the NumPy twin matches bit for bit.  Adagrad, RMSProp and Adam, whose divisions
#     and square roots are most of their cost, run in fastnn_loops.inc (per-ISA clones:
#     4 or 8 lanes instead of this module's SSE2 2), with FMA contraction off there;
#   * threads: the n elements are cut into nt contiguous chunks (nt from threads_for); at
#     nt == 1 the loop runs directly, with no parallel region (a one-thread prange still
#     builds an OpenMP team).  Each element is updated alone: the result ignores nt;
#   * cdivision is set here, not left to the directives of the module that cimports this:
#     Python-style division would add zero checks (and a GIL path) to every loop.
cimport cython
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, pow

from _common cimport adagrad_update, adam_update, rmsprop_update, threads_for

# Optimizer codes (fastnn.reference.OPT_* and fastnn.optim.<class>.kind mirror them).
cdef enum:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAGRAD = 3
    OPT_RMSPROP = 4
    OPT_ADAM = 5
    N_OPT = 6

# Learning-rate schedule codes (fastnn.reference.SCHED_*).
cdef enum:
    SCHED_CONSTANT = 0
    SCHED_STEP = 1
    SCHED_EXPONENTIAL = 2
    SCHED_INVERSE_TIME = 3
    N_SCHED = 4


cdef inline int optimizer_n_state(int kind) noexcept nogil:
    """State arrays the optimizer `kind` keeps: 0 (SGD), 1 (velocity or cache), 2 (Adam)."""
    if kind == OPT_ADAM:
        return 2
    if kind == OPT_SGD:
        return 0
    return 1


@cython.cdivision(True)
cdef inline double schedule_lr(int kind, double lr0, double rate, long every,
                               long t) noexcept nogil:
    """Learning rate after t >= 0 updates (CS231n's forms): constant lr0; step decay
    lr0 * rate**floor(t / every); exponential lr0 * exp(-rate * t); 1/t decay
    lr0 / (1 + rate * t).  every < 1 counts as 1 (no division by zero here)."""
    if kind == SCHED_STEP:
        if every < 1:
            every = 1
        return lr0 * pow(rate, <double>(t // every))
    if kind == SCHED_EXPONENTIAL:
        return lr0 * exp(-rate * <double>t)
    if kind == SCHED_INVERSE_TIME:
        return lr0 / (1.0 + rate * <double>t)
    return lr0


# One loop per optimizer over elements [i0, i1).  Temporaries keep each new state value in
# a register, so it is stored once and read back by the weight update exactly as stored.

cdef inline void _sgd_range(floating* w, const floating* g, Py_ssize_t i0, Py_ssize_t i1,
                            double lr) noexcept nogil:
    cdef floating a = <floating>lr
    cdef Py_ssize_t i
    for i in range(i0, i1):
        w[i] = w[i] - a * g[i]


cdef inline void _momentum_range(floating* w, const floating* g, floating* v, Py_ssize_t i0,
                                 Py_ssize_t i1, double lr, double mu) noexcept nogil:
    cdef floating a = <floating>lr, m = <floating>mu
    cdef floating vi
    cdef Py_ssize_t i
    for i in range(i0, i1):
        vi = m * v[i] - a * g[i]
        v[i] = vi
        w[i] = w[i] + vi


cdef inline void _nesterov_range(floating* w, const floating* g, floating* v, Py_ssize_t i0,
                                 Py_ssize_t i1, double lr, double mu) noexcept nogil:
    cdef floating a = <floating>lr, m = <floating>mu
    cdef floating neg_m = <floating>(-mu), one_m = <floating>(1.0 + mu)
    cdef floating vp, vi
    cdef Py_ssize_t i
    for i in range(i0, i1):
        vp = v[i]
        vi = m * vp - a * g[i]
        v[i] = vi
        w[i] = w[i] + (neg_m * vp + one_m * vi)


cdef inline void _adagrad_range(floating* w, const floating* g, floating* c, Py_ssize_t i0,
                                Py_ssize_t i1, double lr, double eps) noexcept nogil:
    adagrad_update(w + i0, g + i0, c + i0, i1 - i0, <floating>lr, <floating>eps)


cdef inline void _rmsprop_range(floating* w, const floating* g, floating* c, Py_ssize_t i0,
                                Py_ssize_t i1, double lr, double decay,
                                double eps) noexcept nogil:
    rmsprop_update(w + i0, g + i0, c + i0, i1 - i0, <floating>lr, <floating>decay,
                   <floating>(1.0 - decay), <floating>eps)


cdef inline void _adam_range(floating* w, const floating* g, floating* m, floating* v,
                             Py_ssize_t i0, Py_ssize_t i1, double lr, double beta1,
                             double beta2, double eps, long t) noexcept nogil:
    # bias corrections 1 - beta**t in double, then cast (t >= 1 keeps them > 0)
    adam_update(w + i0, g + i0, m + i0, v + i0, i1 - i0, <floating>lr, <floating>beta1,
                <floating>beta2, <floating>(1.0 - beta1), <floating>(1.0 - beta2),
                <floating>(1.0 - pow(beta1, <double>t)),
                <floating>(1.0 - pow(beta2, <double>t)), <floating>eps)


cdef inline void _update_range(int kind, floating* w, const floating* g, floating* s1,
                               floating* s2, Py_ssize_t i0, Py_ssize_t i1, double lr,
                               double h1, double h2, double eps, long t) noexcept nogil:
    if kind == OPT_SGD:
        _sgd_range(w, g, i0, i1, lr)
    elif kind == OPT_MOMENTUM:
        _momentum_range(w, g, s1, i0, i1, lr, h1)
    elif kind == OPT_NESTEROV:
        _nesterov_range(w, g, s1, i0, i1, lr, h1)
    elif kind == OPT_ADAGRAD:
        _adagrad_range(w, g, s1, i0, i1, lr, eps)
    elif kind == OPT_RMSPROP:
        _rmsprop_range(w, g, s1, i0, i1, lr, h1, eps)
    elif kind == OPT_ADAM:
        _adam_range(w, g, s1, s2, i0, i1, lr, h1, h2, eps, t)


@cython.cdivision(True)
cdef inline Py_ssize_t _chunk_start(Py_ssize_t n, int nt, int c) noexcept nogil:
    # _common.split, restated under cdivision: in a module built without it, split's
    # floor division carries a zero check that takes the GIL
    return n * c // nt


cdef inline void optimizer_update_core(int kind, floating* w, const floating* g,
                                       floating* s1, floating* s2, Py_ssize_t n, double lr,
                                       double h1, double h2, double eps, long t,
                                       int n_threads) noexcept nogil:
    """One update of the n elements of w in place (CS231n's formulas; v/cache = s1, Adam's
    m = s1 and v = s2, each of n elements, NULL when the optimizer keeps fewer):

      OPT_SGD       w -= lr*g
      OPT_MOMENTUM  v = h1*v - lr*g; w += v                                  (h1 = mu)
      OPT_NESTEROV  v_prev = v; v = h1*v - lr*g; w += -h1*v_prev + (1+h1)*v
      OPT_ADAGRAD   cache += g*g; w -= lr*g / (sqrt(cache) + eps)
      OPT_RMSPROP   cache = h1*cache + (1-h1)*g*g; w -= lr*g / (sqrt(cache) + eps)
      OPT_ADAM      m = h1*m + (1-h1)*g; v = h2*v + (1-h2)*g*g;
                    w -= lr * (m / (1-h1**t)) / (sqrt(v / (1-h2**t)) + eps)

    t: the 1-based step number (Adam's bias correction).  Preconditions (unchecked):
    w, g, s1, s2 valid for n elements and pairwise disjoint; a known kind; t >= 1.
    An unknown kind changes nothing."""
    cdef int nt = threads_for(n, n_threads)
    cdef int c
    if nt <= 1:
        _update_range(kind, w, g, s1, s2, 0, n, lr, h1, h2, eps, t)
        return
    for c in prange(nt, schedule="static", num_threads=nt):
        _update_range(kind, w, g, s1, s2, _chunk_start(n, nt, c), _chunk_start(n, nt, c + 1),
                      lr, h1, h2, eps, t)
