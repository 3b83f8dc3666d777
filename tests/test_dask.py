"""fastnn's estimators searched on a Dask cluster through joblib's dask backend, and the
threads fastnn takes inside Dask workers.

One LocalCluster of worker processes (each started by a nanny, as `dask worker` starts
them) serves the module; the clusters without a nanny (processes=False) start in a
fraction of a second and run in this process.  dask[distributed] is in the test extra,
so these tests import it outright: a missing install is an error, not a skip.
"""
import os

import joblib
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream, get_worker
from scipy.stats import loguniform
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

import fastnn
from fastnn import _runtime, config
from fastnn.sklearn import MLPClassifier, MLPRegressor

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # with the dashboard off a scheduler still serves /health on 8787, or on a free port
    # (with this warning) when another scheduler holds it
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

CORES = config.available_cores()


@pytest.fixture(scope="module")
def client():
    """2 worker processes x 1 thread on loopback, no dashboard: started once (a few
    seconds, more on a loaded machine), closed with the module.

    Each nanny writes distributed.nanny.pre-spawn-environ (OMP_NUM_THREADS=1 and the
    like) into this process's os.environ before it spawns its worker, and leaves it
    there: put back, so that the subprocesses of later tests do not inherit it."""
    saved = os.environ.copy()
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def no_fastnn_env(monkeypatch):
    """Automatic threads and no FASTNN_NUM_THREADS in this process (where the in-process
    workers run), restored afterwards."""
    monkeypatch.delenv("FASTNN_NUM_THREADS", raising=False)
    saved = config._requested
    fastnn.set_num_threads(None)
    yield monkeypatch
    monkeypatch.undo()
    config._requested = saved
    config.refresh()


