"""fastnn.distributed: data-parallel training over MPI ranks, run as real processes
(``mpiexec -n 2`` on loopback, from the mpich wheel in the environment).

With the ordered reduction (every block's gradient gathered, summed in block order) the
weights after training on 2 ranks are *bit-identical* to 1 rank with the same global
batch and block grid; these tests assert equality, not closeness.  Against the plain
single-process plan (one GEMM over the whole batch) the blocked sum agrees only to
rounding -- checked with a stated tolerance."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="fastnn.distributed needs the mpi extra (mpi4py)")

SCRIPT = os.path.join(os.path.dirname(__file__), "mpi_script.py")
BIN = os.path.dirname(sys.executable)
MPIEXEC = (os.path.join(BIN, "mpiexec") if os.path.exists(os.path.join(BIN, "mpiexec"))
           else shutil.which("mpiexec"))


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", FASTNN_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               HYDRA_LAUNCHER="fork")          # loopback only: no ssh
    return env


@pytest.fixture(scope="module")
def mpiexec():
    if MPIEXEC is None:
        pytest.skip("no mpiexec (install fastnn[mpi]: the mpich wheel provides it)")
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c",
                        "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"],
                       capture_output=True, text=True, timeout=60, env=_env())
    if r.returncode != 0:
        pytest.skip(f"mpiexec cannot start 2 ranks here: {r.stderr[-500:]}")
    return MPIEXEC


def run(tmp_path, name, n_ranks, mpiexec=None, **opts):
    out = str(tmp_path / f"{name}.npz")
    opts.setdefault("batch", 64)
    opts.setdefault("n_blocks", 4)
    opts.setdefault("epochs", 3)
    args = [sys.executable, SCRIPT, out, json.dumps(opts)]
    if n_ranks > 1:
        args = [mpiexec, "-n", str(n_ranks)] + args
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return np.load(out)


@pytest.mark.parametrize("opts", [{}, {"weights": True}, {"model": "dropout_bn"},
                                  {"model": "hs"}],
                         ids=["plain", "weights", "dropout_batchnorm", "hierarchical"])
def test_two_ranks_equal_one_rank_bit_for_bit(tmp_path, mpiexec, opts):
    one = run(tmp_path, "one", 1, **opts)
    two = run(tmp_path, "two", 2, mpiexec, **opts)
    assert list(two["shards"]) == [32, 32] and list(one["shards"]) == [64]
    np.testing.assert_array_equal(one["params"], two["params"])
    np.testing.assert_array_equal(one["losses"], two["losses"])


@pytest.mark.parametrize("opts", [{}, {"sharded": "grid"}, {"trainer": True}],
                         ids=["replicated", "sharded", "trainer"])
def test_three_ranks_equal_one_rank_on_an_odd_grid(tmp_path, mpiexec, opts):
    """3 ranks over 5 blocks of a batch of 50 (blocks of 10; 2, 2 and 1 per rank), with
    dropout and batch norm: the 1-rank bits."""
    kw = dict(model="dropout_bn", batch=50, n_blocks=5, epochs=2, **opts)
    one = run(tmp_path, "one", 1, **kw)
    three = run(tmp_path, "three", 3, mpiexec, **kw)
    assert list(three["shards"]) == [20, 20, 10]
    np.testing.assert_array_equal(one["params"], three["params"])
    np.testing.assert_array_equal(one["losses"], three["losses"])


def test_uneven_shards_full_batch(tmp_path, mpiexec):
    """301 rows, full batch, 3 blocks: rank 0 computes 201 rows, rank 1 100."""
    one = run(tmp_path, "one", 1, batch=301, n_blocks=3, epochs=4)
    two = run(tmp_path, "two", 2, mpiexec, batch=301, n_blocks=3, epochs=4)
    assert list(two["shards"]) == [201, 100]
    np.testing.assert_array_equal(one["params"], two["params"])


@pytest.mark.parametrize("opts", [{}, {"weights": True}, {"model": "dropout_bn"}],
                         ids=["plain", "weights", "dropout_batchnorm"])
def test_sharded_data_two_ranks_equal_one_rank(tmp_path, mpiexec, opts):
    """Each rank holds only its rows (DataParallel.shard): the same bits as one rank
    holding them all, for the same grid."""
    one = run(tmp_path, "one", 1, sharded="grid", **opts)
    two = run(tmp_path, "two", 2, mpiexec, sharded="grid", **opts)
    assert list(two["shards"]) == [32, 32]
    np.testing.assert_array_equal(one["params"], two["params"])
    np.testing.assert_array_equal(one["losses"], two["losses"])


@pytest.mark.parametrize("weights", [False, True])
def test_uneven_shards_are_weighted_like_one_batch(tmp_path, mpiexec, weights):
    """Rank 0 holds 100 rows, rank 1 201 (a layout of the user's, not the grid's): each
    step takes 10 and 20 rows (apportioned to the shards' sizes) and must equal one
    plan's steps on the same 30 rows as one batch, to rounding (float64: rtol 1e-10; the
    blocked sum adds the two block means in another order than one GEMM)."""
    from fastnn import _plan
    from fastnn.distributed import apportion
    from fastnn.plan import build_plan
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    two = run(tmp_path, "two", 2, mpiexec, batch=30, n_blocks=2, epochs=2,
              sharded=[100, 201], weights=weights)
    assert list(two["shards"]) == [10, 20]
    assert apportion(30, [100, 201]) == [10, 20]
    X, y, w = data()
    steps = 10                                          # min(100 // 10, 201 // 20)
    idx = []
    for epoch in range(2):
        blocks = [_plan.shuffled_rows(m, steps * b, 1, 0, epoch * 2 + j).reshape(steps, b)
                  + start for j, (m, b, start) in enumerate([(100, 10, 0), (201, 20, 100)])]
        idx.append(np.concatenate(blocks, axis=1).ravel())
    net, loss = model("mlp", 1)
    plan = build_plan(net, loss, optimizer="adam", regularizer=1e-3, batch_size=30)
    plan.bind(X, y, w if weights else None)
    losses, _ = plan.run(2 * steps, np.concatenate(idx))
    np.testing.assert_allclose(two["params"], net.flat_params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two["losses"], losses, rtol=1e-10)


def test_trainer_on_two_ranks_equals_one_rank(tmp_path, mpiexec):
    """Trainer(distributed=...): rank 0's seed (each rank passes another), the same
    validation split, history and weights on 1 and 2 ranks."""
    one = run(tmp_path, "one", 1, trainer=True, model="dropout_bn")
    two = run(tmp_path, "two", 2, mpiexec, trainer=True, model="dropout_bn")
    np.testing.assert_array_equal(one["params"], two["params"])
    np.testing.assert_array_equal(one["losses"], two["losses"])
    np.testing.assert_array_equal(one["val_loss"], two["val_loss"])
    assert one["val_loss"].size == 3 and np.all(np.isfinite(one["val_loss"]))


def test_only_rank_0_reports_progress(tmp_path, mpiexec):
    out = str(tmp_path / "out.npz")
    opts = {"batch": 64, "n_blocks": 4, "epochs": 3, "trainer": True, "verbose": 1}
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, SCRIPT, out, json.dumps(opts)],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 0", "epoch 1", "epoch 2"]


@pytest.mark.parametrize("model", ["dropout_bn", "hs"])
@pytest.mark.parametrize("trainer", [False, True], ids=["DataParallel", "Trainer"])
def test_checkpoint_on_two_ranks_resumes_on_one_and_back(tmp_path, mpiexec, trainer, model):
    """Dropout and batch norm, or a hierarchical softmax's own weights and their Adam
    moments (the checkpoint holds them; each rank's loss starts from other weights)."""
    kw = {"model": model, "epochs": 2, "trainer": trainer, "val": False}
    whole = run(tmp_path, "whole", 1, **{**kw, "epochs": 4})
    ck = str(tmp_path / "ck.safetensors")
    run(tmp_path, "a", 2, mpiexec, save=ck, **kw)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    resumed = run(tmp_path, "b", 1, resume=ck, **kw)
    np.testing.assert_array_equal(whole["params"], resumed["params"])
    assert resumed["t"] == whole["t"]
    ck2 = str(tmp_path / "ck2.safetensors")
    run(tmp_path, "c", 1, save=ck2, **kw)
    resumed2 = run(tmp_path, "d", 2, mpiexec, resume=ck2, **kw)
    np.testing.assert_array_equal(whole["params"], resumed2["params"])


@pytest.mark.parametrize("kind", ["mlp", "dropout_bn", "hs"])
def test_one_block_is_the_plain_plan(kind):
    """In process (1 rank, MPI singleton): with n_blocks=1 a DataParallel step is
    plan.run's step bit for bit, dropout masks, batch-norm statistics and a loss's own
    parameters included."""
    from fastnn import _plan
    from fastnn.distributed import DataParallel
    from fastnn.plan import build_plan
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    X, y, _ = data()
    ref, ref_loss = model(kind, 1)
    plan = build_plan(ref, ref_loss, optimizer="adam", regularizer=1e-3,
                      batch_size=64).bind(X, y)
    plan.run(12, _plan.shuffled_rows(301, 256, 3, 0, 0))
    net, loss = model(kind, 1)
    dp = DataParallel(net, loss, optimizer="adam", regularizer=1e-3, batch_size=64,
                      n_blocks=1)
    dp.fit(X, y, epochs=3)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)
    for a, b in zip(net.layers, ref.layers):
        for name in ("running_mean", "running_var", "step"):
            if hasattr(a, name):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    if kind == "hs":
        np.testing.assert_array_equal(dp.plan.loss_flat[0], plan.loss_flat[0])


