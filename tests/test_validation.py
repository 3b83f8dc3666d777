"""Bad input gets a ValueError/TypeError naming the argument, on every public entry point."""
import numpy as np
import pytest

from fastnn import datasets
from fastnn.layers import Dropout, Linear, ReLU
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import Sequential
from fastnn.trainer import gradient_descent


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return Sequential([Linear(2, 5, activation="relu", seed=rng), Linear(5, 3, seed=rng)])


def test_layer_constructor_arguments():
    with pytest.raises(ValueError, match="n_in"):
        Linear(0, 3)
    with pytest.raises(TypeError, match="n_out"):
        Linear(2, 3.0)
    with pytest.raises(ValueError, match="activation"):
        Linear(2, 3, activation="swish")
    with pytest.raises(ValueError, match="init"):
        Linear(2, 3, init="glorious")
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 3, dtype=np.float16)
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 3, dtype="complex128")
    with pytest.raises(TypeError, match="seed"):
        Linear(2, 3, seed="abc")
    with pytest.raises(ValueError, match="seed"):
        Linear(2, 3, seed=-1)


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones((4, 3)), ValueError, "columns"),
    (np.ones(4), ValueError, "2-D"),
    (np.ones((0, 2)), ValueError, "empty"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or infinity"),
    (np.ones((2, 2), complex), TypeError, "real"),
    (np.array([["a", "b"]]), TypeError, "real"),
    ([[1.0, 2.0], [3.0]], TypeError, "X"),
])
def test_net_forward_rejects_bad_data(net, bad, exc, match, backend):
    with pytest.raises(exc, match=match):
        net.forward(bad)


def test_integer_and_float32_data_are_converted_not_misread(net, backend):
    X = np.array([[1, 2], [3, 4]])
    np.testing.assert_allclose(net.forward(X), net.forward(X.astype(float)))
    Xf = np.asfortranarray(np.random.default_rng(0).standard_normal((5, 2)))
    np.testing.assert_allclose(net.forward(Xf), net.forward(np.ascontiguousarray(Xf)))


def test_layer_backward_checks(backend):
    layer = Linear(3, 4)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 4)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones((3, 4)))
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="x"):
        layer.forward(np.ones((2, 4)))
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(np.array([[-1.0, 2.0]])), [[0.0, 2.0]])
    np.testing.assert_array_equal(relu.backward(np.array([[5.0, 5.0]])), [[0.0, 5.0]])


def test_trainer_arguments(net):
    X, y = datasets.spiral(5, 3, seed=0)
    loss = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="y"):
        gradient_descent(net, loss, X, y[:-1], steps=1)
    with pytest.raises(ValueError, match="y"):
        gradient_descent(net, loss, X, y + 1, steps=1)
    with pytest.raises(TypeError, match="y"):
        gradient_descent(net, loss, X, y + 0.5, steps=1)
    with pytest.raises(ValueError, match="steps"):
        gradient_descent(net, loss, X, y, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        gradient_descent(net, loss, X, y, steps=1, step_size=-1.0)
    with pytest.raises(ValueError, match="reg"):
        gradient_descent(net, loss, X, y, steps=1, reg=-1e-3)
    with pytest.raises(ValueError, match="X"):
        gradient_descent(net, loss, np.where(X > 0.5, np.nan, X), y, steps=1)


def test_sequential_arguments():
    with pytest.raises(ValueError, match="layers"):
        Sequential([])
    with pytest.raises(TypeError, match="layers"):
        Sequential([Linear(2, 3), "relu"])
    with pytest.raises(ValueError, match="dtype"):
        Sequential([Linear(2, 3), Linear(3, 2, dtype=np.float32)])


def test_set_params_checks_shape_and_converts_dtype():
    layer = Linear(2, 3, dtype=np.float32)
    layer.set_params(W=np.ones((2, 3)))
    assert layer.W.dtype == np.float32 and np.all(layer.W == 1)
    with pytest.raises(ValueError, match="W"):
        layer.set_params(W=np.ones((3, 2)))
    with pytest.raises(ValueError, match="gamma"):
        layer.set_params(gamma=np.ones(3))


def test_dropout_arguments():
    with pytest.raises(TypeError, match="p"):
        Dropout("0.5")
    with pytest.raises(ValueError, match="p"):
        Dropout(0.0)


def test_net_prediction_api(net, backend):
    X, y = datasets.spiral(10, 3, seed=0)
    p = net.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), np.argmax(p, axis=1))
    assert 0.0 <= net.score(X, y) <= 1.0
    assert net.n_params == 2 * 5 + 5 + 5 * 3 + 3
    with pytest.raises(ValueError, match="y"):
        net.score(X, y[:5])


