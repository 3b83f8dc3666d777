"""fastnn.search: the notes' random search, random local search and step-size sweep.

What must hold: best-so-far never increases, local search only ever moves downhill, the
same seed gives the same result, a batched loss gives exactly what a one-at-a-time
callable gives whatever the chunk size, a fastnn net's loss is the training engine's,
the spiral's sweep has the notes' shape (flat, then better, then overshooting), the
strategies compared get the same budget, and every bad argument is named."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import cli, search
from fastnn.case_study import linear_classifier
from fastnn.datasets import spiral
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.losses import MulticlassSVM, SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn.regularization import L1, L2
from fastnn.search import (model_loss, random_local_search, random_search,
                           step_size_sweep)
from fastnn.trainer import gradient_descent

X, Y = spiral(100, 3, seed=np.random.RandomState(0))
TARGET = np.arange(6, dtype=np.float64).reshape(2, 3) / 5.0


def bowl(W):
    """A quadratic bowl with its minimum 0 at TARGET."""
    return float(np.sum((np.asarray(W, dtype=np.float64) - TARGET) ** 2))


class Batched:
    """A stand-in batched loss: losses(batch) of (m, size) rows, each a flattened W,
    evaluated by a plain callable; records the size of every call."""

    def __init__(self, fn, shape):
        self.fn, self.shape, self.sizes = fn, shape, []

    def losses(self, batch):
        assert batch.ndim == 2 and batch.flags.c_contiguous and batch.flags.writeable
        self.sizes.append(batch.shape[0])
        return np.array([self.fn(row.reshape(self.shape)) for row in batch])


def _same(a, b):
    """Two SearchResults equal bit for bit (the call counts aside)."""
    for name in ("best_weights", "losses", "best_so_far", "accepted"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.best_loss == b.best_loss
    assert a.start_loss == b.start_loss or (math.isnan(a.start_loss)
                                             and math.isnan(b.start_loss))
    assert a.evaluations == b.evaluations


@pytest.fixture(scope="module")
def linear():
    """(net, loss function, w0) of the spiral's linear softmax classifier, reg 1e-3."""
    net = linear_classifier(2, 3, seed=np.random.RandomState(1))
    f = model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=1e-3)
    return net, f, net.flat_params.copy()


# ---- strategy #1 -------------------------------------------------------------------------

def test_random_search_keeps_the_best_and_its_draws_are_the_seeded_normals():
    r = random_search(bowl, (2, 3), 200, 0.5, seed=3)
    assert r.method == "random search" and r.tries == r.evaluations == r.calls == 200
    assert r.losses.shape == r.best_so_far.shape == r.accepted.shape == (200,)
    assert r.losses.dtype == r.best_so_far.dtype == np.float64 and r.accepted.dtype == bool
    assert np.all(np.diff(r.best_so_far) <= 0)
    np.testing.assert_array_equal(r.best_so_far, np.minimum.accumulate(r.losses))
    assert r.best_loss == r.losses.min() == r.best_so_far[-1]
    assert r.best_weights.shape == (2, 3) and r.best_weights.dtype == np.float64
    assert bowl(r.best_weights) == r.best_loss
    # accepted marks exactly the tries that set a new best (strictly lower, the first)
    new_best = np.r_[True, r.losses[1:] < r.best_so_far[:-1]]
    np.testing.assert_array_equal(r.accepted, new_best)
    assert math.isnan(r.start_loss)
    # try i is scale * the i-th draw of standard normals of the shape, in order
    rng = np.random.default_rng(3)
    draws = [0.5 * rng.standard_normal((2, 3)) for _ in range(200)]
    np.testing.assert_array_equal(r.best_weights, draws[int(np.argmin(r.losses))])
    assert r.losses[7] == bowl(draws[7])
    np.testing.assert_array_equal(r.curve, r.best_so_far)


def test_random_search_same_seed_same_result_and_float32():
    _same(random_search(bowl, (2, 3), 50, 1.0, seed=7), random_search(bowl, (2, 3), 50, 1.0,
                                                                       seed=7))
    a = random_search(bowl, (2, 3), 50, 1.0, seed=np.random.default_rng(7))
    _same(a, random_search(bowl, (2, 3), 50, 1.0, seed=7))
    assert not np.array_equal(a.losses, random_search(bowl, (2, 3), 50, 1.0, seed=8).losses)
    r32 = random_search(bowl, (2, 3), 50, 1.0, seed=7, dtype=np.float32)
    assert r32.best_weights.dtype == np.float32
    np.testing.assert_allclose(r32.losses, a.losses, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 64, 1000])