def test_a_checkpoint_refuses_a_hierarchical_softmax_on_another_tree(tmp_path):
    """In process (1 rank): DataParallel's checkpoint records the loss's tree as the
    Trainer's does, and its from_checkpoint refuses another tree of the same shapes."""
    from fastnn.distributed import DataParallel
    from fastnn.losses import HierarchicalSoftmax
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    X, y, _ = data()
    net, loss = model("hs", 1)
    dp = DataParallel(net, loss, optimizer="adam", batch_size=64, n_blocks=1)
    dp.fit(X, y, epochs=1)
    path = tmp_path / "hs.safetensors"
    dp.save_checkpoint(path)
    with pytest.raises(ValueError, match="trained on another tree: class 0's path"):
        DataParallel.from_checkpoint(path, HierarchicalSoftmax(8, 3, tree=((0, 1), 2)))
    again = DataParallel.from_checkpoint(path, HierarchicalSoftmax(8, 3))
    np.testing.assert_array_equal(again.plan.loss_flat[0], dp.plan.loss_flat[0])


@pytest.mark.parametrize("kind", ["mlp", "hs"])
def test_blocks_agree_with_one_gemm_to_rounding(kind):
    """4 blocks differ from one GEMM over the batch only by rounding (float64: rtol
    1e-10 after 12 Adam steps)."""
    from fastnn import _plan
    from fastnn.distributed import DataParallel
    from fastnn.plan import build_plan
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    X, y, _ = data()
    ref, ref_loss = model(kind, 1)
    build_plan(ref, ref_loss, optimizer="adam", regularizer=1e-3, batch_size=64).bind(
        X, y).run(12, _plan.shuffled_rows(301, 256, 3, 0, 0))
    net, loss = model(kind, 1)
    DataParallel(net, loss, optimizer="adam", regularizer=1e-3, batch_size=64,
                 n_blocks=4).fit(X, y, epochs=3)
    np.testing.assert_allclose(net.flat_params, ref.flat_params, rtol=1e-10, atol=1e-12)


