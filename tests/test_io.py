"""Model files, checkpoints and pickles (fastnn.io, __getstate__/__setstate__)."""
import json
import os
import pathlib
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import safetensors.numpy as stnp

import fastnn
from fastnn import io as fio
from fastnn import optim
from fastnn import regularization as R
from fastnn.datasets import spiral
from fastnn.layers import (BatchNorm, Dropout, LeakyReLU, Linear, Maxout, PReLU, ReLU,
                           Sigmoid, Tanh)
from fastnn.losses import HierarchicalSoftmax, SoftmaxCrossEntropy
from fastnn.net import MLP, Sequential
from fastnn.plan import build_plan
from fastnn.trainer import gradient_descent

REPO = pathlib.Path(__file__).resolve().parents[1]


def _every_layer_net(dtype=np.float64):
    return Sequential([
        Maxout(3, 8, 2, seed=0, input_grad=False, dtype=dtype),
        BatchNorm(8, momentum=0.8, eps=1e-4, dtype=dtype),
        PReLU(8, alpha_init=0.1, dtype=dtype),
        Linear(8, 6, seed=1, regularizer=[R.L2(0.1), R.MaxNorm(2.5)], regularize_bias=True,
               dtype=dtype),
        Tanh(dtype=dtype), Dropout(0.7, mode="vanilla", seed=2, dtype=dtype),
        Linear(6, 5, activation="leaky_relu", alpha=0.2, seed=3, regularizer=R.NONE,
               dtype=dtype),
        Dropout(0.9, seed=2**64 - 1, dtype=dtype),
        Linear(5, 4, seed=3, regularizer=R.ElasticNet(1e-3, 2e-3), dtype=dtype),
        LeakyReLU(0.1, dtype=dtype), Linear(4, 4, seed=4, regularizer=R.L1(0.5), dtype=dtype),
        ReLU(dtype=dtype), Linear(4, 2, seed=5, dtype=dtype),
        Sigmoid(dtype=dtype)])


def _bits(a):
    return np.ascontiguousarray(a).tobytes()


def _header(path):
    data = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])


def _resave(src, dst, *, tensors=None, meta=None):
    """Re-write a fastnn file through safetensors with edited tensors and/or metadata
    (a well-formed safetensors file whose fastnn content lies)."""
    header = _header(src)
    metadata = header["__metadata__"]
    arrays = stnp.load_file(str(src))
    if tensors:
        tensors(arrays)
    if meta:
        meta(metadata)
    stnp.save_file(arrays, str(dst), metadata=metadata)
    return dst


def _edit_arch(edit):
    def meta(m):
        arch = json.loads(m["architecture"])
        edit(arch)
        m["architecture"] = json.dumps(arch)
    return meta


def _refused(path, *fragments):
    """load(path) raises ValueError naming the file and each fragment."""
    with pytest.raises(ValueError) as info:
        fastnn.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


# ---- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layer_round_trips_to_an_identical_net(tmp_path, dtype):
    net = _every_layer_net(dtype)
    X = np.random.default_rng(0).standard_normal((9, 3))
    net.forward(X)
    net.forward(X)                        # running statistics and dropout steps move
    net.layers[7].eval()
    path = tmp_path / "net.safetensors"
    fastnn.save(net, path, metadata={"labels": ["cat", "dog"], "scale": 0.5})
    clone, meta = fastnn.load(path, with_metadata=True)
    assert meta == {"labels": ["cat", "dog"], "scale": 0.5}
    assert fio.read_metadata(path) == meta
    assert type(clone) is Sequential and clone.dtype == np.dtype(dtype)
    assert [type(a) for a in clone.layers] == [type(a) for a in net.layers]
    assert repr(clone) == repr(net)
    assert _bits(clone.flat_params) == _bits(net.flat_params)
    for mine, theirs in zip(net.layers, clone.layers):
        assert theirs.training == mine.training
        for attr in ("alpha", "p", "mode", "seed", "step", "k", "momentum", "eps",
                     "input_grad", "regularize_bias", "activation"):
            if hasattr(mine, attr) and not isinstance(getattr(mine, attr), np.ndarray):
                assert getattr(theirs, attr) == getattr(mine, attr), attr
        assert repr(getattr(theirs, "regularizer", None)) == \
            repr(getattr(mine, "regularizer", None))
    assert clone.layers[5].step == 2 and clone.layers[7].seed == 2**64 - 1
    bn, bn2 = net.layers[1], clone.layers[1]
    assert _bits(bn2.running_mean) == _bits(bn.running_mean)
    assert _bits(bn2.running_var) == _bits(bn.running_var)
    assert not np.all(bn.running_mean == 0)                 # it did move
    assert _bits(clone.predict_scores(X)) == _bits(net.predict_scores(X))
    # training mode too: same dropout masks (seed, step) and batch statistics
    assert _bits(clone.forward(X)) == _bits(net.forward(X))


