"""A GridSearchCV over fastnn's MLPClassifier on Dask LocalClusters of different shapes:
wall time, the CPU time of the workers, and whether the cores were oversubscribed.

    python bench/dask_search.py [--rounds R] [--quick] [--no-contrast] [--json PATH]

The search (all 1797 digits, MLP (256, 256), batch 200, 20 epochs; a 2 x 3 grid of
learning_rate_init x alpha, 3-fold CV, refit=False: 18 fits of ~0.5 s on one thread)
runs through joblib's dask backend (``with joblib.parallel_backend("dask",
client=c)``), with no fastnn code for Dask, on each configuration:

* sequential, no cluster, fastnn on 1 thread and on all the cores (the references);
* 1 worker x 2 threads and 2 workers x 1 thread (processes started by a nanny, which sets
  OMP_NUM_THREADS=1: every task trains on one thread, the worker threads run tasks side
  by side);
* 1 worker x 2 threads given OMP_NUM_THREADS=<cores> by its nanny (set in the
  nanny's environment, which wins over the config
  ``distributed.nanny.pre-spawn-environ``): fastnn caps each task at the worker's share
  of the cores, cores // 2, since the worker runs 2 tasks at once;
* the contrast, oversubscribed on purpose (``--no-contrast`` leaves it out): 2 workers x
  1 thread, each given OMP_NUM_THREADS=<cores>: every process sees all the cores and one
  worker thread, so fastnn takes all the cores in each, twice the threads there are
  cores.  fastnn cannot see other processes' threads; the nanny's default (1) is what
  prevents this.

(A cluster with one worker thread in all is no row: joblib's dask backend then counts
one job and runs the search sequentially in the client process.)

Every cluster is started and warmed (fastnn and scikit-learn imported in each worker)
before the clock starts, and all of them stay up while the rounds alternate between the
configurations, so that a busy moment of the shared machine falls on all of them.  Per
configuration the table gives the median over the rounds of:

* threads: at once, the sum over workers of nthreads x fastnn's threads per task as a
  task resolves them (``fastnn.get_num_threads()`` run inside each worker);
* wall s: the search's wall time;
* CPU s: CPU time (user + system, every thread) of the worker processes, from psutil
  before and after each search (sequential rows: this process); client: this process's
  during the clustered searches (it runs the scheduler);
* CPU x: the workers' CPU s over the 1-thread sequential search's: the same fits, so
  well above 1 means CPU burned on something else (spinning OpenMP barriers when
  threads outnumber the cores, serialization, scheduling);
* CPU/(wall x cores): (workers + client CPU) over wall x cores; 1.0 is every core busy
  all the time;
* speed-up over the 1-thread sequential search; same: the search gave the sequential
  one's cv_results_ test scores and best_params_ bit for bit.

Oversubscription shows as threads above the cores, CPU x above the other rows' and a
wall time above theirs.  On a machine that others are using, CPU/(wall x cores) drops
below 1 for every row (their work holds some of the cores; the header gives the load
average) and 2 OpenMP threads can be slower than 1, since a barrier waits for the
thread that is descheduled.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

# before dask is imported: its INFO lines (workers starting, closing) would bury the table
os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "fastnn").glob("_plan*.so")):     # built in place: measure this checkout
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join(   # and so do the worker processes
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import dask  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from distributed import Client, LocalCluster, get_worker  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastnn  # noqa: E402
from fastnn import config  # noqa: E402
from fastnn.sklearn import MLPClassifier  # noqa: E402

CORES = config.available_cores()
GRID = {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1e-2, 1.0]}


HIDDEN = (256, 256)


def data(n):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def search(max_iter, n_jobs, hidden=HIDDEN):
    return GridSearchCV(
        MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, batch_size=200,
                      random_state=0), GRID, cv=3, n_jobs=n_jobs,
        refit=False)     # the refit would run in the client: only the 18 fits are timed


def _worker_probe():
    """Inside a task: (fastnn's threads, the worker's nthreads, OMP_NUM_THREADS)."""
    import fastnn as f     # noqa: F401  (imports fastnn and scikit-learn: the warm-up)
    import fastnn.sklearn  # noqa: F401
    warnings.simplefilter("ignore", ConvergenceWarning)
    return (f.get_num_threads(), get_worker().state.nthreads,
            os.environ.get("OMP_NUM_THREADS"))


def _cpu_seconds():
    """This process's CPU time, every thread (run on a worker by client.run)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _client_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


#: label, LocalCluster shape (None: sequential, no cluster), OMP_NUM_THREADS for the
#: nanny to set (None: Dask's default), fastnn threads for the sequential rows, contrast?
def configurations(contrast):
    rows = [
        ("sequential, 1 thread", None, None, 1, False),
        (f"sequential, {CORES} threads", None, None, CORES, False),
        ("1 worker x 2 threads", (1, 2), None, None, False),
        ("2 workers x 1 thread", (2, 1), None, None, False),
        (f"1 worker x 2 threads, OMP_NUM_THREADS={CORES}", (1, 2), CORES, None, False),
    ]
    if contrast:
        rows.append((f"2 workers x 1 thread, OMP_NUM_THREADS={CORES} (contrast)", (2, 1),
                     CORES, None, True))
    return rows