def test_random_search_batched_in_chunks_equals_one_at_a_time(chunk):
    plain = random_search(bowl, (2, 3), 150, 0.7, seed=11)
    b = Batched(bowl, (2, 3))
    batched = random_search(b, (2, 3), 150, 0.7, seed=11, chunk=chunk)
    _same(plain, batched)
    assert sum(b.sizes) == 150 and max(b.sizes) == min(chunk, 150)
    assert len(b.sizes) == -(-150 // chunk)


def test_an_infinite_loss_is_worse_than_any_finite_one():
    calls = iter([math.inf, 3.0, math.inf, 2.0])
    r = random_search(lambda W: next(calls), 4, 4, 1.0, seed=0)
    np.testing.assert_array_equal(r.best_so_far, [math.inf, 3.0, 3.0, 2.0])
    assert r.best_loss == 2.0


# ---- strategy #2 -------------------------------------------------------------------------

def test_random_local_search_only_moves_downhill():
    w0 = np.zeros((2, 3))
    r = random_local_search(bowl, w0, 300, 0.05, seed=5)
    assert r.method == "random local search"
    assert r.tries == 300 and r.evaluations == 301
    assert r.start_loss == bowl(w0)
    assert np.all(np.diff(r.best_so_far) <= 0) and r.best_so_far[0] <= r.start_loss
    # every accepted move is strictly lower than what it replaced, every rejected one not
    before = np.r_[r.start_loss, r.best_so_far[:-1]]
    assert np.all(r.losses[r.accepted] < before[r.accepted])
    assert np.all(r.losses[~r.accepted] >= before[~r.accepted])
    np.testing.assert_array_equal(r.best_so_far, np.where(r.accepted, r.losses, before))
    assert 10 < r.accepted.sum() < 290           # it did move, and not every time
    assert r.best_loss == r.best_so_far[-1] == bowl(r.best_weights)
    assert r.best_loss < 0.2 * r.start_loss
    np.testing.assert_array_equal(w0, 0.0)       # the start is copied, not moved
    np.testing.assert_array_equal(r.curve, np.r_[r.start_loss, r.best_so_far])


def test_random_local_search_proposals_are_the_seeded_steps_from_the_current_weights():
    r = random_local_search(bowl, np.zeros((2, 3)), 40, 0.1, seed=2)
    rng = np.random.default_rng(2)
    w = np.zeros((2, 3))
    for i in range(40):
        cand = w + 0.1 * rng.standard_normal((2, 3))
        assert r.losses[i] == bowl(cand)
        if r.accepted[i]:
            w = cand
    np.testing.assert_array_equal(r.best_weights, w)


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_random_local_search_batched_in_chunks_equals_one_at_a_time(chunk):
    """Proposals after an accepted one in the same chunk are proposed again from the
    new weights with the same draws: the same bits whatever the chunk."""
    w0 = np.full((2, 3), 2.0)
    plain = random_local_search(bowl, w0, 250, 0.1, seed=9)
    assert 20 < plain.accepted.sum() < 230
    b = Batched(bowl, (2, 3))
    batched = random_local_search(b, w0, 250, 0.1, seed=9, chunk=chunk)
    _same(plain, batched)
    assert max(b.sizes) <= chunk
    assert batched.calls == sum(b.sizes) >= 251


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tries=st.integers(1, 120),
       step=st.floats(1e-3, 3.0), chunk=st.integers(1, 70),
       start=st.floats(-3.0, 3.0))
def test_local_search_is_downhill_and_chunk_free_for_any_seed(seed, tries, step, chunk,
                                                               start):
    w0 = np.full((2, 3), start)
    plain = random_local_search(bowl, w0, tries, step, seed=seed)
    assert np.all(np.diff(np.r_[plain.start_loss, plain.best_so_far]) <= 0)
    _same(plain, random_local_search(Batched(bowl, (2, 3)), w0, tries, step, seed=seed,
                                     chunk=chunk))
    r = random_search(bowl, (2, 3), tries, step, seed=seed)
    assert np.all(np.diff(r.best_so_far) <= 0)
    _same(r, random_search(Batched(bowl, (2, 3)), (2, 3), tries, step, seed=seed,
                           chunk=chunk))


