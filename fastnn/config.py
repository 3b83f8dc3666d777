"""Threads and build information.

Every kernel call reads its thread count from ``_n_threads``, which holds the count
resolved from the first of these that is set:

1. ``set_num_threads(n)`` or ``with threads(n):`` (``set_num_threads(None)`` returns
   to automatic); the estimators' ``n_threads`` parameter uses this;
2. the environment variable FASTNN_NUM_THREADS;
3. OpenMP's own setting, omp_get_max_threads(): OMP_NUM_THREADS, or a limit that
   threadpoolctl or joblib put on the OpenMP runtime.  In a Dask worker process started
   by a nanny (``dask worker``, ``LocalCluster(processes=True)``) this is the nanny's
   OMP_NUM_THREADS, from the config ``distributed.nanny.pre-spawn-environ``: 1 by
   default, whatever the worker's ``nthreads``;

capped by the cores this process may use (CPU affinity and a cgroup CPU quota), and 2.
and 3. also, inside a task of a Dask worker, by that worker's share of them: cores //
the threads of the Dask workers running in this process (``Worker.state.nthreads``,
summed), at least 1.  A worker with ``nthreads`` threads runs that many tasks at once,
so each task gets one share and the tasks together never use more threads than cores
(a worker without a nanny, or ``LocalCluster(processes=False)``, has no
OMP_NUM_THREADS: this cap is what keeps it in bounds).  The check costs a dictionary
look-up outside Dask: it runs only when ``distributed`` is already imported, and fastnn
never imports it.  Likewise in a rank of an MPI job: cores // the job's ranks on this
node, as the launcher tells them (``MPI_LOCALNRANKS`` from MPICH's and Intel MPI's
Hydra, ``OMPI_COMM_WORLD_LOCAL_SIZE`` from Open MPI), at least 1, so that ``mpiexec -n
R`` without OMP_NUM_THREADS does not oversubscribe the node -- unless the rank's CPU
affinity leaves out some of the machine's CPUs: a launcher that binds ranks has then
already given each its share, and its cores are the rank's own.  An explicit request (1.)
is honoured above either share: asked for, it is the caller's choice.

A request above the cores is refused; an environment variable above them is capped
silently, since the environment may be shared with other programs.  ``_n_threads`` is
re-resolved by ``set_num_threads``, ``refresh``/``resolve_num_threads`` (once per
training run) and at import, and always lies in [1, cores]: OpenMP crashes on absurd
counts.

Nothing here changes a process-wide setting: not the environment (OMP_WAIT_POLICY
included) and not another library's thread pool, BLAS included.  The setting itself is
process-wide, not per Python thread (Dask workers running several tasks in one process
resolve the same count in each, so they agree).
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

from . import _kernels
from ._validation import check_env_positive_int, check_positive_int

ENV_VAR = "FASTNN_NUM_THREADS"
#: Where the resolved count came from, as show_config reports it.
SOURCES = ("user", ENV_VAR, "OpenMP", "dask", "mpi", "cores")

_n_threads = 1                # what the kernels use; always in [1, cores]
_n_threads_source = "cores"   # one of SOURCES
_requested = None             # set_num_threads's n; None: automatic

try:
    from ._runtime import omp_max_threads as _omp_max_threads
except ImportError:           # FASTNN_BACKEND=numpy without compiled kernels: one thread
    _omp_max_threads = None


# ---- the cores this process may use ----

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cores(quota, period):
    """ceil(quota / period), at least 1; None for no quota ("max", -1) or unreadable
    values."""
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, -(-q // p))


def _own_cgroups(proc_cgroup):
    """{controller: path} from /proc/self/cgroup ("id:controllers:path" lines); the
    cgroup v2 hierarchy is under the controller ""."""
    paths = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _dirs_up(base, rel):
    """base/rel and each of its parents down to base: the quota of any ancestor cgroup
    limits this one too.  ".." cannot climb above base."""
    rel = os.path.normpath("/" + (rel or "")).strip("/")
    parts = rel.split("/") if rel else []
    return [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup",
                     proc_cgroup: str = "/proc/self/cgroup") -> int | None:
    """CPUs that a cgroup CPU quota lets this process use, rounded up (at least 1), or
    None when no quota applies or none can be read.

    Reads cgroup v2 ``cpu.max`` ("max 100000" or "<quota> <period>") and cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none) under ``root``, in this
    process's own cgroup (from ``proc_cgroup``) and its ancestors, and returns the
    smallest.  Both paths are arguments so that tests can point them at fake trees.
    """
    own = _own_cgroups(proc_cgroup)
    limits = []
    for d in _dirs_up(root, own.get("")):
        text = _read(os.path.join(d, "cpu.max"))
        if text:
            fields = text.split()
            limits.append(_quota_cores(*fields[:2]) if len(fields) >= 2 else None)
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in _dirs_up(os.path.join(root, mount), own.get("cpu")):
            limits.append(_quota_cores(_read(os.path.join(d, "cpu.cfs_quota_us")),
                                       _read(os.path.join(d, "cpu.cfs_period_us"))))
    found = [n for n in limits if n is not None]
    return min(found) if found else None


# Read once: a quota rarely changes while a process runs, and resolving must stay cheap.
_cgroup_cores = cgroup_cpu_limit()


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (else os.cpu_count()), capped by
    a cgroup CPU quota (read at import)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # no affinity outside Linux
        n = os.cpu_count() or 1
    if _cgroup_cores is not None:
        n = min(n, _cgroup_cores)
    return max(1, n)


# ---- resolution ----

# Dask worker states that still run tasks (distributed.worker.WORKER_ANY_RUNNING)
_DASK_RUNNING = ("running", "paused", "closing_gracefully")


def dask_worker_threads() -> int | None:
    """The threads of the Dask workers in this process when called from a task running
    on one of them (``Worker.state.nthreads``, summed over the workers of this process
    that still run tasks), else None.

    Never imports distributed: outside a process that has imported it this is one
    dictionary look-up.  Any failure (an unfamiliar distributed) reads as None."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()       # a context variable, set in tasks only
    except Exception:                           # ValueError: not in a task
        return None
    try:
        own = int(worker.state.nthreads)
        others = sum(int(w.state.nthreads) for w in list(type(worker)._instances)
                     if w is not worker and w.status.name in _DASK_RUNNING)
    except Exception:
        try:
            return max(1, int(worker.nthreads))
        except Exception:
            return None
    return max(1, own + others)


