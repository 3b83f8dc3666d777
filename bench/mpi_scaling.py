"""Data-parallel step time of the 784-1024-1024-10 net at global batch 512 (float32,
softmax, SGD), one core per rank.  Run once per rank count, e.g.::

    OMP_NUM_THREADS=1 HYDRA_LAUNCHER=fork python bench/mpi_scaling.py          # 1 rank
    OMP_NUM_THREADS=1 HYDRA_LAUNCHER=fork mpiexec -n 2 python bench/mpi_scaling.py

Prints (rank 0) the median step time, the share of a step spent in the reduction
(gather/allreduce + the ordered sum + the loss gather) for both reductions, and the
plain single-process plan (plan.run) for reference."""
import sys
import time

import numpy as np

from fastnn import set_num_threads
from fastnn.distributed import DataParallel, get_comm
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn.plan import build_plan

SIZES, BATCH, STEPS = [784, 1024, 1024, 10], 512, int(sys.argv[1]) if len(sys.argv) > 1 else 10


def main():
    set_num_threads(1)
    comm = get_comm()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2048, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2048)
    idx = np.concatenate([rng.permutation(2048)[:BATCH] for _ in range(STEPS + 2)])
    rows = []
    if comm.Get_size() == 1:
        net = MLP(SIZES, seed=0, dtype=np.float32)
        plan = build_plan(net, SoftmaxCrossEntropy(), batch_size=BATCH).bind(X, y)
        plan.run(1, idx[:BATCH])
        times = []
        for s in range(STEPS):
            t0 = time.perf_counter()
            plan.run(1, idx[(s + 1) * BATCH:(s + 2) * BATCH])
            times.append(time.perf_counter() - t0)
        rows.append(("plain plan.run", np.median(times), 0.0))
    for reduction in ("ordered", "allreduce"):
        net = MLP(SIZES, seed=0, dtype=np.float32)
        dp = DataParallel(net, SoftmaxCrossEntropy(), batch_size=BATCH, n_blocks=2,
                          reduction=reduction).bind(X, y)
        dp.step(idx[:BATCH])
        times, comm_s = [], []
        for s in range(STEPS):
            comm.Barrier()
            c0 = dp.comm_seconds
            t0 = time.perf_counter()
            dp.step(idx[(s + 1) * BATCH:(s + 2) * BATCH])
            times.append(time.perf_counter() - t0)
            comm_s.append(dp.comm_seconds - c0)
        rows.append((f"DataParallel {reduction}", np.median(times),
                     np.median(comm_s) / np.median(times)))
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} rank(s), 784-1024-1024-10 float32, global batch {BATCH}, "
              f"{STEPS} steps (median)")
        for name, t, share in rows:
            print(f"  {name:24s} {t * 1e3:8.1f} ms/step   communication {share:5.1%}")


if __name__ == "__main__":
    main()
