"""How the training engine scales with threads, beside PyTorch at the same thread counts.

    python bench/thread_scaling.py                       # 1, 2, 4, ... up to the cores
    python bench/thread_scaling.py --threads 1,2,4,8,16 --json out.json

For each thread count: the MLP 784-1024-1024-10 SGD step (float32, batch 256) of
fastnn's plan and of PyTorch (nn.Sequential + F.cross_entropy + optim.SGD, the same
initial weights), interleaved, medians of timed rounds; and the spiral full-batch step
(float64), which is too small to be worth threads (the plan runs it on one).  Before
timing, each thread count trains 3 steps from the same weights and must give the
1-thread run's weights bit for bit (the plan splits work on a grid fixed by the shapes).
Meaningful on an idle machine with that many cores; on a shared one the higher counts
mostly measure the other load."""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import HAVE, compiled, torch  # noqa: E402  (puts the built checkout first)
from engine_cases import _mlp_plan, _mlp_torch, _spiral_plan, mlp_problem  # noqa: E402

from fastnn import plan as fplan  # noqa: E402
from fastnn.optim import SGD  # noqa: E402


def _default_counts():
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts, t = [], 1
    while t < n:
        counts.append(t)
        t *= 2
    return counts + [n]


def _weights_after(n_threads, steps=3):
    net, loss, X, y = mlp_problem()
    plan = fplan.build_plan(net, loss, optimizer=SGD(1e-2), batch_size=X.shape[0]).bind(X, y)
    plan.run(steps, n_threads=n_threads)
    return net.flat_params.copy()


def _time(run, inner, reps):
    run(inner)                                     # warm-up (and the first call's setup)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run(inner)
        out.append((time.perf_counter() - t0) / inner)
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts (default: 1, 2, 4, ... the cores)")
    ap.add_argument("--reps", type=int, default=7, help="timed rounds per measurement")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    compiled()
    counts = ([int(t) for t in args.threads.split(",")] if args.threads
              else _default_counts())
    if min(counts) < 1:
        ap.error("--threads: every count must be >= 1")
    print(f"cores available: {_default_counts()[-1]}; torch: "
          f"{torch.__version__ if HAVE['torch'] else 'not installed (its column is empty)'}")
    ref = _weights_after(1)
    for t in counts:
        same = np.array_equal(_weights_after(t), ref)
        print(f"  MLP weights after 3 steps at {t} thread(s) equal 1 thread's bit for bit: "
              f"{same}")
        if not same:
            raise SystemExit("thread-count dependent bits: a bug")
    rows = []
    print("\nMLP 784-1024-1024-10, batch 256, float32, SGD step (ms); spiral step f64 (us)")
    print(f"{'threads':>7} {'plan ms':>9} {'speed-up':>9} {'torch ms':>9} {'torch/plan':>10}"
          f" {'spiral us':>10}")
    base = None
    for t in counts:
        plan_s = _time(_mlp_plan("sgd", n_threads=t)(), 2, args.reps)
        torch_s = None
        if HAVE["torch"]:
            torch.set_num_threads(t)
            torch_s = _time(_mlp_torch("sgd")(), 2, args.reps)
        spiral_s = _time(_spiral_plan(np.float64, n_threads=t)(), 200, args.reps)
        base = plan_s if base is None else base
        rows.append({"threads": t, "plan_s": plan_s, "torch_s": torch_s,
                     "spiral_s": spiral_s})
        tt = f"{torch_s * 1e3:9.2f} {torch_s / plan_s:9.2f}x" if torch_s else f"{'':9} {'':10}"
        print(f"{t:>7} {plan_s * 1e3:9.2f} {base / plan_s:8.2f}x {tt} {spiral_s * 1e6:10.1f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": counts, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
