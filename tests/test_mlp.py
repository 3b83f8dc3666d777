"""The MLP builder: the notes' parameter counts, layer layout, training."""
import numpy as np
import pytest

from fastnn import datasets
from fastnn.layers import BatchNorm, Dropout, Linear, Tanh
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import MLP, Sequential
from fastnn.trainer import gradient_descent


def test_the_notes_parameter_counts():
    # neural-networks-1: the 2-layer 3-4-2 net has 26 parameters, the 3-layer
    # 3-4-4-1 net 41 (weights plus biases)
    assert MLP([3, 4, 2]).n_params == 26
    assert MLP([3, 4, 4, 1]).n_params == 41
    assert MLP([3, 4, 4, 1], batch_norm=True).n_params == 41 + 2 * 4 + 2 * 4


def test_layout_fuses_activations_and_places_batch_norm_and_dropout():
    net = MLP([2, 8, 8, 3], activation="tanh", dropout=0.8, seed=0)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [Linear, Dropout, Linear, Dropout, Linear]
    assert net.layers[0].activation == "tanh" and net.layers[-1].activation is None
    bn = MLP([2, 8, 3], activation="tanh", batch_norm=True, seed=0)
    assert [type(layer) for layer in bn.layers] == [Linear, BatchNorm, Tanh, Linear]


def test_seed_reproduces_and_default_init_follows_activation():
    a, b = MLP([2, 64, 3], seed=3), MLP([2, 64, 3], seed=3)
    np.testing.assert_array_equal(a.layers[0].W, b.layers[0].W)
    # He for ReLU: std sqrt(2 / fan_in); Glorot for tanh: sqrt(2 / (fan_in + fan_out))
    relu = MLP([400, 400, 2], seed=0).layers[0].W
    tanh = MLP([400, 400, 2], activation="tanh", seed=0).layers[0].W
    assert relu.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert tanh.std() == pytest.approx(np.sqrt(2 / 800), rel=0.02)


@pytest.mark.parametrize("kwargs", [{}, {"activation": "tanh"}, {"batch_norm": True},
                                    {"dropout": 0.9}, {"dtype": np.float32}])
def test_mlp_trains_the_spiral(kwargs, backend):
    X, y = datasets.spiral(50, 3, seed=1)
    net = MLP([2, 64, 3], seed=2, **kwargs)
    # tanh learns this data more slowly than ReLU: 300 full steps of size 1 reach
    # about 0.73 accuracy with it, 0.96 with ReLU (chance is 1/3)
    hist = gradient_descent(net, SoftmaxCrossEntropy(dtype=net.dtype), X, y, steps=300,
                            step_size=1.0)
    assert hist.loss[-1] < 0.7 * hist.loss[0]
    assert net.score(X, y) > 0.6


def test_bad_sizes_and_names():
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="sizes"):
        MLP([3, 0, 2])
    with pytest.raises(TypeError, match="sizes"):
        MLP(3)
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 4, 2], activation="swish")
    with pytest.raises(ValueError, match="init"):
        MLP([3, 4, 2], init="nope")
    with pytest.raises(ValueError, match="p"):
        MLP([3, 4, 2], dropout=1.5)
    assert isinstance(MLP([3, 2]), Sequential)
