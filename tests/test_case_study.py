"""The spiral case study: fastnn against the notes' own loops and printed numbers."""
import numpy as np
import pytest

import fastnn
from fastnn import case_study, cli, datasets
from fastnn.gradcheck import numerical_gradient, rel_error
from fastnn.losses import SoftmaxCrossEntropy

import notes_code


def test_spiral_shapes_dtypes_and_seeds():
    X, y = datasets.spiral(50, 4, seed=1)
    assert X.shape == (200, 2) and X.dtype == np.float64
    assert y.shape == (200,) and np.issubdtype(y.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(y), [50] * 4)
    assert np.all(np.linalg.norm(X, axis=1) <= 1 + 1e-12)
    X2, y2 = datasets.spiral(50, 4, seed=1)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, datasets.spiral(50, 4, seed=2)[0])
    with pytest.raises(ValueError, match="n_per_class"):
        datasets.spiral(0)
    with pytest.raises(TypeError, match="n_classes"):
        datasets.spiral(10, 2.5)


def test_case_study_data_is_the_notes_data():
    X, y, _ = notes_code.spiral_data(seed=0)
    X2, y2 = datasets.spiral(seed=np.random.RandomState(0))
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("backend_name", ["compiled", "numpy"])
def test_two_layer_net_matches_the_notes_loop_for_1000_steps(backend_name):
    X, y, rs = notes_code.spiral_data(seed=0)
    net = case_study.two_layer_net(2, 100, 3, seed=rs)
    W, b = net.layers[0].W.copy(), net.layers[0].b.copy()
    W2, b2 = net.layers[1].W.copy(), net.layers[1].b.copy()
    want = notes_code.two_layer_losses(X, y, W, b, W2, b2, steps=1000)
    with fastnn.use_backend(backend_name):
        got = case_study.train(net, X, y, steps=1000, log_every=0).history.loss
    # Same math, different summation orders: each step differs by a few ulp and
    # gradient descent on this loss does not amplify it.
    assert np.max(np.abs(got - want) / want) < 1e-10


def test_linear_classifier_matches_the_notes_loop():
    X, y, rs = notes_code.spiral_data(seed=0)
    net = case_study.linear_classifier(2, 3, seed=rs)
    want = notes_code.linear_losses(X, y, net.layers[0].W, net.layers[0].b, steps=200)
    got = case_study.train(net, X, y, steps=200).history.loss
    assert np.max(np.abs(got - want) / want) < 1e-10


def test_run_reproduces_the_notes_numbers():
    lines = []
    X, y, linear, net = case_study.run(seed=0, log=lines.append)
    # the notes: linear 0.786 / 49 %, 2-layer 0.245 / 98 %
    assert linear.history.loss[-1] == pytest.approx(0.786, abs=2e-3)
    assert 0.49 <= linear.accuracy <= 0.53
    assert net.history.loss[-1] == pytest.approx(0.245, abs=5e-3)
    assert net.accuracy >= 0.97
    assert "iteration 190: loss 0.786302" in lines        # the notes print 0.786302
    assert sum(line.startswith("iteration") for line in lines) == 20 + 10


def test_float32_run_trains_as_well():
    _, _, linear, net = case_study.run(seed=0, dtype=np.float32, steps=3000, log=lambda s: None)
    assert linear.net.dtype == np.float32 and net.net.dtype == np.float32
    assert linear.history.loss[-1] == pytest.approx(0.786, abs=5e-3)
    assert net.accuracy >= 0.95


def test_two_layer_net_gradient_matches_numerical(backend):
    X, y = datasets.spiral(10, 3, seed=4)
    net = case_study.two_layer_net(2, 8, 3, seed=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for layer in net.layers:
        layer.W *= 100
        layer.b[:] = rng.uniform(0.05, 0.5, layer.b.shape) * rng.choice([-1, 1], layer.b.shape)
    # Spiral points at radius 0 would put pre-activations exactly on ReLU's kink
    # when b = 0; with these biases every |pre-activation| stays clear of it.
    first = net.layers[0]
    assert np.min(np.abs(X @ first.W + first.b)) > 1e-3
    loss = SoftmaxCrossEntropy()

    def f(_):
        return loss(net.forward(X), y)

    f(None)
    net.backward(loss.backward())
    for layer, name, param, grad in net.parameters():
        analytic = grad.copy()
        assert rel_error(analytic, numerical_gradient(f, param)) < 1e-7, name


def test_cli_spiral_prints_the_notes_log_and_writes_plots(tmp_path, capsys):
    assert cli.main(["spiral", "--steps", "300", "--linear-steps", "30", "--hidden", "20",
                     "--seed", "1", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "iteration 20: loss" in out and "iteration 0: loss" in out
    assert out.count("training accuracy") == 2
    for name in ("spiral_linear.png", "spiral_net.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_dtype_and_bad_arguments(capsys):
    assert cli.main(["spiral", "--steps", "10", "--linear-steps", "10",
                     "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["spiral", "--steps", "0"])
    with pytest.raises(SystemExit):
        cli.main(["spiral", "--dtype", "float16"])


def test_cli_plot_without_matplotlib_says_so(monkeypatch, tmp_path, capsys):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert cli.main(["spiral", "--steps", "5", "--plot", str(tmp_path)]) == 2
    assert "pip install 'fastnn[plot]'" in capsys.readouterr().err
