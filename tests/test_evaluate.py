"""The compiled loss evaluator, the compiled numerical gradient of whole nets and the
gradient check, against their NumPy twins (the per-layer path's forward pass)."""
import numpy as np
import pytest

import fastnn
from conftest import DTYPES
from fastnn import case_study, datasets, regularization as R
from fastnn.evaluate import build_evaluator, reference_losses
from fastnn.gradcheck import (analytic_gradient, check_directions, check_gradients,
                              net_numerical_gradient, numerical_gradient)
from fastnn.layers import Linear
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import Sequential
from test_plan import LAYER_KINDS, LOSSES, REGULARIZERS, _layers, _loss_case

# Tolerance: none.  The evaluator calls the plan's nogil cores in the plan's order, and
# those cores are what the per-layer path's kernels call (the plan equals the layer
# path bit for bit); every core's reductions run over fixed blocks in a fixed order, so
# the thread count changes no bit; the penalties are summed in the step's order and the
# total is data_loss + reg_loss as a step forms it.  So the evaluator's losses equal the
# twin's exactly, and so do the finite differences built on them.


def _net(kind, dtype, scale=1.0):
    net = Sequential(_layers(kind, dtype))
    if scale != 1.0:        # weights large enough that the gradients are not ~0
        rng = np.random.default_rng(5)
        net.flat_params[...] += (scale * rng.standard_normal(net.flat_params.size)
                                 ).astype(dtype)
    return net


def _points(net, m, seed=0):
    rng = np.random.default_rng(seed)
    return (net.flat_params + 0.1 * rng.standard_normal((m, net.flat_params.size))
            ).astype(net.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_losses_equal_the_layer_path_and_do_not_depend_on_threads(kind, dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5)).astype(dtype)
    y = rng.integers(0, 4, 30)
    net = _net(kind, dtype)
    before = [a.copy() for a in (net.flat_params, net.flat_grads)]
    stats = [l.running_mean.copy() for l in net.layers if hasattr(l, "running_mean")]
    ev = build_evaluator(net, SoftmaxCrossEntropy(dtype=dtype), X, y, regularizer=R.L2(1e-2))
    P = _points(net, 7)
    one = ev.losses(P, n_threads=1)
    assert one.dtype == np.float64 and one.shape == (7,)
    np.testing.assert_array_equal(one, ev.losses(P, n_threads=2))
    np.testing.assert_array_equal(one, ev.losses(P, n_threads=5))
    twin = reference_losses(net, SoftmaxCrossEntropy(dtype=dtype), X, y, P,
                            regularizer=R.L2(1e-2))
    np.testing.assert_array_equal(one, twin)
    # nothing shared was written: weights, gradients, running statistics
    np.testing.assert_array_equal(net.flat_params, before[0])
    np.testing.assert_array_equal(net.flat_grads, before[1])
    for s, l in zip(stats, [l for l in net.layers if hasattr(l, "running_mean")]):
        np.testing.assert_array_equal(s, l.running_mean)


def _loss_problem(name, dtype, n):
    """n rows of 5 features, loss `name` with its targets, the small linear net."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 5)).astype(dtype)
    loss, y = _loss_case(name, dtype, rng, n)
    return X, loss, y, _net("linear", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_evaluates_like_the_layer_path(name, dtype):
    X, loss, y, net = _loss_problem(name, dtype, 30)
    ev = build_evaluator(net, loss, X, y)
    P = _points(net, 5)
    np.testing.assert_array_equal(ev.losses(P, n_threads=2),
                                  reference_losses(net, loss, X, y, P))


@pytest.mark.parametrize("n_classes", [3, 2049])
def test_softmax_evaluates_like_the_layer_path_narrow_and_wide(n_classes):
    """The evaluator takes the softmax's row losses without its gradient, except for
    rows wider than a softmax block (2048 classes), which go through the full kernel:
    both equal the layer path's losses bit for bit."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((6, 5)), rng.integers(0, n_classes, 6)
    net = Sequential([Linear(5, n_classes, seed=0)])
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y)
    P = _points(net, 3)
    np.testing.assert_array_equal(ev.losses(P),
                                  reference_losses(net, SoftmaxCrossEntropy(), X, y, P))


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_every_regularizer_evaluates_like_the_layer_path(name):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 4, 30)
    layers = _layers("linear", np.float64)
    layers[1].regularize_bias = True
    layers[0].regularizer = R.L1(3e-3)        # a layer's own regularizer wins
    net = Sequential(layers)
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y, regularizer=REGULARIZERS[name]())
    P = _points(net, 4)
    np.testing.assert_array_equal(
        ev.losses(P), reference_losses(net, SoftmaxCrossEntropy(), X, y, P,
                                       regularizer=REGULARIZERS[name]()))


