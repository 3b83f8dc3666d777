"""The optimizer kernels (sgd_update; optimizer_update and learning_rate over
src_c/_optim_core.pxd) against their twins, and the optimizers and schedules of
fastnn.optim."""
import math

import numpy as np
import pytest

import fastnn
from conftest import DTYPES
from fastnn import _kernels, _optim, _runtime, config, datasets, optim, reference
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn.optim import SGD

C, T = _kernels.COMPILED, _kernels.NUMPY


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 3), (300, 100), (4, 5, 6)])
def test_update_equals_the_twin_bit_for_bit(shape, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    a, b = w.copy(), w.copy()
    C.sgd_update(a, g, 0.37, 2)
    T.sgd_update(b, g, 0.37)
    # one multiply and one subtract per element, in the dtype, in both
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_does_not_depend_on_thread_count(dtype):
    rng = np.random.default_rng(1)
    n = 2 * _runtime.parallel_min_work()                # threaded on 2 threads
    w = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    one, two = w.copy(), w.copy()
    C.sgd_update(one, g, 0.1, 1)
    C.sgd_update(two, g, 0.1, 2)
    np.testing.assert_array_equal(one, two)


def test_update_rejects_bad_buffers():
    w, g = np.ones((3, 4)), np.ones((3, 4))
    with pytest.raises(ValueError, match="grad"):
        C.sgd_update(w, np.ones((4, 3)), 0.1, 1)
    with pytest.raises(TypeError, match="grad"):
        C.sgd_update(w, g.astype(np.float32), 0.1, 1)
    ro = np.ones((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        C.sgd_update(ro, g, 0.1, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        C.sgd_update(np.ones((4, 6))[:, ::2].copy(order="F"), g, 0.1, 1)


def test_sgd_steps_every_pair_and_validates_its_step_size(backend):
    w1, w2 = np.ones(3), np.full((2, 2), 2.0)
    SGD(0.5).step([(w1, np.ones(3)), (w2, np.full((2, 2), 2.0))])
    np.testing.assert_array_equal(w1, 0.5)
    np.testing.assert_array_equal(w2, 1.0)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="step_size"):
            SGD(bad)
    with pytest.raises(TypeError, match="step_size"):
        SGD("1")


# ---- the optimizer kernel: compiled vs twin, threads ----

NAMES = list(optim.OPTIMIZERS)
KINDS = [optim.OPTIMIZERS[name].kind for name in NAMES]


def _problem(kind, n, dtype, seed):
    """param, state arrays (caches and Adam's v non-negative, as they always are) and
    three gradients of n elements."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(dtype)
    states = [rng.standard_normal(n).astype(dtype) for _ in range(reference.OPT_N_STATE[kind])]
    if kind in (reference.OPT_ADAGRAD, reference.OPT_RMSPROP):
        states[0] = np.abs(states[0])
    if kind == reference.OPT_ADAM:
        states[1] = np.abs(states[1])
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    return w, states, grads


def _run(kernel, kind, w, states, grads, n_threads, hyper=(0.9, 0.999, 1e-8), lr=0.01,
         t0=1):
    """Three updates (steps t0, t0 + 1, t0 + 2) on copies; returns [param, *states]."""
    w = w.copy()
    states = [s.copy() for s in states]
    s1, s2 = (states + [None, None])[:2]
    for t, g in enumerate(grads, t0):
        kernel(kind, w, g, s1, s2, lr, *hyper, t, n_threads)
    return [w, *states]


def test_codes_agree_between_the_core_the_twins_and_the_classes():
    # the enum of _optim_core.pxd, fastnn.reference's copies and the classes' kinds
    assert _optim.OPTIMIZER_CODES == {name: optim.OPTIMIZERS[name].kind for name in NAMES}
    assert _optim.OPTIMIZER_CODES == {"sgd": reference.OPT_SGD,
                                      "momentum": reference.OPT_MOMENTUM,
                                      "nesterov": reference.OPT_NESTEROV,
                                      "adagrad": reference.OPT_ADAGRAD,
                                      "rmsprop": reference.OPT_RMSPROP,
                                      "adam": reference.OPT_ADAM}
    assert _optim.SCHEDULE_CODES == {
        "constant": optim.Constant.kind, "step": optim.StepDecay.kind,
        "exponential": optim.ExponentialDecay.kind,
        "inverse_time": optim.InverseTimeDecay.kind}
    assert [optim.OPTIMIZERS[n]().n_state for n in NAMES] == list(reference.OPT_N_STATE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS, ids=NAMES)
@pytest.mark.parametrize("n", [1, 7, 300 * 100, "threaded"])
def test_optimizer_update_equals_the_twin_bit_for_bit(kind, dtype, n):
    if n == "threaded":
        n = 2 * _runtime.parallel_min_work() + 3     # 2 threads, uneven chunks
    w, states, grads = _problem(kind, n, dtype, seed=kind)
    hyper = optim.OPTIMIZERS[NAMES[kind]](lr=0.01).hyper
    for t0 in (1, 1000):                              # Adam's bias correction near 0 and 1
        got = _run(C.optimizer_update, kind, w, states, grads, 2, hyper, t0=t0)
        want = _run(T.optimizer_update, kind, w, states, grads, 1, hyper, t0=t0)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        assert a.dtype == dtype
        assert not np.array_equal(got[0], w)          # something was updated


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS, ids=NAMES)
def test_optimizer_update_does_not_depend_on_thread_count(kind, dtype):
    n = 2 * _runtime.parallel_min_work() + 5          # threaded from 2 threads on
    w, states, grads = _problem(kind, n, dtype, seed=10 + kind)
    hyper = optim.OPTIMIZERS[NAMES[kind]](lr=0.01).hyper
    one = _run(C.optimizer_update, kind, w, states, grads, 1, hyper)
    for nt in (2, 3):
        for a, b in zip(one, _run(C.optimizer_update, kind, w, states, grads, nt, hyper)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_sgd_code_is_the_sgd_kernel(dtype):
    w, _, (g, _, _) = _problem(reference.OPT_SGD, 101, dtype, seed=3)
    a, b = w.copy(), w.copy()
    C.optimizer_update(reference.OPT_SGD, a, g, None, None, 0.37, 0.0, 0.0, 0.0, 1)
    C.sgd_update(b, g, 0.37)
    np.testing.assert_array_equal(a, b)


def test_optimizer_update_takes_any_shape_and_returns_param():
    g = np.full((3, 4), 2.0)
    for kernel in (C.optimizer_update, T.optimizer_update):
        w, m, v = np.ones((3, 4)), np.zeros((3, 4)), np.zeros((3, 4))
        out = kernel(reference.OPT_ADAM, w, g, m, v, 0.5, 0.9, 0.999, 1e-8, 1)
        assert out is w
        # step 1 of Adam moves every weight by lr * g / |g| (up to eps): 1 - 0.5
        np.testing.assert_allclose(w, 0.5, rtol=1e-8)


# ---- the first three steps of each optimizer, by hand ----
# w0 = [5, -5]; gradients [3, -6], [4, 8], [12, -24]; lr 0.5; decay factors 0.75 and
# 0.875 (exact in binary, and unlike 0.5 not equal to 1 - themselves, so a swapped
# mu / 1 - mu would show); eps 1e-8.  Expected values as the arithmetic, step by step.

W0 = [5.0, -5.0]
GRADS = [[3.0, -6.0], [4.0, 8.0], [12.0, -24.0]]


def _hand_sgd():
    # w -= 0.5 * g
    return optim.SGD(lr=0.5), [
        ([5 - 1.5, -5 + 3], {}),
        ([3.5 - 2, -2 - 4], {}),
        ([1.5 - 6, -6 + 12], {}),
    ]


def _hand_momentum():
    # v = 0.75 v - 0.5 g; w += v
    return optim.Momentum(lr=0.5, mu=0.75), [
        ([5 - 1.5, -5 + 3], {"v": [-1.5, 3.0]}),
        ([3.5 - 3.125, -2 - 1.75], {"v": [0.75 * -1.5 - 2, 0.75 * 3 - 4]}),
        ([0.375 - 8.34375, -3.75 + 10.6875],
         {"v": [0.75 * -3.125 - 6, 0.75 * -1.75 + 12]}),
    ]


def _hand_nesterov():
    # v_prev = v; v = 0.75 v - 0.5 g; w += -0.75 v_prev + 1.75 v (v as for momentum)
    return optim.Nesterov(lr=0.5, mu=0.75), [
        ([5 + 1.75 * -1.5, -5 + 1.75 * 3], {"v": [-1.5, 3.0]}),
        ([2.375 - 0.75 * -1.5 + 1.75 * -3.125, 0.25 - 0.75 * 3 + 1.75 * -1.75],
         {"v": [-3.125, -1.75]}),
        ([-1.96875 - 0.75 * -3.125 + 1.75 * -8.34375,
          -5.0625 - 0.75 * -1.75 + 1.75 * 10.6875],
         {"v": [-8.34375, 10.6875]}),
    ]


def _hand_adagrad():
    # cache += g*g (9, 25, 169 and 36, 100, 676: square roots 3, 5, 13 and 6, 10, 26);
    # w -= 0.5 g / (sqrt(cache) + 1e-8)
    w1 = [5 - 1.5 / (3 + 1e-8), -5 + 3 / (6 + 1e-8)]
    w2 = [w1[0] - 2 / (5 + 1e-8), w1[1] - 4 / (10 + 1e-8)]
    w3 = [w2[0] - 6 / (13 + 1e-8), w2[1] + 12 / (26 + 1e-8)]
    return optim.Adagrad(lr=0.5, eps=1e-8), [
        (w1, {"cache": [9.0, 36.0]}),
        (w2, {"cache": [9 + 16, 36 + 64]}),
        (w3, {"cache": [25 + 144, 100 + 576]}),
    ]


def _hand_rmsprop():
    # cache = 0.75 cache + 0.25 g*g; w -= 0.5 g / (sqrt(cache) + 1e-8)
    c1 = [0.25 * 9, 0.25 * 36]                              # 2.25, 9
    c2 = [0.75 * 2.25 + 0.25 * 16, 0.75 * 9 + 0.25 * 64]    # 5.6875, 22.75
    c3 = [0.75 * 5.6875 + 0.25 * 144, 0.75 * 22.75 + 0.25 * 576]
    w1 = [5 - 1.5 / (1.5 + 1e-8), -5 + 3 / (3 + 1e-8)]
    w2 = [w1[0] - 2 / (math.sqrt(5.6875) + 1e-8), w1[1] - 4 / (math.sqrt(22.75) + 1e-8)]
    w3 = [w2[0] - 6 / (math.sqrt(40.265625) + 1e-8),
          w2[1] + 12 / (math.sqrt(161.0625) + 1e-8)]
    return optim.RMSProp(lr=0.5, decay_rate=0.75, eps=1e-8), [
        (w1, {"cache": c1}), (w2, {"cache": c2}), (w3, {"cache": c3}),
    ]


def _hand_adam():
    # m = 0.75 m + 0.25 g; v = 0.875 v + 0.125 g*g;
    # w -= 0.5 (m / (1 - 0.75**t)) / (sqrt(v / (1 - 0.875**t)) + 1e-8)
    m1, v1 = [0.75, -1.5], [1.125, 4.5]
    m2 = [0.75 * 0.75 + 0.25 * 4, 0.75 * -1.5 + 0.25 * 8]            # 1.5625, 0.875
    v2 = [0.875 * 1.125 + 0.125 * 16, 0.875 * 4.5 + 0.125 * 64]       # 2.984375, 11.9375
    m3 = [0.75 * 1.5625 + 0.25 * 12, 0.75 * 0.875 + 0.25 * -24]       # 4.171875, -5.34375
    v3 = [0.875 * 2.984375 + 0.125 * 144, 0.875 * 11.9375 + 0.125 * 576]
    # bias corrections: 1 - 0.75 = 0.25, 1 - 0.5625 = 0.4375, 1 - 0.421875 = 0.578125;
    # 1 - 0.875 = 0.125, 1 - 0.765625 = 0.234375, 1 - 0.669921875 = 0.330078125
    w1 = [5 - 0.5 * (0.75 / 0.25) / (math.sqrt(1.125 / 0.125) + 1e-8),
          -5 - 0.5 * (-1.5 / 0.25) / (math.sqrt(4.5 / 0.125) + 1e-8)]
    w2 = [w1[0] - 0.5 * (1.5625 / 0.4375) / (math.sqrt(2.984375 / 0.234375) + 1e-8),
          w1[1] - 0.5 * (0.875 / 0.4375) / (math.sqrt(11.9375 / 0.234375) + 1e-8)]
    w3 = [w2[0] - 0.5 * (4.171875 / 0.578125)
          / (math.sqrt(20.611328125 / 0.330078125) + 1e-8),
          w2[1] - 0.5 * (-5.34375 / 0.578125)
          / (math.sqrt(82.4453125 / 0.330078125) + 1e-8)]
    return optim.Adam(lr=0.5, beta1=0.75, beta2=0.875, eps=1e-8), [
        (w1, {"m": m1, "v": v1}), (w2, {"m": m2, "v": v2}), (w3, {"m": m3, "v": v3}),
    ]


HAND = {"sgd": _hand_sgd, "momentum": _hand_momentum, "nesterov": _hand_nesterov,
        "adagrad": _hand_adagrad, "rmsprop": _hand_rmsprop, "adam": _hand_adam}


@pytest.mark.parametrize("name", NAMES)
def test_first_three_steps_match_the_hand_computation(name, backend):
    opt, steps = HAND[name]()
    w = np.array(W0)
    state = opt.init_state(2, np.float64)
    for t, (g, (want_w, want_state)) in enumerate(zip(GRADS, steps), 1):
        opt.update(w, np.array(g), state, t)
        np.testing.assert_allclose(w, want_w, rtol=1e-15, atol=0)
        assert set(want_state) == set(opt.state_names)
        for s, sname in zip(state, opt.state_names):
            np.testing.assert_allclose(s, want_state[sname], rtol=1e-15, atol=0)


# ---- schedules ----

@pytest.mark.parametrize("schedule, lr0, want", [
    (optim.Constant(), 0.3, {0: 0.3, 1: 0.3, 1000: 0.3}),
    # floor(t / 3) halvings
    (optim.StepDecay(0.5, every=3), 0.8, {0: 0.8, 2: 0.8, 3: 0.4, 5: 0.4, 6: 0.2, 10: 0.1}),
    (optim.StepDecay(rate=0.1, every=1), 1.0, {0: 1.0, 1: 0.1, 2: 0.1 * 0.1}),
    (optim.ExponentialDecay(0.1), 2.0, {0: 2.0, 10: 2.0 * math.exp(-1.0),
                                        30: 2.0 * math.exp(-3.0)}),
    # 3 / (1 + 0.5 t)
    (optim.InverseTimeDecay(0.5), 3.0, {0: 3.0, 2: 1.5, 6: 0.75, 10: 0.5}),
], ids=repr)
def test_schedules_match_hand_values(schedule, lr0, want, backend):
    bound = schedule.bind(lr0)
    for t, lr in want.items():
        assert bound(t) == pytest.approx(lr, rel=1e-15, abs=0)
    # on its own a schedule starts at 1: the factor applied to an optimizer's lr
    assert schedule(0) == 1.0


def test_learning_rate_kernel_equals_its_twin_bit_for_bit():
    rng = np.random.default_rng(5)
    for kind in range(reference.N_SCHED):
        for _ in range(200):
            lr0 = float(rng.uniform(1e-4, 1.0))
            rate = float(rng.uniform(0.01, 1.0))
            every, t = int(rng.integers(1, 50)), int(rng.integers(0, 10 ** 6))
            assert C.learning_rate(kind, lr0, rate, every, t) == \
                T.learning_rate(kind, lr0, rate, every, t)


def test_an_optimizer_uses_its_schedule_from_the_first_step(backend):
    # step t runs at schedule(t - 1): 1, 0.5, 0.25 with g = 1 every time
    opt = optim.SGD(lr=1.0, schedule=optim.StepDecay(0.5, every=1))
    assert opt.schedule.lr0 == 1.0 and opt.schedule.params == (0.5, 1)
    w = np.zeros(3)
    for _ in range(3):
        opt.step([(w, np.ones(3))])
    np.testing.assert_array_equal(w, -(1.0 + 0.5 + 0.25))
    assert opt.t == 3


# ---- bad arguments ----

def _valid_update_args():
    return dict(kind=reference.OPT_ADAM, param=np.zeros(4), grad=np.ones(4),
                state1=np.zeros(4), state2=np.zeros(4), lr=0.1, h1=0.9, h2=0.999,
                eps=1e-8, t=1)


def _read_only():
    a = np.zeros(4)
    a.flags.writeable = False
    return a


BAD_UPDATES = [
    ({"kind": 6}, ValueError, "kind"),
    ({"kind": -1}, ValueError, "kind"),
    ({"param": np.zeros(4, np.int64)}, TypeError, "param"),
    ({"grad": np.ones(4, np.float32)}, TypeError, "grad"),
    ({"grad": np.ones(5)}, ValueError, "grad"),
    ({"state1": np.zeros(5)}, ValueError, "state1"),
    ({"state2": np.zeros(4, np.float32)}, TypeError, "state2"),
    ({"state2": None}, ValueError, "state2"),
    ({"kind": reference.OPT_MOMENTUM}, ValueError, "state2"),     # a state too many
    ({"kind": reference.OPT_SGD}, ValueError, "state1"),
    ({"param": np.zeros(8)[::2]}, ValueError, "C-contiguous"),
    ({"state1": _read_only()}, ValueError, "writeable"),
    ({"param": np.zeros(4, ">f8")}, ValueError, "byte order"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"h1": 1.0}, ValueError, "h1"),
    ({"h2": -0.5}, ValueError, "h2"),
    ({"h2": float("inf")}, ValueError, "h2"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"t": 0}, ValueError, "t"),
]


@pytest.mark.parametrize("change, exc, match", BAD_UPDATES, ids=lambda v: str(v)[:40])
def test_optimizer_update_rejects_bad_arguments_naming_them(change, exc, match):
    for kernel in (C.optimizer_update, T.optimizer_update):     # both backends alike
        args = {**_valid_update_args(), **change}
        with pytest.raises(exc, match=match):
            kernel(**args)


@pytest.mark.parametrize("alias", ["grad", "state1", "state2"])
def test_optimizer_update_rejects_overlapping_buffers(alias):
    for kernel in (C.optimizer_update, T.optimizer_update):
        args = _valid_update_args()
        buf = np.zeros(5)
        args["param"] = buf[:4]
        args[alias] = buf[1:]                       # partial overlap with param
        with pytest.raises(ValueError, match="share memory"):
            kernel(**args)
        args = _valid_update_args()
        args["state2"] = args["state1"]
        with pytest.raises(ValueError, match="state1 must not share memory with state2"):
            kernel(**args)


@pytest.mark.parametrize("args, exc, match", [
    ((4, 1.0, 0.5, 1, 0), ValueError, "kind"),
    ((0, -1.0, 0.5, 1, 0), ValueError, "lr0"),
    ((1, 1.0, 0.0, 1, 0), ValueError, "rate"),
    ((1, 1.0, 1.5, 1, 0), ValueError, "rate"),
    ((2, 1.0, -0.1, 1, 0), ValueError, "rate"),
    ((3, 1.0, float("nan"), 1, 0), ValueError, "rate"),
    ((1, 1.0, 0.5, 0, 0), ValueError, "every"),
    ((0, 1.0, 0.5, 1, -1), ValueError, "t"),
])
def test_learning_rate_rejects_bad_arguments_naming_them(args, exc, match):
    for kernel in (C.learning_rate, T.learning_rate):
        with pytest.raises(exc, match=match):
            kernel(*args)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: optim.Adam(lr=0.0), ValueError, "lr"),
    (lambda: optim.Momentum(lr="0.1"), TypeError, "lr"),
    (lambda: optim.SGD(lr=-1.0), ValueError, "lr"),
    (lambda: optim.SGD(1.0, lr=1.0), TypeError, "step_size or lr"),
    (lambda: optim.Momentum(mu=1.0), ValueError, "mu"),
    (lambda: optim.Nesterov(mu=-0.1), ValueError, "mu"),
    (lambda: optim.RMSProp(decay_rate=1.0), ValueError, "decay_rate"),
    (lambda: optim.RMSProp(eps=0.0), ValueError, "eps"),
    (lambda: optim.Adagrad(eps=float("nan")), ValueError, "eps"),
    (lambda: optim.Adam(beta1=1.0), ValueError, "beta1"),
    (lambda: optim.Adam(beta2=-0.1), ValueError, "beta2"),
    (lambda: optim.Adam(schedule="step"), TypeError, "schedule"),
    (lambda: optim.StepDecay(0.5), TypeError, "every"),
    (lambda: optim.StepDecay(0.0, every=2), ValueError, "rate"),
    (lambda: optim.StepDecay(1.5, every=2), ValueError, "rate"),
    (lambda: optim.StepDecay(0.5, every=0), ValueError, "every"),
    (lambda: optim.ExponentialDecay(-0.1), ValueError, "rate"),
    (lambda: optim.InverseTimeDecay(float("inf")), ValueError, "rate"),
    (lambda: optim.Constant()(-1), ValueError, "t"),
    (lambda: optim.get("adamw"), ValueError, "optimizer"),
    (lambda: optim.get(3), TypeError, "optimizer"),
    (lambda: optim.get(optim.Adam(), lr=0.1), TypeError, "keyword"),
    (lambda: optim.get("adam", mu=0.9), TypeError, "mu"),
    (lambda: optim.Adam().init_state(-1, np.float64), ValueError, "size"),
    (lambda: optim.Adam().init_state(3, np.int32), TypeError, "dtype"),
    (lambda: optim.Adam().update(np.zeros(2), np.ones(2), (np.zeros(2),), 1),
     ValueError, "state"),
    (lambda: optim.Adam().update(np.zeros(2), np.ones(2), (np.zeros(2),) * 2, 0),
     ValueError, "t"),
    (lambda: optim.Adam().step([(np.zeros(2), np.ones(3))]), ValueError, "params_and_grads"),
    (lambda: optim.Adam().step([(np.zeros(2), [1.0, 1.0])]), TypeError, "grad"),
], ids=lambda v: "" if callable(v) else str(v))
def test_the_python_api_rejects_bad_arguments_naming_them(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ---- the Python API ----

def test_get_builds_by_name_and_passes_instances_through():
    adam = optim.Adam()
    assert optim.get(adam) is adam
    opt = optim.get("RMSProp", lr=0.01, decay_rate=0.9)
    assert isinstance(opt, optim.RMSProp) and opt.lr == 0.01 and opt.decay_rate == 0.9
    assert type(optim.get("nesterov")) is optim.Nesterov


def test_defaults_and_what_a_plan_reads():
    adam = optim.Adam()
    assert (adam.lr, adam.hyper, adam.n_state, adam.state_names) == \
        (1e-3, (0.9, 0.999, 1e-8), 2, ("m", "v"))
    assert optim.RMSProp().hyper == (0.99, 0.0, 1e-8)
    assert optim.Adagrad().hyper == (0.0, 0.0, 1e-8)
    assert optim.Momentum().hyper == optim.Nesterov().hyper == (0.9, 0.0, 0.0)
    assert optim.SGD().lr == optim.SGD().step_size == 1e-3 and optim.SGD().n_state == 0
    assert isinstance(adam.schedule, optim.Constant) and adam.schedule.lr0 == 1e-3
    m, v = adam.init_state(5, np.float32)
    assert m.shape == v.shape == (5,) and m.dtype == np.float32 and not m.any()
    assert m is not v and not np.shares_memory(m, v)


def test_reprs_show_the_settings():
    assert repr(optim.SGD(0.5)) == "SGD(step_size=0.5)"
    assert repr(optim.Adam(schedule=optim.StepDecay(0.5, every=10))) == (
        "Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, "
        "schedule=StepDecay(rate=0.5, every=10))")
    assert repr(optim.Nesterov(lr=0.1, mu=0.5)) == "Nesterov(lr=0.1, mu=0.5)"
    assert repr(optim.RMSProp()) == "RMSProp(lr=0.001, decay_rate=0.99, eps=1e-08)"
    assert repr(optim.Adagrad(schedule=optim.InverseTimeDecay(0.1))) == (
        "Adagrad(lr=0.001, eps=1e-08, schedule=InverseTimeDecay(rate=0.1))")
    assert repr(optim.ExponentialDecay(0.25)) == "ExponentialDecay(rate=0.25)"


@pytest.mark.parametrize("name", NAMES)
def test_step_on_arrays_equals_update_on_their_flat_concatenation(name, backend):
    # what a training plan does (all parameters in one flat array) gives exactly what
    # step() gives array by array: the update is element-wise
    rng = np.random.default_rng(7)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    grads = [(rng.standard_normal((3, 4)), rng.standard_normal(4)) for _ in range(3)]
    by_array = optim.get(name, lr=0.05)
    flat_opt = optim.get(name, lr=0.05)
    flat = np.concatenate([W.ravel(), b])
    state = flat_opt.init_state(flat.size, flat.dtype)
    for t, (dW, db) in enumerate(grads, 1):
        by_array.step([(W, dW), (b, db)])
        flat_opt.update(flat, np.concatenate([dW.ravel(), db]), state, t)
    np.testing.assert_array_equal(flat, np.concatenate([W.ravel(), b]))
    saved = by_array.state_dict()["state"]
    for i, sname in enumerate(by_array.state_names):
        np.testing.assert_array_equal(
            state[i], np.concatenate([saved[0][sname].ravel(), saved[1][sname]]))


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_state_dict_round_trip_resumes_exactly(name):
    rng = np.random.default_rng(8)
    w = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(5)]
    straight = optim.get(name, lr=0.1)
    a = w.copy()
    for g in grads:
        straight.step([(a, g)])
    first = optim.get(name, lr=0.1)
    b = w.copy()
    for g in grads[:3]:
        first.step([(b, g)])
    checkpoint = first.state_dict()
    assert checkpoint["t"] == 3 and checkpoint["optimizer"] == type(first).__name__
    first.step([(b.copy(), grads[3])])              # the checkpoint is a copy: unmoved
    resumed = optim.get(name, lr=0.1)
    resumed.load_state_dict(checkpoint)
    for g in grads[3:]:
        resumed.step([(b, g)])
    np.testing.assert_array_equal(a, b)
    assert resumed.t == 5


def test_load_state_dict_rejects_a_mismatch():
    adam = optim.Adam()
    adam.step([(np.zeros(3), np.ones(3))])
    with pytest.raises(ValueError, match="Adam"):
        optim.RMSProp().load_state_dict(adam.state_dict())
    bad = adam.state_dict()
    del bad["state"][0]["v"]
    with pytest.raises(ValueError, match="keys"):
        optim.Adam().load_state_dict(bad)
    bad = adam.state_dict()
    bad["t"] = -1
    with pytest.raises(ValueError, match="t"):
        optim.Adam().load_state_dict(bad)


def test_step_keeps_state_per_position_and_refuses_a_changed_list():
    opt = optim.Momentum(lr=0.5, mu=0.75)
    w1, w2 = np.zeros(2), np.zeros((2, 2))
    opt.step([(w1, np.ones(2)), (w2, np.full((2, 2), 2.0))])
    opt.step([(w1, np.ones(2)), (w2, np.full((2, 2), 2.0))])
    # each array's own velocity: v = -0.5 g, then 0.75 v - 0.5 g
    np.testing.assert_array_equal(w1, -0.5 - (0.75 * -0.5 - 0.5) * -1)
    np.testing.assert_array_equal(w2, -1.0 + (0.75 * -1.0 - 1.0))
    with pytest.raises(ValueError, match="pairs"):
        opt.step([(w1, np.ones(2))])
    with pytest.raises(ValueError, match="changed"):
        opt.step([(w2, np.ones((2, 2))), (w1, np.ones(2))])
    with pytest.raises(TypeError, match=r"params_and_grads\[1\].*grad"):
        opt.step([(w1, np.ones(2)), (w2, np.ones((2, 2), np.float32))])
    assert opt.t == 2                               # refused steps do not count


def test_update_runs_the_active_backend_on_the_configured_threads(monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args)

    monkeypatch.setattr(config, "_n_threads", 3)
    monkeypatch.setattr(_kernels.NUMPY, "optimizer_update", spy)
    with fastnn.use_backend("numpy"):
        optim.Adam(lr=0.2).update(np.zeros(2), np.ones(2), (np.zeros(2), np.zeros(2)), 4)
    (kind, _, _, _, _, lr, h1, h2, eps, t, n_threads), = calls
    assert (kind, lr, h1, h2, eps, t, n_threads) == (reference.OPT_ADAM, 0.2, 0.9, 0.999,
                                                     1e-8, 4, 3)


# ---- the optimizers minimize ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, lr", [("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05),
                                      ("adagrad", 0.5), ("rmsprop", 0.05), ("adam", 0.1)])
def test_each_optimizer_minimizes_an_ill_conditioned_quadratic(name, lr, dtype, backend):
    # f(w) = 0.5 sum(a (w - c)**2), curvatures 1 to 10; grad a (w - c)
    a = np.linspace(1.0, 10.0, 20).astype(dtype)
    c = np.linspace(-1.0, 1.0, 20).astype(dtype)
    w = np.zeros(20, dtype)
    opt = optim.get(name, lr=lr)

    def f(w):
        return 0.5 * float(np.sum(a * (w - c) ** 2, dtype=np.float64))

    f0 = f(w)
    for _ in range(300):
        opt.step([(w, a * (w - c))])
    assert f(w) < 1e-3 * f0
    assert w.dtype == dtype


@pytest.mark.parametrize("name, lr", [("momentum", 0.1), ("adam", 0.01), ("rmsprop", 0.01)])
def test_an_optimizer_trains_a_small_net(name, lr, backend):
    X, y = datasets.spiral(30, 3, seed=1)
    net = MLP([2, 32, 3], seed=2)
    loss = SoftmaxCrossEntropy()
    opt = optim.get(name, lr=lr)
    pairs = [(p, g) for _, _, p, g in net.parameters()]
    first = loss.forward(net.forward(X), y)
    for _ in range(100):
        loss.forward(net.forward(X), y)
        net.backward(loss.backward())
        opt.step(pairs)
    assert loss.forward(net.forward(X), y) < 0.7 * first
