"""Loss landscapes: every grid point equals a direct evaluation of the loss there."""
import numpy as np
import pytest

from fastnn import case_study, datasets
from fastnn.evaluate import build_evaluator, reference_losses
from fastnn.landscape import filter_normalize, loss_line, loss_plane, random_direction
from fastnn.losses import SoftmaxCrossEntropy

X, Y = datasets.spiral(20, 3, seed=0)


def _net(dtype=np.float64):
    return case_study.two_layer_net(2, 10, 3, seed=0, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line_values_are_direct_evaluations(dtype):
    net = _net(dtype)
    d = random_direction(net, seed=1)
    alphas = np.linspace(-2, 2, 9)
    L = loss_line(net, SoftmaxCrossEntropy(dtype=dtype), X, Y, direction=d, alphas=alphas,
                  regularizer=1e-3)
    points = (net.flat_params.astype(np.float64)[None]
              + alphas[:, None] * d.astype(np.float64)[None]).astype(dtype)
    np.testing.assert_array_equal(
        L.losses, reference_losses(net, SoftmaxCrossEntropy(dtype=dtype), X, Y, points,
                                   regularizer=1e-3))
    assert L.losses[4] == build_evaluator(net, SoftmaxCrossEntropy(dtype=dtype), X, Y,
                                          regularizer=1e-3).value()


def test_plane_values_are_direct_evaluations():
    net = _net()
    L = loss_plane(net, SoftmaxCrossEntropy(), X, Y, alphas=5, betas=[-1.0, 0.0, 0.5],
                   seed=3, filter_normalized=True)
    assert L.losses.shape == (3, 5)
    d1, d2 = L.directions
    ev = build_evaluator(net, SoftmaxCrossEntropy(), X, Y)
    for i, b in enumerate(L.betas):
        for j, a in enumerate(L.alphas):
            p = (net.flat_params + a * d1.astype(np.float64) + b * d2.astype(np.float64))
            assert L.losses[i, j] == ev.value(p.astype(net.dtype))
    again = loss_plane(net, SoftmaxCrossEntropy(), X, Y, directions=(d1, d2), alphas=5,
                       betas=[-1.0, 0.0, 0.5], n_threads=1)
    np.testing.assert_array_equal(again.losses, L.losses)
    # one direction given: the other is drawn from the seed, the same for the same seed
    half = [loss_plane(net, SoftmaxCrossEntropy(), X, Y, directions=(d1, None), alphas=3,
                       seed=7) for _ in range(2)]
    np.testing.assert_array_equal(half[0].directions[1], half[1].directions[1])
    np.testing.assert_array_equal(half[0].directions[1], random_direction(net, seed=7))
    # one point: the weights themselves
    one = loss_line(net, SoftmaxCrossEntropy(), X, Y, alphas=1, seed=0)
    assert one.alphas.tolist() == [0.0] and one.losses[0] == ev.value()


def test_filter_normalization_matches_the_weights_norms():
    net = _net()
    d = filter_normalize(net, np.random.default_rng(0).standard_normal(net.flat_params.size))
    W = net.layers[0].W
    start = 0
    piece = d[start:start + W.size].reshape(W.shape)
    np.testing.assert_allclose(np.linalg.norm(piece, axis=0), np.linalg.norm(W, axis=0))


def test_bad_directions_and_grids_are_refused():
    net = _net()
    n = net.flat_params.size
    with pytest.raises(ValueError, match="direction"):
        loss_line(net, SoftmaxCrossEntropy(), X, Y, direction=np.zeros(n + 1))
    with pytest.raises(ValueError, match=r"directions\[1\]"):
        loss_plane(net, SoftmaxCrossEntropy(), X, Y, directions=(np.zeros(n), np.zeros(3)))
    with pytest.raises(ValueError, match="directions"):
        loss_plane(net, SoftmaxCrossEntropy(), X, Y, directions=(np.zeros(n),) * 3)
    with pytest.raises(TypeError, match="direction"):
        loss_line(net, SoftmaxCrossEntropy(), X, Y, direction=np.array(["a"] * n))
    with pytest.raises(ValueError, match="alphas"):
        loss_line(net, SoftmaxCrossEntropy(), X, Y, alphas=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="alphas"):
        loss_line(net, SoftmaxCrossEntropy(), X, Y, alphas=0)
    with pytest.raises(ValueError, match=r"direction must have shape \(\d+,\)"):
        filter_normalize(net, np.zeros(n - 1))


def test_landscape_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn import plot
    net = _net()
    line = loss_line(net, SoftmaxCrossEntropy(), X, Y, alphas=11, seed=0)
    fig = plot.loss_landscape(line, tmp_path / "line.png")
    assert (tmp_path / "line.png").stat().st_size > 2000
    assert len(fig.axes[0].lines) >= 1
    plane = loss_plane(net, SoftmaxCrossEntropy(), X, Y, alphas=7, seed=0)
    fig = plot.loss_landscape(plane, tmp_path / "plane.png", log=True)
    assert (tmp_path / "plane.png").stat().st_size > 2000
    assert len(fig.axes) == 2            # the map and its color bar
    with pytest.raises(TypeError, match="landscape"):
        plot.loss_landscape(np.zeros(3))
