"""The compiled training plan against the per-layer path (its oracle), bit for bit."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from conftest import DTYPES
from fastnn import optim, regularization as R
from fastnn.layers import (BatchNorm, Dropout, LeakyReLU, Linear, Maxout, PReLU, ReLU, Sigmoid,
                           Tanh)
from fastnn.losses import (AttributeHinge, AttributeLogistic, HierarchicalSoftmax,
                           L1Regression, L2Regression, MulticlassSVM, SoftmaxCrossEntropy,
                           SquaredHingeSVM)
from fastnn.net import MLP, Sequential
from fastnn.plan import CompiledPlan, LayerPath, build_plan


def _layers(kind, dtype):
    """A small net of each layer type (fresh objects for every call, same seeds)."""
    d = dict(dtype=dtype)
    if kind == "linear":
        return [Linear(5, 8, activation="relu", seed=0, **d), Linear(8, 4, seed=1, **d)]
    if kind == "activations":
        return [Linear(5, 8, seed=0, **d), Tanh(**d), Linear(8, 8, seed=1, **d), Sigmoid(**d),
                Linear(8, 8, activation="leaky_relu", alpha=0.1, seed=2, **d),
                Linear(8, 4, seed=3, **d)]
    if kind == "standalone":       # activation layers that no Linear fuses
        return [Linear(5, 8, seed=0, **d), BatchNorm(8, **d), LeakyReLU(0.2, **d),
                ReLU(**d), Linear(8, 4, seed=1, **d)]
    if kind == "prelu":
        return [Linear(5, 8, seed=0, **d), PReLU(8, **d), Linear(8, 4, seed=1, **d)]
    if kind == "dropout":
        return [Linear(5, 8, activation="relu", seed=0, **d), Dropout(0.7, seed=3, **d),
                Linear(8, 8, activation="relu", seed=1, **d),
                Dropout(0.6, mode="vanilla", seed=4, **d), Linear(8, 4, seed=2, **d)]
    if kind == "batchnorm":
        return [Linear(5, 8, seed=0, **d), BatchNorm(8, momentum=0.8, **d), ReLU(**d),
                Linear(8, 4, seed=1, **d)]
    if kind == "maxout":
        return [Maxout(5, 6, k=3, seed=0, **d), Maxout(6, 4, k=2, seed=1, **d)]
    if kind == "input_dropout":    # the net's width comes from its first Linear
        return [Dropout(0.8, seed=5, **d), Linear(5, 8, activation="relu", seed=0, **d),
                Linear(8, 4, seed=1, **d)]
    raise AssertionError(kind)


LAYER_KINDS = ["linear", "activations", "standalone", "prelu", "dropout", "batchnorm",
               "maxout", "input_dropout"]


def _data(n=40, d=5, k=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def _train(plan_cls, layers, loss, X, y, *, steps, batch=None, optimizer="sgd",
           regularizer=None, seed=0, chunks=(1, 2, 3)):
    """Train a fresh net with plan_cls; returns (net, losses)."""
    net = Sequential(layers)
    batch = X.shape[0] if batch is None else batch
    opt = optim.get(optimizer) if isinstance(optimizer, str) else optimizer
    plan = plan_cls(net, loss, opt, regularizer, batch).bind(X, y)
    rng = np.random.default_rng(seed)
    losses, done, i = [], 0, 0
    while done < steps:                # uneven chunks: k steps per call must not matter
        k = min(chunks[i % len(chunks)], steps - done)
        idx = None if batch == X.shape[0] else rng.integers(0, X.shape[0], k * batch)
        losses.append(plan.run(k, idx)[0].copy())
        done += k
        i += 1
    return net, np.concatenate(losses), plan


def _assert_same_net(a, b):
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_array_equal(a.flat_grads, b.flat_grads)
    for la, lb in zip(a.layers, b.layers):
        for name in ("running_mean", "running_var", "step"):
            if hasattr(la, name):
                np.testing.assert_array_equal(getattr(la, name), getattr(lb, name))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_plan_equals_the_layer_path_bit_for_bit(kind, dtype):
    X, y = _data(dtype=dtype)
    a, la, plan = _train(CompiledPlan, _layers(kind, dtype), SoftmaxCrossEntropy(dtype=dtype),
                         X, y, steps=12)
    b, lb, _ = _train(LayerPath, _layers(kind, dtype), SoftmaxCrossEntropy(dtype=dtype),
                      X, y, steps=12)
    assert isinstance(plan, CompiledPlan)
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)
    assert la[-1] < la[0]                       # it trained
    assert not np.array_equal(a.flat_params, Sequential(_layers(kind, dtype)).flat_params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["linear", "dropout", "batchnorm", "maxout"])
def test_mini_batches_gathered_by_index_equal_the_layer_path(kind, dtype):
    X, y = _data(n=50, dtype=dtype)
    a, la, _ = _train(CompiledPlan, _layers(kind, dtype), SoftmaxCrossEntropy(dtype=dtype),
                      X, y, steps=15, batch=8)
    b, lb, _ = _train(LayerPath, _layers(kind, dtype), SoftmaxCrossEntropy(dtype=dtype),
                      X, y, steps=15, batch=8)
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)


def _loss_case(name, dtype, rng, n):
    if name == "softmax":
        return SoftmaxCrossEntropy(dtype=dtype), rng.integers(0, 4, n)
    if name == "svm":
        return MulticlassSVM(0.5, dtype=dtype), rng.integers(0, 4, n)
    if name == "squared_hinge":
        return SquaredHingeSVM(dtype=dtype), rng.integers(0, 4, n)
    if name == "attribute_hinge":
        return AttributeHinge(dtype=dtype), rng.choice([-1, 1], (n, 4))
    if name == "attribute_logistic":
        return AttributeLogistic(dtype=dtype), rng.integers(0, 2, (n, 4))
    if name == "l2":
        return L2Regression(dtype=dtype), rng.standard_normal((n, 4))
    if name == "l1":
        return L1Regression(dtype=dtype), rng.standard_normal((n, 4))
    if name == "hierarchical":
        return HierarchicalSoftmax(4, 7, seed=9, dtype=dtype), rng.integers(0, 7, n)
    raise AssertionError(name)


LOSSES = ["softmax", "svm", "squared_hinge", "attribute_hinge", "attribute_logistic", "l2",
          "l1", "hierarchical"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_runs_in_the_plan_bit_for_bit(name, dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 5)).astype(dtype)
    loss_a, y = _loss_case(name, dtype, rng, 30)
    loss_b, _ = _loss_case(name, dtype, np.random.default_rng(3), 30)
    a, la, _ = _train(CompiledPlan, _layers("linear", dtype), loss_a, X, y, steps=10, batch=10)
    b, lb, _ = _train(LayerPath, _layers("linear", dtype), loss_b, X, y, steps=10, batch=10)
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)
    if name == "hierarchical":     # its own parameters trained the same too
        np.testing.assert_array_equal(loss_a.W, loss_b.W)
        np.testing.assert_array_equal(loss_a.b, loss_b.b)
        assert not np.array_equal(loss_a.W, HierarchicalSoftmax(4, 7, seed=9, dtype=dtype).W)


REGULARIZERS = {
    "l2": lambda: R.L2(1e-2),
    "l1": lambda: R.L1(1e-2),
    "elastic": lambda: R.ElasticNet(1e-2, 1e-2),
    "max_norm": lambda: R.MaxNorm(0.5),
    "combined": lambda: [R.L2(1e-2), R.L1(1e-3), R.MaxNorm(0.7)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_every_regularizer_runs_in_the_plan_bit_for_bit(name, dtype):
    X, y = _data(dtype=dtype)

    def layers():
        ls = _layers("linear", dtype)
        ls[1].regularize_bias = True
        return ls
    a, la, _ = _train(CompiledPlan, layers(), SoftmaxCrossEntropy(dtype=dtype), X, y,
                      steps=8, regularizer=REGULARIZERS[name]())
    b, lb, _ = _train(LayerPath, layers(), SoftmaxCrossEntropy(dtype=dtype), X, y,
                      steps=8, regularizer=REGULARIZERS[name]())
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)


OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_runs_in_the_plan_bit_for_bit(name, dtype):
    X, y = _data(dtype=dtype)
    a, la, pa = _train(CompiledPlan, _layers("batchnorm", dtype),
                       SoftmaxCrossEntropy(dtype=dtype), X, y, steps=9,
                       optimizer=optim.get(name, lr=0.05))
    b, lb, pb = _train(LayerPath, _layers("batchnorm", dtype), SoftmaxCrossEntropy(dtype=dtype),
                       X, y, steps=9, optimizer=optim.get(name, lr=0.05))
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)
    for sa, sb in zip(pa.state, pb.state):
        np.testing.assert_array_equal(sa, sb)
    assert pa.t == pb.t == 9


def test_a_schedule_runs_in_the_plan():
    X, y = _data()
    sched = optim.StepDecay(rate=0.5, every=3)
    a, la, _ = _train(CompiledPlan, _layers("linear", np.float64), SoftmaxCrossEntropy(), X, y,
                      steps=10, optimizer=optim.SGD(lr=0.5, schedule=sched))
    b, lb, _ = _train(LayerPath, _layers("linear", np.float64), SoftmaxCrossEntropy(), X, y,
                      steps=10, optimizer=optim.SGD(lr=0.5, schedule=optim.StepDecay(0.5, 3)))
    _assert_same_net(a, b)
    c, _, _ = _train(CompiledPlan, _layers("linear", np.float64), SoftmaxCrossEntropy(), X, y,
                     steps=10, optimizer=optim.SGD(lr=0.5))
    assert not np.array_equal(a.flat_params, c.flat_params)     # the schedule took effect


def test_gradient_descent_runs_on_the_compiled_plan(monkeypatch):
    """gradient_descent builds a compiled plan (not the layer path) and gets the same bits."""
    from fastnn import trainer
    built = []
    real = trainer.build_plan

    def spy(*args, **kwargs):
        plan = real(*args, **kwargs)
        built.append(type(plan))
        return plan
    monkeypatch.setattr(trainer, "build_plan", spy)
    X, y = _data()
    net = MLP([5, 8, 4], seed=0)
    h = trainer.gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=20, step_size=0.5)
    assert built == [CompiledPlan]
    ref = MLP([5, 8, 4], seed=0)
    plan = LayerPath(ref, SoftmaxCrossEntropy(), optim.SGD(0.5), R.L2(1e-3), 40).bind(X, y)
    losses, _ = plan.run(20)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)
    np.testing.assert_array_equal(h.loss, losses)


# ---- refusals --------------------------------------------------------------------------

def test_plan_refuses_a_changed_architecture():
    X, y = _data()
    net = MLP([5, 8, 4], seed=0)
    plan = build_plan(net, SoftmaxCrossEntropy(), batch_size=40).bind(X, y)
    plan.run(1)
    net.layers[0].W[...] = 0.0            # a value: no rebuild needed
    plan.run(1)
    assert plan.matches(net, plan.loss, 40)
    net.layers.append(Linear(4, 4))       # the architecture: refused
    net._bind_parameters()
    assert not plan.matches(net, plan.loss, 40)
    with pytest.raises(RuntimeError, match="build a new plan"):
        plan.run(1)


def test_plan_refuses_wrong_data_and_indices():
    X, y = _data()
    plan = build_plan(MLP([5, 8, 4], seed=0), SoftmaxCrossEntropy(), batch_size=8)
    with pytest.raises(RuntimeError, match="bind"):
        plan.run(1, np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="X"):
        plan.bind(X[:, :3], y)
    with pytest.raises(ValueError, match="y"):
        plan.bind(X, y[:-1])
    with pytest.raises(ValueError, match="y"):
        plan.bind(X, y + 10)               # labels outside [0, K)
    plan.bind(X, y)
    with pytest.raises(ValueError, match="all 40 rows"):
        plan.run(1)                        # full batch but the plan's batch is 8
    with pytest.raises(ValueError, match="int64"):
        plan.run(2, np.zeros(8, np.int64))
    with pytest.raises(ValueError, match=r"indices\[0\] = 40 is not a row of the data set"):
        plan.run(1, np.full(8, 40, np.int64))
    with fastnn.use_backend("numpy"):          # the layer path says the same
        layers = build_plan(MLP([5, 8, 4], seed=0), SoftmaxCrossEntropy(),
                            batch_size=8).bind(X, y)
        with pytest.raises(ValueError, match=r"indices\[3\] = -1 is not a row"):
            layers.run(1, np.array([0, 1, 2, -1, 4, 5, 6, 7], np.int64))


def test_plan_refuses_what_it_cannot_run():
    from fastnn.layers import Layer

    class Identity(Layer):          # a user's own layer: the per-layer path only
        def _forward(self, x):
            return x

        def _backward(self, dout):
            return dout
    net = Sequential([Linear(5, 4), Identity()])
    with pytest.raises(ValueError, match="cannot run the layer Identity"):
        build_plan(net, SoftmaxCrossEntropy(), batch_size=4)
    with fastnn.use_backend("numpy"):             # the layer path runs it
        assert isinstance(build_plan(net, SoftmaxCrossEntropy(), batch_size=4), LayerPath)
    with pytest.raises(ValueError, match="cannot run the loss"):
        build_plan(Sequential([Linear(5, 4)]), _NotALoss(), batch_size=4)


class _NotALoss:
    """Has what a loss has, but is no fastnn loss the plan knows."""
    dtype = np.dtype(np.float64)
    params = {}


# ---- threads and allocation -------------------------------------------------------------

def test_whole_training_run_is_identical_at_1_and_2_threads():
    """784-256-10 with dropout in float32: the GEMMs are split on a shape-only grid and
    BLAS runs single-threaded, so the thread count changes no bit."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 784)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    idx = rng.integers(0, 512, 6 * 256)
    nets = []
    for nt in (1, 2):
        net = MLP([784, 256, 10], dropout=0.8, seed=0, dtype=np.float32)
        plan = build_plan(net, SoftmaxCrossEntropy(dtype=np.float32), optimizer="adam",
                          batch_size=256).bind(X, y)
        plan.run(6, idx, n_threads=nt)
        nets.append(net)
    np.testing.assert_array_equal(nets[0].flat_params, nets[1].flat_params)
    assert not np.array_equal(nets[0].flat_params,
                              MLP([784, 256, 10], dropout=0.8, seed=0,
                                  dtype=np.float32).flat_params)


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
static long long count = 0;
long long fnn_mallocs(void) { return count; }
void* malloc(size_t n) {
    static void* (*real)(size_t) = 0;
    if (!real) real = (void* (*)(size_t))dlsym(RTLD_NEXT, "malloc");
    __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    return real(n);
}
void* calloc(size_t a, size_t b) {
    static void* (*real)(size_t, size_t) = 0;
    if (!real) {            /* dlsym may calloc: serve it from a static buffer */
        static char buf[4096]; static int busy = 0;
        if (busy) { for (size_t i = 0; i < a * b && i < sizeof buf; i++) buf[i] = 0; return buf; }
        busy = 1; real = (void* (*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc"); busy = 0;
    }
    __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    return real(a, b);
}
void* realloc(void* p, size_t n) {
    static void* (*real)(void*, size_t) = 0;
    if (!real) real = (void* (*)(void*, size_t))dlsym(RTLD_NEXT, "realloc");
    __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    return real(p, n);
}
"""

CHILD = """
import ctypes, sys
import numpy as np
import fastnn
from fastnn.net import MLP
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.plan import build_plan
count = ctypes.CDLL(None).fnn_mallocs
count.restype = ctypes.c_longlong
nt = int(sys.argv[1])
c = count(); np.empty(1 << 20); assert count() > c, "the shim counts nothing"
rng = np.random.default_rng(0)
X = rng.standard_normal((300, 20)); y = rng.integers(0, 3, 300)
for batch, kw in ((300, {}), (32, dict(dropout=0.9, batch_norm=True))):
    net = MLP([20, 64, 64, 3], seed=0, **kw)
    plan = build_plan(net, SoftmaxCrossEntropy(), optimizer="adam", batch_size=batch).bind(X, y)
    out = np.empty(1001); dl = np.empty(1001)
    few = None if batch == 300 else rng.integers(0, 300, batch).astype(np.int64)
    many = None if batch == 300 else rng.integers(0, 300, 1001 * batch).astype(np.int64)
    plan.run(1, few, out, dl, n_threads=nt)                   # warm up
    c0 = count(); plan.run(1, few, out, dl, n_threads=nt); c1 = count()
    plan.run(1001, many, out, dl, n_threads=nt); c2 = count()
    print(batch, (c2 - c1) - (c1 - c0))     # 1,000 more steps, not one more malloc
"""


@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_steady_state_step_allocates_nothing(tmp_path, n_threads):
    """C-level malloc/calloc/realloc counted by a preloaded shim: 1,001 steps in one call
    make exactly as many allocations as 1 step (those are the call's own, in Python)."""
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    lib = tmp_path / "libshim.so"
    cc = os.environ.get("CC", "cc")
    try:
        subprocess.run([cc, "-shared", "-fPIC", "-O1", str(src), "-o", str(lib), "-ldl"],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot build the malloc-counting shim with {cc}: {exc}")
    env = dict(os.environ, LD_PRELOAD=str(lib))
    out = subprocess.run([sys.executable, "-c", CHILD, str(n_threads)], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split() for line in out.stdout.split("\n") if line.strip())
    assert lines == {"300": "0", "32": "0"}, out.stdout


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_the_numpy_backend_trains_every_layer_through_the_layer_path(kind):
    """On the NumPy backend build_plan gives the layer path, running the twins: the same
    training, to rounding, as the compiled plan."""
    X, y = _data()
    with fastnn.use_backend("numpy"):
        net = Sequential(_layers(kind, np.float64))
        plan = build_plan(net, SoftmaxCrossEntropy(), optimizer=optim.Adam(lr=0.01),
                          batch_size=8).bind(X, y)
        assert isinstance(plan, LayerPath)
        idx = np.random.default_rng(0).integers(0, 40, 10 * 8)
        twin_losses, _ = plan.run(10, idx)
    ref = Sequential(_layers(kind, np.float64))
    compiled = build_plan(ref, SoftmaxCrossEntropy(), optimizer=optim.Adam(lr=0.01),
                          batch_size=8).bind(X, y)
    losses, _ = compiled.run(10, idx)
    np.testing.assert_allclose(twin_losses, losses, rtol=1e-10)
    # atol: Adam divides by sqrt(v), so a parameter whose gradient is only rounding noise
    # (~1e-17) moves by ~1e-10 in a direction that the noise decides
    np.testing.assert_allclose(net.flat_params, ref.flat_params, rtol=1e-9, atol=1e-8)


def test_one_plan_runs_in_one_thread_at_a_time():
    import threading
    X, y = _data(n=512, d=5)
    plan = build_plan(MLP([5, 256, 256, 4], seed=0), SoftmaxCrossEntropy(),
                      batch_size=512).bind(X, y)
    errors = []

    def run():
        try:
            plan.run(200)
        except RuntimeError as exc:
            errors.append(str(exc))
    workers = [threading.Thread(target=run) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # either they did not overlap, or the second was refused: never a silent race
    assert all("already running" in e for e in errors)


# ---- per-row weights -------------------------------------------------------------------------

def _train_weighted(plan_cls, layers, loss, X, y, w, *, steps, batch, seed=0):
    net = Sequential(layers)
    plan = plan_cls(net, loss, optim.get("adam"), R.L2(1e-3), batch).bind(X, y, w)
    rng = np.random.default_rng(seed)
    losses = [plan.run(k, rng.integers(0, X.shape[0], k * batch))[1].copy()
              for k in (1, 2, 3, 4)]
    return net, np.concatenate(losses)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [n for n in LOSSES if n != "hierarchical"])
def test_weighted_rows_in_the_plan_equal_the_layer_path_bit_for_bit(name, dtype):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 5)).astype(dtype)
    loss_a, y = _loss_case(name, dtype, rng, 30)
    loss_b, _ = _loss_case(name, dtype, np.random.default_rng(4), 30)
    w = rng.uniform(0, 3, 30)
    w[:5] = 0                                  # rows that count for nothing
    a, la = _train_weighted(CompiledPlan, _layers("dropout", dtype), loss_a, X, y, w,
                            steps=10, batch=6)
    b, lb = _train_weighted(LayerPath, _layers("dropout", dtype), loss_b, X, y, w,
                            steps=10, batch=6)
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)
    # and the weights changed the run
    c, lc = _train_weighted(CompiledPlan, _layers("dropout", dtype), _loss_case(
        name, dtype, np.random.default_rng(4), 30)[0], X, y, None, steps=10, batch=6)
    assert not np.array_equal(a.flat_params, c.flat_params)


@pytest.mark.parametrize("plan_cls", [CompiledPlan, LayerPath])
def test_unit_weights_give_the_unweighted_bits(plan_cls):
    X, y = _data(n=40)
    a, la = _train_weighted(plan_cls, _layers("linear", np.float64), SoftmaxCrossEntropy(),
                            X, y, np.ones(40), steps=10, batch=8)
    b, lb = _train_weighted(plan_cls, _layers("linear", np.float64), SoftmaxCrossEntropy(),
                            X, y, None, steps=10, batch=8)
    _assert_same_net(a, b)
    np.testing.assert_array_equal(la, lb)


def test_weighted_step_is_the_weighted_mean_gradient():
    """One full-batch SGD step with weights equals the step on the weighted mean loss."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((12, 3)), rng.integers(0, 3, 12)
    w = rng.uniform(0, 2, 12)
    net = Sequential([Linear(3, 3, seed=0)])
    W0, b0 = net.layers[0].W.copy(), net.layers[0].b.copy()
    plan = build_plan(net, SoftmaxCrossEntropy(), optimizer=optim.SGD(lr=0.5),
                      batch_size=12).bind(X, y, w)
    _, data_loss = plan.run(1)
    s = X @ W0 + b0
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(data_loss[0], np.sum(w * -np.log(p[np.arange(12), y]))
                               / w.sum(), rtol=1e-12)
    ds = p.copy()
    ds[np.arange(12), y] -= 1
    ds *= (w / w.sum())[:, None]
    np.testing.assert_allclose(net.layers[0].W, W0 - 0.5 * X.T @ ds, rtol=1e-12)
    np.testing.assert_allclose(net.layers[0].b, b0 - 0.5 * ds.sum(0), rtol=1e-12)


def test_plan_refuses_bad_weights():
    X, y = _data(n=10)
    net = Sequential(_layers("linear", np.float64))
    plan = build_plan(net, SoftmaxCrossEntropy(), batch_size=5)
    with pytest.raises(ValueError, match="weights"):
        plan.bind(X, y, np.ones(9))
    with pytest.raises(ValueError, match="weights"):
        plan.bind(X, y, -np.ones(10))
    with pytest.raises(ValueError, match="weights"):
        plan.bind(X, y, np.full(10, np.nan))
    hs = HierarchicalSoftmax(4, 3, seed=0)
    with pytest.raises(ValueError, match="weights"):
        build_plan(net, hs, batch_size=5).bind(X, y % 3, np.ones(10))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_then_apply_equals_run_bit_for_bit(dtype, weighted):
    """The split step (fastnn.distributed's path at one rank and one block): gradient()
    then apply() is run(1), with penalties (added once, in apply), max-norm, Adam."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((90, 6)), rng.integers(0, 3, 90)
    w = rng.uniform(0.1, 2, 90) if weighted else None
    reg = [R.L2(1e-3), R.MaxNorm(2.0)]
    nets = [MLP([6, 12, 3], seed=1, dtype=dtype) for _ in range(2)]
    plans = [build_plan(n, SoftmaxCrossEntropy(), optimizer="adam", regularizer=reg,
                        batch_size=30).bind(X, y, w) for n in nets]
    idx = fastnn._plan.shuffled_rows(90, 90, 2, 5, 0)
    losses, _ = plans[0].run(6, idx)
    for s in range(6):
        rows = idx[s * 30:(s + 1) * 30]
        data_loss = plans[1].gradient(rows)
        assert data_loss + plans[1].apply() == losses[s]
    assert plans[1].t == plans[0].t == 6
    np.testing.assert_array_equal(nets[0].flat_params, nets[1].flat_params)
    np.testing.assert_array_equal(plans[0].state[0], plans[1].state[0])
