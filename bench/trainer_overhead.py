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


#: name, data, sizes, dtype, batch (None: full), epochs, optimizer
CASES = [
    ("spiral, full batch, 2048 steps", spiral_data, [2, 100, 3], np.float64, None, 2048),
    ("spiral, batch 64, 2048 steps", spiral_data, [2, 100, 3], np.float64, 64, 512),
    ("MLP 784-1024-1024-10, batch 256, 64 steps", mlp_data, [784, 1024, 1024, 10],
     np.float32, 256, 8),
]


def run_case(name, data, sizes, dtype, batch, epochs, rounds):
    X, y = data()
    X = X.astype(dtype)
    n = X.shape[0]
    per_epoch = 1 if batch is None else n // batch
    steps = per_epoch * epochs
    times = {"trainer": [], "plan": []}
    for r in range(rounds + 1):                      # round 0 warms up
        tr = Trainer(MLP(sizes, seed=0, dtype=dtype), optimizer=optim.SGD(0.1),
                     batch_size=batch, seed=r, verbose=0)
        tr.fit(X, y, epochs=epochs)                 # builds the plan the next fit reuses
        t0 = time.perf_counter()
        tr.fit(X, y, epochs=epochs)
        t_trainer = (time.perf_counter() - t0) / steps
        plan = build_plan(MLP(sizes, seed=0, dtype=dtype), SoftmaxCrossEntropy(dtype=dtype),
                          optimizer=optim.SGD(0.1), batch_size=n if batch is None else batch)
        plan.bind(X, y)
        rng = np.random.default_rng(r)
        idx = None if batch is None else np.concatenate(
            [rng.permutation(n)[:per_epoch * batch] for _ in range(epochs)]).astype(np.int64)
        out, data_out = np.empty(steps), np.empty(steps)
        plan.run(steps, idx, out, data_out)
        t0 = time.perf_counter()
        plan.run(steps, idx, out, data_out)
        t_plan = (time.perf_counter() - t0) / steps
        if r:
            times["trainer"].append(t_trainer)
            times["plan"].append(t_plan)
    trainer, bare = (statistics.median(times[k]) for k in ("trainer", "plan"))
    unit, scale = ("ms", 1e3) if bare > 1e-3 else ("us", 1e6)
    print(f"{name:45s} plan {bare * scale:8.2f} {unit}  trainer {trainer * scale:8.2f} {unit}"
          f"  overhead {100 * (trainer / bare - 1):+5.1f}%")
    return trainer / bare - 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    fastnn.set_num_threads(args.threads)
    print(f"fastnn {fastnn.__version__}, {args.threads} thread(s), medians of {args.rounds} "
          "alternating rounds")
    for case in CASES:
        run_case(*case, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
