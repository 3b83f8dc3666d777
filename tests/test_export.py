"""ONNX export: every layer type round-trips through onnxruntime to fastnn's own
inference forward (predict_scores / predict_proba / predict)."""
import os
import sys

import numpy as np
import pytest

# Imported, not importorskip'd: the test extra installs both, and a missing one must fail
# the suite rather than skip the export's only proof.
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from fastnn import io as fio  # noqa: E402
from fastnn.export import to_onnx  # noqa: E402
from fastnn.layers import (BatchNorm, Dropout, Layer, LeakyReLU, Linear, Maxout,  # noqa: E402
                           PReLU, ReLU, Sigmoid, Tanh)
from fastnn.losses import (HierarchicalSoftmax, L2Regression,  # noqa: E402
                           SoftmaxCrossEntropy)
from fastnn.net import MLP, Sequential  # noqa: E402
from fastnn.trainer import gradient_descent  # noqa: E402

DTYPES = [np.float32, np.float64]
D, K = 6, 4

# Tolerance, relative to the largest |score|.  onnxruntime computes the same formulas in
# another order (its own GEMM blocking, its own sigmoid/tanh approximations, batch norm
# as one scale and shift), so each result differs by a few ulp per operation, amplified
# by the length of the dot products (D, the hidden widths: < 16 here).  float32's eps is
# 1.2e-7, so 1e-5 leaves ~100 ulp; float64's is 2.2e-16, so 1e-12.  The error of a score
# is set by the magnitudes summed into it, not its own size, hence an absolute part
# scaled by the largest score.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(got, want, dtype):
    rtol = RTOL[np.dtype(dtype).type]
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1          # a shared test machine
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run(model, X, outputs=None):
    return session(model).run(outputs, {"X": X})


def data(dtype, n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)).astype(dtype)
    y = rng.integers(0, K, n)
    return X, y


def trained(layers, dtype, steps=8):
    """A net of `layers` after a few full-batch gradient steps (batch norm running
    statistics, PReLU slopes, dropout steps all move away from their initial values);
    left in training mode: the export must use inference semantics anyway."""
    net = Sequential(layers)
    X, y = data(dtype, seed=1)
    width = net.layers[-1].n_out
    if width == 1:
        loss, y = L2Regression(dtype=dtype), (y % 2).astype(dtype)
    else:
        loss, y = SoftmaxCrossEntropy(dtype=dtype), y % width
    gradient_descent(net, loss, X, y, steps=steps, step_size=0.3)
    return net


def check_roundtrip(net, dtype, **kwargs):
    X, _ = data(dtype, n=50, seed=2)
    model = to_onnx(net, **kwargs)
    (scores,) = run(model, X, ["scores"])
    assert_close(scores, net.predict_scores(X), dtype)
    return model


# ---- one net per layer type ---------------------------------------------------------

