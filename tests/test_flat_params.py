"""Flat parameters: a net keeps every parameter in one array and every gradient in
another; the layers' arrays are views into them."""
import pickle

import numpy as np
import pytest

from conftest import DTYPES
from fastnn.layers import BatchNorm, Dropout, Linear, Maxout, PReLU, ReLU
from fastnn.net import MLP, Sequential


def _net(dtype):
    return Sequential([Linear(4, 6, seed=0, dtype=dtype), BatchNorm(6, dtype=dtype),
                       PReLU(6, dtype=dtype), Dropout(0.8, seed=1, dtype=dtype),
                       Maxout(6, 5, k=3, seed=2, dtype=dtype), ReLU(dtype=dtype),
                       Linear(5, 3, seed=3, dtype=dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_parameter_and_gradient_is_a_view_into_the_flat_arrays(dtype):
    net = _net(dtype)
    assert net.flat_params.dtype == dtype and net.flat_params.ndim == 1
    assert net.flat_params.size == net.n_params == net.flat_grads.size
    offset = 0
    for layer, name, p, g in net.parameters():
        assert np.shares_memory(p, net.flat_params), (layer, name)
        assert np.shares_memory(g, net.flat_grads), (layer, name)
        # laid out in layer order, back to back
        np.testing.assert_array_equal(net.flat_params[offset:offset + p.size], p.ravel())
        offset += p.size
    assert offset == net.flat_params.size


def test_values_survive_binding():
    lin = Linear(3, 2, seed=5)
    W, b = lin.W.copy(), lin.b.copy()
    net = Sequential([lin])
    np.testing.assert_array_equal(net.layers[0].W, W)
    np.testing.assert_array_equal(net.layers[0].b, b)


def test_assigning_a_parameter_writes_into_the_flat_array():
    net = MLP([2, 5, 3], seed=0)
    lin = net.layers[0]
    before = net.flat_params.copy()
    new = np.full((2, 5), 0.5)
    lin.W = new                      # attribute assignment keeps the view
    assert np.shares_memory(lin.W, net.flat_params)
    np.testing.assert_array_equal(net.flat_params[:10], new.ravel())
    np.testing.assert_array_equal(net.flat_params[10:], before[10:])
    lin.W[0, 0] = 7.0                # so does in-place assignment
    assert net.flat_params[0] == 7.0
    net.flat_params[1] = -1.0        # and writing the flat array is seen by the layer
    assert lin.W[0, 1] == -1.0


def test_assigning_a_wrong_shape_is_refused():
    net = MLP([2, 5, 3], seed=0)
    with pytest.raises(ValueError, match="W has shape"):
        net.layers[0].W = np.zeros((5, 2))


def test_backward_writes_the_flat_gradient():
    net = MLP([2, 5, 3], seed=0)
    X = np.random.default_rng(0).standard_normal((7, 2))
    net.forward(X)
    net.backward(np.ones((7, 3)))
    assert np.any(net.flat_grads != 0)
    np.testing.assert_array_equal(net.flat_grads[:10], net.layers[0].dW.ravel())


def test_pickle_round_trip_rebinds_the_views():
    net = _net(np.float64)
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.flat_params, net.flat_params)
    for _, _, p, g in clone.parameters():
        assert np.shares_memory(p, clone.flat_params)
        assert np.shares_memory(g, clone.flat_grads)
    assert not np.shares_memory(clone.flat_params, net.flat_params)


def test_set_params_keeps_the_view():
    net = MLP([2, 5, 3], seed=0)
    net.layers[-1].set_params(b=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(net.flat_params[-3:], [1.0, 2.0, 3.0])


def test_assigning_the_flat_arrays_copies_into_them():
    net = _net(np.float64)
    flat = net.flat_params
    net.flat_params = np.arange(flat.size, dtype=np.float64)
    assert net.flat_params is flat and net.layers[0].W[0, 1] == 1.0   # views still valid
    net.flat_grads = np.ones(flat.size)
    assert np.all(net.layers[0].dW == 1)
    with pytest.raises(ValueError, match=r"flat_params must have shape \(\d+,\)"):
        net.flat_params = np.zeros(3)


def test_a_net_whose_layers_moved_to_another_refuses_to_train():
    """A layer belongs to the last net built from it: training the earlier net would
    write where its layers no longer read (the compiled plan: out of its arrays)."""
    from fastnn.datasets import spiral
    from fastnn.evaluate import build_evaluator
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.trainer import Trainer
    X, y = spiral(20, 2, seed=0)
    base = MLP([2, 16, 2], seed=0)
    Sequential(base.layers[:-1] + [ReLU(), Linear(16, 2, seed=1)])
    for train in (lambda: Trainer(base, batch_size=16, verbose=0).fit(X, y, epochs=1),
                  lambda: build_evaluator(base, SoftmaxCrossEntropy(), X, y)):
        with pytest.raises(ValueError, match=r"layers\[0\]\.W is no longer in this net's"):
            train()


def test_inside_a_net_every_layer_but_the_first_gives_its_input_gradient():
    X = np.random.default_rng(0).standard_normal((10, 3))
    net = Sequential([Linear(3, 4, seed=0), ReLU(), Linear(4, 2, seed=1, input_grad=False)])
    ref = Sequential([Linear(3, 4, seed=0), ReLU(), Linear(4, 2, seed=1)])
    for n in (net, ref):
        n.forward(X)
        n.backward(np.ones((10, 2)))
    np.testing.assert_array_equal(net.flat_grads, ref.flat_grads)


def test_the_input_width_comes_from_the_first_layer_that_has_one():
    net = Sequential([Dropout(0.8, seed=0), Linear(5, 3, seed=0)])
    assert net.n_features == 5
    with pytest.raises(ValueError, match="X has 4 columns"):
        net.forward(np.ones((2, 4)))
