"""Optimizers and learning-rate schedules: parameter updates, in place, on the caller's
arrays (CS231n's formulas).

Updates at step t = 1, 2, ... (lr from the schedule; state named in brackets):

``SGD``        ``w -= lr * g``  (no state)
``Momentum``   ``v = mu*v - lr*g;  w += v``  [v]
``Nesterov``   ``v_prev = v;  v = mu*v - lr*g;  w += -mu*v_prev + (1 + mu)*v``  [v]
``Adagrad``    ``cache += g*g;  w -= lr*g / (sqrt(cache) + eps)``  [cache]
``RMSProp``    ``cache = d*cache + (1 - d)*g*g;  w -= lr*g / (sqrt(cache) + eps)``
               with d = decay_rate  [cache]
``Adam``       ``m = b1*m + (1 - b1)*g;  v = b2*v + (1 - b2)*g*g;``
               ``w -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``  [m, v]

Every element is computed in the arrays' dtype (float32 or float64) by the compiled
kernel ``optimizer_update`` (or its NumPy twin, which matches it bit for bit).  State
arrays start at zero and have the parameter's size and dtype.

Two ways to drive an optimizer:

* ``step(pairs)`` with a list of (param, grad) arrays of any shape: one step of every
  pair, with state kept per position in the list (the list must keep its order);
* ``update(param, grad, state, t)`` on arrays the caller owns (a training plan keeping
  all parameters in one flat array): ``state = opt.init_state(size, dtype)`` once, then
  one call per step with t = 1, 2, ...  ``kind``, ``hyper``, ``n_state`` and
  ``schedule.kind``/``schedule.params``/``lr`` are what a compiled caller passes to
  ``optimizer_update_core``/``schedule_lr`` of ``src_c/_optim_core.pxd``.

Schedules give the learning rate after t updates (t = 0 for the first step):
``Constant()``, ``StepDecay(rate, every)``: ``lr * rate**floor(t / every)``,
``ExponentialDecay(rate)``: ``lr * exp(-rate*t)``, ``InverseTimeDecay(rate)``:
``lr / (1 + rate*t)``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from . import _kernels, config, reference
from ._validation import check_positive_int, check_scalar, float_dtype

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SGD", "Momentum", "Nesterov", "Adagrad", "RMSProp", "Adam", "Optimizer",
           "Schedule", "Constant", "StepDecay", "ExponentialDecay", "InverseTimeDecay",
           "get"]


# ---- learning-rate schedules ----

class Schedule:
    """Base class of the learning-rate schedules.

    ``kind``: the schedule code (src_c/_optim_core.pxd); ``params``: (rate, every) as the
    kernel takes them; ``lr0``: the initial learning rate, 1.0 for a schedule on its own
    (it then gives the factor applied to the rate) and an optimizer's ``lr`` once given
    to it (see :meth:`bind`).  ``schedule(t)`` is the learning rate after t >= 0 updates.
    """

    kind: int | None = None

    def __init__(self, rate: float = 0.0, every: int = 1) -> None:
        self._rate = float(rate)
        self._every = int(every)
        self._lr0 = 1.0

    @property
    def params(self) -> tuple[float, int]:
        """(rate, every): a float and an int >= 1, in the learning_rate kernel's order."""
        return (self._rate, self._every)

    @property
    def lr0(self) -> float:
        """The learning rate at t = 0."""
        return self._lr0

    def bind(self, lr0: float) -> Self:
        """A copy of this schedule starting from learning rate lr0 (> 0)."""
        lr0 = check_scalar(lr0, "lr0", low=0.0, low_open=True)
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._lr0 = lr0
        return other

    def __call__(self, t: int) -> float:
        """The learning rate after t updates (t: int >= 0), a Python float."""
        t = check_positive_int(t, "t", minimum=0)
        rate, every = self.params
        return _kernels.backend().learning_rate(self.kind, self._lr0, rate, every, t)

    def __eq__(self, other):
        return (type(other) is type(self) and other.params == self.params
                and other.lr0 == self.lr0)

    def __hash__(self):
        return hash((type(self), self.params, self.lr0))