def test_random_local_search_same_seed_same_result_and_w0_dtype():
    w0 = np.ones(5, dtype=np.float32)
    f = (lambda w: float(np.sum(w.astype(np.float64) ** 2)))
    a = random_local_search(f, w0, 60, 0.2, seed=4)
    _same(a, random_local_search(f, w0, 60, 0.2, seed=4))
    assert a.best_weights.dtype == np.float32
    c = random_local_search(f, [1, 1, 1, 1, 1], 60, 0.2, seed=4)   # ints become float64
    assert c.best_weights.dtype == np.float64


# ---- the step-size sweep -----------------------------------------------------------------

def test_step_size_sweep_on_a_bowl():
    w = np.zeros((2, 3))
    grad = 2 * (w - TARGET)                # the exact gradient: step 0.5 lands on TARGET
    steps = [1e-3, 0.1, 0.5, 0.9, 2.0]
    s = step_size_sweep(bowl, w, grad, steps)
    np.testing.assert_array_equal(s.step_sizes, steps)
    assert s.start_loss == bowl(w)
    np.testing.assert_array_equal(s.losses, [bowl(w - t * grad) for t in steps])
    assert s.best_step == 0.5 and s.best_loss == 0.0
    np.testing.assert_array_equal(s.best_weights, TARGET)
    assert s.table.shape == (5, 2) and s.table.dtype == np.float64
    text = s.format().splitlines()
    assert text[0].startswith("original loss: ") and len(text) == 6
    # the notes' step sizes by default, and a batched loss gives the same table
    d = step_size_sweep(bowl, w, grad)
    np.testing.assert_array_equal(d.step_sizes, 10.0 ** np.arange(-10, 0))
    b = Batched(bowl, (2, 3))
    e = step_size_sweep(b, w, grad, chunk=4)
    np.testing.assert_array_equal(e.losses, d.losses)
    assert b.sizes == [1, 4, 4, 2]


def test_the_spiral_sweep_has_the_notes_shape(linear):
    """Small steps barely change the loss, an intermediate one is best, the largest
    overshoots -- shifted up about 4 decades from the notes' CIFAR table, since the
    spiral has two O(1) features instead of 3072 raw pixels."""
    net, f, w0 = linear
    loss0, grad = f.gradient(w0)
    s = step_size_sweep(f, w0, grad, search.SPIRAL_STEP_SIZES)
    assert s.start_loss == loss0
    small = s.step_sizes <= 1e-6
    assert np.all(np.abs(s.losses[small] - loss0) < 1e-5 * loss0)
    assert np.all(s.losses[small] <= loss0)        # a tiny step down the gradient helps
    best = int(np.argmin(s.losses))
    assert 0 < best < len(s.losses) - 1
    assert s.best_loss < 0.95 * loss0
    assert s.losses[-1] > s.best_loss and s.losses[-1] > loss0   # overshoot
    # up to the best the loss decreases, after it increases
    assert np.all(np.diff(s.losses[:best + 1]) <= 0)
    assert np.all(np.diff(s.losses[best:]) >= 0)


# ---- a fastnn net's loss -----------------------------------------------------------------

def test_model_loss_is_the_training_engines_loss(linear, backend):
    net, f, w0 = linear
    assert f.shape == (9,) and f.dtype == np.float64
    h = gradient_descent(linear_classifier(2, 3, seed=np.random.RandomState(1)),
                         SoftmaxCrossEntropy(), X, Y, steps=1, reg=1e-3)
    assert f(w0) == pytest.approx(h.loss[0], rel=1e-12)
    W = w0[:6].reshape(2, 3)
    scores = X @ W + w0[6:]
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(300), Y])) + 0.5 * 1e-3 * np.sum(W ** 2)
    assert f(w0) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(f.losses(np.stack([w0, 2 * w0])), [f(w0), f(2 * w0)])


@pytest.mark.parametrize("regularizer", [None, L2(1e-2), [L1(1e-3), L2(1e-3)]])
def test_model_loss_gradient_matches_the_numerical_one(regularizer):
    net = MLP([2, 8, 3], activation="tanh", seed=0)
    f = model_loss(net, MulticlassSVM(), X[::10], Y[::10], regularizer=regularizer)
    w = net.flat_params.copy() + 0.01
    loss, grad = f.gradient(w)
    assert loss == pytest.approx(f(w), rel=1e-13)
    assert grad.shape == (net.n_params,) and grad.dtype == np.float64
    num = numerical_gradient(lambda v: f(v), w.copy())
    assert rel_error(grad, num) < 1e-5


