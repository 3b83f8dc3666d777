# Parameter updates, in place: vanilla SGD, and every optimizer of _optim_core.pxd behind
# one checked entry point (the training plan cimports the core and skips these checks).
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite

from _common cimport (check, check_disjoint, check_float, check_outputs, check_same_shape,
                      threads_for)
from _optim_core cimport (N_OPT, N_SCHED, OPT_ADAGRAD, OPT_ADAM, OPT_MOMENTUM, OPT_NESTEROV,
                          OPT_RMSPROP, OPT_SGD, SCHED_CONSTANT, SCHED_EXPONENTIAL,
                          SCHED_INVERSE_TIME, SCHED_STEP, optimizer_n_state, schedule_lr)
from _dispatch cimport optimizer_update_any

cnp.import_array()

# The codes as Python ints, so that tests can hold fastnn.reference's copies to them.
OPTIMIZER_CODES = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV,
                   "adagrad": OPT_ADAGRAD, "rmsprop": OPT_RMSPROP, "adam": OPT_ADAM}
SCHEDULE_CODES = {"constant": SCHED_CONSTANT, "step": SCHED_STEP,
                  "exponential": SCHED_EXPONENTIAL, "inverse_time": SCHED_INVERSE_TIME}

# For error messages: each optimizer's name, and what h1 and h2 mean to it ("": unused).
_OPT_NAMES = ("SGD", "Momentum", "Nesterov", "Adagrad", "RMSProp", "Adam")
_H_NAMES = (("", ""), ("mu", ""), ("mu", ""), ("", ""), ("decay_rate", ""),
            ("beta1", "beta2"))


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


cdef int _check_unit(double x, int kind, int which) except -1:
    """A decay factor (mu, decay_rate, beta1, beta2) must lie in [0, 1)."""
    if not (0.0 <= x < 1.0):
        raise ValueError(f"h{which} ({_H_NAMES[kind][which - 1]}) must be in [0, 1), "
                         f"got {x}")
    return 0


cdef int _check_state(cnp.ndarray s, str name, cnp.ndarray param, int nd, int typenum,
                      bint needed, int kind) except -1:
    if not needed:
        if s is not None:
            raise ValueError(f"{name} must be None: {_OPT_NAMES[kind]} (kind {kind}) keeps "
                             f"{optimizer_n_state(kind)} state array(s)")
        return 0
    if s is None:
        raise ValueError(f"{name} is required: {_OPT_NAMES[kind]} (kind {kind}) keeps "
                         f"{optimizer_n_state(kind)} state array(s)")
    check(s, name, nd, typenum, True)
    check_same_shape(param, s, "param", name)
    return 0


def optimizer_update(int kind, cnp.ndarray param not None, cnp.ndarray grad not None,
                     cnp.ndarray state1, cnp.ndarray state2, double lr, double h1, double h2,
                     double eps, long t, int n_threads=1):
    """One optimizer update, in place on param and the state arrays (see
    _optim_core.optimizer_update_core for the formulas).  Returns param.

    kind: an OPT_* code (OPTIMIZER_CODES).  param, grad: same shape, float32/float64,
    C-contiguous; state1, state2: like param, or None for the optimizers without them
    (velocity or cache in state1; Adam's m, v in state1, state2), all written, apart from
    grad and from each other.  lr: finite, >= 0.  h1, h2: mu (momentum, Nesterov),
    decay_rate (RMSProp), beta1, beta2 (Adam), each in [0, 1); finite where unused.
    eps: finite, > 0 for Adagrad, RMSProp and Adam.  t: the 1-based step number."""
    if not 0 <= kind < N_OPT:
        raise ValueError(f"kind must be an optimizer code in [0, {<int>N_OPT}), got {kind}")
    cdef int typenum = check_float(param, "param")
    cdef int nd = cnp.PyArray_NDIM(param)
    cdef int ns = optimizer_n_state(kind)
    check(param, "param", nd, typenum, True)
    check(grad, "grad", nd, typenum)
    check_same_shape(param, grad, "param", "grad")
    _check_state(state1, "state1", param, nd, typenum, ns >= 1, kind)
    _check_state(state2, "state2", param, nd, typenum, ns >= 2, kind)
    check_outputs(((param, "param"), (state1, "state1"), (state2, "state2")),
                  ((grad, "grad"),))
    if not (isfinite(lr) and lr >= 0.0):
        raise ValueError(f"lr must be finite and >= 0, got {lr}")
    for x, name in ((h1, "h1"), (h2, "h2"), (eps, "eps")):
        if not isfinite(x):
            raise ValueError(f"{name} must be finite, got {x}")
    if kind == OPT_MOMENTUM or kind == OPT_NESTEROV or kind == OPT_RMSPROP:
        _check_unit(h1, kind, 1)
    elif kind == OPT_ADAM:
        _check_unit(h1, kind, 1)
        _check_unit(h2, kind, 2)
    if kind >= OPT_ADAGRAD and not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if t < 1:
        raise ValueError(f"t (the 1-based step number) must be >= 1, got {t}")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(param)
    cdef void* s1 = NULL if state1 is None else cnp.PyArray_DATA(state1)
    cdef void* s2 = NULL if state2 is None else cnp.PyArray_DATA(state2)
    with nogil:
        optimizer_update_any(typenum, kind, cnp.PyArray_DATA(param), cnp.PyArray_DATA(grad),
                             s1, s2, n, lr, h1, h2, eps, t, n_threads)
    return param


def learning_rate(int kind, double lr0, double rate, long every, long t):
    """The learning rate after t >= 0 updates under schedule `kind` (a SCHED_* code,
    SCHEDULE_CODES): constant lr0; step decay lr0 * rate**floor(t / every); exponential
    lr0 * exp(-rate * t); 1/t decay lr0 / (1 + rate * t).  lr0: finite, >= 0.  rate:
    finite; in (0, 1] for step decay, >= 0 for the decays; unused by constant.  every:
    >= 1 (used by step decay only)."""
    if not 0 <= kind < N_SCHED:
        raise ValueError(f"kind must be a schedule code in [0, {<int>N_SCHED}), got {kind}")
    if not (isfinite(lr0) and lr0 >= 0.0):
        raise ValueError(f"lr0 must be finite and >= 0, got {lr0}")
    if not isfinite(rate):
        raise ValueError(f"rate must be finite, got {rate}")
    if kind == SCHED_STEP and not (0.0 < rate <= 1.0):
        raise ValueError(f"rate (step decay's factor) must be in (0, 1], got {rate}")
    if (kind == SCHED_EXPONENTIAL or kind == SCHED_INVERSE_TIME) and not rate >= 0.0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if t < 0:
        raise ValueError(f"t (updates already made) must be >= 0, got {t}")
    return schedule_lr(kind, lr0, rate, every, t)
