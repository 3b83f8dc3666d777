"""The NumPy twins of the compiled kernels: same names, same signatures, same outputs.

They define what "correct" means: every compiled kernel is tested against its twin.
They write into the caller's buffers like the kernels do, but favour clarity over speed
(temporaries are fine here).  ``n_threads`` is accepted and ignored.
"""
import math
import numbers

import numpy as np

from ._validation import check_shuffle

ACT_IDENTITY = 0
ACT_RELU = 1
ACT_LEAKY_RELU = 2
ACT_SIGMOID = 3
ACT_TANH = 4
N_ACT = 5

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _check_act(activation, alpha):
    if not 0 <= activation < N_ACT:
        raise ValueError(f"activation code must be in [0, {N_ACT}), got {activation}")
    if activation == ACT_LEAKY_RELU and not alpha >= 0:
        raise ValueError(f"alpha (the leaky ReLU slope) must be >= 0, got {alpha}")



def _activate(z, activation, alpha, out):
    if activation == ACT_RELU:
        np.maximum(z, 0, out=out)
    elif activation == ACT_LEAKY_RELU:
        np.copyto(out, np.where(z < 0, alpha * z, z))
    elif activation == ACT_SIGMOID:
        np.copyto(out, _sigmoid(z))
    elif activation == ACT_TANH:
        np.tanh(z, out=out)
    else:
        np.copyto(out, z)


def _activation_derivative(out, activation, alpha):
    """act'(.) from the activation's output (leaky ReLU: valid for alpha >= 0)."""
    if activation == ACT_RELU:
        return (out > 0).astype(out.dtype)
    if activation == ACT_LEAKY_RELU:
        return np.where(out > 0, 1, alpha).astype(out.dtype)
    if activation == ACT_SIGMOID:
        return out * (1 - out)
    if activation == ACT_TANH:
        return (1 - out) * (1 + out)        # as the kernels: no cancellation, no FMA
    return np.ones_like(out)


def affine_forward(x, W, b, out, activation=ACT_IDENTITY, alpha=0.0, n_threads=1):
    """out[:] = act(x @ W + b); returns out.  See fastnn._affine.affine_forward."""
    _check_act(activation, alpha)
    _activate(x @ W + b, activation, out.dtype.type(alpha), out)
    return out


def affine_backward(dout, x, W, out, dz, dx, dW, db, activation=ACT_IDENTITY, alpha=0.0,
                    n_threads=1):
    """Gradients of out = act(x @ W + b).  See fastnn._affine.affine_backward."""
    _check_act(activation, alpha)
    if dz is None and activation != ACT_IDENTITY:
        raise ValueError("dz scratch is required unless activation is identity")
    g = dout * _activation_derivative(out, activation, out.dtype.type(alpha))
    if dz is not None and activation != ACT_IDENTITY:
        dz[...] = g
    dW[...] = x.T @ g
    db[...] = g.sum(axis=0)
    if dx is not None:
        dx[...] = g @ W.T


def softmax_cross_entropy(scores, y, dscores, row_loss, n_threads=1):
    """Mean softmax cross-entropy; writes dscores (N, K) and row_loss (N,)."""
    n, k = scores.shape
    _check_nonempty(scores)
    _check_class_labels(y, k)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    z = exp.sum(axis=1)
    rows = np.arange(n)
    row_loss[...] = np.log(z) - shifted[rows, y]
    dscores[...] = exp / z[:, None]
    dscores[rows, y] -= 1
    dscores /= n
    return float(row_loss.sum(dtype=np.float64) / n)


# ---- dropout: a NumPy rendering of fastnn_math.h's counter-based generator ----

def _mix64(z):
    """SplitMix64's finalizer on a uint64 array (NumPy wraps uint64 arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix64_int(z):
    """The same finalizer on one Python int, mod 2**64."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def dropout_key(seed, step):
    """The generator key for one draw: a function of (seed, step) only."""
    k0 = _mix64_int(int(seed) + _GOLDEN)
    return _mix64_int(k0 + ((int(step) + 1) * _GOLDEN & _MASK64))