CASES = {
    "linear": lambda dt: [Linear(D, K, seed=0, dtype=dt)],
    "fused_relu": lambda dt: [Linear(D, 9, activation="relu", seed=0, dtype=dt),
                              Linear(9, K, seed=1, dtype=dt)],
    "fused_leaky_relu": lambda dt: [Linear(D, 9, activation="leaky_relu", alpha=0.2, seed=0,
                                           dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "fused_sigmoid": lambda dt: [Linear(D, 9, activation="sigmoid", init="glorot_normal",
                                        seed=0, dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "fused_tanh": lambda dt: [Linear(D, 9, activation="tanh", init="glorot_normal", seed=0,
                                     dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    # Linear then an activation layer: Sequential fuses them into one kernel
    "relu_layer": lambda dt: [Linear(D, 9, init="he_normal", seed=0, dtype=dt),
                              ReLU(dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "leaky_relu_layer": lambda dt: [Linear(D, 9, init="he_normal", seed=0, dtype=dt),
                                    LeakyReLU(0.3, dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "sigmoid_layer": lambda dt: [Linear(D, 9, init="glorot_normal", seed=0, dtype=dt),
                                 Sigmoid(dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "tanh_layer": lambda dt: [Linear(D, 9, init="glorot_normal", seed=0, dtype=dt),
                              Tanh(dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    # activation layers not fused: after a fused activation, after PReLU
    "unfused_activations": lambda dt: [Linear(D, 9, activation="relu", init="he_normal",
                                              seed=0, dtype=dt),
                                       Sigmoid(dtype=dt), LeakyReLU(0.05, dtype=dt),
                                       PReLU(9, dtype=dt), Tanh(dtype=dt),
                                       Linear(9, K, seed=1, dtype=dt)],
    "prelu": lambda dt: [Linear(D, 9, init="he_normal", seed=0, dtype=dt),
                         PReLU(9, alpha_init=0.25, dtype=dt), Linear(9, K, seed=1, dtype=dt)],
    "batchnorm": lambda dt: [Linear(D, 9, init="he_normal", seed=0, dtype=dt),
                             BatchNorm(9, momentum=0.5, dtype=dt), ReLU(dtype=dt),
                             Linear(9, K, seed=1, dtype=dt)],
    # batch norm not after an activation-free Linear: first, after a fused activation,
    # after maxout
    "batchnorm_elsewhere": lambda dt: [BatchNorm(D, momentum=0.5, dtype=dt),
                                       Linear(D, 9, activation="tanh", seed=0, dtype=dt),
                                       BatchNorm(9, momentum=0.5, dtype=dt),
                                       Maxout(9, 5, k=2, seed=1, dtype=dt),
                                       BatchNorm(5, momentum=0.5, dtype=dt),
                                       Linear(5, K, seed=2, dtype=dt)],
    "maxout": lambda dt: [Maxout(D, 7, k=3, init="he_normal", seed=0, dtype=dt),
                          Linear(7, K, seed=1, dtype=dt)],
    "maxout_k1": lambda dt: [Maxout(D, 7, k=1, seed=0, dtype=dt),
                             Linear(7, K, seed=1, dtype=dt)],
    "dropout_inverted": lambda dt: [Linear(D, 9, activation="relu", init="he_normal",
                                           seed=0, dtype=dt),
                                    Dropout(0.6, seed=3, dtype=dt),
                                    Linear(9, K, seed=1, dtype=dt)],
    "dropout_vanilla": lambda dt: [Linear(D, 9, activation="relu", init="he_normal",
                                          seed=0, dtype=dt),
                                   Dropout(0.6, mode="vanilla", seed=3, dtype=dt),
                                   Linear(9, K, seed=1, dtype=dt)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_roundtrip_per_layer_type(case, dtype):
    net = trained(CASES[case](dtype), dtype)
    check_roundtrip(net, dtype)
    if any(isinstance(layer, BatchNorm) for layer in net.layers):
        check_roundtrip(net, dtype, fold_batchnorm=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trained_state_is_nontrivial(dtype):
    """The round trips above test something: training moved the running statistics and
    the PReLU slopes, and vanilla dropout's scaling changes the scores."""
    net = trained(CASES["batchnorm"](dtype) + [PReLU(K, dtype=dtype)], dtype)
    bn, prelu = net.layers[1], net.layers[-1]
    assert np.abs(bn.running_mean).max() > 1e-3
    assert np.abs(bn.running_var - 1).max() > 1e-3
    assert np.abs(prelu.alpha - 0.25).max() > 1e-6
    check_roundtrip(net, dtype)
    check_roundtrip(net, dtype, fold_batchnorm=False)


def test_vanilla_dropout_scales_at_inference():
    dt = np.float32
    a = Sequential(CASES["dropout_vanilla"](dt))
    b = Sequential(CASES["dropout_inverted"](dt))
    X, _ = data(dt)
    sa, sb = (run(to_onnx(n), X)[0] for n in (a, b))
    # everything before the last Linear is the same: 0.6 * h versus h
    bias = a.layers[-1].b
    np.testing.assert_allclose(sa - bias, 0.6 * (sb - bias), rtol=1e-5,
                               atol=1e-5 * np.abs(sb).max())
    assert not np.allclose(sa, sb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_with_batchnorm_and_dropout(dtype):
    net = MLP([D, 10, 8, K], batch_norm=True, dropout=0.8, seed=0, dtype=dtype)
    X, y = data(dtype, seed=1)
    gradient_descent(net, SoftmaxCrossEntropy(dtype=dtype), X, y, steps=10, step_size=0.3)
    for fold in (True, False):
        model = check_roundtrip(net, dtype, fold_batchnorm=fold)
        ops = {node.op_type for node in model.graph.node}
        assert ("BatchNormalization" in ops) == (not fold)


def test_folding_leaves_no_batchnorm_nodes():
    net = Sequential(CASES["batchnorm"](np.float32))
    ops = [node.op_type for node in to_onnx(net).graph.node]
    assert ops == ["Gemm", "Relu", "Gemm"]     # the batch norm is inside the first Gemm


# ---- outputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_probabilities_and_label(dtype):
    net = trained(CASES["batchnorm"](dtype), dtype)
    X, _ = data(dtype, n=40, seed=5)
    model = to_onnx(net, probabilities="softmax", label=True)
    assert [o.name for o in model.graph.output] == ["scores", "probabilities", "label"]
    scores, proba, label = run(model, X)
    assert_close(scores, net.predict_scores(X), dtype)
    assert_close(proba, net.predict_proba(X), dtype)
    assert label.dtype == np.int64 and label.shape == (40,)
    np.testing.assert_array_equal(label, net.predict(X))
    (sig,) = run(to_onnx(net, probabilities="sigmoid"), X, ["probabilities"])
    assert_close(sig, 1 / (1 + np.exp(-net.predict_scores(X))), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_interface(dtype):
    net = Sequential(CASES["maxout"](dtype))
    model = to_onnx(net)
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    (inp,) = model.graph.input
    assert inp.name == "X" and inp.type.tensor_type.elem_type == elem
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == D      # a dynamic batch
    assert [o.name for o in model.graph.output] == ["scores"]
    assert model.opset_import[0].version == 18
    # any batch size, a single row included
    for n in (1, 3, 257):
        X, _ = data(dtype, n=n, seed=n)
        (scores,) = run(model, X)
        assert_close(scores, net.predict_scores(X), dtype)


def test_identity_net_gets_named_scores():
    net = Sequential([Dropout(0.5, dtype=np.float32)])       # the identity at inference
    X, _ = data(np.float32)
    model = to_onnx(net)
    (scores,) = run(model, X)
    np.testing.assert_array_equal(scores, X)
    dim = model.graph.input[0].type.tensor_type.shape.dim[1]
    assert not dim.HasField("dim_value") and not dim.HasField("dim_param")   # any width


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_first(dtype):
    """A net that starts with an activation (the input width is then the next layer's;
    such a net is not trained by a plan, hence random weights)."""
    net = Sequential([Tanh(dtype=dtype), Linear(D, 9, seed=0, dtype=dtype),
                      LeakyReLU(0.1, dtype=dtype), Linear(9, K, seed=1, dtype=dtype)])
    check_roundtrip(net, dtype)


def test_float64_leaky_slope_is_exact():
    """LeakyRelu's alpha attribute is float32: a float64 slope that float32 cannot hold
    goes in as a PRelu slope, one that it can as LeakyRelu."""
    dt = np.float64
    for alpha, op in ((0.1, "PRelu"), (0.25, "LeakyRelu")):
        net = Sequential([Linear(D, 9, activation="leaky_relu", alpha=alpha, seed=0,
                                 dtype=dt), Linear(9, K, seed=1, dtype=dt)])
        model = check_roundtrip(net, dt)
        assert [n.op_type for n in model.graph.node] == ["Gemm", op, "Gemm"]


# ---- estimators (duck-typed: model_ and out_activation_) -------------------------------

class StandIn:
    """What a fitted fastnn scikit-learn estimator exposes to to_onnx, with
    predict_proba as scikit-learn's MLPClassifier computes it."""

    def __init__(self, model, out_activation):
        self.model_ = model
        self.out_activation_ = out_activation

    def predict_proba(self, X):
        s = self.model_.predict_scores(X)
        if self.out_activation_ == "softmax":
            return self.model_.predict_proba(X)
        p = 1 / (1 + np.exp(-s))
        return np.hstack([1 - p, p]) if p.shape[1] == 1 else p


def _estimator_net(dtype, n_out):
    return trained([Linear(D, 9, activation="relu", init="he_normal", seed=0, dtype=dtype),
                    Linear(9, n_out, seed=1, dtype=dtype)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_activation,n_out", [("softmax", K), ("logistic", 1),
                                                  ("logistic", 3)])
def test_estimator_probabilities(out_activation, n_out, dtype):
    est = StandIn(_estimator_net(dtype, n_out), out_activation)
    X, _ = data(dtype, n=40, seed=6)
    label = not (out_activation == "logistic" and n_out > 1)
    model = to_onnx(est, label=label)
    out = dict(zip([o.name for o in model.graph.output], run(model, X)))
    assert_close(out["scores"], est.model_.predict_scores(X), dtype)
    want = est.predict_proba(X)
    assert_close(out["probabilities"], want, dtype)
    if label:
        np.testing.assert_array_equal(out["label"], np.argmax(want, axis=1))


def test_estimator_regressor_and_options():
    dt = np.float64
    est = StandIn(_estimator_net(dt, 2), "identity")
    model = to_onnx(est)
    assert [o.name for o in model.graph.output] == ["scores"]
    with pytest.raises(ValueError, match="regressor"):
        to_onnx(est, label=True)
    clf = StandIn(_estimator_net(dt, 1), "logistic")
    assert [o.name for o in to_onnx(clf, probabilities=None).graph.output] == ["scores"]
    # label without probabilities: still the argmax of [1 - p, p]
    model = to_onnx(clf, probabilities=None, label=True)
    X, _ = data(dt, n=30, seed=7)
    (label,) = run(model, X, ["label"])
    np.testing.assert_array_equal(label, np.argmax(clf.predict_proba(X), axis=1))
    with pytest.raises(ValueError, match="multilabel"):
        to_onnx(StandIn(_estimator_net(dt, 3), "logistic"), label=True)
    with pytest.raises(ValueError, match="probabilities"):
        to_onnx(clf, probabilities="softmax")
    with pytest.raises(ValueError, match="out_activation_"):
        to_onnx(StandIn(_estimator_net(dt, 2), "relu"))
    with pytest.raises(TypeError, match="model_"):
        to_onnx(StandIn("not a net", "softmax"))


# ---- a net trained with a hierarchical softmax ---------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tree", [None, (0, ((1, 2), (3, (4, (5, 6)))))],
                         ids=["balanced", "deep"])
def test_hierarchical_softmax(tree, dtype):
    n_classes = 7
    net = Sequential([Linear(D, 9, activation="tanh", init="glorot_normal", seed=0,
                             dtype=dtype), Linear(9, 5, seed=1, dtype=dtype)])
    hs = HierarchicalSoftmax(5, n_classes, tree=tree, seed=2, dtype=dtype)
    X, y = data(dtype, seed=1)
    gradient_descent(net, hs, X, y % n_classes, steps=20, step_size=0.5)
    assert np.abs(hs.b).max() > 1e-4                        # the tree's own parameters moved
    X, _ = data(dtype, n=50, seed=3)
    model = to_onnx(net, hierarchical_softmax=hs, label=True)
    scores, proba, label = run(model, X)
    h = net.predict_scores(X)
    assert_close(scores, h, dtype)
    want = hs.predict_proba(h)
    assert proba.shape == (50, n_classes)
    assert_close(proba, want, dtype)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=RTOL[dtype])
    np.testing.assert_array_equal(label, hs.predict(h))
    # large node logits (|u| up to ~1e3): log-sigmoid without overflow, and the small
    # probabilities as accurate as fastnn's relative to the largest
    hs.W[...] *= 1000 / np.abs(h @ hs.W.T).max()
    want = hs.predict_proba(h)
    assert want.min() < 1e-30
    (proba,) = run(to_onnx(net, hierarchical_softmax=hs), X, ["probabilities"])
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba, want, rtol=1e3 * RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_array_equal(np.argmax(proba, axis=1), hs.predict(h))
    assert [o.name for o in to_onnx(net, hierarchical_softmax=hs,
                                    probabilities=None).graph.output] == ["scores"]


def test_hierarchical_softmax_refusals():
    net = Sequential([Linear(D, 5)])
    hs = HierarchicalSoftmax(5, 4)
    with pytest.raises(TypeError, match="hierarchical_softmax=loss"):
        to_onnx(hs)
    for bad in ("softmax", "bogus"):
        with pytest.raises(ValueError, match="its own"):
            to_onnx(net, hierarchical_softmax=hs, probabilities=bad)
    with pytest.raises(ValueError, match="takes 3 features, the net gives 5"):
        to_onnx(net, hierarchical_softmax=HierarchicalSoftmax(3, 4))
    with pytest.raises(ValueError, match="float32"):
        to_onnx(net, hierarchical_softmax=HierarchicalSoftmax(5, 4, dtype=np.float32))
    with pytest.raises(TypeError, match="HierarchicalSoftmax"):
        to_onnx(net, hierarchical_softmax=SoftmaxCrossEntropy())
    with pytest.raises(ValueError, match="estimator"):
        to_onnx(StandIn(net, "softmax"), hierarchical_softmax=hs)


# ---- refusals ------------------------------------------------------------------------

class Square(Layer):
    """A user's own layer: no ONNX equivalent known to fastnn."""

    def _forward(self, x):
        return x * x


class MyReLU(ReLU):
    """A subclass may compute anything: refused too."""


@pytest.mark.parametrize("layer_cls", [Square, MyReLU])
def test_refuses_unknown_layers(layer_cls):
    net = Sequential([Linear(D, 5), layer_cls(), Linear(5, K)])
    with pytest.raises(TypeError, match=rf"layers\[1\] .*{layer_cls.__name__}"):
        to_onnx(net)


def test_refuses_what_is_not_a_net(tmp_path):
    with pytest.raises(TypeError, match="Sequential"):
        to_onnx([Linear(D, K)])
    net = Sequential([Linear(D, K)])
    with pytest.raises(ValueError, match="probabilities"):
        to_onnx(net, probabilities="softmax2")
    with pytest.raises(TypeError, match="fold_batchnorm"):
        to_onnx(net, fold_batchnorm="yes")
    with pytest.raises(TypeError):
        to_onnx(net, 3.5)
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)       # import onnx raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[onnx\]'"):
        to_onnx(Sequential([Linear(D, K)]))


# ---- writing ---------------------------------------------------------------------------

def test_writes_a_loadable_file(tmp_path):
    dt = np.float32
    net = trained(CASES["maxout"](dt), dt)
    path = tmp_path / "net.onnx"
    model = to_onnx(net, path, probabilities="softmax")
    loaded = onnx.load(str(path))
    assert loaded == model
    onnx.checker.check_model(str(path))
    X, _ = data(dt)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert_close(sess.run(["scores"], {"X": X})[0], net.predict_scores(X), dt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]   # no temp left


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old contents")
    net = Sequential([Linear(D, K, dtype=np.float32)])

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(fio.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        to_onnx(net, path)
    assert path.read_bytes() == b"old contents"              # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]
    monkeypatch.undo()
    to_onnx(net, path)
    assert onnx.load(str(path)).graph.output[0].name == "scores"


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        to_onnx(Sequential([Linear(D, K)]), tmp_path / "no" / "net.onnx")
    assert not os.path.exists(tmp_path / "no")


# ---- metadata and the command line -------------------------------------------------------

def test_metadata():
    net = Sequential([Linear(D, K, dtype=np.float32)])
    model = to_onnx(net, metadata={"classes": '["a", "b", "c", "d"]'})
    meta = session(model).get_modelmeta().custom_metadata_map
    assert meta["classes"] == '["a", "b", "c", "d"]'
    assert meta["dtype"] == "float32" and meta["fastnn_version"]
    with pytest.raises(TypeError, match="metadata"):
        to_onnx(net, metadata={"classes": ["a"]})
    with pytest.raises(ValueError, match=r"\['dtype'\] are keys fastnn writes itself"):
        to_onnx(net, metadata={"dtype": "float64"})
    with pytest.raises(TypeError, match="name must be a str or None, got int"):
        to_onnx(net, name=123)


def test_cli_export(tmp_path, capsys):
    import json

    import fastnn
    from fastnn import cli
    net = MLP([D, 10, 3], batch_norm=True, seed=0)
    X, y = data(np.float64, seed=1)
    gradient_descent(net, SoftmaxCrossEntropy(), X, y % 3, steps=5, step_size=0.3)
    model_path, out = tmp_path / "m.fastnn.safetensors", tmp_path / "m.onnx"
    fastnn.save(net, model_path, metadata={"classes": ["cat", "dog", "emu"]})
    assert cli.main(["export", str(model_path), str(out), "--probabilities", "softmax",
                     "--label"]) == 0
    assert "wrote" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scores, proba, label = sess.run(None, {"X": X})
    assert_close(scores, net.predict_scores(X), np.float64)
    assert_close(proba, net.predict_proba(X), np.float64)
    np.testing.assert_array_equal(label, net.predict(X))
    classes = json.loads(sess.get_modelmeta().custom_metadata_map["classes"])
    assert classes == ["cat", "dog", "emu"]
    assert cli.main(["export", str(model_path), str(out), "--no-fold-batchnorm"]) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "BatchNormalization" in ops


def test_cli_export_errors(tmp_path, capsys, monkeypatch):
    import fastnn
    from fastnn import cli
    model_path = tmp_path / "m.fastnn.safetensors"
    fastnn.save(Sequential([Linear(D, K)]), model_path)
    for argv, message in [
        (["export", str(tmp_path / "none"), str(tmp_path / "o.onnx")], "no such file"),
        (["export", str(model_path), str(tmp_path / "no" / "o.onnx")], "does not exist"),
        (["export", str(model_path), str(model_path)], "is an input file"),
    ]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastnn export: error: ") and message in err
        assert err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert cli.main(["export", str(model_path), str(tmp_path / "o.onnx")]) == 2
    assert "pip install 'fastnn[onnx]'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fastnn.safetensors"]


def _fitted(kind, dtype):
    """A fitted fastnn.sklearn estimator of each output kind, with its X."""
    import warnings

    from fastnn.sklearn import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, D)).astype(dtype)
    kw = dict(hidden_layer_sizes=(8,), max_iter=15, random_state=0, dtype=dtype)
    if kind == "regressor":
        est, y = MLPRegressor(**kw), X @ np.arange(1, D + 1, dtype=dtype)
    else:
        est = MLPClassifier(**kw)
        y = {"multiclass": rng.integers(0, 3, 120),
             "binary": np.where(X[:, 0] > 0, "yes", "no"),
             "multilabel": (X[:, :3] > 0).astype(int)}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # too few iterations to converge
        est.fit(X, y)
    return est, X


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regressor"])
def test_a_fitted_estimator_exports_to_its_own_predictions(kind, dtype):
    """The real fastnn.sklearn estimators (not a stand-in): onnxruntime's probabilities
    equal predict_proba (a binary classifier's one logistic output becomes the pair
    [1 - p, p]), its labels index classes_ to predict's answers, and a regressor's
    scores are predict's values."""
    est, X = _fitted(kind, dtype)
    classify = kind in ("multiclass", "binary")
    model = to_onnx(est, label=classify)
    names = [o.name for o in session(model).get_outputs()]
    out = dict(zip(names, run(model, X)))
    if kind == "regressor":
        assert "probabilities" not in out
        assert_close(out["scores"].reshape(est.predict(X).shape), est.predict(X), dtype)
        return
    # predict_proba answers in float64 whatever the net's dtype (documented); the graph
    # in the net's: compared at the net's tolerance
    assert out["probabilities"].dtype == dtype
    assert_close(out["probabilities"].astype(np.float64), est.predict_proba(X), dtype)
    if classify:
        np.testing.assert_array_equal(est.classes_[out["label"].ravel()], est.predict(X))


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
@pytest.mark.parametrize("classes", [2, 3])
def test_a_hinge_classifier_exports_its_labels(loss, classes):
    """out_activation_ 'identity' is a regressor's, or a hinge classifier's: the label
    is the argmax of the scores, as predict's."""
    import warnings

    from fastnn.sklearn import MLPClassifier
    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, D))
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :classes], axis=1)]
    est = MLPClassifier((8,), loss=loss, max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # too few iterations to converge
        est.fit(X, y)
    model = to_onnx(est, label=True)
    assert [o.name for o in model.graph.output] == ["scores", "label"]
    (label,) = run(model, X, ["label"])
    np.testing.assert_array_equal(est.classes_[label], est.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_binary_label_near_a_zero_score_follows_predict(dtype):
    """One logistic output: the label is score > 0, as predict's, also for a score so
    small that its sigmoid rounds to 0.5 (where the argmax of [1 - p, p] says 0)."""
    tiny = 1e-8 if dtype == np.float32 else 1e-17
    net = Sequential([Linear(D, 1, dtype=dtype)])
    net.layers[0].W[...] = 0
    est = StandIn(net, "logistic")
    X = np.ones((4, D), dtype=dtype)
    for b, want in ((tiny, 1), (-tiny, 0), (0.0, 0)):
        net.layers[0].b[...] = b
        assert dtype(1) / (1 + np.exp(-dtype(b))) == 0.5
        for probabilities in ("auto", None):
            (label,) = run(to_onnx(est, label=True, probabilities=probabilities), X,
                           ["label"])
            np.testing.assert_array_equal(label, [want] * 4)