class Constant(Schedule):
    """The same learning rate at every step."""

    kind = reference.SCHED_CONSTANT

    def __init__(self) -> None:
        super().__init__()

    def __repr__(self):
        return "Constant()"


class StepDecay(Schedule):
    """lr0 * rate**floor(t / every): the rate is multiplied by ``rate`` every ``every``
    updates.  rate: in (0, 1], default 0.5; every: int >= 1, required."""

    kind = reference.SCHED_STEP

    def __init__(self, rate: float = 0.5, every: int | None = None) -> None:
        rate = check_scalar(rate, "rate", low=0.0, high=1.0, low_open=True)
        super().__init__(rate, check_positive_int(every, "every"))

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def every(self) -> int:
        return self._every

    def __repr__(self):
        return f"StepDecay(rate={self._rate!r}, every={self._every})"


class _RateDecay(Schedule):
    """A decay with one rate (finite, >= 0) applied at every step."""

    def __init__(self, rate: float) -> None:
        super().__init__(check_scalar(rate, "rate", low=0.0))

    @property
    def rate(self) -> float:
        return self._rate

    def __repr__(self):
        return f"{type(self).__name__}(rate={self._rate!r})"


class ExponentialDecay(_RateDecay):
    """lr0 * exp(-rate * t).  rate: finite, >= 0."""

    kind = reference.SCHED_EXPONENTIAL


class InverseTimeDecay(_RateDecay):
    """lr0 / (1 + rate * t) (the notes' 1/t decay).  rate: finite, >= 0."""

    kind = reference.SCHED_INVERSE_TIME


# ---- optimizers ----

def _unit(value, name):
    """A decay factor (mu, decay_rate, beta1, beta2): finite, in [0, 1)."""
    return check_scalar(value, name, low=0.0, high=1.0, high_open=True)


def _positive(value, name):
    return check_scalar(value, name, low=0.0, low_open=True)