def test_blocks_are_ghost_batches_with_their_own_dropout_masks():
    """What a step of two blocks computes, rebuilt from the per-layer path: block j
    runs with dropout counter c * 2 + j and normalizes by its own statistics from the
    step's starting running statistics; the gradient is the rows-weighted sum of the
    block gradients and the running statistics the rows-weighted mean of each block's
    update (both added in block order: the same bits)."""
    from fastnn.distributed import DataParallel
    from fastnn.layers import BatchNorm, Dropout
    from fastnn.optim import SGD
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    X, y, _ = data()
    rows = np.arange(40, 90, dtype=np.int64)               # 50 rows: blocks of 25
    net, loss = model("dropout_bn", 3)
    oracle, oracle_loss = model("dropout_bn", 3)
    for layer in net.layers:
        if isinstance(layer, Dropout):
            layer.step = 5
    norms = [layer for layer in oracle.layers if isinstance(layer, BatchNorm)]
    stats0 = [(b.running_mean.copy(), b.running_var.copy()) for b in norms]
    grad, stats = 0, [[0, 0] for _ in norms]
    oracle.train()
    for j, block in enumerate([rows[:25], rows[25:]]):
        for layer in oracle.layers:
            if isinstance(layer, Dropout):
                layer.step = 5 * 2 + j
        for b, (m, v) in zip(norms, stats0):
            b.running_mean[...], b.running_var[...] = m, v
        oracle_loss._forward(oracle._forward(X[block]), y[block])
        oracle._backward(oracle_loss.backward())
        grad = grad + oracle.flat_grads * 0.5
        for s, b in zip(stats, norms):
            s[0] = s[0] + b.running_mean * 0.5
            s[1] = s[1] + b.running_var * 0.5
    dp = DataParallel(net, loss, optimizer=SGD(0.1), regularizer=0.0, batch_size=50,
                      n_blocks=2).bind(X, y)
    dp.step(rows)
    np.testing.assert_array_equal(net.flat_grads, grad)
    bn = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
    for b, (m, v) in zip(bn, stats):
        np.testing.assert_array_equal(b.running_mean, m)
        np.testing.assert_array_equal(b.running_var, v)
    assert [layer.step for layer in net.layers if isinstance(layer, Dropout)] == [6, 6]


