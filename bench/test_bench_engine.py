"""The training engine (fastnn.plan) beside its peers, as pytest-benchmark suites: one
benchmark group per case of engine_cases.py (spiral full batch in both dtypes, the
mini-batch nets, the MLP step and its GEMM floors, Adam, threads).

``pytest bench/ --benchmark-disable`` runs every implementation once and checks it
against the case's reference (engine_cases.py states each tolerance), including the
candidates that run in a worker process (torch imported first, OMP_WAIT_POLICY=PASSIVE).
Timings here run one implementation after the other and, for worker candidates,
include the pipe; bench/engine.py interleaves them and is the one to quote ratios from.
"""
import numpy as np
import pytest

import cases
import engine_cases
from conftest import names

# units per benchmarked call: enough to be timed, few enough for --benchmark-disable
UNITS = {"engine-spiral": 20, "engine-minibatch": 1, "engine-mlp": 1, "engine-adam": 1,
         "engine-threads-spiral": 20, "engine-threads-mlp": 1}
ROUNDS = {"engine-spiral": 10, "engine-minibatch": 10, "engine-mlp": 5, "engine-adam": 5,
          "engine-threads-spiral": 10, "engine-threads-mlp": 5}


def _setting(table, key):
    return next(v for k, v in sorted(table.items(), key=lambda kv: -len(kv[0]))
                if key.startswith(k))


def _params(group):
    return [pytest.param(case, impl, id=f"{case.key}-{impl}")
            for case in engine_cases.GROUPS[group]() for impl in names(case)]


def bench_engine(benchmark, case, impl):
    """Time `impl`, then check a fresh instance of it against a fresh reference."""
    cand = case[impl]
    units = _setting(UNITS, case.key)
    benchmark.group = case.title
    benchmark.extra_info.update(kind=cand.kind, label=cand.label, units_per_call=units,
                                steps_per_unit=case.steps_per_unit)
    result = benchmark.pedantic(case.runner(impl), args=(units,),
                                rounds=_setting(ROUNDS, case.key), warmup_rounds=1,
                                iterations=1)
    assert np.all(np.isfinite(np.asarray(cases._np(result), dtype=float))), \
        f"{impl}: non-finite result"
    if not cand.check or case.reference_for(impl) == impl:
        return                  # timed only (GEMM floors), or the reference itself
    err = case.verify(impl)
    assert err <= case.tol[impl], \
        f"{impl} vs {case.reference_for(impl)}: error {err:.2e} > {case.tol[impl]:.0e}"


@pytest.mark.parametrize("case,impl", _params("engine-spiral"))
def test_engine_spiral(benchmark, case, impl):
    bench_engine(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", _params("engine-minibatch"))
def test_engine_minibatch(benchmark, case, impl):
    bench_engine(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", _params("engine-mlp"))
def test_engine_mlp(benchmark, case, impl):
    bench_engine(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", _params("engine-adam"))
def test_engine_adam(benchmark, case, impl):
    bench_engine(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", _params("engine-threads"))
def test_engine_threads(benchmark, case, impl):
    bench_engine(benchmark, case, impl)