def test_model_loss_with_dropout_off_and_batch_norm_on_batch_statistics():
    """Dropout off (its evaluation-mode function), batch norm normalizing with the
    statistics of X and its running statistics left alone: a function of w alone."""
    from fastnn.layers import BatchNorm, Dropout
    net = MLP([2, 6, 3], dropout=0.5, batch_norm=True, seed=0)
    bn = next(layer for layer in net.layers if isinstance(layer, BatchNorm))
    drop = next(layer for layer in net.layers if isinstance(layer, Dropout))
    mean, step = bn.running_mean.copy(), drop.step
    f = model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=1e-3)
    w = net.flat_params.copy()
    assert f(w) == f(w)
    np.testing.assert_array_equal(bn.running_mean, mean)
    assert drop.step == step and all(layer.training for layer in net.layers)
    # the same as the net without its dropout layer, in training mode
    plain = MLP([2, 6, 3], batch_norm=True, seed=0)
    plain.flat_params[...] = w
    g = model_loss(plain, SoftmaxCrossEntropy(), X, Y, reg=1e-3)
    assert f(w) == g(w)
    h = gradient_descent(plain, SoftmaxCrossEntropy(), X, Y, steps=1, reg=1e-3)
    assert f(w) == pytest.approx(h.loss[0], rel=1e-12)
    loss, grad = f.gradient(w)
    num = numerical_gradient(lambda v: f(v), w.copy())
    assert loss == f(w) and rel_error(grad, num) < 1e-5
    np.testing.assert_array_equal(bn.running_mean, mean)


def test_model_loss_leaves_the_net_as_it_was():
    net = MLP([2, 5, 3], seed=0)
    before = net.flat_params.copy()
    f = model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=1e-3)
    other = before + 0.5
    assert f(other) != f(before)
    f.gradient(other)
    f.accuracy(other)
    random_search(f, None, 5, 1.0, seed=0)
    r = random_local_search(f, net.flat_params, 5, 0.1, seed=0)
    np.testing.assert_array_equal(net.flat_params, before)
    assert r.start_loss == f(before)
    with pytest.raises(ValueError, match="w has shape"):
        f(np.zeros(3))
    np.testing.assert_array_equal(net.flat_params, before)


def test_model_loss_in_a_search_and_float32():
    net = linear_classifier(2, 3, seed=0, dtype=np.float32)
    f = model_loss(net, SoftmaxCrossEntropy(), X, Y)
    r = random_search(f, None, 20, 1.0, seed=0)       # shape from the loss
    assert r.best_weights.dtype == np.float32 and r.best_weights.shape == (9,)
    assert f(r.best_weights) == r.best_loss
    w0 = net.flat_params.copy()
    assert random_local_search(f, w0, 10, 0.1, seed=0).best_weights.dtype == np.float32
    assert f.calls > 30


@pytest.mark.parametrize("layers, batch_norm", [([2, 100, 3], False), ([2, 6, 3], True)])
def test_model_loss_batches_run_on_the_compiled_evaluator_in_parallel(layers, batch_norm,
                                                                       monkeypatch):
    """On the compiled backend a batch of tries goes to fastnn.evaluate's compiled
    evaluator (the per-vector Python path is forbidden here), which gives the very
    bits that evaluating each vector on the net does, at 1 and 2 threads; so a search
    run on chunks of tries is unchanged by it."""
    import fastnn
    from fastnn.search import ModelLoss
    net = MLP(layers, batch_norm=batch_norm, seed=0)
    f = model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=1e-3)
    rng = np.random.default_rng(0)
    batch = net.flat_params + 0.1 * rng.standard_normal((12, net.n_params))
    one_by_one = np.array([f(w) for w in batch])
    with monkeypatch.context() as m:
        m.setattr(ModelLoss, "__call__", lambda self, w: pytest.fail("ran per vector"))
        with fastnn.use_backend("compiled"):
            with fastnn.threads(1):
                got1 = f.losses(batch)
            with fastnn.threads(2):
                got2 = f.losses(batch)
    assert f._evaluator is not None
    np.testing.assert_array_equal(got1, one_by_one)
    np.testing.assert_array_equal(got2, one_by_one)


# ---- the comparison ----------------------------------------------------------------------

