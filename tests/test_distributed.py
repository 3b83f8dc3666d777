"""fastnn.distributed: data-parallel training over MPI ranks, run as real processes
(``mpiexec -n 2`` on loopback, from the mpich wheel in the environment).

With the ordered reduction (every block's gradient gathered, summed in block order) the
weights after training on 2 ranks are *bit-identical* to 1 rank with the same global
batch and block grid; these tests assert equality, not closeness.  Against the plain
single-process plan (one GEMM over the whole batch) the blocked sum agrees only to
rounding -- checked with a stated tolerance."""
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


def run(tmp_path, name, n_ranks, mode, batch, n_blocks, epochs, ckpt=None, mpiexec=None):
    out = str(tmp_path / f"{name}.npz")
    args = [sys.executable, SCRIPT, out, mode, str(batch), str(n_blocks), str(epochs)]
    if ckpt:
        args.append(str(ckpt))
    if n_ranks > 1:
        args = [mpiexec, "-n", str(n_ranks)] + args
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return np.load(out)


@pytest.mark.parametrize("mode", ["plain", "weights"])
def test_two_ranks_equal_one_rank_bit_for_bit(tmp_path, mpiexec, mode):
    one = run(tmp_path, "one", 1, mode, 64, 4, 3)
    two = run(tmp_path, "two", 2, mode, 64, 4, 3, mpiexec=mpiexec)
    assert list(two["shards"]) == [32, 32] and list(one["shards"]) == [64]
    np.testing.assert_array_equal(one["params"], two["params"])
    np.testing.assert_array_equal(one["losses"], two["losses"])


def test_uneven_shards_full_batch(tmp_path, mpiexec):
    """301 rows, full batch, 3 blocks: rank 0 computes 101 rows, rank 1 200."""
    one = run(tmp_path, "one", 1, "plain", 301, 3, 4)
    two = run(tmp_path, "two", 2, "plain", 301, 3, 4, mpiexec=mpiexec)
    assert list(two["shards"]) == [101, 200]
    np.testing.assert_array_equal(one["params"], two["params"])


def test_checkpoint_on_two_ranks_resumes_on_one_and_back(tmp_path, mpiexec):
    whole = run(tmp_path, "whole", 1, "plain", 64, 4, 4)
    ck = tmp_path / "ck.safetensors"
    run(tmp_path, "a", 2, "save", 64, 4, 2, ckpt=ck, mpiexec=mpiexec)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    resumed = run(tmp_path, "b", 1, "resume", 64, 4, 2, ckpt=ck)
    np.testing.assert_array_equal(whole["params"], resumed["params"])
    assert resumed["t"] == whole["t"]
    ck2 = tmp_path / "ck2.safetensors"
    run(tmp_path, "c", 1, "save", 64, 4, 2, ckpt=ck2)
    resumed2 = run(tmp_path, "d", 2, "resume", 64, 4, 2, ckpt=ck2, mpiexec=mpiexec)
    np.testing.assert_array_equal(whole["params"], resumed2["params"])


def test_one_block_is_the_plain_plan_and_blocks_agree_to_rounding():
    """In process (1 rank, MPI singleton): n_blocks=1 is plan.run bit for bit; 4 blocks
    differ from one GEMM over the batch only by rounding (float64: rtol 1e-10)."""
    from fastnn.distributed import DataParallel
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.net import MLP
    from fastnn.plan import build_plan
    sys.path.insert(0, os.path.dirname(__file__))
    from mpi_script import data
    X, y, _ = data()
    ref = MLP([5, 16, 3], seed=1)
    plan = build_plan(ref, SoftmaxCrossEntropy(), optimizer="adam", regularizer=1e-3,
                      batch_size=64).bind(X, y)
    import fastnn._plan
    idx = fastnn._plan.shuffled_rows(301, 256, 3, 0, 0)
    plan.run(12, idx)
    for n_blocks, exact in [(1, True), (4, False)]:
        dp = DataParallel(MLP([5, 16, 3], seed=1), SoftmaxCrossEntropy(), optimizer="adam",
                          regularizer=1e-3, batch_size=64, n_blocks=n_blocks)
        dp.fit(X, y, epochs=3)
        if exact:
            np.testing.assert_array_equal(dp.net.flat_params, ref.flat_params)
        else:
            np.testing.assert_allclose(dp.net.flat_params, ref.flat_params, rtol=1e-10,
                                       atol=1e-12)


def test_refuses_dropout():
    from fastnn.distributed import DataParallel
    from fastnn.losses import SoftmaxCrossEntropy
    from fastnn.net import MLP
    with pytest.raises(ValueError, match="Dropout"):
        DataParallel(MLP([5, 8, 3], dropout=0.5, seed=0), SoftmaxCrossEntropy(),
                     batch_size=8)


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