@pytest.mark.parametrize("batch_size", [32, None], ids=["mini-batch", "full-batch"])
def test_trainer_on_one_rank_and_one_block_is_the_plain_trainer(batch_size):
    """Trainer(distributed=...) at 1 rank and n_blocks=1: the plain Trainer's history and
    weights bit for bit (validation split, dropout and batch norm included)."""
    from fastnn.trainer import Trainer
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data, model
    X, y, _ = data()
    results = []
    for distributed in (None, {"n_blocks": 1}):
        net, loss = model("dropout_bn", 1)
        trainer = Trainer(net, loss, "adam", batch_size=batch_size, reg=1e-3, seed=3,
                          verbose=0, distributed=distributed)
        h = trainer.fit(X, y, epochs=4, validation_split=0.25, record_every=1)
        results.append((net.flat_params.copy(), h.step_loss, np.array(h.val_loss)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_refusals():
    from fastnn.distributed import DataParallel
    from fastnn.net import MLP
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.trainer import Trainer
    with pytest.raises(ValueError, match="batch norm needs 2 rows"):
        DataParallel(MLP([5, 8, 3], batch_norm=True, seed=0), SoftmaxCrossEntropy(),
                     batch_size=8, n_blocks=8)
    with pytest.raises(ValueError, match="reduction"):
        DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(), batch_size=8,
                     reduction="tree")
    with pytest.raises(ValueError, match="unknown option"):
        Trainer(MLP([5, 8, 3], seed=0), distributed={"blocks": 2})
    with pytest.raises(ValueError, match="distributed must be"):
        Trainer(MLP([5, 8, 3], seed=0), distributed="dask")
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        Trainer(MLP([5, 8, 3], seed=0), distributed={"comm": "x"})


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 3.7}, TypeError, "batch_size must be an integer"),
    ({"batch_size": None}, TypeError, "batch_size must be an integer"),
    ({"n_blocks": 2.5}, TypeError, "n_blocks must be an integer"),
    ({"n_blocks": True}, TypeError, "n_blocks must be an integer"),
    ({"n_blocks": 9}, ValueError, "n_blocks must be at most batch_size"),
    ({"shuffle_seed": -1}, ValueError, "shuffle_seed must be >= 0"),
    ({"shuffle_seed": 2**64}, ValueError, "shuffle_seed must be below 2"),
    ({"comm": "x"}, TypeError, "comm must be an mpi4py communicator"),
])
def test_bad_arguments_are_named(kwargs, exc, match):
    from fastnn.distributed import DataParallel
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.net import MLP
    with pytest.raises(exc, match=match):
        DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(),
                     **{"batch_size": 8, **kwargs})


