"""What the Trainer adds to the bare training plan, per step, side by side.

    python bench/trainer_overhead.py [--threads N] [--rounds R]

For each case the same training is run by ``Trainer.fit`` and by the bare plan
(``plan.run`` over the same number of steps, its batch indices drawn before the clock
starts), alternating, R rounds; the table gives the medians per step and the Trainer's
overhead (its time over the plan's, minus 1).  Both are timed on their second run, so
neither pays for building its plan; the Trainer's time includes what the bare plan
leaves out: checking the data, shuffling every epoch, History rows with metrics and dead
units (at least one per fit), the callbacks' hooks.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "fastnn").glob("_plan*.so")):     # built in place: measure this checkout
    sys.path.insert(0, str(ROOT))

import fastnn  # noqa: E402
from fastnn import optim  # noqa: E402
from fastnn.datasets import spiral  # noqa: E402
from fastnn.losses import SoftmaxCrossEntropy  # noqa: E402
from fastnn.net import MLP  # noqa: E402
from fastnn.plan import build_plan  # noqa: E402
from fastnn.trainer import Trainer  # noqa: E402


def spiral_data():
    return spiral(100, 3, seed=0)


def mlp_data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((2048, 784)).astype(np.float32), rng.integers(0, 10, 2048))


#: name, data, sizes, dtype, batch (None: full), epochs (every case trains with SGD 0.1)
CASES = [
    ("spiral, full batch, 2048 steps", spiral_data, [2, 100, 3], np.float64, None, 2048),
    ("spiral, batch 64, 2048 steps", spiral_data, [2, 100, 3], np.float64, 64, 512),
    ("MLP 784-1024-1024-10, batch 256, 64 steps", mlp_data, [784, 1024, 1024, 10],
     np.float32, 256, 8),
]


def _setup(case, seed, max_epochs=None):
    """(trainer_run, plan_run, steps_per_epoch) for one case: each run(epochs) trains
    that many epochs (the trainer by ``fit``, the plan by ``run`` over batch indices drawn
    here for up to max_epochs epochs, off any clock); both have run once, so neither
    pays for building its plan."""
    name, data, sizes, dtype, batch, epochs = case
    X, y = data()
    X = X.astype(dtype)
    n = X.shape[0]
    per_epoch = 1 if batch is None else n // batch
    tr = Trainer(MLP(sizes, seed=0, dtype=dtype), optimizer=optim.SGD(0.1),
                 batch_size=batch, seed=seed, verbose=0)
    tr.fit(X, y, epochs=1)                          # builds the plan the next fit reuses
    plan = build_plan(MLP(sizes, seed=0, dtype=dtype), SoftmaxCrossEntropy(dtype=dtype),
                      optimizer=optim.SGD(0.1), batch_size=n if batch is None else batch)
    plan.bind(X, y)
    rng = np.random.default_rng(seed)
    e_max = max_epochs or epochs
    idx = None if batch is None else np.concatenate(
        [rng.permutation(n)[:per_epoch * batch] for _ in range(e_max)]).astype(np.int64)
    out, data_out = np.empty(e_max * per_epoch), np.empty(e_max * per_epoch)

    def plan_run(e):
        steps = e * per_epoch
        plan.run(steps, None if idx is None else idx[:steps * batch], out, data_out)

    plan_run(1)
    return (lambda e: tr.fit(X, y, epochs=e)), plan_run, per_epoch


def run_case(case, rounds):
    name, epochs = case[0], case[-1]
    times = {"trainer": [], "plan": []}
    for r in range(rounds + 1):                      # round 0 warms up
        trainer_run, plan_run, per_epoch = _setup(case, r)
        for side, run in (("trainer", trainer_run), ("plan", plan_run)):
            t0 = time.perf_counter()
            run(epochs)
            if r:
                times[side].append((time.perf_counter() - t0) / (epochs * per_epoch))
    trainer, bare = (statistics.median(times[k]) for k in ("trainer", "plan"))
    unit, scale = ("ms", 1e3) if bare > 1e-3 else ("us", 1e6)
    print(f"{name:45s} plan {bare * scale:8.2f} {unit}  trainer {trainer * scale:8.2f} {unit}"
          f"  overhead {100 * (trainer / bare - 1):+5.1f}%")
    return trainer / bare - 1


# ---- instruction counts: what the machine's load cannot change ----
#
# Under valgrind's callgrind, a child process sets up one side of a case and runs it for
# E epochs; another for 2E.  The difference of the two totals is what E more epochs cost,
# set-up and interpreter start cancelling out: the trainer's marginal instructions per
# step against the plan's.  The trainer's fixed cost per fit (checks, History, the plan
# lookup) is the trainer's total at E epochs minus E epochs of its marginal cost, minus
# the plan's total likewise.

def _count_child(case_index, side, epochs, max_epochs):
    trainer_run, plan_run, _ = _setup(CASES[case_index], 0, max_epochs)
    {"trainer": trainer_run, "plan": plan_run}[side](epochs)


def _instructions(case_index, side, epochs, max_epochs):
    import re
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, __file__, "--count-child", str(case_index), side, str(epochs),
             str(max_epochs)],
            capture_output=True, text=True,
            # one thread, and no BLAS or OpenMP pool whose idle spinning (which callgrind
            # counts, and which lasts as long as the machine's load makes it) would add
            # noise; a fixed hash seed for the interpreter's own work
            env={**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_NUM_THREADS": "1", "FASTNN_NUM_THREADS": "1"})
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or not m:
        raise RuntimeError(f"callgrind run failed:\n{proc.stderr[-2000:]}")
    return int(m.group(1))


def count_case(case_index, epochs=None):
    case = CASES[case_index]
    name, data, batch, case_epochs = case[0], case[1], case[4], case[5]
    e = epochs or max(1, case_epochs // 8)
    per_epoch = 1 if batch is None else data()[0].shape[0] // batch
    steps = e * per_epoch
    got = {side: (_instructions(case_index, side, e, 2 * e),
                  _instructions(case_index, side, 2 * e, 2 * e))
           for side in ("trainer", "plan")}
    marginal = {side: (b - a) / steps for side, (a, b) in got.items()}
    fixed = (got["trainer"][0] - e * per_epoch * marginal["trainer"]) - \
        (got["plan"][0] - e * per_epoch * marginal["plan"])
    added = marginal["trainer"] / marginal["plan"] - 1
    print(f"{name:45s} plan {marginal['plan'] / 1e3:9.1f} k instr/step  trainer "
          f"{marginal['trainer'] / 1e3:9.1f} k  per step {100 * added:+5.1f}%"
          f"  fixed per fit {fixed / 1e6:6.2f} M")
    return added


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under valgrind's callgrind instead of timing "
                         "(slow, about 1 min per case; independent of the machine's load)")
    args = ap.parse_args(argv)
    fastnn.set_num_threads(args.threads)
    print(f"fastnn {fastnn.__version__}, {args.threads} thread(s), medians of {args.rounds} "
          "alternating rounds")
    if args.instructions:
        print("instructions per step by callgrind (marginal: the cost of more epochs)")
        for i in range(len(CASES)):
            count_case(i)
        return 0
    for case in CASES:
        run_case(case, args.rounds)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count-child"]:
        fastnn.set_num_threads(1)
        _count_child(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
