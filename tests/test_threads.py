"""The thread setting: requests, environment variables, OpenMP's own setting, the cores
cap (affinity and cgroup quota) and the context manager."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn import _runtime, config, functional as F

CORES = config.available_cores()
HAVE_OPENMP = _runtime.openmp_enabled()


@pytest.fixture(autouse=True)
def automatic_threads(monkeypatch):
    """Each test starts on automatic threads with no FASTNN_NUM_THREADS, and leaves the
    setting as it found it."""
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    saved = config._requested
    fastnn.set_num_threads(None)
    yield
    monkeypatch.undo()
    config._requested = saved
    config.refresh()


def _automatic():
    """What automatic resolution must give in this process."""
    return min(_runtime.omp_max_threads(), CORES)


def _parallel_work(seed=0):
    """Kernels that read config._n_threads, each above the size where they go parallel
    (FNN_PARALLEL_MIN_WORK element-operations); returns every output."""
    rng = np.random.default_rng(seed)
    n = max(1024, _runtime.parallel_min_work() // 128)
    x, w, b = rng.standard_normal((n, 256)), rng.standard_normal((256, 128)), np.zeros(128)
    out, cache = F.affine_relu_forward(x, w, b)
    dx, dw, db = F.affine_relu_backward(rng.standard_normal(out.shape), cache)
    drop, dcache = F.dropout_forward(out, {"p": 0.5, "mode": "train", "seed": 3})
    ddrop = F.dropout_backward(out, dcache)
    loss, dscores = F.softmax_loss(out, rng.integers(0, 128, n))
    return [out, dx, dw, db, drop, ddrop, np.array(loss), dscores]


# ---- requests ----

@pytest.mark.parametrize("n, exc, match", [
    (0, ValueError, "n must be >= 1, got 0"),
    (-1, ValueError, "n must be >= 1, got -1"),
    (10**6, ValueError, r"n = 1000000 threads is more than the \d+ cores? this process may use"),
    (2**63, ValueError, r"n = 9223372036854775808 threads is more than the \d+ cores?"),
    (np.int64(10**6), ValueError, "n = 1000000 threads"),
    (True, TypeError, "n must be an integer, got bool"),
    (2.0, TypeError, "n must be an integer, got float"),
    ("2", TypeError, "n must be an integer, got str"),
])
def test_bad_requests_are_refused_and_change_nothing(n, exc, match):
    fastnn.set_num_threads(1)
    with pytest.raises(exc, match=match):
        fastnn.set_num_threads(n)
    assert config._requested == 1 and config._n_threads == 1
    with pytest.raises(exc, match=match):
        with fastnn.threads(n):
            pytest.fail("the block must not run")
    assert config._requested == 1 and config._n_threads == 1
    assert np.isfinite(_parallel_work()[0]).all()     # the kernels still run


def test_a_request_up_to_the_cores_is_honoured_and_none_returns_to_automatic():
    for n in sorted({1, CORES}):
        fastnn.set_num_threads(n)
        assert fastnn.get_num_threads() == config._n_threads == n
        assert config._n_threads_source == "user"
    fastnn.set_num_threads(np.int64(1))
    assert config._n_threads == 1 and type(config._n_threads) is int
    fastnn.set_num_threads(None)
    assert config._requested is None
    assert fastnn.get_num_threads() == config._n_threads == _automatic()
    assert config._n_threads_source in ("OpenMP", "cores")


def test_the_setting_wins_over_the_environment_which_wins_over_openmp(monkeypatch):
    monkeypatch.setenv("FASTNN_NUM_THREADS", "1")
    assert config.resolve_num_threads() == config._n_threads == 1
    assert config._n_threads_source == "FASTNN_NUM_THREADS"
    fastnn.set_num_threads(CORES)
    assert config._n_threads == CORES and config._n_threads_source == "user"
    fastnn.set_num_threads(None)
    assert config._n_threads == 1 and config._n_threads_source == "FASTNN_NUM_THREADS"
    monkeypatch.setenv("FASTNN_NUM_THREADS", str(CORES))
    with threadpool_limits(1, user_api="openmp"):
        assert config.resolve_num_threads() == CORES     # the variable beats OpenMP
    monkeypatch.setenv("FASTNN_NUM_THREADS", "  ")       # blank: unset
    assert config.resolve_num_threads() == _automatic()


@pytest.mark.parametrize("value", ["1000000", str(2**63), str(10**40)])
def test_fastnn_num_threads_above_the_cores_is_capped_without_error(monkeypatch, capsys,
                                                                   value):
    monkeypatch.setenv("FASTNN_NUM_THREADS", value)
    assert config.resolve_num_threads() == config._n_threads == CORES
    assert config._n_threads_source == "cores"
    assert fastnn.show_config()["num_threads"] == CORES
    assert f"FASTNN_NUM_THREADS={value} capped" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5", "2 threads"])
def test_a_bad_fastnn_num_threads_is_an_error_naming_it(monkeypatch, value):
    fastnn.set_num_threads(1)
    monkeypatch.setenv("FASTNN_NUM_THREADS", value)
    assert config.resolve_num_threads() == 1          # an explicit setting never reads it
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS"):
        fastnn.set_num_threads(None)                  # back to automatic: it is read
    assert config._requested is None
    with pytest.raises(ValueError, match=f"FASTNN_NUM_THREADS must be an integer >= 1, "
                                         f"got '{value}'"):
        config.resolve_num_threads()
    assert config._n_threads == 1                     # left as it was, still valid
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS"):
        fastnn.get_num_threads()


@pytest.mark.skipif(not HAVE_OPENMP, reason="built without OpenMP")
def test_openmp_limits_set_by_threadpoolctl_are_followed():
    with threadpool_limits(1, user_api="openmp"):
        assert _runtime.omp_max_threads() == 1
        assert config.resolve_num_threads() == config._n_threads == 1
        assert config._n_threads_source == "OpenMP"
        with fastnn.threads(CORES):                    # an explicit request still wins
            assert config._n_threads == CORES
    assert config.resolve_num_threads() == _automatic()
    omp = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
    assert _runtime.omp_max_threads() in omp


def test_a_smaller_cgroup_quota_caps_requests_environment_and_earlier_settings(monkeypatch):
    fastnn.set_num_threads(CORES)
    monkeypatch.setattr(config, "_cgroup_cores", 1)
    assert config.available_cores() == 1
    # the cores shrank after the request: resolution caps it rather than crash OpenMP
    assert config.resolve_num_threads() == 1
    with pytest.raises(ValueError, match="more than the 1 core this process may use"):
        fastnn.set_num_threads(2)
    fastnn.set_num_threads(None)
    monkeypatch.setenv("FASTNN_NUM_THREADS", "2")
    assert config.resolve_num_threads() == 1 and config._n_threads_source == "cores"


@pytest.mark.parametrize("var", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"])
def test_an_mpi_rank_takes_its_share_of_the_node(monkeypatch, capsys, var):
    """In a rank of an MPI job the launcher says how many ranks share the node (MPICH's
    and Intel MPI's Hydra, Open MPI): the environment and OpenMP's setting are capped at
    cores // those ranks, and an explicit request still wins."""
    monkeypatch.setattr(config, "_cgroup_cores", 4)
    monkeypatch.setattr(config, "available_cores", lambda: 4)
    monkeypatch.setattr(config, "affinity_is_partial", lambda: False)
    monkeypatch.setenv(var, "2")
    monkeypatch.setenv("FASTNN_NUM_THREADS", "4")
    assert config.mpi_node_ranks() == 2
    assert config.resolve_num_threads() == 2 and config._n_threads_source == "mpi"
    config.show_config(True)
    assert "2 of 4 cores, from this MPI rank's share of the node's cores" in (
        capsys.readouterr().out)
    monkeypatch.setenv(var, "8")                        # more ranks than cores: 1 each
    assert config.resolve_num_threads() == 1
    monkeypatch.setenv("FASTNN_NUM_THREADS", "1")       # below the share: as asked
    assert config.resolve_num_threads() == 1
    assert config._n_threads_source == "FASTNN_NUM_THREADS"
    monkeypatch.setenv(var, "")                         # not in a job
    assert config.mpi_node_ranks() is None
    config._requested = 3                       # set_num_threads: the caller's choice
    monkeypatch.setenv(var, "2")
    assert config.resolve_num_threads() == 3 and config._n_threads_source == "user"
    config._requested = None
    monkeypatch.setenv("FASTNN_NUM_THREADS", "4")
    monkeypatch.setattr(config, "affinity_is_partial", lambda: True)
    # a launcher bound this rank to its cores: they are its share already
    assert config.resolve_num_threads() == 4


# ---- the context manager ----

def test_threads_context_manager_sets_and_restores():
    auto = _automatic()
    with fastnn.threads(1) as n:
        assert n == 1 == config._n_threads == fastnn.get_num_threads()
    assert config._requested is None and config._n_threads == auto
    fastnn.set_num_threads(1)
    with fastnn.threads(CORES):
        assert config._n_threads == CORES
        with fastnn.threads(None):
            assert config._n_threads == auto and config._requested is None
        assert config._n_threads == CORES
    assert config._requested == 1 and config._n_threads == 1
    with pytest.raises(RuntimeError, match="boom"):
        with fastnn.threads(CORES):
            raise RuntimeError("boom")
    assert config._requested == 1 and config._n_threads == 1
    assert fastnn.threads is config.threads


# ---- kernels ----

@pytest.mark.skipif(CORES < 2 or not HAVE_OPENMP, reason="needs 2 cores and OpenMP")
def test_all_cores_give_the_same_bits_as_one_thread():
    fastnn.set_num_threads(CORES)
    assert config._n_threads == CORES
    many = _parallel_work()
    with fastnn.threads(1):
        assert config._n_threads == 1
        one = _parallel_work()
    for a, b in zip(many, one):
        np.testing.assert_array_equal(a, b)


# ---- the environment at load time, in fresh processes ----

CHILD = textwrap.dedent("""
    import json, numpy as np, fastnn
    from fastnn import config, functional as F
    x = np.random.default_rng(0).standard_normal((2048, 512))
    out, _ = F.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1})  # parallel
    print(json.dumps([config._n_threads, config._n_threads_source,
                      fastnn.show_config(print_out=False)["num_threads_source"],
                      bool(np.isfinite(out).all())]))
""")


def _child(tmp_path, **env):
    """Run CHILD with exactly these thread variables, outside the repository on the
    package under test."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    base["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnn.__file__))
    return subprocess.run([sys.executable, "-c", CHILD], env={**base, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env, want", [
    ({}, (CORES, "cores")),
    ({"FASTNN_NUM_THREADS": "1"}, (1, "FASTNN_NUM_THREADS")),
    ({"FASTNN_NUM_THREADS": "1000000"}, (CORES, "cores")),
    ({"OMP_NUM_THREADS": "1"}, (1, "OpenMP")),
    ({"OMP_NUM_THREADS": "1000000"}, (CORES, "cores")),
    ({"FASTNN_NUM_THREADS": str(CORES), "OMP_NUM_THREADS": "1"},
     (CORES, "FASTNN_NUM_THREADS")),
    ({"FASTNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "1000000"}, (1, "FASTNN_NUM_THREADS")),
])
@pytest.mark.skipif(CORES < 2 or not HAVE_OPENMP, reason="needs 2 cores and OpenMP")
def test_environment_variables_are_honoured_and_capped_at_load(tmp_path, env, want):
    r = _child(tmp_path, **env)
    assert r.returncode == 0, r.stderr
    n, source, shown, finite = json.loads(r.stdout)
    assert (n, source) == want and shown == source and finite


def test_a_bad_fastnn_num_threads_fails_the_import_naming_it(tmp_path):
    r = _child(tmp_path, FASTNN_NUM_THREADS="four")
    assert r.returncode != 0
    assert "ValueError: FASTNN_NUM_THREADS must be an integer >= 1, got 'four'" in r.stderr


# ---- the cgroup quota parser, on fake trees ----

def _tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("files, own, want", [
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 2),                 # v2, rounded up
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2),
    ({"cpu.max": "50000 100000\n"}, "0::/\n", 1),                  # at least 1
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),                 # no quota
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
    ({"cpu.max": "100000 0\n"}, "0::/\n", None),
    ({"a/b/cpu.max": "max 100000", "a/cpu.max": "300000 100000"}, "0::/a/b\n", 3),
    ({"a/b/cpu.max": "400000 100000", "a/cpu.max": "200000 100000",
      "cpu.max": "max 100000"}, "0::/a/b\n", 2),                  # an ancestor caps
    ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n", 3),                                      # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n", None),
    ({"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "100000",
      "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000",
      "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
     "4:cpu,cpuacct:/docker/x\n0::/\n", 1),
    ({"cpu/cpu.cfs_quota_us": "abc", "cpu/cpu.cfs_period_us": "100000"}, "", None),
    ({"cpu.max": "300000 100000", "cpu/cpu.cfs_quota_us": "100000",
      "cpu/cpu.cfs_period_us": "100000"}, "0::/\n", 1),            # the smaller wins
    ({}, "0::/\n", None),
])
def test_cgroup_cpu_limit_parses_fake_trees(tmp_path, files, own, want):
    root = tmp_path / "cgroup"
    root.mkdir()
    _tree(root, files)
    (tmp_path / "self_cgroup").write_text(own)
    assert config.cgroup_cpu_limit(root, tmp_path / "self_cgroup") == want


def test_cgroup_paths_cannot_climb_above_the_root(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (tmp_path / "cpu.max").write_text("100000 100000")      # outside the root
    (tmp_path / "self_cgroup").write_text("0::/../..\n")
    assert config.cgroup_cpu_limit(root, tmp_path / "self_cgroup") is None
    assert config.cgroup_cpu_limit(tmp_path / "missing", tmp_path / "missing2") is None