def test_bad_fit_and_run_arguments_are_named():
    from fastnn.distributed import DataParallel, apportion, block_sizes
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.net import MLP
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data
    X, y, _ = data()
    dp = DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(), batch_size=8)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        dp.fit(X, y, epochs=1, checkpoint_every=0)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        dp.fit(X, y, epochs=-1)
    with pytest.raises(TypeError, match="epochs must be an integer"):
        dp.fit(X, y, epochs=1.5)
    dp.bind(X, y)
    with pytest.raises(TypeError, match="indices must be integers"):
        dp.run(1, np.arange(8.0))
    with pytest.raises(ValueError, match=r"rows must be \(8,\) integers"):
        dp.step(np.arange(9))
    with pytest.raises(TypeError, match="rows must be integers"):
        dp.step(np.arange(8.0))
    with pytest.raises(ValueError, match=r"rows\[7\] = 301 is not a row"):
        dp.step(np.arange(294, 302))
    with pytest.raises(ValueError, match=r"indices\[1, 0\] = -1 is not a row"):
        dp.run(2, np.r_[np.arange(8), -np.ones(8, dtype=np.int64)])
    sharded = DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(), batch_size=8,
                           n_blocks=2, sharded=True)
    with pytest.raises(RuntimeError, match="call bind"):
        sharded.shard_sizes()
    sharded.bind(X, y)
    with pytest.raises(ValueError, match=r"indices must be \(1, 8\)"):
        sharded.run(1, np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="sizes must be >= 0 with a positive sum"):
        apportion(5, [0, 0])
    with pytest.raises(ValueError, match="n_blocks must be >= 1"):
        block_sizes(5, 0)


def test_ranks_given_different_data_are_refused(tmp_path, mpiexec):
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c",
                        "import numpy as np\n"
                        "from fastnn.distributed import DataParallel, get_comm\n"
                        "from fastnn.net import MLP\n"
                        "from fastnn.losses import SoftmaxCrossEntropy\n"
                        "X = np.ones((20, 5)) * get_comm().Get_rank()\n"
                        "dp = DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(),"
                        " batch_size=10)\n"
                        "dp.fit(X, np.zeros(20, dtype=np.int64), epochs=1)\n"],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path)
    assert r.returncode != 0
    assert "ranks were given different training data" in r.stderr


@pytest.mark.parametrize("sharded", [False, True])
def test_a_bad_row_is_refused_on_every_rank_not_a_hang(tmp_path, mpiexec, sharded):
    """Each rank runs only its own blocks; a row index out of range must be refused by
    all ranks before any block's work, or the rank that raised leaves the others in a
    collective for ever."""
    # sharded: only rank 0's own rows are wrong; replicated: the batch, the same on both
    bad = ("dp.run(1, (np.arange(8) + 10 ** 6 * (dp.rank == 0)).reshape(1, 8)"
           " if dp.sharded else np.r_[10 ** 6, np.arange(7)])")
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c",
                        "import numpy as np\n"
                        "from fastnn.distributed import DataParallel\n"
                        "from fastnn.net import MLP\n"
                        "from fastnn.losses import SoftmaxCrossEntropy\n"
                        "X, y = np.ones((40, 5)), np.zeros(40, dtype=np.int64)\n"
                        "dp = DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(),"
                        f" batch_size={16 if sharded else 8}, n_blocks=2,"
                        f" sharded={sharded})\n"
                        "dp.bind(X, y)\n"
                        f"{bad}\n"],
                       capture_output=True, text=True, timeout=40, env=_env(), cwd=tmp_path)
    assert r.returncode != 0
    assert "is not a row of this rank's data" in r.stderr