def shuffled_rows(n, keep, n_epochs, seed, first_epoch):
    """Twin of _plan.shuffled_rows: per epoch, the first `keep` rows of a partial
    Fisher-Yates shuffle of range(n) driven by SplitMix64 keyed by (seed, epoch).  Entry
    i is final after swap i, so only the entries a swap moved above it are remembered (a
    dict): memory follows keep, not n."""
    check_shuffle(n, keep, n_epochs)
    out = np.empty((n_epochs, keep), dtype=np.int64)
    i = np.arange(keep, dtype=np.uint64)
    for e in range(n_epochs):
        key = np.uint64(dropout_key(seed, first_epoch + e))
        with np.errstate(over="ignore"):
            u = _mix64(key + (i + np.uint64(1)) * np.uint64(_GOLDEN)) >> np.uint64(32)
        j = i.astype(np.int64) + ((u * (np.uint64(n) - i)) >> np.uint64(32)).astype(np.int64)
        moved = {}
        for a, b in enumerate(j.tolist()):
            out[e, a] = moved.get(b, b)
            moved[b] = moved.pop(a, a)
    return out.reshape(-1)


def keep_threshold(p):
    """floor(p * 2**32): a 32-bit draw keeps its element when it is below this."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p (the probability of keeping a unit) must be in (0, 1], got {p}")
    return int(p * 4294967296.0)


def dropout_draws(n, seed, step):
    """The n uint32 draws behind a dropout mask of n elements."""
    key = dropout_key(seed, step)
    counters = np.arange(1, (n + 1) // 2 + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _mix64(np.uint64(key) + counters * np.uint64(_GOLDEN))
    draws = np.empty(2 * len(z), dtype=np.uint64)
    draws[0::2] = z & np.uint64(0xFFFFFFFF)
    draws[1::2] = z >> np.uint64(32)
    return draws[:n]


def dropout_forward(x, out, mask, p, seed, step, n_threads=1):
    """Inverted dropout: out = x * mask / p.  See fastnn._dropout.dropout_forward."""
    keep_threshold(p)
    return dropout_forward_scaled(x, out, mask, p, 1.0 / p, seed, step)


def dropout_backward(dout, mask, dx, p, n_threads=1):
    """dx = dout * mask / p."""
    keep_threshold(p)
    return dropout_backward_scaled(dout, mask, dx, 1.0 / p)


def numerical_gradient(f, x, grad, h, centered=True):
    """Finite differences over every element of x, restoring each one (also on error).

    The divisor is the difference of the two evaluation points as stored in x's dtype."""
    if not h > 0:
        raise ValueError(f"h must be positive, got {h}")
    flat = x.reshape(-1)          # a view: x is C-contiguous
    gflat = grad.reshape(-1)
    fx = float(f(x)) if not centered else 0.0
    for i in range(flat.size):
        old = float(flat[i])
        try:
            flat[i] = old + h      # rounded once into x's dtype, as the kernel does
            xp = flat[i]
            fp = float(f(x))
            if centered:
                flat[i] = old - h
                xm = flat[i]
                fm = float(f(x))
            else:
                xm, fm = old, fx
        finally:
            flat[i] = old
        if float(xp) == float(xm):
            raise ValueError(f"h = {h} is below the resolution of x[{i}] = {old} in "
                             f"{x.dtype}: x + h rounds to x; use a larger h or float64")
        gflat[i] = (fp - fm) / (float(xp) - float(xm))
    return grad


def sgd_update(param, grad, step_size, n_threads=1):
    """param -= step_size * grad, in place."""
    param -= param.dtype.type(step_size) * grad
    return param


# ---- optimizers and learning-rate schedules (twins of fastnn._optim, codes of
# src_c/_optim_core.pxd).  Bit for bit: every element operation below is one IEEE
# operation in the array's dtype, the same ones in the same order as the C loops, with
# the scalars cast to the dtype once (derived ones computed in double first); pow and exp
# are Python's math.pow/math.exp, the same libm calls the C code makes. ----

OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM = range(6)
N_OPT = 6
#: State arrays each optimizer keeps (velocity or cache; Adam's m and v).
OPT_N_STATE = (0, 1, 1, 1, 1, 2)
SCHED_CONSTANT, SCHED_STEP, SCHED_EXPONENTIAL, SCHED_INVERSE_TIME = range(4)
N_SCHED = 4
_OPT_NAMES = ("SGD", "Momentum", "Nesterov", "Adagrad", "RMSProp", "Adam")
_H_NAMES = (("", ""), ("mu", ""), ("mu", ""), ("", ""), ("decay_rate", ""),
            ("beta1", "beta2"))


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return int(value)