def threads_in_task():
    """What fastnn resolves inside the task running this, and what the worker has."""
    info = fastnn.show_config(print_out=False)
    return {"num_threads": fastnn.get_num_threads(), "source": info["num_threads_source"],
            "omp_max_threads": info["omp_max_threads"], "cores": info["cores"],
            "dask_worker_threads": info["dask_worker_threads"],
            "nthreads": get_worker().state.nthreads, "pid": os.getpid(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def _per_worker(c, fn, *args):
    """fn(*args) run as a task on each worker of client c: {worker address: result}."""
    workers = list(c.scheduler_info()["workers"])
    futures = {w: c.submit(fn, *args, workers=[w], pure=False) for w in workers}
    return {w: f.result() for w, f in futures.items()}


# ---- threads inside the workers ----

def test_nanny_workers_take_one_thread_per_task_and_never_oversubscribe(client):
    """The nanny sets OMP_NUM_THREADS (distributed.nanny.pre-spawn-environ, 1 by default)
    before it starts the worker: fastnn follows it and the worker's share of the cores."""
    import dask
    pre_spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
    seen = _per_worker(client, threads_in_task)
    assert len(seen) == 2 and len({s["pid"] for s in seen.values()}) == 2
    for s in seen.values():
        assert s["nthreads"] == 1 and s["dask_worker_threads"] == 1
        assert s["OMP_NUM_THREADS"] == str(pre_spawn["OMP_NUM_THREADS"])
        assert 1 <= s["num_threads"] <= s["nthreads"]
        assert s["num_threads"] <= max(1, s["cores"] // s["dask_worker_threads"])
    # the workers share one machine: their tasks together use at most its cores
    assert sum(s["num_threads"] * s["nthreads"] for s in seen.values()) <= max(CORES, 2)


def test_joblib_dask_tasks_see_the_same_threads(client):
    """The tasks joblib's dask backend sends (those of a search) resolve as plain ones."""
    with joblib.parallel_backend("dask"):
        seen = joblib.Parallel(n_jobs=-1)(joblib.delayed(threads_in_task)()
                                          for _ in range(6))
    for s in seen:
        assert 1 <= s["num_threads"] <= s["nthreads"] == 1


@pytest.mark.parametrize("n_workers, threads_per_worker", [(1, 2), (2, 1), (1, 1)])
def test_workers_without_a_nanny_take_their_share_of_the_cores(
        no_fastnn_env, n_workers, threads_per_worker):
    """processes=False: no OMP_NUM_THREADS is set, and the tasks of every worker in this
    process run at once; each resolves cores // (all their threads)."""
    total = n_workers * threads_per_worker
    share = max(1, CORES // total)
    automatic = min(_runtime.omp_max_threads(), CORES)
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                      processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        seen = _per_worker(c, threads_in_task)
        # FASTNN_NUM_THREADS is capped at the share as well; an explicit request is not
        no_fastnn_env.setenv("FASTNN_NUM_THREADS", str(CORES))
        from_env = _per_worker(c, threads_in_task)
        explicit = c.submit(_explicit, CORES, pure=False).result()
    assert len(seen) == n_workers
    for s in seen.values():
        assert s["dask_worker_threads"] == total and s["pid"] == os.getpid()
        assert s["num_threads"] == min(automatic, share)
        if automatic > share:
            assert s["source"] == "dask"
        assert s["num_threads"] * total <= max(CORES, total)
    for s in from_env.values():
        assert s["num_threads"] == share
        assert s["source"] == ("FASTNN_NUM_THREADS" if share == CORES else "dask")
    assert explicit == (CORES, "user")
    # outside the tasks, this process resolves as before
    no_fastnn_env.delenv("FASTNN_NUM_THREADS")
    assert config.dask_worker_threads() is None
    assert fastnn.get_num_threads() == automatic


def _explicit(n):
    with fastnn.threads(n):
        return fastnn.get_num_threads(), config._n_threads_source


def test_outside_dask_resolution_does_not_import_distributed(tmp_path):
    """fastnn never imports distributed itself (the check is a sys.modules look-up)."""
    import subprocess
    import sys
    code = ("import sys, fastnn; fastnn.get_num_threads(); fastnn.show_config(False); "
            "print('distributed' in sys.modules, 'dask' in sys.modules)")
    env = {**os.environ,
           "PYTHONPATH": os.path.dirname(os.path.dirname(fastnn.__file__))}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


# ---- searches: the cluster gives the sequential run's results, bit for bit ----

def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


SCORE_KEYS = ("split", "mean_test", "std_test", "mean_train", "std_train", "rank_test")


def _assert_same_search(seq, dsk):
    assert seq.best_params_ == dsk.best_params_
    assert seq.best_index_ == dsk.best_index_
    assert seq.best_score_ == dsk.best_score_
    compared = 0
    for key, value in seq.cv_results_.items():
        if key.startswith(SCORE_KEYS) or key == "params":
            if key == "params":
                assert value == dsk.cv_results_[key]
            else:
                np.testing.assert_array_equal(value, dsk.cv_results_[key], err_msg=key)
            compared += 1
    assert compared >= 6      # at least every split's test score, mean, std, rank


def _on_cluster(c, search, X, y):
    """search.fit(X, y) through joblib's dask backend; asserts the fits ran on c."""
    with get_task_stream(c) as tasks, joblib.parallel_backend("dask"):
        search.fit(X, y)
    assert tasks.data, "no task ran on the cluster"
    return search


def test_grid_search_on_dask_equals_the_sequential_search(client):
    X, y = _digits()
    grid = {"learning_rate_init": [1e-3, 3e-3, 1e-2], "alpha": [1e-4, 1e-1]}

    def search(n_jobs):
        # log loss as well as accuracy: a continuous score, so "bit for bit" means it
        return GridSearchCV(
            MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0),
            grid, cv=3, scoring={"nll": "neg_log_loss", "acc": "accuracy"},
            refit="nll", return_train_score=True, n_jobs=n_jobs)

    seq = search(1).fit(X, y)                       # sequential, in this process
    dsk = _on_cluster(client, search(None), X, y)   # None: all the backend's workers
    _assert_same_search(seq, dsk)
    assert len(set(seq.cv_results_["mean_test_nll"])) == 6   # no ties to hide behind
    np.testing.assert_array_equal(seq.predict_proba(X[:50]), dsk.predict_proba(X[:50]))


def test_randomized_search_on_dask_equals_the_sequential_search(client):
    X, y = make_regression(n_samples=300, n_features=10, noise=5.0, random_state=0)
    y = y / y.std()
    dists = {"learning_rate_init": loguniform(1e-4, 1e-1), "alpha": loguniform(1e-5, 1e0)}

    def search(n_jobs):
        return RandomizedSearchCV(
            MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, batch_size=50,
                         random_state=1, dtype=np.float32),
            dists, n_iter=5, cv=2, random_state=0, n_jobs=n_jobs)

    seq = search(1).fit(X, y)                       # sequential, in this process
    dsk = _on_cluster(client, search(None), X, y)   # None: all the backend's workers
    _assert_same_search(seq, dsk)
    np.testing.assert_array_equal(seq.predict(X), dsk.predict(X))