def test_demo_runs_on_two_ranks_and_the_ranks_agree(mpiexec, tmp_path):
    # run from elsewhere: `python -m` puts the working directory first on sys.path, and
    # from the repository root that is the unbuilt source tree, not the installed package
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "fastnn.distributed.demo",
                        "--quick"], capture_output=True, text=True, timeout=120, env=_env(),
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("rank ")]
    assert len(lines) == 4                      # spiral and digits (the test extra has sklearn)
    for a, b in zip(lines[::2], lines[1::2]):   # same loss, accuracy and weights
        assert a.split("final loss")[1] == b.split("final loss")[1]
    assert "shard 150 of 300" in r.stdout
    assert "rank 0/2: holds rows 0:899, shard 64 of 128" in r.stdout     # digits, sharded


def test_ranks_share_the_node_without_omp_num_threads(mpiexec, tmp_path):
    """mpiexec -n 2 with no thread setting: each rank takes cores // 2 threads (the
    launcher's MPI_LOCALNRANKS), not every core."""
    env = _env()
    for var in ("OMP_NUM_THREADS", "FASTNN_NUM_THREADS"):
        env.pop(var)
    code = ("import json, fastnn\n"
            "from mpi4py import MPI\n"
            "c = fastnn.show_config(False)\n"
            "got = MPI.COMM_WORLD.gather([c['num_threads'], c['num_threads_source'],\n"
            "                             c['cores'], fastnn.config.affinity_is_partial()])\n"
            "if got: print('\\n'.join(json.dumps(g) for g in got))\n")
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        n, source, cores, bound = json.loads(line)
        if bound:                       # the launcher bound the rank: its cores are its own
            assert n == cores
        else:
            assert n == max(1, cores // 2)
            assert source == ("mpi" if cores >= 2 else "cores")


def test_a_rank_without_blocks_holds_no_rows(tmp_path, mpiexec):
    """Sharded, 2 ranks, 1 block: rank 1 owns no block and is given no rows (shard()
    says (0, 0)); the run is the 1-rank run bit for bit."""
    one = run(tmp_path, "one", 1, sharded="grid", n_blocks=1, model="dropout_bn")
    two = run(tmp_path, "two", 2, mpiexec, sharded="grid", n_blocks=1, model="dropout_bn")
    assert list(two["shards"]) == [64, 0]
    np.testing.assert_array_equal(one["params"], two["params"])


_FAILING = """
import numpy as np
from fastnn.distributed import DataParallel, get_comm
from fastnn.net import MLP
from fastnn.losses import SoftmaxCrossEntropy
rank = get_comm().Get_rank()
dp = DataParallel(MLP([5, 8, 3], seed=0), SoftmaxCrossEntropy(), batch_size=10,
                  n_blocks=2, sharded=True)
X, y = np.ones((20, 5)), np.zeros(20, dtype=np.int64)
w = np.ones(20) - 2 * (rank == 1)          # rank 1's weights are negative
try:
    dp.fit(X, y, epochs=1, weights=w if {bad_weights} else None)
    dp.save_checkpoint({path!r})
    said = "no error"
except (ValueError, OSError, RuntimeError) as exc:
    said = f"{{type(exc).__name__}}: {{exc}}"
with open({out!r} + str(rank), "w") as f:
    f.write(said)
"""


@pytest.mark.parametrize("case", ["one rank's data", "rank 0's checkpoint write"])
def test_an_error_on_one_rank_is_raised_on_every_rank(mpiexec, tmp_path, case):
    """No rank is left waiting in a collective: bad data on rank 1 only, or a checkpoint
    rank 0 cannot write, ends both ranks with the error."""
    bad_weights = case == "one rank's data"
    path = str(tmp_path / ("ck.safetensors" if bad_weights else "missing/ck.safetensors"))
    out = str(tmp_path / "said")
    code = _FAILING.format(bad_weights=bad_weights, path=path, out=out)
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = [open(out + str(rank)).read() for rank in (0, 1)]
    if bad_weights:
        assert said == ["ValueError: on rank 1: weights must be >= 0",
                        "ValueError: weights must be >= 0"]
    else:
        assert said[0].startswith("FileNotFoundError")
        assert said[1].startswith("RuntimeError: on rank 0: cannot save to")