def test_mlp_round_trips_as_an_mlp_and_the_method_saves(tmp_path):
    net = MLP([2, 7, 5, 3], activation="tanh", dropout=0.6, batch_norm=True, seed=3,
              dtype=np.float32)
    path = tmp_path / "mlp.safetensors"
    net.save(path)
    clone = fastnn.load(str(path))
    assert type(clone) is MLP
    assert clone.sizes == [2, 7, 5, 3] and clone.activation == "tanh"
    assert _bits(clone.flat_params) == _bits(net.flat_params)
    assert fio.read_metadata(path) == {}
    names = set(_header(path)) - {"__metadata__"}
    assert {"layers.0.W", "layers.0.b", "layers.1.gamma", "layers.1.running_mean",
            "layers.1.running_var"} <= names
    meta = _header(path)["__metadata__"]
    assert meta["format"] == "fastnn" and meta["kind"] == "model"
    assert meta["fastnn_version"] == fastnn.__version__
    assert int(meta["format_version"]) == fio.FORMAT_VERSION


def test_loaded_net_trains_like_the_original(tmp_path):
    X, y = spiral(50, 3, seed=0)
    net = MLP([2, 20, 3], seed=0)
    gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=5, step_size=0.5)
    fastnn.save(net, tmp_path / "n.safetensors")
    clone = fastnn.load(tmp_path / "n.safetensors")
    for n in (net, clone):
        gradient_descent(n, SoftmaxCrossEntropy(), X, y, steps=10, step_size=0.5)
    assert _bits(clone.flat_params) == _bits(net.flat_params)