def start(shape, omp):
    """A warmed LocalCluster of that shape, its Client, the threads at once, and what
    each worker's tasks see."""
    n_workers, per_worker = shape
    # A nanny takes OMP_NUM_THREADS from os.environ when set there, else from the config
    # distributed.nanny.pre-spawn-environ (1), and writes it into os.environ, where it
    # stays: set or clear it for each cluster, and put the environment back after.
    saved = os.environ.copy()
    os.environ.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        os.environ["OMP_NUM_THREADS"] = str(omp)
    try:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=per_worker,
                               processes=True, host="127.0.0.1", dashboard_address=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    client = Client(cluster, set_as_default=False)
    workers = list(client.scheduler_info()["workers"])
    probes = [client.submit(_worker_probe, workers=[w], pure=False).result()
              for w in workers]
    at_once = sum(n * nthreads for n, nthreads, _ in probes)
    return cluster, client, at_once, probes


def run_once(row, clusters, X, y, max_iter):
    """(wall s, workers' CPU s, client CPU s, fitted search) for one round of a row."""
    label, shape, _, seq_threads, _ = row
    if shape is None:
        with fastnn.threads(seq_threads):
            c0, t0 = _client_cpu(), time.perf_counter()
            s = search(max_iter, 1).fit(X, y)
            wall = time.perf_counter() - t0
            return wall, _client_cpu() - c0, 0.0, s
    client = clusters[label][1]
    w0, c0 = client.run(_cpu_seconds), _client_cpu()
    t0 = time.perf_counter()
    with joblib.parallel_backend("dask", client=client):
        s = search(max_iter, None).fit(X, y)
    wall = time.perf_counter() - t0
    w1, c1 = client.run(_cpu_seconds), _client_cpu()
    return wall, sum(w1[w] - w0[w] for w in w1), c1 - c0, s


def same(a, b):
    keys = [k for k in a.cv_results_ if k.startswith(("split", "mean_test", "std_test"))]
    return (a.best_params_ == b.best_params_
            and all(np.array_equal(a.cv_results_[k], b.cv_results_[k]) for k in keys))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer rows and epochs, 1 round")
    ap.add_argument("--no-contrast", action="store_true",
                    help="leave out the oversubscribed configuration")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    # a scheduler serves /health on 8787 even without a dashboard, or on a free port
    warnings.filterwarnings("ignore", "Port 8787 is already in use", UserWarning)
    n, max_iter, rounds = (600, 10, 1) if args.quick else (1797, 20, args.rounds)
    X, y = data(n)
    rows = configurations(not args.no_contrast)

    print(f"fastnn {fastnn.__version__} ({fastnn.__file__}), dask "
          f"{dask.__version__}, joblib {joblib.__version__}, python "
          f"{platform.python_version()}, {platform.platform()}")
    print(f"{CORES} cores; load average {os.getloadavg()[0]:.2f} at start; "
          f"search: digits {n} rows, MLP {HIDDEN}, batch 200, {max_iter} epochs, "
          f"{len(GRID['learning_rate_init']) * len(GRID['alpha'])} candidates x 3 folds; "
          f"{rounds} round(s), medians")
    clusters = {}
    try:
        for row in rows:
            if row[1] is not None:
                t0 = time.perf_counter()
                clusters[row[0]] = start(row[1], row[2])
                print(f"  started {row[0]}: {time.perf_counter() - t0:.1f} s; per worker "
                      "(fastnn threads, nthreads, OMP_NUM_THREADS) = "
                      f"{clusters[row[0]][3]}")
        results = {row[0]: [] for row in rows}
        loads = []
        reference = None
        for r in range(rounds):
            for row in (rows if r % 2 == 0 else rows[::-1]):
                wall, wcpu, ccpu, s = run_once(row, clusters, X, y, max_iter)
                if reference is None:
                    reference = s
                results[row[0]].append((wall, wcpu, ccpu, same(reference, s)))
                loads.append(os.getloadavg()[0])
    finally:
        for cluster, client, *_ in clusters.values():
            client.close()
            cluster.close()

    base = statistics.median(w for w, *_ in results[rows[0][0]])
    print(f"load average during the rounds: {min(loads):.2f}-{max(loads):.2f}")
    base_cpu = statistics.median(x[1] for x in results[rows[0][0]])
    head = (f"{'configuration':<52} {'threads':>7} {'wall s':>7} {'CPU s':>6} "
            f"{'client':>6} {'CPU x':>5} {'CPU/(wall x cores)':>18} {'speed-up':>8}  same")
    print(head)
    print("-" * len(head))
    report = []
    for label, shape, omp, seq_threads, contrast in rows:
        res = results[label]
        wall = statistics.median(x[0] for x in res)
        cpu = statistics.median(x[1] for x in res)
        ccpu = statistics.median(x[2] for x in res)
        at_once = seq_threads if shape is None else clusters[label][2]
        util = (cpu + ccpu) / (wall * CORES)
        ok = all(x[3] for x in res)
        flag = " > cores" if at_once > CORES else ""
        print(f"{label:<52} {at_once:>7} {wall:>7.2f} {cpu:>6.2f} {ccpu:>6.2f} "
              f"{cpu / base_cpu:>5.2f} {util:>18.2f} {base / wall:>7.2f}x  "
              f"{'yes' if ok else 'NO'}{flag}")
        report.append({"configuration": label, "threads_at_once": at_once,
                       "wall_s": [x[0] for x in res], "workers_cpu_s": [x[1] for x in res],
                       "client_cpu_s": [x[2] for x in res], "utilization": util,
                       "cpu_over_sequential": cpu / base_cpu,
                       "speedup_vs_1_thread": base / wall, "same_results": ok,
                       "contrast": contrast})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": CORES, "rows": n, "max_iter": max_iter, "rounds": rounds,
                       "load_average": [min(loads), max(loads)], "results": report}, f,
                      indent=1)
    return 0 if all(x["same_results"] for x in report) else 1


if __name__ == "__main__":
    sys.exit(main())