#: What MPI launchers say about the ranks on this node (MPICH / Intel MPI, Open MPI).
_MPI_NODE_RANKS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def affinity_is_partial() -> bool:
    """True when this process may run on fewer CPUs than the machine has (its affinity
    was restricted, e.g. by an MPI launcher binding ranks to cores)."""
    try:
        return len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)
    except (AttributeError, OSError):   # no affinity outside Linux
        return False


def mpi_node_ranks() -> int | None:
    """The ranks of the MPI job this process is a rank of that run on this node, from
    the launcher's environment, or None outside an MPI job (or under a launcher that
    does not say).  Imports nothing."""
    for var in _MPI_NODE_RANKS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return None


def _resolve():
    """(n, source) by the rules of the module docstring, n in [1, cores]."""
    cores = available_cores()
    if _requested is not None:
        # checked against the cores when asked; the affinity may have shrunk since
        return min(_requested, cores), "user"
    # inside a Dask task: this worker's share of the cores; in an MPI rank: the rank's
    # share; else the cores
    dask = dask_worker_threads()
    ranks = mpi_node_ranks() if dask is None and not affinity_is_partial() else None
    if dask is not None:
        limit, capped_by = max(1, cores // dask), "dask"
    elif ranks is not None:
        limit, capped_by = max(1, cores // ranks), "mpi"
    else:
        limit, capped_by = cores, "cores"
    if limit == cores:
        capped_by = "cores"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        n = check_env_positive_int(env, ENV_VAR)
        return (n, ENV_VAR) if n <= limit else (limit, capped_by)
    n = max(1, _omp_max_threads()) if _omp_max_threads is not None else cores
    # OpenMP's default is every CPU it sees: only a count below the cores was chosen
    if n >= cores:
        return limit, capped_by
    return (n, "OpenMP") if n <= limit else (limit, capped_by)


def refresh() -> int:
    """Re-resolve the thread count into ``_n_threads`` (what every kernel call uses) and
    return it.  Raises ValueError for a bad FASTNN_NUM_THREADS, leaving the count as it
    was."""
    global _n_threads, _n_threads_source
    _n_threads, _n_threads_source = _resolve()
    return _n_threads


def resolve_num_threads() -> int:
    """The thread count for the next kernel calls, re-resolved now (a few microseconds):
    picks up OMP_NUM_THREADS-style limits set since (threadpoolctl, joblib) and changes
    of FASTNN_NUM_THREADS or of the CPU affinity."""
    return refresh()


def get_num_threads() -> int:
    """Threads fastnn's kernels use (resolved now, see :func:`resolve_num_threads`)."""
    return resolve_num_threads()


def _check_request(n):
    """n as set_num_threads accepts it: None, or an int in [1, available cores]."""
    if n is None:
        return None
    n = check_positive_int(n, "n")
    cores = available_cores()
    if n > cores:
        # refused, not capped: asking for more than exists is a mistake worth seeing
        # (and OpenMP crashes when given absurd counts)
        raise ValueError(f"n = {n} threads is more than the {cores} "
                         f"core{'s' if cores != 1 else ''} this process may use "
                         "(CPU affinity and cgroup quota)")
    return n


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in fastnn's kernels; ``None`` returns to automatic (
    FASTNN_NUM_THREADS, else OpenMP's setting, capped by the cores).

    Raises TypeError unless n is an int or None (bool and float are refused) and
    ValueError for n < 1 or n above the cores this process may use.  Changes no other
    library's threads (BLAS and OpenMP runtime settings are left as they are).
    """
    global _requested
    _requested = _check_request(n)
    refresh()


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """``with threads(n):`` runs the block with ``set_num_threads(n)`` and then restores
    the previous setting (an explicit count or automatic), even if the block raises.
    Yields the resolved count.  The setting is process-wide, not per Python thread."""
    global _requested
    previous = _requested
    set_num_threads(n)
    try:
        yield _n_threads
    finally:
        _requested = previous
        refresh()


def show_config(print_out: bool = True) -> dict[str, Any]:
    """Print and return what fastnn runs on.

    Returns a dict: version, backend ("compiled" or "numpy"), openmp (compiled in?),
    isa_dispatch (element-wise loops built for several instruction sets?),
    num_threads (resolved now), num_threads_source (where it came from: "user" for
    set_num_threads, "FASTNN_NUM_THREADS", "OpenMP" for omp_get_max_threads below the
    cores, "dask" for a Dask worker's share of the cores, "mpi" for an MPI rank's,
    "cores" for all of them),
    omp_max_threads (OpenMP's own setting, None without compiled kernels), cores (that
    this process may use), dask_worker_threads (the Dask worker threads sharing those
    cores when called from a Dask task, else None), mpi_node_ranks (the MPI ranks on
    this node sharing them, in a rank of an MPI job, else None), blas (one entry per BLAS library
    loaded, from threadpoolctl), python, numpy, platform.
    """
    import numpy as np
    from threadpoolctl import threadpool_info

    from . import __version__
    openmp = isa_dispatch = None
    if _kernels.COMPILED is not None:
        from . import _runtime
        openmp = _runtime.openmp_enabled()
        isa_dispatch = _runtime.isa_dispatch()
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "filepath",
                                   "threading_layer", "architecture")}
        for info in threadpool_info() if info.get("user_api") == "blas"
    ]
    info: dict[str, Any] = {
        "version": __version__,
        "backend": _kernels.get_backend(),
        "compiled_available": _kernels.COMPILED is not None,
        "openmp": openmp,
        "isa_dispatch": isa_dispatch,
        "num_threads": get_num_threads(),
        "num_threads_source": _n_threads_source,
        "omp_max_threads": _omp_max_threads() if _omp_max_threads is not None else None,
        "cores": available_cores(),
        "dask_worker_threads": dask_worker_threads(),
        "mpi_node_ranks": mpi_node_ranks(),
        "blas": blas,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    if print_out:
        print(f"fastnn {info['version']}")
        print(f"  backend        : {info['backend']}"
              + ("" if info["compiled_available"] else
                 " (FASTNN_BACKEND=numpy; compiled kernels NOT available: "
                 f"{_kernels.COMPILED_IMPORT_ERROR})"))
        print(f"  OpenMP         : {'yes' if openmp else 'no'}")
        print("  SIMD loops     : "
              + ("per-ISA clones (AVX-512, AVX2, baseline), picked at load time"
                 if isa_dispatch else "compiled for the baseline instruction set"))
        print(f"  threads        : {info['num_threads']} of {info['cores']} cores, from "
              + _SOURCE_TEXT[info["num_threads_source"]] + _capped_note(info))
        for b in blas:
            print(f"  BLAS           : {b['internal_api']} {b['version']} "
                  f"({b['num_threads']} threads, {b['architecture']}) {b['filepath']}")
        print(f"  python / numpy : {info['python']} / {info['numpy']}")
        print(f"  platform       : {info['platform']}")
    return info


_SOURCE_TEXT = {
    "user": "set_num_threads",
    ENV_VAR: ENV_VAR,
    "OpenMP": "OpenMP's setting (OMP_NUM_THREADS or a threadpoolctl limit)",
    "dask": "this Dask worker's share of the cores",
    "mpi": "this MPI rank's share of the node's cores",
    "cores": "the cores this process may use",
}


def _capped_note(info):
    """What asked for more than the cores, when the cores capped it (for show_config)."""
    if info["num_threads_source"] not in ("cores", "dask", "mpi"):
        return ""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return f" ({ENV_VAR}={env} capped)"
    if info["num_threads_source"] == "dask":
        return f" (cores // {info['dask_worker_threads']} worker threads)"
    if info["num_threads_source"] == "mpi":
        return f" (cores // {info['mpi_node_ranks']} ranks on this node)"
    if (info["omp_max_threads"] or 0) > info["cores"]:
        return f" (OpenMP's {info['omp_max_threads']} capped)"
    return ""


try:
    refresh()
except ValueError as _exc:     # a bad FASTNN_NUM_THREADS must not make fastnn unimportable
    import warnings
    warnings.warn(f"{_exc}; until it is fixed fastnn's kernels run on 1 thread, and "
                  "training and the fastnn command refuse to run", RuntimeWarning,
                  stacklevel=2)
