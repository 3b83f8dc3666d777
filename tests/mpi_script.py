"""Run by tests/test_distributed.py under mpiexec (or alone, as 1 rank): trains a small
net data-parallel and writes rank 0's final parameters (every rank's digest is checked
to agree).  Usage: mpi_script.py OUT.npz '{json options}'; options:

  model      "mlp" (5-16-3), "dropout_bn" (the same with batch norm and dropout),
             "hs" (5-16-8 features into a hierarchical softmax over 3 classes)
  batch, n_blocks, epochs, optimizer ("adam")
  weights    per-row weights
  sharded    null (every rank holds all rows), "grid" (rank r holds DataParallel.shard),
             or a list of row counts per rank (any layout)
  save, resume   a checkpoint path to write after training / to start from
  trainer    train with Trainer(distributed=...) instead of DataParallel.fit (with a
             validation split of 0.2 unless val is false)
"""
import hashlib
import json
import sys

import numpy as np

from fastnn.distributed import DataParallel, get_comm
from fastnn.losses import HierarchicalSoftmax, SoftmaxCrossEntropy
from fastnn.net import MLP


def data(n=301, d=5):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    w = rng.uniform(0.1, 2.0, n)
    return X, y, w


def model(kind, seed):
    """The net and the loss of `kind` (a different seed per rank: rank 0's wins)."""
    if kind == "mlp":
        return MLP([5, 16, 3], seed=seed), SoftmaxCrossEntropy()
    if kind == "dropout_bn":
        return (MLP([5, 16, 16, 3], dropout=0.8, batch_norm=True, seed=seed),
                SoftmaxCrossEntropy())
    if kind == "hs":
        return MLP([5, 16, 8], seed=seed), HierarchicalSoftmax(8, 3, seed=seed)
    raise ValueError(kind)


def rows_of(opts, comm, dp, n):
    """(start, stop) of the rows this rank holds."""
    layout = opts.get("sharded")
    if layout is None:
        return 0, n
    if layout == "grid":
        return dp.shard(n)
    bounds = np.concatenate([[0], np.cumsum(layout)])
    r = comm.Get_rank()
    return int(bounds[r]), int(bounds[r + 1])


def main(out, opts):
    comm = get_comm()
    X, y, w = data()
    net, loss = model(opts.get("model", "mlp"), comm.Get_rank() + 1)
    kwargs = dict(batch_size=opts["batch"], n_blocks=opts["n_blocks"],
                  reduction=opts.get("reduction", "ordered"))
    if opts.get("trainer"):
        from fastnn.trainer import Trainer
        distributed = {"n_blocks": opts["n_blocks"]}
        if opts.get("resume"):
            trainer = Trainer.from_checkpoint(opts["resume"], loss, reg=1e-3, verbose=0,
                                              distributed=distributed)
        else:
            trainer = Trainer(net, loss, opts.get("optimizer", "adam"), reg=1e-3,
                              batch_size=opts["batch"], seed=7 + comm.Get_rank(),
                              verbose=opts.get("verbose", 0), distributed=distributed)
        history = trainer.fit(X, y, epochs=opts["epochs"], record_every=1,
                              validation_split=0.2 if opts.get("val", True) else 0.0,
                              sample_weight=w if opts.get("weights") else None)
        if opts.get("save"):
            trainer.save_checkpoint(opts["save"])
        losses, dp = history.step_loss, trainer.plan
        extra = {"val_loss": np.array(history.val_loss)}
    else:
        if opts.get("resume"):
            dp = DataParallel.from_checkpoint(opts["resume"], loss, regularizer=1e-3,
                                              **({"sharded": True} if opts.get("sharded")
                                                 else {}))
        else:
            dp = DataParallel(net, loss, optimizer=opts.get("optimizer", "adam"),
                              regularizer=1e-3, sharded=opts.get("sharded") is not None,
                              **kwargs)
        lo, hi = rows_of(opts, comm, dp, X.shape[0])
        losses, _ = dp.fit(X[lo:hi], y[lo:hi], epochs=opts["epochs"],
                           weights=w[lo:hi] if opts.get("weights") else None,
                           checkpoint=opts.get("save"))
        extra = {}
    state = [dp.net.flat_params] + [getattr(layer, name) for layer in dp.net.layers
                                    for name in ("running_mean", "running_var")
                                    if hasattr(layer, name)]
    if getattr(loss, "params", None):
        state.append(dp.plan.loss_flat[0])
    digest = hashlib.sha256(b"".join(a.tobytes() for a in state)).hexdigest()
    digests = comm.allgather(digest)
    assert len(set(digests)) == 1, digests
    if comm.Get_rank() == 0:
        np.savez(out, params=np.concatenate(state), losses=losses, shards=dp.shard_sizes(),
                 t=dp.t, **extra)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