def _check_real(value, name):
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_update_array(a, name, like=None, writeable=False):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    # by type, not dtype equality: a byte-swapped float64 is a layout error (ValueError
    # below), as in the compiled checks
    if like is None:
        if a.dtype.type not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    else:
        if a.ndim != like.ndim:
            raise ValueError(f"{name} must be {like.ndim}-D, got an array of shape {a.shape}")
        if a.dtype.type != like.dtype.type:
            raise TypeError(f"{name} has dtype {a.dtype}, expected {like.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not (a.dtype.isnative and a.flags.aligned):
        raise ValueError(f"{name} must be aligned and in native byte order")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if like is not None and a.shape != like.shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {like.shape} like param")


def _check_optimizer_args(kind, param, grad, state1, state2, lr, h1, h2, eps, t):
    """The compiled optimizer_update's checks, in its order, so both backends reject
    alike."""
    kind = _check_int(kind, "kind")
    lr, h1, h2, eps = (_check_real(x, n) for x, n in
                       ((lr, "lr"), (h1, "h1"), (h2, "h2"), (eps, "eps")))
    t = _check_int(t, "t")
    if not 0 <= kind < N_OPT:
        raise ValueError(f"kind must be an optimizer code in [0, {N_OPT}), got {kind}")
    _check_update_array(param, "param", writeable=True)
    _check_update_array(grad, "grad", like=param)
    for s, name, needed in ((state1, "state1", OPT_N_STATE[kind] >= 1),
                            (state2, "state2", OPT_N_STATE[kind] >= 2)):
        if not needed and s is not None:
            raise ValueError(f"{name} must be None: {_OPT_NAMES[kind]} (kind {kind}) keeps "
                             f"{OPT_N_STATE[kind]} state array(s)")
        if needed:
            if s is None:
                raise ValueError(f"{name} is required: {_OPT_NAMES[kind]} (kind {kind}) "
                                 f"keeps {OPT_N_STATE[kind]} state array(s)")
            _check_update_array(s, name, like=param, writeable=True)
    outputs = [(a, n) for a, n in ((param, "param"), (state1, "state1"), (state2, "state2"))
               if a is not None]
    for i, (o, oname) in enumerate(outputs):
        # C-contiguous arrays are single address ranges: bounds overlap is real overlap
        for a, aname in [(grad, "grad")] + outputs[i + 1:]:
            if np.may_share_memory(o, a):
                raise ValueError(f"{oname} must not share memory with {aname}")
    if not (math.isfinite(lr) and lr >= 0.0):
        raise ValueError(f"lr must be finite and >= 0, got {lr}")
    for x, name in ((h1, "h1"), (h2, "h2"), (eps, "eps")):
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite, got {x}")
    for which, x in ((1, h1), (2, h2)):
        if _H_NAMES[kind][which - 1] and not 0.0 <= x < 1.0:
            raise ValueError(f"h{which} ({_H_NAMES[kind][which - 1]}) must be in [0, 1), "
                             f"got {x}")
    if kind >= OPT_ADAGRAD and not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if t < 1:
        raise ValueError(f"t (the 1-based step number) must be >= 1, got {t}")
    return kind, lr, h1, h2, eps, t


def optimizer_update(kind, param, grad, state1, state2, lr, h1, h2, eps, t, n_threads=1):
    """One optimizer update in place on param, state1, state2; returns param.
    See fastnn._optim.optimizer_update (arguments) and src_c/_optim_core.pxd (formulas)."""
    kind, lr, h1, h2, eps, t = _check_optimizer_args(kind, param, grad, state1, state2,
                                                     lr, h1, h2, eps, t)
    F = param.dtype.type
    g = grad
    if kind == OPT_SGD:
        param -= F(lr) * g
    elif kind == OPT_MOMENTUM:
        v = F(h1) * state1 - F(lr) * g
        state1[...] = v
        param += v
    elif kind == OPT_NESTEROV:
        v_prev = state1.copy()
        v = F(h1) * v_prev - F(lr) * g
        state1[...] = v
        param += F(-h1) * v_prev + F(1.0 + h1) * v
    elif kind == OPT_ADAGRAD:
        cache = state1 + g * g
        state1[...] = cache
        param -= F(lr) * g / (np.sqrt(cache) + F(eps))
    elif kind == OPT_RMSPROP:
        cache = F(h1) * state1 + F(1.0 - h1) * (g * g)
        state1[...] = cache
        param -= F(lr) * g / (np.sqrt(cache) + F(eps))
    else:  # OPT_ADAM, bias-corrected
        m = F(h1) * state1 + F(1.0 - h1) * g
        v = F(h2) * state2 + F(1.0 - h2) * (g * g)
        state1[...] = m
        state2[...] = v
        mhat = m / F(1.0 - math.pow(h1, t))
        vhat = v / F(1.0 - math.pow(h2, t))
        param -= F(lr) * mhat / (np.sqrt(vhat) + F(eps))
    return param


def learning_rate(kind, lr0, rate, every, t):
    """The learning rate after t >= 0 updates under schedule `kind`; see
    fastnn._optim.learning_rate (the checks) and src_c/_optim_core.pxd (the forms)."""
    kind = _check_int(kind, "kind")
    lr0, rate = _check_real(lr0, "lr0"), _check_real(rate, "rate")
    every, t = _check_int(every, "every"), _check_int(t, "t")
    if not 0 <= kind < N_SCHED:
        raise ValueError(f"kind must be a schedule code in [0, {N_SCHED}), got {kind}")
    if not (math.isfinite(lr0) and lr0 >= 0.0):
        raise ValueError(f"lr0 must be finite and >= 0, got {lr0}")
    if not math.isfinite(rate):
        raise ValueError(f"rate must be finite, got {rate}")
    if kind == SCHED_STEP and not 0.0 < rate <= 1.0:
        raise ValueError(f"rate (step decay's factor) must be in (0, 1], got {rate}")
    if kind in (SCHED_EXPONENTIAL, SCHED_INVERSE_TIME) and not rate >= 0.0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if t < 0:
        raise ValueError(f"t (updates already made) must be >= 0, got {t}")
    if kind == SCHED_STEP:
        return lr0 * math.pow(rate, float(t // every))
    if kind == SCHED_EXPONENTIAL:
        return lr0 * math.exp(-rate * float(t))
    if kind == SCHED_INVERSE_TIME:
        return lr0 / (1.0 + rate * float(t))
    return lr0


# ---- regularization: penalties (value + gradient into dW) and the max-norm projection ----

def _check_penalty_args(W, dW, **strengths):
    """The compiled kernels' argument checks, so that both backends reject alike."""
    for name, a in (("W", W), ("dW", dW)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if W.dtype not in (np.float32, np.float64):
        raise TypeError(f"W must be float32 or float64, got {W.dtype}")
    if dW.dtype != W.dtype:
        raise TypeError(f"dW has dtype {dW.dtype}, expected {W.dtype}")
    if dW.shape != W.shape:
        raise ValueError(f"dW has shape {dW.shape}, expected {W.shape} like W")
    for name, a in (("W", W), ("dW", dW)):
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
    if not dW.flags.writeable:
        raise ValueError("dW must be writeable")
    for name, value in strengths.items():
        if not 0 <= value < np.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _sum64(a):
    return float(np.sum(a, dtype=np.float64))


def l2_penalty(W, dW, reg, n_threads=1):
    """Returns 0.5 * reg * sum(W**2) and adds reg * W to dW."""
    _check_penalty_args(W, dW, reg=reg)
    dW += W.dtype.type(reg) * W
    return 0.5 * reg * _sum64(W.astype(np.float64) ** 2)


def l1_penalty(W, dW, reg, n_threads=1):
    """Returns reg * sum(|W|) and adds reg * sign(W) to dW (0 where W == 0)."""
    _check_penalty_args(W, dW, reg=reg)
    dW += W.dtype.type(reg) * np.sign(W)
    return reg * _sum64(np.abs(W.astype(np.float64)))


def elastic_net_penalty(W, dW, l1, l2, n_threads=1):
    """Returns l1 * sum(|W|) + l2 * sum(W**2); adds l1 * sign(W) + 2 * l2 * W to dW."""
    _check_penalty_args(W, dW, l1=l1, l2=l2)
    t = W.dtype.type
    dW += t(l1) * np.sign(W) + t(2.0 * l2) * W
    w64 = W.astype(np.float64)
    return l1 * _sum64(np.abs(w64)) + l2 * _sum64(w64 ** 2)


def max_norm_constrain(W, c, n_threads=1):
    """Scale every column of W (n_in, n_out) with L2 norm > c down to norm c, in place;
    returns how many columns were scaled.  Norms in double, summed down the rows in
    order as the kernel does; the scaled value is rounded once to W's dtype."""
    if not isinstance(W, np.ndarray):
        raise TypeError(f"W must be a numpy array, got {type(W).__name__}")
    if W.dtype not in (np.float32, np.float64):
        raise TypeError(f"W must be float32 or float64, got {W.dtype}")
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D, got an array of shape {W.shape}")
    if not W.flags.c_contiguous or not W.flags.writeable:
        raise ValueError("W must be C-contiguous and writeable")
    if not 0 < c < np.inf:
        raise ValueError(f"c (the max norm) must be a finite number > 0, got {c}")
    sq = np.zeros(W.shape[1])
    for row in W.astype(np.float64):
        sq += row * row
    norms = np.sqrt(sq)
    cols = np.flatnonzero(norms > c)
    if cols.size:
        W[:, cols] = (W[:, cols].astype(np.float64) * (c / norms[cols])).astype(W.dtype)
    return int(cols.size)


# ---- more losses (twins of fastnn._loss) ----

def _check_nonempty(scores):
    if scores.size == 0:
        raise ValueError(f"scores must be non-empty, got shape {scores.shape}")


def _check_class_labels(y, k):
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"y[{i}] = {y[i]} is not a class index in [0, {k})")


def multiclass_svm(scores, y, dscores, row_loss, delta=1.0, squared=False, n_threads=1):
    """Mean Weston-Watkins SVM loss (squared hinge when `squared`); writes dscores and
    row_loss.  At a kink (margin exactly 0) the subgradient is 0."""
    n, k = scores.shape
    _check_nonempty(scores)
    _check_class_labels(y, k)
    dt = scores.dtype.type
    rows = np.arange(n)
    margins = scores - scores[rows, y][:, None] + dt(delta)
    margins[rows, y] = 0
    pos = np.maximum(margins, 0)
    inv_n = dt(1) / dt(n)
    if squared:
        row_loss[...] = np.sum(pos * pos, axis=1)
        dscores[...] = 2 * pos * inv_n
    else:
        row_loss[...] = np.sum(pos, axis=1)
        dscores[...] = (pos > 0) * inv_n
    dscores[rows, y] = 0
    dscores[rows, y] = -dscores.sum(axis=1)
    return float(row_loss.sum(dtype=np.float64) / n)


def _check_binary(y, lo):
    bad = np.flatnonzero(~((y == lo) | (y == 1)))
    if bad.size:
        i, j = np.unravel_index(int(bad[0]), y.shape)
        raise ValueError(f"y[{i}, {j}] = {y[i, j]}: labels must be {lo:g} or 1")


def attribute_hinge(scores, y, dscores, row_loss, n_threads=1):
    """Mean of sum_j max(0, 1 - y_ij s_ij) with y = +-1; writes dscores and row_loss."""
    _check_nonempty(scores)
    _check_binary(y, -1.0)
    n = scores.shape[0]
    dt = scores.dtype.type
    m = 1 - y * scores
    row_loss[...] = np.sum(np.maximum(m, 0), axis=1)
    dscores[...] = np.where(m > 0, -y * (dt(1) / dt(n)), dt(0))
    return float(row_loss.sum(dtype=np.float64) / n)


def _log_sigmoid(u):
    """log sig(u) = -(max(-u, 0) + log1p(exp(-|u|))): exp never overflows."""
    return -(np.maximum(-u, 0) + np.log1p(np.exp(-np.abs(u))))


def _sigmoid(u):
    """sig(u) from exp(-|u|) only: no overflow for any u, and relative accuracy kept
    for u < 0 (the activation and logistic-loss kernels compute it the same way)."""
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1 / (1 + e), e / (1 + e))


def attribute_logistic(scores, y, dscores, row_loss, n_threads=1):
    """Mean of sum_j -[y log sig(s) + (1 - y) log(1 - sig(s))] with y = 0/1, computed as
    max(s, 0) - y s + log1p(exp(-|s|)); dscores = (sig(s) - y) / N."""
    _check_nonempty(scores)
    _check_binary(y, 0.0)
    n = scores.shape[0]
    dt = scores.dtype.type
    row_loss[...] = np.sum(np.maximum(scores, 0) - y * scores
                           + np.log1p(np.exp(-np.abs(scores))), axis=1)
    dscores[...] = (_sigmoid(scores) - y) * (dt(1) / dt(n))
    return float(row_loss.sum(dtype=np.float64) / n)


def l2_regression(scores, y, dscores, row_loss, n_threads=1):
    """Mean of ||s_i - y_i||^2; dscores = 2 (s - y) / N."""
    _check_nonempty(scores)
    n = scores.shape[0]
    dt = scores.dtype.type
    diff = scores - y
    row_loss[...] = np.sum(diff * diff, axis=1)
    dscores[...] = diff * (dt(2) / dt(n))
    return float(row_loss.sum(dtype=np.float64) / n)


def l1_regression(scores, y, dscores, row_loss, n_threads=1):
    """Mean of ||s_i - y_i||_1; dscores = sign(s - y) / N (0 where s == y)."""
    _check_nonempty(scores)
    n = scores.shape[0]
    dt = scores.dtype.type
    diff = scores - y
    row_loss[...] = np.sum(np.abs(diff), axis=1)
    dscores[...] = np.sign(diff) * (dt(1) / dt(n))
    return float(row_loss.sum(dtype=np.float64) / n)


def _check_tree(paths, codes, depths, m):
    k, p = paths.shape
    for c in range(k):
        d = depths[c]
        if not (0 <= d <= p and np.all((paths[c, :d] >= 0) & (paths[c, :d] < m))
                and (codes is None or np.all(np.abs(codes[c, :d]) == 1))):
            raise ValueError(f"the path of class {c} is invalid: depths must be in "
                             f"[0, {p}], path nodes in [0, {m}) and codes +-1")


def hierarchical_softmax_forward(h, W, b, y, paths, codes, depths, dz, row_loss,
                                 n_threads=1):
    """Mean of -log P(y_i | h_i) over a binary tree; writes dz (N, P) and row_loss.
    See fastnn._loss for the tree arrays and the formulas."""
    n = h.shape[0]
    k, p = paths.shape
    _check_tree(paths, codes, depths, W.shape[0])
    _check_class_labels(y, k)
    dt = h.dtype.type
    depth = depths[y]
    row_loss[...] = 0
    dz[...] = 0
    for t in range(p):
        on = np.flatnonzero(depth > t)           # rows whose path has a t-th node
        node = paths[y[on], t]
        z = np.einsum("ij,ij->i", W[node], h[on]) + b[node]
        code = codes[y[on], t].astype(h.dtype)
        u = code * z
        row_loss[on] -= _log_sigmoid(u)
        dz[on, t] = -code * _sigmoid(-u) * (dt(1) / dt(n))
    return float(row_loss.sum(dtype=np.float64) / n)


def hierarchical_softmax_backward(h, W, y, paths, depths, dz, dh, dW, db, n_threads=1):
    """dW, db and (unless dh is None) dh from the dz of hierarchical_softmax_forward."""
    k, p = paths.shape
    _check_tree(paths, None, depths, W.shape[0])
    _check_class_labels(y, k)
    depth = depths[y]
    dW[...] = 0
    db[...] = 0
    if dh is not None:
        dh[...] = 0
    for t in range(p):
        on = np.flatnonzero(depth > t)
        node = paths[y[on], t]
        g = dz[on, t]
        np.add.at(dW, node, g[:, None] * h[on])
        np.add.at(db, node, g)
        if dh is not None:
            dh[on] += g[:, None] * W[node]


# ---- standalone activations ----

def activation_forward(x, out, activation, alpha=0.0, n_threads=1):
    """out[:] = act(x), element-wise.  See fastnn._activation.activation_forward."""
    _check_act(activation, alpha)
    _activate(x, activation, x.dtype.type(alpha), out)
    return out


def activation_backward(dout, out, dx, activation, alpha=0.0, n_threads=1):
    """dx[:] = dout * act'(.) from the forward output.  See fastnn._activation."""
    _check_act(activation, alpha)
    dx[...] = dout * _activation_derivative(out, activation, out.dtype.type(alpha))
    return dx


def prelu_forward(x, alpha, out, n_threads=1):
    """out = x where x > 0, alpha[c] * x elsewhere."""
    out[...] = np.where(x > 0, x, alpha * x)
    return out


def prelu_backward(dout, x, alpha, dx, dalpha, n_threads=1):
    """dalpha = column sums of dout * x where x <= 0; dx (unless None) = dout * slope."""
    # summing axis 0 of a C-contiguous array adds the rows in order, like the kernel
    dalpha[...] = np.where(x > 0, 0, dout * x).sum(axis=0)
    if dx is not None:
        dx[...] = np.where(x > 0, dout, alpha * dout)
    return dx


# ---- maxout ----

def _maxout_units(W, k):
    if k < 1:
        raise ValueError(f"k (pieces per unit) must be >= 1, got {k}")
    if W.shape[1] % k:
        raise ValueError(f"W has {W.shape[1]} columns, not a multiple of k = {k}")
    return W.shape[1] // k


def maxout_forward(x, W, b, z, out, arg, k, n_threads=1):
    """out[i, j] = max_p (x @ W + b)[i, j*k + p]; z = x @ W; arg = winning p (first on
    ties).  See fastnn._maxout.maxout_forward."""
    h = _maxout_units(W, k)
    np.matmul(x, W, out=z)
    pieces = (z + b).reshape(x.shape[0], h, k)
    arg[...] = np.argmax(pieces, axis=2)          # argmax returns the first maximum
    out[...] = np.take_along_axis(pieces, arg[..., None].astype(np.intp), axis=2)[..., 0]
    return out


def maxout_backward(dout, x, W, arg, dz, dx, dW, db, k, n_threads=1):
    """Route dout to each unit's winning piece, then the affine gradients."""
    h = _maxout_units(W, k)
    if np.any((arg < 0) | (arg >= k)):
        raise ValueError(f"arg holds a piece index outside [0, {k})")
    dz[...] = 0
    pieces = dz.reshape(dout.shape[0], h, k)
    np.put_along_axis(pieces, arg[..., None].astype(np.intp), dout[..., None], axis=2)
    db[...] = dz.sum(axis=0)
    dW[...] = x.T @ dz
    if dx is not None:
        dx[...] = dz @ W.T


# ---- batch normalization ----

def _check_bn_hyper(momentum, eps):
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")


def batchnorm_forward(x, gamma, beta, running_mean, running_var, out, xhat, mean, inv_std,
                      training, momentum, eps, n_threads=1):
    """Batch normalization forward.  See fastnn._batchnorm.batchnorm_forward."""
    _check_bn_hyper(momentum, eps)
    t = x.dtype.type
    n = x.shape[0]
    if training and n < 2:
        raise ValueError(f"x needs at least 2 rows in training mode (batch statistics), "
                         f"got {n}")
    if training:
        mean[...] = x.sum(axis=0) / n
        var = ((x - mean) ** 2).sum(axis=0) / n
        m = t(momentum)
        running_mean[...] = m * running_mean + (1 - m) * mean
        running_var[...] = m * running_var + (1 - m) * var
    else:
        mean[...] = running_mean
        var = running_var
    inv_std[...] = 1 / np.sqrt(var + t(eps))
    xhat[...] = (x - mean) * inv_std
    out[...] = gamma * xhat + beta
    return out


def batchnorm_backward(dout, xhat, gamma, inv_std, dx, dgamma, dbeta, training,
                       n_threads=1):
    """Batch normalization backward.  See fastnn._batchnorm.batchnorm_backward."""
    n = dout.shape[0]
    dbeta[...] = dout.sum(axis=0)
    dgamma[...] = (dout * xhat).sum(axis=0)
    if dx is not None:
        if training:
            dx[...] = gamma * inv_std * (dout - dbeta / n - xhat * (dgamma / n))
        else:
            dx[...] = gamma * inv_std * dout
    return dx


# ---- dropout with an explicit scale (vanilla dropout: scale 1) ----

def dropout_forward_scaled(x, out, mask, p, scale, seed, step, n_threads=1):
    """out = x * mask * scale with dropout_forward's mask.  See fastnn._dropout."""
    thr = keep_threshold(p)
    keep = dropout_draws(x.size, seed, step).reshape(x.shape) < np.uint64(thr)
    mask[...] = keep
    out[...] = np.where(keep, x * x.dtype.type(scale), x.dtype.type(0))
    return out


def dropout_backward_scaled(dout, mask, dx, scale, n_threads=1):
    """dx = dout * mask * scale."""
    dx[...] = np.where(mask != 0, dout * dout.dtype.type(scale), dout.dtype.type(0))
    return dx
