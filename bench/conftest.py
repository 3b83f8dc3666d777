"""pytest-benchmark suites: fastnn and its peers, one benchmark group per case.

Run ``pytest bench/ --benchmark-only`` for timings (each group lists fastnn beside the
notes' NumPy and, when installed, PyTorch and scikit-learn), or ``pytest bench/
--benchmark-disable`` to run every implementation once as a quick correctness check.
Benchmarks here run one implementation after the other; bench/compare.py interleaves
them and is the one to quote ratios from on a noisy machine.
"""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cases  # noqa: E402  (adds the checkout and tests/ (notes_code) to sys.path)


def pytest_report_header(config):
    info = cases.fastnn.show_config(print_out=False)
    peers = ", ".join(f"{p}: {'yes' if ok else 'NOT INSTALLED, skipped'}"
                      for p, ok in cases.HAVE.items() if p not in ("fastnn", "numpy"))
    return [f"fastnn {info['version']} from {Path(cases.fastnn.__file__).parent}: "
            f"backend={info['backend']} openmp={info['openmp']} "
            f"threads={info['num_threads']}",
            f"peers: {peers}"]


@pytest.fixture(scope="session", autouse=True)
def threads():
    """Everyone gets the same threads: fastnn's default (the cores available)."""
    n = cases.fastnn.get_num_threads()
    cases.set_threads(n)
    return n


def names(case):
    """Implementation ids of a case: fastnn's, the notes' NumPy and the installed peers
    (an uninstalled peer has no id at all, rather than a skip)."""
    return [c.name for c in case.candidates]


_partner_results = {}


def bench_and_check(benchmark, case, impl, units, rounds, group):
    """Time ``units`` units of ``impl`` over ``rounds`` rounds in benchmark group
    ``group``, then assert that what it computed is right (see check_result)."""
    cand = case[impl]
    benchmark.group = group
    benchmark.extra_info.update(kind=cand.kind, label=cand.label, units_per_call=units)
    run = case.runner(impl)
    result = benchmark.pedantic(run, args=(units,), rounds=rounds, warmup_rounds=1,
                                iterations=1)
    check_result(case, impl, result)
    return result


def check_result(case, impl, result):
    """The benchmarked implementation computed the right thing.

    Deterministic kernels: its result against its reference's (the notes' NumPy), or,
    for the reference itself, against fastnn's.  Dropout: the properties every inverted
    dropout has.  Training steps, whose state moved on during the benchmark: a fresh
    instance against a fresh reference (Case.verify).  scikit-learn (own initialization,
    own loss scaling): a finite loss below chance level's log(3)."""
    cand = case[impl]
    if cand.kind == "sklearn":
        assert np.isfinite(result) and 0 < result < math.log(3) + 0.1
        return
    if case.key.startswith("spiral"):
        err = case.verify(impl, units=5)
        assert err <= case.tol[impl], f"{impl}: relative loss error {err:.2e} after 5 steps"
        return
    partner = case.reference_for(impl)
    if partner == impl:
        partner = case.baseline(cand).name
    ref = None
    if partner is not None:
        key = (case.key, partner)
        if key not in _partner_results:
            _partner_results[key] = case[partner].make()(1)
        ref = _partner_results[key]
    if impl == "gemms":      # out lacks bias and ReLU: its dW and dx are the gradients
        got, want = (result[1], result[2]), (ref[1], ref[3])
        err = max(cases._normwise(a, b) for a, b in zip(got, want))
    else:
        err = case.compare(result, ref)
    assert err <= case.tol[impl], f"{impl} vs {partner}: error {err:.2e}"