def test_compare_strategies_same_budget_and_the_notes_ordering():
    c = search.compare_strategies(X, Y, budget=300, seed=0)
    assert list(c.results) == ["random search", "random local search", "gradient descent"]
    for name, r in c.results.items():
        assert r.evaluations == 300, name
        assert r.curve.shape == (300,), name
        assert np.all(np.diff(r.curve) <= 0), name
        assert 0 <= c.accuracy[name] <= 1
    rs, ls, gd = (c.results[k].best_loss for k in c.results)
    # following the gradient beats stepping at random, which beats guessing
    assert gd < ls < rs < c.start_loss
    assert c.results["random local search"].start_loss == c.start_loss
    assert c.results["gradient descent"].start_loss == pytest.approx(c.start_loss, rel=1e-12)
    assert c.sweep.step_sizes.shape == (14,)
    assert "gradient descent" in c.format()
    again = search.compare_strategies(X, Y, budget=300, seed=0)
    for name in c.results:
        _same(c.results[name], again.results[name])


def test_search_command_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["search", "--budget", "40", "--plot", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "40 loss evaluations each" in out
    for name in ("random search", "random local search", "gradient descent",
                 "step size 1e-10", "step size 1e+03"):
        assert name in out
    assert (tmp_path / "out" / "search.png").stat().st_size > 2000


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1"], "--budget"),
    (["--scale", "0"], "--scale"),
    (["--step", "nan"], "--step"),
    (["--step-size", "-1"], "--step-size"),
    (["--reg", "x"], "--reg"),
    (["--seed", "-3"], "--seed"),
])
def test_search_command_bad_options_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["search"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_search_command_plot_into_a_file_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "file"
    target.write_text("x")
    assert cli.main(["search", "--budget", "5", "--plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--plot" in err


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("call, exc, name", [
    (lambda: random_search(bowl, (2, 3), 0, 1.0), ValueError, "tries"),
    (lambda: random_search(bowl, (2, 3), -1, 1.0), ValueError, "tries"),
    (lambda: random_search(bowl, (2, 3), 2.5, 1.0), TypeError, "tries"),
    (lambda: random_search(bowl, (2, 3), 5, 0.0), ValueError, "scale"),
    (lambda: random_search(bowl, (2, 3), 5, -1.0), ValueError, "scale"),
    (lambda: random_search(bowl, (2, 3), 5, float("nan")), ValueError, "scale"),
    (lambda: random_search(bowl, (2, 3), 5, float("inf")), ValueError, "scale"),
    (lambda: random_search(bowl, (2, 3), 5, "1"), TypeError, "scale"),
    (lambda: random_search(bowl, (2, 0), 5, 1.0), ValueError, "shape"),
    (lambda: random_search(bowl, "23", 5, 1.0), TypeError, "shape"),
    (lambda: random_search(bowl, None, 5, 1.0), TypeError, "shape"),
    (lambda: random_search(bowl, (2, 3), 5, 1.0, seed=-1), ValueError, "seed"),
    (lambda: random_search(bowl, (2, 3), 5, 1.0, dtype=np.int32), TypeError, "dtype"),
    (lambda: random_search(Batched(bowl, (2, 3)), (2, 3), 5, 1.0, chunk=0), ValueError,
     "chunk"),
    (lambda: random_search(42, (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: W, (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: [1.0], (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: None, (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: "1", (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: 1j, (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: True, (2, 3), 5, 1.0), TypeError, "loss_fn"),
    (lambda: random_search(lambda W: float("nan"), (2, 3), 5, 1.0), ValueError, "loss_fn"),
    (lambda: random_local_search(bowl, np.zeros((2, 3)), 0, 0.1), ValueError, "tries"),
    (lambda: random_local_search(bowl, np.zeros((2, 3)), 5, 0.0), ValueError, "step"),
    (lambda: random_local_search(bowl, np.zeros((2, 3)), 5, math.inf), ValueError, "step"),
    (lambda: random_local_search(bowl, [[0.0, math.nan, 0.0]] * 2, 5, 0.1), ValueError,
     "w0"),
    (lambda: random_local_search(bowl, ["a"], 5, 0.1), TypeError, "w0"),
    (lambda: random_local_search(lambda w: np.ones(2), np.zeros(3), 5, 0.1), TypeError,
     "loss_fn"),
    (lambda: step_size_sweep(bowl, np.zeros((2, 3)), np.zeros(6)), ValueError, "grad"),
    (lambda: step_size_sweep(bowl, np.zeros((2, 3)), np.zeros((2, 3)), [1.0, -1.0]),
     ValueError, "step_sizes"),
    (lambda: step_size_sweep(bowl, np.zeros((2, 3)), np.zeros((2, 3)), [math.nan]),
     ValueError, "step_sizes"),
    (lambda: step_size_sweep(bowl, np.zeros((2, 3)), np.zeros((2, 3)), []), ValueError,
     "step_sizes"),
    (lambda: step_size_sweep(bowl, np.zeros((2, 3)), np.zeros((2, 3)), [[1.0]]),
     ValueError, "step_sizes"),
])
def test_bad_arguments_are_named(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_nan_names_the_try_and_a_bad_batch_the_shape():
    values = iter([1.0, 2.0, float("nan")])
    with pytest.raises(ValueError, match="loss_fn returned NaN for try 2"):
        random_search(lambda W: next(values), 3, 3, 1.0)

    class Short(Batched):
        def losses(self, batch):
            return np.zeros(batch.shape[0] - 1)

    with pytest.raises(TypeError, match=r"loss_fn.losses must return an \(4,\) array"):
        random_search(Short(bowl, (2, 3)), (2, 3), 4, 1.0)

    class NaNs(Batched):
        def losses(self, batch):
            out = np.zeros(batch.shape[0])
            out[-1] = np.nan
            return out

    with pytest.raises(ValueError, match="NaN for try 3"):
        random_search(NaNs(bowl, (2, 3)), (2, 3), 4, 1.0, chunk=4)
    with pytest.raises(ValueError, match="NaN for w0"):
        random_local_search(lambda w: math.nan, np.zeros(2), 3, 0.1)


def test_the_loss_gets_its_own_copy_of_the_weights():
    """A loss that scribbles on its argument changes nothing the search keeps."""
    def scribble(W):
        value = bowl(W)
        W[...] = 99.0
        return value

    class Scribbler(Batched):
        def losses(self, batch):
            out = super().losses(batch)
            batch[...] = 99.0
            return out

    for f in (scribble, Scribbler(bowl, (2, 3))):
        r = random_search(f, (2, 3), 20, 1.0, seed=1, chunk=7)
        _same(r, random_search(bowl, (2, 3), 20, 1.0, seed=1))
        ls = random_local_search(f, np.zeros((2, 3)), 30, 0.2, seed=1, chunk=7)
        _same(ls, random_local_search(bowl, np.zeros((2, 3)), 30, 0.2, seed=1))
        s = step_size_sweep(f, np.zeros((2, 3)), -TARGET, [0.5, 1.0], chunk=7)
        np.testing.assert_array_equal(s.losses, [bowl(0.5 * TARGET), 0.0])


def test_an_evaluator_without_shape_gives_its_width_by_n_params():
    class Evaluator:
        n_params, dtype = 6, np.float32

        def losses(self, params):
            assert params.dtype == np.float32 and params.shape[1] == 6
            return np.array([bowl(p.reshape(2, 3)) for p in params])

    r = random_search(Evaluator(), None, 10, 1.0, seed=0)
    assert r.best_weights.shape == (6,) and r.best_weights.dtype == np.float32
    with pytest.raises(ValueError, match="w0 has shape"):
        random_local_search(Evaluator(), np.zeros((2, 3)), 5, 0.1)


def test_shapes_must_match_the_models(linear):
    net, f, w0 = linear
    with pytest.raises(ValueError, match="shape"):
        random_search(f, (3, 3), 5, 1.0)
    with pytest.raises(ValueError, match="w0 has shape"):
        random_local_search(f, w0[:6], 5, 0.1)
    with pytest.raises(ValueError, match="w has shape"):
        step_size_sweep(f, w0.reshape(3, 3), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="w has shape"):
        f(np.zeros(8))
    with pytest.raises(ValueError, match="batch must have shape"):
        f.losses(np.zeros((2, 8)))


def test_model_loss_bad_arguments():
    net = linear_classifier(2, 3, seed=0)
    with pytest.raises(TypeError, match="model"):
        model_loss("net", SoftmaxCrossEntropy(), X, Y)
    with pytest.raises(TypeError, match="loss"):
        model_loss(net, "softmax", X, Y)
    with pytest.raises(ValueError, match="X"):
        model_loss(net, SoftmaxCrossEntropy(), X[:, :1], Y)
    with pytest.raises(ValueError, match="y"):
        model_loss(net, SoftmaxCrossEntropy(), X, Y[:-1])
    with pytest.raises(ValueError, match="reg"):
        model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=1e-3, regularizer=L2(1e-3))
    with pytest.raises(ValueError, match="reg"):
        model_loss(net, SoftmaxCrossEntropy(), X, Y, reg=-1.0)
    with pytest.raises(ValueError, match="budget"):
        search.compare_strategies(X, Y, budget=1)
