"""The row-streamed step of a two-layer net (src_c/fastnn_two_layer.inc), which the plan
takes for the spiral's kind of net, against the plan's op loop and the per-layer path:
bit for bit, and proven to have run (the plan counts the steps that took it)."""
import numpy as np
import pytest

from conftest import DTYPES
from fastnn import optim, regularization as R
from fastnn.layers import Dropout, Linear
from fastnn.losses import MulticlassSVM, SoftmaxCrossEntropy
from fastnn.net import Sequential
from fastnn.plan import CompiledPlan, LayerPath


def _net(d, h, k, dtype, act="relu", alpha=0.0):
    kw = {"alpha": alpha} if act == "leaky_relu" else {}
    return Sequential([Linear(d, h, activation=act, seed=0, dtype=dtype, **kw),
                       Linear(h, k, seed=1, dtype=dtype)])


def _data(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def _train(plan_cls, net, X, y, *, batch, steps=6, stream=True, n_threads=1, loss=None,
           weights=None):
    dtype = net.layers[0].W.dtype
    loss = SoftmaxCrossEntropy(dtype=dtype) if loss is None else loss
    plan = plan_cls(net, loss, optim.Momentum(0.3, 0.9), R.L2(1e-3), batch)
    plan.bind(X, y, weights)
    if plan_cls is CompiledPlan:
        plan._plan.stream = stream
    rng = np.random.default_rng(1)
    idx = None if batch == X.shape[0] else rng.integers(0, X.shape[0], steps * batch)
    kw = {"n_threads": n_threads} if plan_cls is CompiledPlan else {}
    losses = plan.run(steps, idx, **kw)[0].copy()
    return losses, plan


def _same(a, b):
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_array_equal(a.flat_grads, b.flat_grads)


# hidden widths with and without vector tails (4 or 8 lanes), classes 1..8, batches
# with partial row blocks (16 rows a block)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h,k,n,batch", [(100, 3, 300, 300), (100, 3, 300, 32),
                                         (8, 1, 17, 17), (9, 2, 40, 15), (13, 8, 33, 33),
                                         (31, 5, 50, 16), (257, 4, 64, 1), (16, 7, 20, 20)])
@pytest.mark.parametrize("act,alpha", [("relu", 0.0), ("leaky_relu", 0.1)])
def test_streamed_step_equals_the_op_loop_and_the_layer_path(dtype, h, k, n, batch, act,
                                                             alpha):
    X, y = _data(n, 2, k, dtype)
    nets = [_net(2, h, k, dtype, act, alpha) for _ in range(3)]
    la, pa = _train(CompiledPlan, nets[0], X, y, batch=batch)
    lb, pb = _train(CompiledPlan, nets[1], X, y, batch=batch, stream=False)
    lc, _ = _train(LayerPath, nets[2], X, y, batch=batch)
    assert pa._plan.two_layer and pa._plan.streamed_steps == 6     # it ran, every step
    assert pb._plan.streamed_steps == 0
    _same(nets[0], nets[1])
    _same(nets[0], nets[2])
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(la, lc)
    np.testing.assert_array_equal(pa._plan.output(), pb._plan.output())    # the scores
    assert np.isfinite(la).all() and la[-1] != la[0]


def test_the_spiral_net_takes_the_streamed_step():
    from fastnn.datasets import spiral
    X, y = spiral(seed=0)
    net = _net(2, 100, 3, np.float64)
    _, plan = _train(CompiledPlan, net, X, y, batch=X.shape[0], steps=3)
    assert plan._plan.streamed_steps == 3


