"""``mpiexec -n 2 python -m fastnn.distributed.demo``: data-parallel training of the spiral
(300 points, 3 classes, full batch; every rank holds the data) and of scikit-learn's
8x8 digits (when scikit-learn is installed; each rank holds only its shard of the rows,
and the net has batch norm and dropout) on every rank of COMM_WORLD.  Each rank prints
its part of each step's batch; the losses and accuracies are the same on every rank
(and, with the ordered reduction, the same bits as a 1-rank run)."""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence

import numpy as np

from . import DataParallel, get_comm
from ..datasets import spiral
from ..losses import SoftmaxCrossEntropy
from ..net import MLP
from ..optim import SGD


def _report(comm, name, dp, losses, X, y, held=""):
    acc = float(np.mean(dp.net.predict(X) == y))
    digest = hashlib.sha256(dp.net.flat_params.tobytes()).hexdigest()[:16]
    lines = comm.gather(f"  rank {comm.Get_rank()}/{comm.Get_size()}: {held}shard "
                        f"{dp.shard_sizes()[comm.Get_rank()]} of {dp.batch_size} rows, "
                        f"final loss {losses[-1]:.6f}, accuracy {acc:.4f}, "
                        f"weights sha256 {digest}", root=0)
    if comm.Get_rank() == 0:
        print(f"{name}: {dp.t} steps, {dp.n_blocks} blocks, shards {dp.shard_sizes()}")
        print("\n".join(lines), flush=True)
    return acc


def main(argv: Sequence[str] | None = None) -> None:
    """--quick: a tenth of the epochs (a smoke test)."""
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    comm = get_comm()
    X, y = spiral(100, 3, seed=0)
    dp = DataParallel(MLP([2, 100, 3], seed=0), SoftmaxCrossEntropy(), optimizer=SGD(1.0),
                      regularizer=1e-3, batch_size=X.shape[0], n_blocks=4)
    losses, _ = dp.fit(X, y, epochs=200 if quick else 2000)
    _report(comm, "spiral (2-100-3, full batch of 300, SGD lr 1)", dp, losses, X, y)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        if comm.Get_rank() == 0:
            print("digits: skipped (needs scikit-learn)")
        return
    Xd, yd = load_digits(return_X_y=True)
    Xd = Xd / 16.0
    dp = DataParallel(MLP([64, 128, 10], batch_norm=True, dropout=0.9, seed=0),
                      SoftmaxCrossEntropy(), optimizer="adam", regularizer=1e-4,
                      batch_size=128, n_blocks=4, sharded=True)
    lo, hi = dp.shard(len(Xd))          # this rank trains on these rows only
    losses, _ = dp.fit(Xd[lo:hi], yd[lo:hi], epochs=2 if quick else 20)
    _report(comm, "digits (64-128-10 with batch norm and dropout, batch 128, Adam, sharded "
            "data; accuracy on all rows)", dp, losses, Xd, yd, f"holds rows {lo}:{hi}, ")


if __name__ == "__main__":
    main()