class Optimizer:
    """Base class.  Subclasses set ``kind`` (the code of src_c/_optim_core.pxd),
    ``state_names`` and their hyperparameters.

    Attributes
    ----------
    lr : float, the initial learning rate (> 0)
    schedule : Schedule, bound to ``lr`` (``schedule(t)`` is the rate of step t + 1)
    hyper : (h1, h2, eps), the kernel's hyperparameter arguments (0.0 where unused)
    n_state : 0, 1 or 2, the state arrays per parameter array
    state_names : names of those arrays, e.g. ("m", "v")
    t : steps taken by :meth:`step` so far
    """

    kind: int | None = None
    state_names: tuple[str, ...] = ()
    _lr_repr_name = "lr"

    def __init__(self, lr: float, schedule: Schedule | None, lr_name: str = "lr") -> None:
        self._lr = _positive(lr, lr_name)
        if schedule is None:
            schedule = Constant()
        if not isinstance(schedule, Schedule):
            raise TypeError("schedule must be None or a fastnn.optim schedule (Constant, "
                            "StepDecay, ExponentialDecay, InverseTimeDecay), got "
                            f"{type(schedule).__name__}")
        self._schedule = schedule.bind(self._lr)
        self.t = 0
        # per position in step()'s list: a tuple of arrays
        self._states: list[tuple[np.ndarray, ...]] = []

    @property
    def lr(self) -> float:
        return self._lr

    def set_lr(self, lr: float) -> None:
        """Change the base learning rate; the schedule continues from it (at the current
        step count).  Plans built from this optimizer need ``plan.set_lr`` as well."""
        self._lr = _positive(lr, "lr")
        self._schedule = self._schedule.bind(self._lr)

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def hyper(self) -> tuple[float, float, float]:
        """(h1, h2, eps) as optimizer_update takes them."""
        return (0.0, 0.0, 0.0)

    @property
    def n_state(self) -> int:
        return len(self.state_names)

    def init_state(self, size: int, dtype: DTypeLike) -> tuple[np.ndarray, ...]:
        """A tuple of ``n_state`` zero arrays of shape (size,) and the given dtype
        (float32 or float64): the optimizer's state for ``size`` parameters."""
        size = check_positive_int(size, "size", minimum=0)
        dtype = float_dtype(dtype, "dtype")
        return tuple(np.zeros(size, dtype) for _ in self.state_names)

    def update(self, param: np.ndarray, grad: np.ndarray,
               state: tuple[np.ndarray, ...] | list[np.ndarray], t: int) -> np.ndarray:
        """Step t (1-based) of one array, in place on param and the state arrays.

        param, grad: C-contiguous float32/float64 arrays of one shape and dtype (flat
        for a training plan); state: a tuple of ``n_state`` arrays of that shape and
        dtype (:meth:`init_state`), apart from each other and from grad.  The learning
        rate is ``schedule(t - 1)``.  Returns param."""
        t = check_positive_int(t, "t")
        if not isinstance(state, (tuple, list)) or len(state) != self.n_state:
            raise ValueError(f"state must be a tuple of {self.n_state} arrays "
                             f"{self.state_names} for {type(self).__name__}, got {state!r:.80}")
        s1 = state[0] if self.n_state >= 1 else None
        s2 = state[1] if self.n_state >= 2 else None
        h1, h2, eps = self.hyper
        return _kernels.backend().optimizer_update(
            self.kind, param, grad, s1, s2, self._schedule(t - 1), h1, h2, eps, t,
            config._n_threads)

    def step(self, params_and_grads: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """One step of every (param, grad) pair, in place (any shapes).  State is kept
        per position in the list, so pass the same arrays in the same order each time.

        The kernel checks each pair as it comes to it: a pair it refuses raises (naming
        its position) with the pairs before it already updated and ``t`` not advanced."""
        pairs = params_and_grads if isinstance(params_and_grads, list) else \
            list(params_and_grads)
        states = self._states
        if self.n_state and len(states) != len(pairs):
            if states:
                raise ValueError(f"params_and_grads has {len(pairs)} pairs, but this "
                                 f"optimizer holds state for {len(states)}")
            states = self._new_states(pairs)
        t = self.t + 1
        # one learning rate, kernel and thread count for the whole step: this runs every
        # training step, for every parameter array
        lr = self._lr if self._schedule.kind == reference.SCHED_CONSTANT else \
            self._schedule(t - 1)
        kernel = _kernels.backend().optimizer_update
        h1, h2, eps = self.hyper
        kind, n_threads = self.kind, config._n_threads
        for i, pair in enumerate(pairs):
            try:
                param, grad = pair
                s1, s2 = (states[i] + (None, None))[:2] if self.n_state else (None, None)
                if s1 is not None and (s1.shape != param.shape or s1.dtype != param.dtype):
                    raise ValueError(f"its state is {s1.shape} {s1.dtype}, the param "
                                     f"{param.shape} {param.dtype}: the list changed "
                                     "between steps")
                kernel(kind, param, grad, s1, s2, lr, h1, h2, eps, t, n_threads)
            except (TypeError, ValueError, AttributeError) as exc:
                kind_of = ValueError if isinstance(exc, ValueError) else TypeError
                raise kind_of(f"params_and_grads[{i}]: {exc}") from exc
        self._states = states
        self.t = t

    def _new_states(self, pairs):
        """Zero state shaped like each param (views of init_state's flat arrays)."""
        states = []
        for i, pair in enumerate(pairs):
            param = pair[0] if isinstance(pair, (tuple, list)) and len(pair) == 2 else None
            if not isinstance(param, np.ndarray):
                raise TypeError(f"params_and_grads[{i}] must be a (param, grad) pair of "
                                "numpy arrays")
            states.append(tuple(s.reshape(param.shape) for s in
                                self.init_state(param.size, param.dtype)))
        return states

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of what :meth:`step` keeps: {"optimizer": class name, "t": steps
        taken, "state": one dict {state name: array copy} per position}."""
        return {"optimizer": type(self).__name__, "t": self.t,
                "state": [{name: a.copy() for name, a in zip(self.state_names, s)}
                          for s in self._states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an optimizer of the same class (arrays copied)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = {"optimizer", "t", "state"} - state_dict.keys()
        if missing:
            raise ValueError(f"state_dict lacks {sorted(missing)}")
        if state_dict["optimizer"] != type(self).__name__:
            raise ValueError(f"state_dict is of a {state_dict['optimizer']!r} optimizer, "
                             f"not {type(self).__name__}")
        t = check_positive_int(state_dict["t"], "state_dict['t']", minimum=0)
        entries = state_dict["state"]
        if not isinstance(entries, (list, tuple)):
            raise TypeError("state_dict['state'] must be a list of dicts")
        states = []
        for i, entry in enumerate(entries):
            where = f"state_dict['state'][{i}]"
            if not isinstance(entry, dict) or set(entry) != set(self.state_names):
                raise ValueError(f"{where} must be a dict with keys {self.state_names}")
            arrays: list[np.ndarray] = []
            for name in self.state_names:
                a = entry[name]
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{where}[{name!r}] must be a numpy array")
                float_dtype(a.dtype, f"{where}[{name!r}]")
                first = arrays[0] if arrays else a
                if a.shape != first.shape or a.dtype != first.dtype:
                    raise ValueError(f"{where}: the state arrays differ in shape or dtype")
                arrays.append(np.array(a, order="C", copy=True))
            states.append(tuple(arrays))
        self._states = states
        self.t = t

    def _repr_args(self):
        return ""

    def __repr__(self):
        sched = "" if isinstance(self._schedule, Constant) else \
            f", schedule={self._schedule!r}"
        return (f"{type(self).__name__}({self._lr_repr_name}={self._lr!r}"
                f"{self._repr_args()}{sched})")


class SGD(Optimizer):
    """Vanilla gradient descent: ``w -= lr * g``.  No state.

    step_size (or lr=, the name the other optimizers use; give one): > 0, default 1e-3.
    schedule: a Schedule, default Constant()."""

    kind = reference.OPT_SGD
    state_names = ()
    _lr_repr_name = "step_size"        # as before the other optimizers came

    def __init__(self, step_size: float | None = None, *, schedule: Schedule | None = None,
                 lr: float | None = None) -> None:
        if step_size is not None and lr is not None:
            raise TypeError("give step_size or lr, not both")
        if lr is not None:
            super().__init__(lr, schedule, "lr")
        else:
            super().__init__(1e-3 if step_size is None else step_size, schedule,
                             "step_size")

    @property
    def step_size(self) -> float:
        """The learning rate under the notes' name for it."""
        return self._lr


class Momentum(Optimizer):
    """Momentum update: ``v = mu*v - lr*g; w += v``.  State: v.

    lr: > 0, default 1e-3; mu: in [0, 1), default 0.9; schedule: default Constant()."""

    kind = reference.OPT_MOMENTUM
    state_names = ("v",)

    def __init__(self, lr: float = 1e-3, mu: float = 0.9, *,
                 schedule: Schedule | None = None) -> None:
        super().__init__(lr, schedule)
        self._mu = _unit(mu, "mu")

    @property
    def mu(self) -> float:
        return self._mu

    @property
    def hyper(self) -> tuple[float, float, float]:
        return (self._mu, 0.0, 0.0)

    def _repr_args(self):
        return f", mu={self._mu!r}"


class Nesterov(Momentum):
    """Nesterov momentum in the notes' form: ``v_prev = v; v = mu*v - lr*g;
    w += -mu*v_prev + (1 + mu)*v``.  State: v.

    lr: > 0, default 1e-3; mu: in [0, 1), default 0.9; schedule: default Constant()."""

    kind = reference.OPT_NESTEROV


class Adagrad(Optimizer):
    """Adagrad: ``cache += g*g; w -= lr*g / (sqrt(cache) + eps)``.  State: cache.

    lr: > 0, default 1e-3; eps: > 0, default 1e-8; schedule: default Constant()."""

    kind = reference.OPT_ADAGRAD
    state_names = ("cache",)

    def __init__(self, lr: float = 1e-3, eps: float = 1e-8, *,
                 schedule: Schedule | None = None) -> None:
        super().__init__(lr, schedule)
        self._eps = _positive(eps, "eps")

    @property
    def eps(self) -> float:
        return self._eps

    @property
    def hyper(self) -> tuple[float, float, float]:
        return (0.0, 0.0, self._eps)

    def _repr_args(self):
        return f", eps={self._eps!r}"


class RMSProp(Optimizer):
    """RMSProp: ``cache = decay_rate*cache + (1 - decay_rate)*g*g;
    w -= lr*g / (sqrt(cache) + eps)``.  State: cache.

    lr: > 0, default 1e-3; decay_rate: in [0, 1), default 0.99; eps: > 0, default 1e-8;
    schedule: default Constant()."""

    kind = reference.OPT_RMSPROP
    state_names = ("cache",)

    def __init__(self, lr: float = 1e-3, decay_rate: float = 0.99, eps: float = 1e-8, *,
                 schedule: Schedule | None = None) -> None:
        super().__init__(lr, schedule)
        self._decay_rate = _unit(decay_rate, "decay_rate")
        self._eps = _positive(eps, "eps")

    @property
    def decay_rate(self) -> float:
        return self._decay_rate

    @property
    def eps(self) -> float:
        return self._eps

    @property
    def hyper(self) -> tuple[float, float, float]:
        return (self._decay_rate, 0.0, self._eps)

    def _repr_args(self):
        return f", decay_rate={self._decay_rate!r}, eps={self._eps!r}"


class Adam(Optimizer):
    """Adam with bias correction: ``m = beta1*m + (1-beta1)*g;
    v = beta2*v + (1-beta2)*g*g; w -= lr * (m / (1-beta1**t)) / (sqrt(v / (1-beta2**t))
    + eps)`` at step t = 1, 2, ...  State: m, v.

    lr: > 0, default 1e-3; beta1, beta2: in [0, 1), defaults 0.9 and 0.999; eps: > 0,
    default 1e-8; schedule: default Constant()."""

    kind = reference.OPT_ADAM
    state_names = ("m", "v")

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, schedule: Schedule | None = None) -> None:
        super().__init__(lr, schedule)
        self._beta1 = _unit(beta1, "beta1")
        self._beta2 = _unit(beta2, "beta2")
        self._eps = _positive(eps, "eps")

    @property
    def beta1(self) -> float:
        return self._beta1

    @property
    def beta2(self) -> float:
        return self._beta2

    @property
    def eps(self) -> float:
        return self._eps

    @property
    def hyper(self) -> tuple[float, float, float]:
        return (self._beta1, self._beta2, self._eps)

    def _repr_args(self):
        return f", beta1={self._beta1!r}, beta2={self._beta2!r}, eps={self._eps!r}"


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": Adagrad,
    "rmsprop": RMSProp, "adam": Adam}


def get(optimizer: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An optimizer from its name ("sgd", "momentum", "nesterov", "adagrad", "rmsprop",
    "adam"; any case), built with ``kwargs``, or an optimizer instance (returned as is,
    and then no kwargs)."""
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise TypeError("keyword arguments go with an optimizer name, not an instance "
                            f"(got {sorted(kwargs)})")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or a fastnn.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    try:
        cls = OPTIMIZERS[optimizer.lower()]
    except KeyError:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, "
                         f"got {optimizer!r}") from None
    return cls(**kwargs)