@pytest.mark.parametrize("layers,why", [
    (lambda: [Linear(3, 10, activation="relu", seed=0), Linear(10, 3, seed=1)], "3 inputs"),
    (lambda: [Linear(2, 10, activation="tanh", seed=0), Linear(10, 3, seed=1)], "tanh"),
    (lambda: [Linear(2, 10, activation="relu", seed=0), Linear(10, 9, seed=1)], "9 classes"),
    (lambda: [Linear(2, 8, activation="relu", seed=0), Linear(8, 8, seed=1)], "8 and 8"),
    (lambda: [Linear(2, 10, activation="relu", seed=0), Dropout(0.5, seed=2),
              Linear(10, 3, seed=1)], "dropout"),
    (lambda: [Linear(2, 10, activation="relu", seed=0), Linear(10, 3, activation="relu",
                                                               seed=1)], "scores activated"),
])
def test_other_nets_take_the_op_loop(layers, why):
    X, y = _data(20, layers()[0].W.shape[0], 3, np.float64)
    _, plan = _train(CompiledPlan, Sequential(layers()), X, y, batch=20)
    assert not plan._plan.two_layer, why
    assert plan._plan.streamed_steps == 0


def test_a_margin_loss_takes_the_op_loop():
    X, y = _data(20, 2, 3, np.float64)
    _, plan = _train(CompiledPlan, _net(2, 10, 3, np.float64), X, y, batch=20,
                     loss=MulticlassSVM())
    assert not plan._plan.two_layer and plan._plan.streamed_steps == 0


def test_weighted_rows_and_many_threads_on_a_large_batch_take_the_op_loop_same_bits():
    # per-row weights scale dscores between the loss and the backward: the op loop's job
    X, y = _data(40, 2, 3, np.float64)
    w = np.random.default_rng(2).uniform(0, 2, 40)
    nets = [_net(2, 12, 3, np.float64) for _ in range(2)]
    la, pa = _train(CompiledPlan, nets[0], X, y, batch=40, weights=w)
    lb, _ = _train(LayerPath, nets[1], X, y, batch=40, weights=w)
    assert pa._plan.two_layer and pa._plan.streamed_steps == 0
    _same(*nets)
    np.testing.assert_array_equal(la, lb)
    # a batch whose hidden layer is worth threads: the op loop at 2 threads, the streamed
    # step at 1, the same bits
    X, y = _data(3000, 2, 3, np.float32)
    nets = [_net(2, 100, 3, np.float32) for _ in range(2)]
    la, pa = _train(CompiledPlan, nets[0], X, y, batch=3000, steps=2, n_threads=2)
    lb, pb = _train(CompiledPlan, nets[1], X, y, batch=3000, steps=2, n_threads=1)
    assert pa._plan.streamed_steps == 0 and pb._plan.streamed_steps == 2
    _same(*nets)
    np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("h,k,batch,applies", [
    (8, 3, 10, True), (7, 3, 10, False),                   # at least 8 hidden units
    (512, 8, 10, True), (513, 8, 10, False),               # H * K <= 4096 (W2' on the stack)
    (100, 8, 5242, True), (100, 8, 5243, False),           # B * H * K < 2**22: no BLAS
    (100, 1, 20971, True), (100, 1, 20972, False),         # ... and B * H * 2 (the first layer)
])
def test_the_streamed_step_applies_exactly_where_the_layer_path_runs_the_same_loops(
        h, k, batch, applies):
    X, y = _data(batch, 2, k, np.float32)
    plan = CompiledPlan(_net(2, h, k, np.float32), SoftmaxCrossEntropy(dtype=np.float32),
                        optim.SGD(0.1), None, batch)
    assert plan._plan.two_layer == applies


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_then_apply_and_switching_paths_between_steps_keep_the_bits(dtype):
    X, y = _data(40, 2, 3, dtype)
    nets = [_net(2, 13, 3, dtype) for _ in range(2)]
    plans = [CompiledPlan(net, SoftmaxCrossEntropy(dtype=dtype), optim.Momentum(0.3, 0.9),
                          R.L2(1e-3), 40).bind(X, y) for net in nets]
    for step in range(4):
        plans[0]._plan.stream = step % 2 == 0          # streamed, op loop, streamed, ...
        plans[0].gradient(n_threads=1)
        plans[0].apply(n_threads=1)
        plans[1]._plan.stream = False
        plans[1].run(1, n_threads=1)
    assert plans[0]._plan.streamed_steps == 2 and plans[1]._plan.streamed_steps == 0
    _same(*nets)