def test_training_runs_exactly_the_asked_steps_of_dropout_and_batch_norm():
    # validating y must not run a training-mode forward: that would draw a dropout
    # mask and move the batch-norm running statistics once more than asked
    from fastnn.layers import BatchNorm, Dropout, ReLU
    from fastnn.optim import SGD
    from fastnn.plan import LayerPath
    from fastnn.regularization import L2

    class CountingBatchNorm(BatchNorm):
        training_passes = 0

        def _forward(self, x):
            self.training_passes += self.training
            return super()._forward(x)

    def net_of(bn_class):
        bn, drop = bn_class(8), Dropout(0.9, seed=0)
        return Sequential([Linear(2, 8, seed=1), bn, ReLU(), drop, Linear(8, 3, seed=2)])

    X, y = datasets.spiral(10, 3, seed=0)
    net = net_of(BatchNorm)
    gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=3)
    # the reference: exactly 3 training passes through the layer objects
    ref = net_of(CountingBatchNorm)
    LayerPath(ref, SoftmaxCrossEntropy(), SGD(1.0), L2(1e-3), 30).bind(X, y).run(3)
    assert ref.layers[1].training_passes == 3
    assert net.layers[3].step == ref.layers[3].step == 3
    np.testing.assert_array_equal(net.layers[1].running_mean, ref.layers[1].running_mean)
    np.testing.assert_array_equal(net.layers[1].running_var, ref.layers[1].running_var)


def test_buffers_follow_a_change_of_width_at_the_same_batch_size(backend):
    relu = ReLU()
    assert relu.forward(np.ones((4, 3))).shape == (4, 3)
    np.testing.assert_array_equal(relu.forward(-np.ones((4, 5))), np.zeros((4, 5)))
    loss = SoftmaxCrossEntropy()
    assert loss(np.zeros((4, 3)), [0, 1, 2, 0]) == pytest.approx(np.log(3))
    assert loss(np.zeros((4, 5)), [0, 1, 4, 0]) == pytest.approx(np.log(5))


def test_sequential_checks_adjacent_widths():
    with pytest.raises(ValueError, match=r"layers\[1\] \(Linear\) takes 4 inputs but "
                                         r"layers\[0\] \(Linear\) gives 5"):
        Sequential([Linear(2, 5), Linear(4, 3)])
    from fastnn.layers import BatchNorm
    with pytest.raises(ValueError, match=r"layers\[2\] \(BatchNorm\)"):
        Sequential([Linear(2, 5), ReLU(), BatchNorm(4)])


def test_label_and_seed_ranges_are_checked_before_any_cast():
    from fastnn._validation import check_labels, seed_to_uint64
    with pytest.raises(ValueError, match="label"):
        check_labels(np.array([0.0, 1e30]))          # would wrap to a negative intp
    with pytest.raises(ValueError, match="label"):
        check_labels(np.array([0, 2**63], dtype=np.uint64))
    np.testing.assert_array_equal(check_labels([0.0, 2.0]), [0, 2])
    assert seed_to_uint64(2**64 - 1) == 2**64 - 1
    with pytest.raises(ValueError, match="seed"):
        seed_to_uint64(2**64 + 5)                   # used to alias seed 5
    with pytest.raises(ValueError, match="seed"):
        Dropout(0.5, seed=-3)


def test_progress_bar_counts_the_steps_and_says_when_tqdm_is_missing(capsys, monkeypatch):
    X, y = datasets.spiral(5, 3, seed=0)
    net = Sequential([Linear(2, 4, activation="relu", seed=1), Linear(4, 3, seed=2)])
    gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=7, progress=True)
    assert "7/7" in capsys.readouterr().err
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("No module named 'tqdm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    with pytest.raises(ImportError, match=r"fastnn\[progress\]"):
        gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=1, progress=True)