def test_save_refuses_what_a_file_cannot_hold(tmp_path):
    class MyLinear(Linear):
        pass

    class MyReg(R.L2):
        pass

    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"net.layers\[1\] is a .*MyLinear"):
        fastnn.save(Sequential([Linear(2, 3), MyLinear(3, 2)]), path)
    with pytest.raises(TypeError, match=r"net.layers\[0\].regularizer"):
        fastnn.save(Sequential([Linear(2, 3, regularizer=MyReg(0.1))]), path)
    with pytest.raises(TypeError, match="net must be a fastnn Sequential"):
        fastnn.save(Linear(2, 3), path)
    with pytest.raises(TypeError, match="metadata"):
        fastnn.save(MLP([2, 3]), path, metadata={"f": object()})
    with pytest.raises(TypeError, match="metadata must be None or a dict"):
        fastnn.save(MLP([2, 3]), path, metadata=["a"])
    with pytest.raises(ValueError, match="metadata"):
        fastnn.save(MLP([2, 3]), path, metadata={"x": float("nan")})
    with pytest.raises(TypeError, match="path must be"):
        fastnn.save(MLP([2, 3]), 3.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fastnn.save(MLP([2, 3]), tmp_path / "no" / "x.safetensors")
    assert not os.listdir(tmp_path)                    # nothing half-written left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = MLP([2, 4, 3], seed=0)
    fastnn.save(old, path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        fastnn.save(MLP([2, 4, 3], seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "m.safetensors"
    fastnn.save(MLP([2, 3]), path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask     # not mkstemp's private 0600
    os.chmod(path, 0o640)
    fastnn.save(MLP([2, 3]), path)
    assert path.stat().st_mode & 0o777 == 0o640


# ---- checkpoints and exact resume ------------------------------------------------------------

def _resume_setup():
    X, y = spiral(100, 3, seed=1)
    return X, y, dict(batch_size=32, regularizer=1e-3)


def _steps(plan, rng, k, n_rows):
    plan.run(k, rng.integers(0, n_rows, size=k * plan.batch_size).astype(np.int64))


def _optimizer():
    return optim.Adam(3e-2, schedule=optim.StepDecay(0.5, every=3))


@pytest.mark.parametrize("how", ["restore", "by_hand", "no_t", "no_state"])
def test_resumed_training_ends_bit_identical(tmp_path, backend, how):
    X, y, kw = _resume_setup()
    loss = SoftmaxCrossEntropy()
    # ten steps without stopping
    net = MLP([2, 30, 30, 3], dropout=0.8, seed=0)
    plan = build_plan(net, loss, optimizer=_optimizer(), **kw).bind(X, y)
    rng = np.random.default_rng(7)
    _steps(plan, rng, 5, len(X))
    _steps(plan, rng, 5, len(X))
    # five steps, a checkpoint, a new process's worth of objects, five more
    net2 = MLP([2, 30, 30, 3], dropout=0.8, seed=0)
    plan2 = build_plan(net2, loss, optimizer=_optimizer(), **kw).bind(X, y)
    rng2 = np.random.default_rng(7)
    _steps(plan2, rng2, 5, len(X))
    path = tmp_path / "ckpt.safetensors"
    fio.save_checkpoint(path, net2, optimizer=plan2.optimizer, optimizer_state=plan2.state,
                        step=plan2.t, epoch=1, rng_state=rng2.bit_generator.state,
                        extra={"best": 0.5})
    del net2, plan2, rng2
    ck = fio.load_checkpoint(path)
    assert ck.step == 5 and ck.epoch == 1 and ck.extra == {"best": 0.5}
    assert [lay.step for lay in ck.net.layers if isinstance(lay, Dropout)] == [5, 5]
    plan3 = build_plan(ck.net, loss, optimizer=ck.optimizer, **kw).bind(X, y)
    if how == "restore":
        ck.restore(plan3)
    elif how == "by_hand":
        for dst, src in zip(plan3.state, ck.optimizer_state):
            dst[...] = src
        plan3.t = ck.step
        if hasattr(plan3, "_plan"):
            plan3._plan.set_t(ck.step)
    elif how == "no_t":                     # controls: each missing piece shows
        for dst, src in zip(plan3.state, ck.optimizer_state):
            dst[...] = src
    else:
        plan3.t = ck.step
        if hasattr(plan3, "_plan"):
            plan3._plan.set_t(ck.step)
    rng3 = np.random.default_rng()
    rng3.bit_generator.state = ck.rng_state
    _steps(plan3, rng3, 5, len(X))
    same = _bits(ck.net.flat_params) == _bits(net.flat_params)
    assert same == (how in ("restore", "by_hand"))
    if same:
        assert plan3.t == plan.t == 10
        assert all(_bits(a) == _bits(b) for a, b in zip(plan3.state, plan.state))
        assert [lay.step for lay in ck.net.layers if isinstance(lay, Dropout)] == \
            [lay.step for lay in net.layers if isinstance(lay, Dropout)] == [10, 10]


@pytest.mark.parametrize("opt", [
    optim.SGD(0.3), optim.SGD(lr=0.2, schedule=optim.InverseTimeDecay(0.1)),
    optim.Momentum(0.1, mu=0.8), optim.Nesterov(0.2, 0.7, schedule=optim.Constant()),
    optim.Adagrad(0.05, eps=1e-6, schedule=optim.ExponentialDecay(0.01)),
    optim.RMSProp(0.01, decay_rate=0.9, eps=1e-7), optim.Adam(1e-3, 0.8, 0.99, 1e-7)])
def test_checkpoint_rebuilds_every_optimizer(tmp_path, opt):
    net = MLP([2, 4, 3], seed=0, dtype=np.float32)
    state = tuple(np.arange(net.n_params, dtype=np.float32) * (j + 1)
                  for j in range(opt.n_state))
    path = tmp_path / "c.safetensors"
    fio.save_checkpoint(path, net, optimizer=opt, optimizer_state=state, step=12)
    ck = fio.load_checkpoint(path)
    assert type(ck.optimizer) is type(opt) and repr(ck.optimizer) == repr(opt)
    assert ck.optimizer.hyper == opt.hyper and ck.optimizer.schedule == opt.schedule
    assert len(ck.optimizer_state) == opt.n_state
    for a, b in zip(ck.optimizer_state, state):
        assert a.dtype == b.dtype and _bits(a) == _bits(b)
        a[0] = 99                                          # a writeable copy
    assert ck.step == 12 and ck.epoch == 0 and ck.rng_state is None and ck.extra == {}
    assert _bits(ck.net.flat_params) == _bits(net.flat_params)
    # fastnn.load takes the net out of a checkpoint; a model file is no checkpoint
    assert _bits(fastnn.load(path).flat_params) == _bits(net.flat_params)
    fastnn.save(net, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="not a checkpoint"):
        fio.load_checkpoint(tmp_path / "m.safetensors")


@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_checkpoint_keeps_the_generator_state(tmp_path, bitgen):
    rng = np.random.Generator(bitgen(11))
    rng.random(3)
    path = tmp_path / "c.safetensors"
    fio.save_checkpoint(path, MLP([2, 3]), rng_state=rng)
    again = np.random.Generator(bitgen())
    again.bit_generator.state = fio.load_checkpoint(path).rng_state
    assert _bits(again.random(5)) == _bits(rng.random(5))


def test_checkpoint_argument_errors(tmp_path):
    net, path = MLP([2, 3]), tmp_path / "c.safetensors"
    with pytest.raises(ValueError, match="optimizer_state has 1 arrays but Adam keeps 2"):
        fio.save_checkpoint(path, net, optimizer="adam",
                            optimizer_state=(np.zeros(net.n_params),))
    with pytest.raises(TypeError, match="optimizer_state must be None or a tuple"):
        fio.save_checkpoint(path, net, optimizer_state=np.zeros(3))
    with pytest.raises(TypeError, match=r"optimizer_state\[0\] must be float32"):
        fio.save_checkpoint(path, net, optimizer_state=(np.zeros(3, int),))
    with pytest.raises(TypeError, match="rng_state must be"):
        fio.save_checkpoint(path, net, rng_state=42)
    with pytest.raises(ValueError, match="step must be >= 0"):
        fio.save_checkpoint(path, net, step=-1)
    with pytest.raises(TypeError, match="extra"):
        fio.save_checkpoint(path, net, extra={"a": {1, 2}})

    class MyAdam(optim.Adam):
        pass

    with pytest.raises(TypeError, match="optimizer must be one of fastnn's"):
        fio.save_checkpoint(path, net, optimizer=MyAdam())
    assert not path.exists()
    fio.save_checkpoint(path, net, optimizer="adam",
                        optimizer_state=tuple(np.zeros(net.n_params + 1) for _ in "mv"))
    plan = build_plan(fio.load_checkpoint(path).net, SoftmaxCrossEntropy(),
                      optimizer="adam", batch_size=4)
    with pytest.raises(ValueError, match=r"state\[0\] is float64 \(10,\)"):
        fio.load_checkpoint(path).restore(plan)


# ---- atomic writes under SIGKILL -------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    import fastnn
    path, mode = sys.argv[1], sys.argv[2]
    nets = []
    for value in (1.0, 2.0):
        net = fastnn.net.MLP([400, 2000, 10], seed=0)
        net.flat_params[:] = value
        nets.append(net)
    if mode == "stall":             # stop inside the write, after the bytes, before rename
        real = os.fsync
        def fsync(fd):
            real(fd)
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
                print("written", flush=True)
                import time; time.sleep(60)
        os.fsync = fsync
        fastnn.save(nets[1], path)
    i = 0
    while True:
        fastnn.save(nets[i % 2], path)
        if i == 0:
            print("saved", flush=True)
        i += 1
""")


def _child(path, mode):
    # run outside the repository: the child must import the package under test (the
    # installed one), not the unbuilt source tree the current directory would give
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode],
                            cwd=pathlib.Path(path).parent, stdout=subprocess.PIPE, text=True)


def _complete(path):
    """The file loads and holds one whole net: every parameter 1.0 or every one 2.0."""
    net = fastnn.load(path)
    values = np.unique(net.flat_params)
    assert values.size == 1 and values[0] in (1.0, 2.0), values[:5]
    return values[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL, /proc")
def test_sigkill_during_saves_leaves_a_complete_file(tmp_path):
    path = tmp_path / "big.safetensors"
    start = MLP([400, 2000, 10], seed=0)
    start.flat_params[:] = 1.0
    fastnn.save(start, path)
    size = path.stat().st_size
    assert size > 6_000_000                            # large enough to take a while
    rnd = random.Random(0)
    for _ in range(5):
        child = _child(path, "loop")
        try:
            assert child.stdout.readline().strip() == "saved"
            time.sleep(rnd.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert path.stat().st_size == size
        _complete(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL, /proc")
def test_sigkill_between_write_and_rename_keeps_the_old_file(tmp_path):
    path = tmp_path / "big.safetensors"
    start = MLP([400, 2000, 10], seed=0)
    start.flat_params[:] = 1.0
    fastnn.save(start, path)
    before = path.read_bytes()
    child = _child(path, "stall")
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert path.read_bytes() == before                 # the target was never written into
    assert _complete(path) == 1.0
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".big.safetensors.")
    assert _complete(leftovers[0]) == 2.0              # the new bytes were all there


# ---- what load refuses -------------------------------------------------------------------------

@pytest.fixture
def good(tmp_path):
    net = MLP([3, 5, 2], dropout=0.5, batch_norm=True, seed=0)
    path = tmp_path / "good.safetensors"
    fastnn.save(net, path)
    return path


def test_truncated_files_are_refused(good, tmp_path):
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    for cut, what in [(0, "truncated"), (5, "truncated"), (8 + n // 2, "truncated"),
                      (8 + n, "truncated"), (len(data) - 1, "truncated")]:
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        _refused(bad, what)


def test_corrupt_headers_are_refused(good, tmp_path):
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n]
    bad = tmp_path / "badjson.safetensors"
    bad.write_bytes(data[:8] + b"{" + header[1:n // 2] + b"\x00garbage" +
                    header[n // 2 + 8:] + data[8 + n:])
    _refused(bad, "corrupt header")
    bad = tmp_path / "list.safetensors"
    body = b"[1, 2, 3]"
    bad.write_bytes(struct.pack("<Q", len(body)) + body)
    _refused(bad, "corrupt header", "not a JSON object")
    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(struct.pack("<Q", 2**40) + data[8:])
    _refused(bad, "header length field says")
    # offsets that lie: two tensors swap byte ranges of different sizes
    h = json.loads(header)
    h["layers.0.W"]["data_offsets"], h["layers.0.b"]["data_offsets"] = \
        h["layers.0.b"]["data_offsets"], h["layers.0.W"]["data_offsets"]
    body = json.dumps(h).encode()
    bad = tmp_path / "offsets.safetensors"
    bad.write_bytes(struct.pack("<Q", len(body)) + body + data[8 + n:])
    _refused(bad, "corrupt or truncated safetensors file")


def test_foreign_and_unsafe_files_are_refused(good, tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    stnp.save_file({"layers.0.W": np.zeros((3, 5))}, str(foreign))
    _refused(foreign, "not one written by fastnn")
    stnp.save_file({"w": np.zeros(3)}, str(foreign), metadata={"format": "pt"})
    _refused(foreign, "not one written by fastnn")
    # an .npz holding a pickled object whose unpickling would leave a mark
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    npz = tmp_path / "weights.npz"
    np.savez(npz, W=np.array([Payload()], dtype=object))
    _refused(npz, "zip archive", "never pickles")
    pkl = tmp_path / "net.pkl"
    pkl.write_bytes(pickle.dumps(Payload()))
    _refused(pkl, "pickle")
    npy = tmp_path / "w.npy"
    np.save(npy, np.zeros(3))
    _refused(npy, ".npy")
    assert not marker.exists()


@pytest.mark.parametrize("where, value, fragment", [
    ("layer", "os.system", "unknown layer class 'os.system'"),
    ("layer", "Conv2D", "unknown layer class 'Conv2D'"),
    ("layer", "Layer", "unknown layer class 'Layer'"),
    ("net", "os.system", "unknown net class 'os.system'"),
    ("net", "builtins.eval", "unknown net class"),
    ("regularizer", "os.system", "unknown regularizer 'os.system'"),
])
def test_classes_outside_the_whitelist_are_refused(good, tmp_path, where, value, fragment):
    def edit(arch):
        if where == "layer":
            arch["layers"][1]["class"] = value
        elif where == "net":
            arch["class"] = value
        else:
            arch["layers"][0]["args"]["regularizer"] = {"type": value, "reg": 1.0}

    bad = _resave(good, tmp_path / "bad.safetensors", meta=_edit_arch(edit))
    _refused(bad, fragment)


@pytest.mark.parametrize("edit, fragment", [
    (lambda a: a["layers"][0]["args"].update(n_in="3"), "n_in must be an int"),
    (lambda a: a["layers"][0]["args"].update(n_in=4), "tensor layers.0.W has shape (3, 5)"),
    (lambda a: a["layers"][0]["args"].update(n_in=-3), "n_in must be >= 1"),
    (lambda a: a["layers"][0]["args"].update(extra=1), "Linear takes the arguments"),
    (lambda a: a["layers"][0]["args"].pop("alpha"), "Linear takes the arguments"),
    (lambda a: a["layers"][0]["args"].update(dtype="float32"), "the net's is 'float64'"),
    (lambda a: a["layers"][0]["args"].update(activation="os.system"), "unknown activation"),
    (lambda a: a["layers"][3]["state"].pop("step"), "state must be {step}"),
    (lambda a: a["layers"][3]["args"].update(seed="random"), "seed must be an int"),
    (lambda a: a["layers"][3]["args"].update(p=2.0), "p must be <= 1.0"),
    (lambda a: a.update(layers=[]), "layers must be a non-empty list"),
    (lambda a: a.update(dtype="float16"), "dtype must be 'float32' or 'float64'"),
    (lambda a: a.update(sizes="3,5,2"), "an MLP needs sizes"),
])
def test_lying_architectures_are_refused(good, tmp_path, edit, fragment):
    _refused(_resave(good, tmp_path / "bad.safetensors", meta=_edit_arch(edit)), fragment)


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: t.pop("layers.1.running_var"), "tensor(s) missing: layers.1.running_var"),
    (lambda t: t.pop("layers.0.W"), "tensor(s) missing: layers.0.W"),
    (lambda t: t.update({"layers.0.extra": np.zeros(2)}), "unexpected tensor(s) layers.0.extra"),
    (lambda t: t.update({"__import__": np.zeros(2)}), "unexpected tensor(s) __import__"),
    (lambda t: t.update({"layers.0.W": np.zeros((5, 3))}),
     "tensor layers.0.W has shape (5, 3), the architecture says (3, 5)"),
    (lambda t: t.update({"layers.0.b": t["layers.0.b"].astype(np.float32)}),
     "tensor layers.0.b has dtype float32, the architecture says float64"),
    (lambda t: t.update({"layers.0.b": t["layers.0.b"].astype(np.int64)}),
     "tensor layers.0.b has dtype I64"),
])
def test_tensors_that_do_not_match_the_architecture_are_refused(good, tmp_path, edit, fragment):
    _refused(_resave(good, tmp_path / "bad.safetensors", tensors=edit), fragment)


def test_newer_format_versions_are_refused(good, tmp_path):
    def newer(m):
        m["format_version"] = "2"
        m["fastnn_version"] = "9.0"

    msg = _refused(_resave(good, tmp_path / "new.safetensors", meta=newer),
                   "newer fastnn", "'9.0'", "upgrade fastnn")
    assert "format 1" in msg

    def garbled(m):
        m["format_version"] = "one"

    _refused(_resave(good, tmp_path / "g.safetensors", meta=garbled), "format_version")


def test_checkpoint_keeps_a_loss_s_own_parameters_and_their_state(tmp_path):
    net, path = MLP([2, 3], dtype=np.float32), tmp_path / "c.safetensors"
    W = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([0.5, -1.0], dtype=np.float32)
    state = (np.full(8, 3.0, np.float32), np.full(8, 4.0, np.float32))
    fio.save_checkpoint(path, net, optimizer="adam", loss_params={"W": W, "b": b},
                        loss_state=state)
    ck = fio.load_checkpoint(path)
    assert sorted(ck.loss_params) == ["W", "b"]
    assert _bits(ck.loss_params["W"]) == _bits(W) and ck.loss_params["W"].shape == (2, 3)
    assert _bits(ck.loss_params["b"]) == _bits(b)
    assert [_bits(a) for a in ck.loss_state] == [_bits(a) for a in state]
    # without them the header has no such entries, and the checkpoint reads back empty
    fio.save_checkpoint(path, net)
    assert "loss_params" not in json.loads(_header(path)["__metadata__"]["checkpoint"])
    ck = fio.load_checkpoint(path)
    assert ck.loss_params == {} and ck.loss_state == ()
    with pytest.raises(ValueError, match="loss_params names must be identifiers"):
        fio.save_checkpoint(path, net, loss_params={"W.x": W})
    with pytest.raises(TypeError, match=r"loss_params\['W'\] must be float32 or float64"):
        fio.save_checkpoint(path, net, loss_params={"W": W.astype(int)})
    with pytest.raises(TypeError, match="loss_state must be None or a tuple"):
        fio.save_checkpoint(path, net, loss_state=W)


def test_checkpoint_restore_puts_a_loss_s_weights_and_state_into_a_plan(tmp_path):
    """A plan with a hierarchical softmax, checkpointed by hand and restored into a
    plan built from the checkpoint's net and a loss with other weights, takes the
    uninterrupted run's next steps bit for bit."""
    from fastnn.losses import HierarchicalSoftmax
    from fastnn.plan import build_plan
    X, y = spiral(40, 3, seed=0)
    idx = np.random.default_rng(0).integers(0, X.shape[0], 6 * 20).astype(np.int64)

    def plan(net, loss):
        return build_plan(net, loss, optimizer="adam", batch_size=20).bind(X, y)
    whole = plan(MLP([2, 8, 6], seed=0), HierarchicalSoftmax(6, 3, seed=0))
    whole.run(6, idx)
    first = plan(MLP([2, 8, 6], seed=0), HierarchicalSoftmax(6, 3, seed=0))
    first.run(3, idx[:60])
    path = tmp_path / "c.safetensors"
    fio.save_checkpoint(path, first.net, optimizer="adam", optimizer_state=first.state,
                        step=first.t, loss_params=first.loss.params,
                        loss_state=first.loss_state)
    ck = fio.load_checkpoint(path)
    again = ck.restore(plan(ck.net, HierarchicalSoftmax(6, 3, seed=5)))
    again.run(3, idx[60:])
    assert _bits(again.net.flat_params) == _bits(whole.net.flat_params)
    assert _bits(again.loss._own_flat()[0]) == _bits(whole.loss._own_flat()[0])


def test_a_loss_s_state_must_fit_its_parameters_and_the_optimizer(tmp_path):
    net, path = MLP([2, 3]), tmp_path / "c.safetensors"
    W, b = np.ones((2, 3)), np.zeros(2)
    ok = (np.zeros(8), np.zeros(8))
    with pytest.raises(ValueError, match=r"loss_state has 1 arrays but Adam keeps 2"):
        fio.save_checkpoint(path, net, optimizer="adam", loss_params={"W": W, "b": b},
                            loss_state=ok[:1])
    with pytest.raises(ValueError, match=r"loss_state\[0\] has shape \(1,\), not \(8,\)"):
        fio.save_checkpoint(path, net, optimizer="adam", loss_params={"W": W, "b": b},
                            loss_state=(np.zeros(1), np.zeros(1)))
    with pytest.raises(ValueError, match="mix dtypes"):
        fio.save_checkpoint(path, net, loss_params={"W": W, "b": b},
                            loss_state=(np.zeros(8, np.float32),))
    with pytest.raises(ValueError, match="loss_state given without loss_params"):
        fio.save_checkpoint(path, net, loss_state=ok)
    assert not path.exists()
    # a file that drops one of Adam's two loss-state arrays, header and tensor alike
    fio.save_checkpoint(path, net, optimizer="adam", loss_params={"W": W, "b": b},
                        loss_state=ok)

    def meta(m):
        ck = json.loads(m["checkpoint"])
        ck["loss_state"].pop()
        m["checkpoint"] = json.dumps(ck)

    bad = _resave(path, tmp_path / "bad.safetensors", meta=meta,
                  tensors=lambda t: t.pop("loss_state.1"))
    with pytest.raises(ValueError, match=r"bad\.safetensors.*loss_state has 1 arrays but "
                                         r"Adam keeps 2"):
        fio.load_checkpoint(bad)


def test_a_refused_restore_changes_nothing(tmp_path):
    """A checkpoint of an Adam plan with a hierarchical softmax, restored into an SGD plan
    (whose loss keeps no optimizer state): refused before the plan's state or the loss's
    weights change."""
    from fastnn.losses import HierarchicalSoftmax
    from fastnn.plan import build_plan
    X, y = spiral(20, 3, seed=0)
    first = build_plan(MLP([2, 8, 6], seed=0), HierarchicalSoftmax(6, 3, seed=0),
                       optimizer="adam", batch_size=60).bind(X, y)
    first.run(2)
    path = tmp_path / "c.safetensors"
    fio.save_checkpoint(path, first.net, optimizer="adam", optimizer_state=first.state,
                        step=first.t, loss_params=first.loss.params,
                        loss_state=first.loss_state)
    ck = fio.load_checkpoint(path)
    other = build_plan(ck.net, HierarchicalSoftmax(6, 3, seed=5), optimizer="sgd",
                       batch_size=60)
    before = (_bits(other.loss._own_flat()[0]), other.t)
    with pytest.raises(ValueError, match="optimizer state is Adam's; the plan runs SGD"):
        ck.restore(other)
    assert (_bits(other.loss._own_flat()[0]), other.t) == before
    ck.optimizer = None             # state of no named optimizer: refused by its layout
    with pytest.raises(ValueError, match="has 2 arrays, the plan's optimizer keeps 0"):
        ck.restore(other)
    assert (_bits(other.loss._own_flat()[0]), other.t) == before


def test_lying_checkpoints_are_refused(tmp_path):
    net, path = MLP([2, 3]), tmp_path / "c.safetensors"
    fio.save_checkpoint(path, net, optimizer=optim.Adam(),
                        optimizer_state=tuple(np.zeros(net.n_params) for _ in "mv"))
    cases = [
        (lambda c: c["optimizer"].update({"class": "os.system"}), "unknown optimizer class"),
        (lambda c: c["optimizer"]["schedule"].update({"class": "eval"}), "unknown schedule"),
        (lambda c: c["optimizer"]["args"].update({"beta1": "0.9"}), "beta1 must be a number"),
        (lambda c: c["optimizer"]["args"].update({"beta1": 1.5}), "beta1 must be < 1.0"),
        (lambda c: c.update(step=-2), "step must be >= 0"),
        (lambda c: c["optimizer_state"].pop(), "unexpected tensor(s) optimizer_state.1"),
        (lambda c: c["optimizer_state"][0].update(shape=[4]),
         "tensor optimizer_state.0 has shape (9,), the architecture says (4,)"),
        (lambda c: c.update(rng_state={"key": {"__ndarray__": [1], "dtype": "object"}}),
         "rng_state array"),
        (lambda c: c.update(loss_state=[{"shape": [9], "dtype": "float64"}]),
         "tensor(s) missing: loss_state.0"),
        (lambda c: c.update(loss_params={"W": 1}), "checkpoint loss_params must be a list"),
        (lambda c: c.update(loss_params=[{"shape": [1], "dtype": "float64",
                                          "name": "__import__('os')"}]),
         "loss_params[0] must have an identifier as its name"),
        (lambda c: c.update(loss_params=[{"shape": [1], "dtype": "float64", "name": "W"}] * 2),
         "loss_params name 'W' given twice"),
    ]
    for i, (edit, fragment) in enumerate(cases):
        def meta(m):
            ck = json.loads(m["checkpoint"])
            edit(ck)
            m["checkpoint"] = json.dumps(ck)

        bad = _resave(path, tmp_path / f"bad{i}.safetensors", meta=meta)
        with pytest.raises(ValueError, match="bad") as info:
            fio.load_checkpoint(bad)
        assert fragment in str(info.value), (fragment, str(info.value))


# ---- pickles: parameters and state, not buffers ------------------------------------------------

def test_trained_spiral_net_pickles_to_its_parameters():
    X, y = spiral(100, 3, seed=0)
    net = MLP([2, 100, 3], seed=0)
    gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=20, step_size=1.0)
    net.forward(X)                                     # buffers of 300 rows are live
    assert net.n_params == 603
    data = pickle.dumps(net)
    assert 603 * 8 <= len(data) <= 603 * 8 + 2048, len(data)
    clone = pickle.loads(data)
    for layer in clone.layers:
        assert layer._buffers._store == {} and layer._last_out is None
        assert not np.any(layer.dW) and layer.dW.shape == layer.W.shape
        assert np.shares_memory(layer.dW, clone.flat_grads)
    assert _bits(clone.predict(X)) == _bits(net.predict(X))
    assert _bits(clone.predict_scores(X)) == _bits(net.predict_scores(X))
    for n in (net, clone):
        gradient_descent(n, SoftmaxCrossEntropy(), X, y, steps=15, step_size=1.0)
    assert _bits(clone.flat_params) == _bits(net.flat_params)


def test_pickles_keep_state_and_drop_caches():
    net = _every_layer_net()
    X = np.random.default_rng(0).standard_normal((200, 3))
    net.forward(X)
    net.backward(np.ones((200, 2)))
    state = net.layers[1].__getstate__()
    assert "_buffers" not in state and "_mean" not in state and "_slot_dgamma" not in state
    assert state["_xhat"] is None and state["_last_out"] is None
    data = pickle.dumps(net)
    extra = sum(8 * getattr(lay, a).size for lay in net.layers
                for a in ("running_mean", "running_var") if hasattr(lay, a))
    assert len(data) < net.n_params * 8 + extra + 6000, len(data)
    clone = pickle.loads(data)
    assert _bits(clone.layers[1].running_var) == _bits(net.layers[1].running_var)
    assert clone.layers[5].step == net.layers[5].step == 1
    assert _bits(clone.forward(X)) == _bits(net.forward(X))
    clone.backward(np.ones((200, 2)))
    net.backward(np.ones((200, 2)))
    assert _bits(clone.flat_grads) == _bits(net.flat_grads)


def test_losses_pickle_without_buffers():
    rng = np.random.default_rng(0)
    loss = SoftmaxCrossEntropy()
    loss.forward(rng.standard_normal((500, 4)), rng.integers(0, 4, 500))
    data = pickle.dumps(loss)
    assert len(data) < 300
    clone = pickle.loads(data)
    assert clone.dscores is None
    s, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    assert clone.forward(s, y) == loss.forward(s, y)
    hs = HierarchicalSoftmax(10, 7, seed=0)
    h, yy = rng.standard_normal((400, 10)), rng.integers(0, 7, 400)
    hs.forward(h, yy)
    hs.backward()
    data = pickle.dumps(hs)
    assert len(data) < hs.n_params * 8 + 1500, len(data)
    hs2 = pickle.loads(data)
    assert hs2.dh is None and not np.any(hs2.dW)
    assert hs2.forward(h, yy) == hs.forward(h, yy)
    assert _bits(hs2.backward()) == _bits(hs.backward())
    assert _bits(hs2.dW) == _bits(hs.dW)