def test_a_step_reports_the_evaluators_loss():
    """The total loss a compiled plan's step reports at the weights it starts from."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 4, 30)
    net = _net("batchnorm", np.float64)
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y, regularizer=1e-2)
    expected = ev.value()
    plan = fastnn.plan.build_plan(net, SoftmaxCrossEntropy(), regularizer=1e-2,
                                  batch_size=30).bind(X, y)
    assert plan.run(1)[0][0] == expected


def test_evaluator_refuses_bad_params():
    X, y = datasets.spiral(10, 3)
    net = case_study.two_layer_net(2, 5, 3, seed=0)
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y)
    assert ev.n_params == net.flat_params.size
    with pytest.raises(TypeError, match="params"):
        ev.losses(net.flat_params.astype(np.float32))
    with pytest.raises(ValueError, match="params"):
        ev.losses(np.zeros((2, ev.n_params + 1)))
    with pytest.raises(ValueError, match="params"):
        ev.losses(np.full((1, ev.n_params), np.nan))
    with pytest.raises(TypeError, match="params"):
        ev.losses([0.0] * ev.n_params)
    with pytest.raises(ValueError, match="n_threads"):
        ev.losses(net.flat_params, n_threads=0)
    assert ev.losses(net.flat_params).shape == (1,)      # one vector, one row
    # the twin refuses the same
    loss = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"params must have shape \(m, \d+\)"):
        reference_losses(net, loss, X, y, np.zeros((2, ev.n_params + 1)))
    with pytest.raises(ValueError, match="finite"):
        reference_losses(net, loss, X, y, np.full(ev.n_params, np.inf))


# ---- the numerical gradient of a whole net ---------------------------------------------

def _python_loop(net, loss, X, y, regularizer, h, method):
    """The notes' loop: perturb one element of the flat parameters, re-run the forward
    pass, the loss and the penalties (the twin), for every element."""
    x = net.flat_params

    def f(_):
        return reference_losses(net, loss, X, y, x, regularizer=regularizer)[0]
    return numerical_gradient(f, x, h, method)


@pytest.mark.parametrize("method", ["centered", "forward", "fourth_order"])
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_numerical_gradient_equals_the_python_loop(kind, method):
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((12, 5)), rng.integers(0, 4, 12)
    net = _net(kind, np.float64)
    loss, reg = SoftmaxCrossEntropy(), [R.L2(1e-2), R.L1(1e-3)]
    want = _python_loop(net, loss, X, y, reg, 1e-5, method)
    for nt in (1, 2):
        got = net_numerical_gradient(net, loss, X, y, regularizer=reg, method=method,
                                     n_threads=nt)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_numerical_gradient_of_every_loss_equals_the_python_loop(name, dtype):
    X, loss, y, net = _loss_problem(name, dtype, 10)
    h = 1e-5 if dtype == np.float64 else 1e-2
    want = _python_loop(net, loss, X, y, None, h, "centered")
    np.testing.assert_array_equal(
        net_numerical_gradient(net, loss, X, y, h=h, n_threads=2), want)


def test_spiral_numerical_gradient_equals_the_python_loop():
    X, y = datasets.spiral(100, 3)
    net = case_study.two_layer_net(2, 100, 3, seed=0)
    want = _python_loop(net, SoftmaxCrossEntropy(), X, y, 1e-3, 1e-5, "centered")
    one = net_numerical_gradient(net, SoftmaxCrossEntropy(), X, y, regularizer=1e-3,
                                 n_threads=1)
    np.testing.assert_array_equal(one, want)
    np.testing.assert_array_equal(
        net_numerical_gradient(net, SoftmaxCrossEntropy(), X, y, regularizer=1e-3,
                               n_threads=2), one)
    some = net_numerical_gradient(net, SoftmaxCrossEntropy(), X, y, regularizer=1e-3,
                                  indices=[602, 0, 250])
    np.testing.assert_array_equal(some, one[[602, 0, 250]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hidden,activation", [(20, "relu"), (37, "leaky_relu"),
                                                 (64, "relu"), (8, "relu")])
def test_re_running_columns_and_lanes_gives_the_whole_ops_bits(n_hidden, activation, dtype):
    """An affine op with <= 8 inputs feeding one with <= 8 outputs re-runs its perturbed
    column and the next op's lane sums that column changes ("lanes"); the next op, the
    one lane sum of one output column that its weight changes ("lane", none for its
    bias).  Both give the bits of re-running whole ops, and count the same
    kinks: hidden widths with and without a scalar tail after whole vectors of either
    dtype (37: 1 past 36 doubles, 5 past 32 floats; 8: one vector of floats), and 45 rows
    (not a whole number of vectors)."""
    X, y = datasets.spiral(15, 3)
    X = X.astype(dtype)
    net = case_study.two_layer_net(2, n_hidden, 3, seed=0, activation=activation,
                                   dtype=dtype)
    ev = build_evaluator(net, SoftmaxCrossEntropy(dtype=dtype), X, y, regularizer=1e-3)
    assert ev._ev.column_modes == ["lanes", "lane"]
    idx = np.arange(ev.n_params, dtype=np.int64)
    h = 1e-2          # large enough that some ReLU switches sides (kinks to count)
    ev._ev.use_columns(False)
    assert ev._ev.column_modes == ["whole", "whole"]
    kinks_whole = np.zeros(idx.size, np.uint8)
    whole = ev._numerical(net.flat_params, idx, h, True, kinks_whole, 1)
    ev._ev.use_columns(True)
    kinks = np.zeros(idx.size, np.uint8)
    np.testing.assert_array_equal(ev._numerical(net.flat_params, idx, h, True, kinks, 2),
                                  whole)
    np.testing.assert_array_equal(kinks, kinks_whole)
    assert kinks.any()


def test_switching_column_modes_on_the_same_workspaces():
    """Workspaces built while whole re-runs were asked for still hold the lane caches
    when columns are switched back on (the same thread count: no rebuild)."""
    X, y = datasets.spiral(10, 3)
    net = case_study.two_layer_net(2, 16, 3, seed=0)
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y)
    idx = np.arange(ev.n_params, dtype=np.int64)
    ev._ev.use_columns(False)
    whole = ev._numerical(net.flat_params, idx, 1e-5, True, None, 1)
    ev._ev.use_columns(True)
    assert ev._ev.column_modes == ["lanes", "lane"]
    np.testing.assert_array_equal(ev._numerical(net.flat_params, idx, 1e-5, True, None, 1),
                                  whole)


def test_lanes_only_where_the_next_op_re_runs_a_column():
    """The first op of 2 -> 20 -> 20 -> 3 feeds an op with 20 outputs (a whole re-run),
    so it re-runs whole too; the last op, 3 outputs, re-runs one column."""
    X, y = datasets.spiral(10, 3)
    net = Sequential([Linear(2, 20, activation="relu", seed=0),
                      Linear(20, 20, activation="relu", seed=1), Linear(20, 3, seed=2)])
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, y)
    assert ev._ev.column_modes == ["whole", "whole", "column"]


def test_numerical_gradient_refuses_bad_input():
    X, y = datasets.spiral(10, 3)
    net = case_study.two_layer_net(2, 5, 3, seed=0)
    args = (net, SoftmaxCrossEntropy(), X, y)
    for h in (0.0, -1e-5, np.inf, np.nan):
        with pytest.raises(ValueError, match="h"):
            net_numerical_gradient(*args, h=h)
    with pytest.raises(ValueError, match="method"):
        net_numerical_gradient(*args, method="backward")
    with pytest.raises(ValueError, match="indices"):
        net_numerical_gradient(*args, indices=[net.flat_params.size])
    with pytest.raises(TypeError, match="params"):
        net_numerical_gradient(*args, params=net.flat_params.astype(np.float32))
    net32 = case_study.two_layer_net(2, 5, 3, seed=0, dtype=np.float32)
    with pytest.raises(ValueError, match="resolution"):
        net_numerical_gradient(net32, SoftmaxCrossEntropy(dtype=np.float32), X, y,
                               h=1e-12)


# ---- the gradient check ----------------------------------------------------------------

@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_check_gradients_passes_every_layer(kind):
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 4, 16)
    net = _net(kind, np.float64, scale=0.5)
    report = check_gradients(net, SoftmaxCrossEntropy(), X, y, reg=1e-2)
    # a bias feeding a batch norm has gradient 0 (its relative error is noise): nothing
    # there to check, and the report says so instead of "good"
    feeds_norm = {(i, "b") for i in range(len(net.layers) - 1)
                  if type(net.layers[i + 1]).__name__ == "BatchNorm"}
    for c in report.checks:
        assert c.verdict == ("unchecked" if (c.layer, c.param) in feeds_norm else "good"), \
            str(report)
    assert report.verdict == ("unchecked" if feeds_norm else "good")
    names = [(c.layer, c.param) for c in report.checks]
    assert len(names) == sum(len(l.params) for l in net.layers if l.params)


@pytest.mark.parametrize("name", LOSSES)
def test_check_gradients_passes_every_loss(name):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((16, 5))
    loss, y = _loss_case(name, np.float64, rng, 16)
    net = _net("linear", np.float64, scale=0.5)
    report = check_gradients(net, loss, X, y, regularizer=[R.L2(1e-2), R.L1(1e-3)])
    assert report.verdict == "good", str(report)


def _plant(monkeypatch, change):
    """A planted backprop bug: every Linear's backward, then change(layer) on its
    gradients (undone by monkeypatch)."""
    original = Linear._backward

    def planted(self, dout, input_grad=None):
        out = original(self, dout, input_grad)
        change(self)
        return out
    monkeypatch.setattr(Linear, "_backward", planted)


def test_check_gradients_flags_a_planted_wrong_gradient(monkeypatch):
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 4, 16)
    net = _net("linear", np.float64, scale=0.5)

    def one_bias(layer):
        if layer is net.layers[1]:
            layer.db[0] *= 1.01         # a 1% error in one bias
    _plant(monkeypatch, one_bias)
    report = check_gradients(net, SoftmaxCrossEntropy(), X, y)
    by = {(c.layer, c.param): c for c in report.checks}
    assert by[(1, "b")].verdict in ("check", "wrong")
    assert by[(1, "b")].worst == (0,)
    assert by[(0, "W")].verdict == "good"
    assert report.verdict != "good"
    text = str(report)
    assert "1:Linear" in text and "b" in text
    d = report.to_dict()
    assert d["verdict"] == report.verdict and len(d["checks"]) == 4


def test_kinks_are_counted_where_a_relu_switches():
    # the spiral's first point of each class is the origin, where every hidden unit's
    # input is its bias: perturbing a (zero) bias moves it across the ReLU's kink
    X, y = datasets.spiral(100, 3)
    net = case_study.two_layer_net(2, 100, 3, seed=0)
    report = check_gradients(net, SoftmaxCrossEntropy(), X, y)
    by = {(c.layer, c.param): c for c in report.checks}
    assert by[(0, "b")].n_kinks == 100
    assert by[(1, "W")].n_kinks == 0 and by[(1, "b")].n_kinks == 0
    # every bias element is at a kink: nothing in it was checked, and the report says so
    assert by[(0, "b")].verdict == "unchecked" and report.verdict == "unchecked"
    assert "unchecked: every element" in str(report)


def test_a_wrong_gradient_no_element_resolves_is_not_called_good(monkeypatch):
    """float32: the rounding bound swallows a gradient twice too large; the verdict is
    "unchecked", never "good"."""
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((64, 5)), rng.integers(0, 4, 64)
    net = _net("linear", np.float32, scale=0.5)

    def doubled(layer):
        layer.dW *= 2
        layer.db *= 2
    _plant(monkeypatch, doubled)
    loss = SoftmaxCrossEntropy(dtype=np.float32)
    report = check_gradients(net, loss, X, y)
    assert report.max_rel_error > 0.3 and report.verdict != "good", str(report)
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            check_gradients(net, loss, X, y, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            check_directions(net, loss, X, y, eps=eps)


def test_analytic_gradient_leaves_the_net_as_it_was():
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 4, 16)
    net = _net("dropout", np.float64)
    before = (net.flat_params.copy(), net.flat_grads.copy(),
              [l.step for l in net.layers if hasattr(l, "step")])
    value, grad = analytic_gradient(net, SoftmaxCrossEntropy(), X, y)
    np.testing.assert_array_equal(net.flat_params, before[0])
    np.testing.assert_array_equal(net.flat_grads, before[1])
    assert [l.step for l in net.layers if hasattr(l, "step")] == before[2]
    assert value == build_evaluator(net, SoftmaxCrossEntropy(), X, y).value()


def test_directional_check_passes_and_flags(monkeypatch):
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((16, 5)), rng.integers(0, 4, 16)
    net = _net("activations", np.float64, scale=0.5)
    result = check_directions(net, SoftmaxCrossEntropy(), X, y, reg=1e-2, seed=0,
                              n_directions=3)
    assert result.rel_errors.shape == (3,)
    assert result.verdict == "good", str(result)
    # float32 cannot resolve h = 1e-5: a correct gradient is "unchecked", not "wrong"
    net32 = _net("activations", np.float32, scale=0.5)
    r32 = check_directions(net32, SoftmaxCrossEntropy(dtype=np.float32), X, y, seed=0)
    assert r32.rel_errors.max() > 1e-2 and r32.verdict == "unchecked", str(r32)
    def off(layer):                                 # a backprop 50% off in every W
        layer.dW *= 1.5
    _plant(monkeypatch, off)
    flagged = check_directions(net, SoftmaxCrossEntropy(), X, y, reg=1e-2, seed=0)
    assert flagged.verdict == "wrong", str(flagged)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="h"):
        check_directions(net, SoftmaxCrossEntropy(), X, y, h=-1.0)
    with pytest.raises(ValueError, match="reg"):
        check_gradients(net, SoftmaxCrossEntropy(), X, y, reg=1e-3, regularizer=1e-3)


def test_a_vanishing_gradient_is_unchecked_not_good(monkeypatch):
    """The first layer's gradient is ~1e-10 (the last layer's weights scaled down): its
    elements agree with anything to within the rounding bound, so a backprop off by
    a factor -3 there cannot be seen; the array is "unchecked", not "good"."""
    from fastnn.net import MLP
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)), rng.integers(0, 4, 64)
    net = MLP([5, 6, 4], activation="tanh", seed=0)
    first, last = [layer for layer in net.layers if isinstance(layer, Linear)]
    last.W[...] *= 1e-10

    def reversed_first(layer):
        if layer is first:
            layer.dW *= -3
            layer.db *= -3
    _plant(monkeypatch, reversed_first)
    report = check_gradients(net, SoftmaxCrossEntropy(), X, y)
    by = {(c.layer, c.param): c.verdict for c in report.checks}
    assert by[(0, "W")] == by[(0, "b")] == "unchecked" and report.verdict == "unchecked"
