"""Run by tests/test_distributed.py under mpiexec (or alone, as 1 rank): trains a small
net data-parallel and writes rank 0's final parameters (and every rank's digest)."""
import hashlib
import sys

import numpy as np

from fastnn.net import MLP
from fastnn.distributed import DataParallel, get_comm
from fastnn.losses import SoftmaxCrossEntropy


def data(n=301, d=5, k=3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    w = rng.uniform(0.1, 2.0, n)
    return X, y, w


def main(out, mode, batch, n_blocks, epochs, ckpt=None):
    comm = get_comm()
    X, y, w = data()
    weights = w if "weights" in mode else None
    if "resume" in mode:
        dp = DataParallel.from_checkpoint(ckpt, SoftmaxCrossEntropy(), regularizer=1e-3)
    else:
        net = MLP([5, 16, 3], seed=comm.Get_rank() + 1)   # rank 0's weights win (Bcast)
        dp = DataParallel(net, SoftmaxCrossEntropy(), optimizer="adam", regularizer=1e-3,
                          batch_size=batch, n_blocks=n_blocks)
    losses, _ = dp.fit(X, y, epochs=epochs, weights=weights,
                       checkpoint=ckpt if "save" in mode else None)
    digest = hashlib.sha256(dp.net.flat_params.tobytes()).hexdigest()
    digests = comm.allgather(digest)
    assert len(set(digests)) == 1, digests
    if comm.Get_rank() == 0:
        np.savez(out, params=dp.net.flat_params, losses=losses, shards=dp.shard_sizes(),
                 t=dp.t)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), a[5] if len(a) > 5 else None)
