"""Data-parallel training over MPI ranks (mpi4py): one model, each step's global batch
sharded across the ranks.

Every rank holds the training set (X, y[, weights]) and draws the same global batch of
B rows (the trainer's shuffle: a pure function of seed and epoch).  The batch is cut on a
**fixed block grid** -- ``n_blocks`` blocks of nearly equal size, chosen independently of
the rank count -- and rank r computes the gradients of its contiguous run of blocks with
the compiled plan (``CompiledPlan.gradient``: forward, loss, backward, no update).  Block
j's gradient is the mean over its rows, so it is scaled by ``n_j / B`` (with per-row
weights: ``W_j / W``, its share of the batch's weight): the scaled blocks sum to the
gradient of the whole batch's (weighted) mean loss, whatever the shard sizes.

The sum is made in a fixed order: ``reduction="ordered"`` (default) gathers every block's
gradient on every rank (``Allgatherv``) and adds them in block order 0, 1, ..., so the
result does not depend on the rank count nor on MPI's reduction algorithm: **training on
1, 2 or more ranks with the same n_blocks gives bit-identical weights**.  (It is not bit
for bit the single-process ``plan.run`` with one GEMM over all B rows unless n_blocks is 1:
BLAS reduces a GEMM over B rows in its own internal order, which a blocked sum cannot
reproduce; the difference is rounding, a few ulps per step.)  ``reduction="allreduce"``
sums each rank's blocks locally and then ``Allreduce(SUM)``s the flat gradient: less
traffic, but MPI may group the sum differently for other rank counts, so results agree
only to rounding.

Every rank then applies the same update (``CompiledPlan.apply``: the penalty gradients
added once, the optimizer, the max-norm constraints) to identical parameters (broadcast
from rank 0 at the start).  Checkpoints are written by rank 0 only, atomically
(fastnn.io); resuming works on any rank count.

Not supported yet: dropout and batch norm layers (their masks / batch statistics are per
batch), losses with parameters of their own (hierarchical softmax), the NumPy backend.

Run with e.g. ``mpiexec -n 2 python -m fastnn.distributed.demo``.
"""
import time

import numpy as np

from .. import _kernels, config, io
from ..layers import BatchNorm, Dropout
from ..plan import CompiledPlan, build_plan

__all__ = ["DataParallel", "get_comm", "block_sizes"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:          # pragma: no cover - depends on the environment
        raise ImportError("fastnn.distributed needs mpi4py and an MPI runtime: "
                          "pip install 'fastnn[mpi]' (mpi4py and the mpich wheel)") from exc
    return MPI


def get_comm(comm=None):
    """`comm`, or MPI.COMM_WORLD (imports mpi4py, which initializes MPI)."""
    return _mpi().COMM_WORLD if comm is None else comm


def block_sizes(batch, n_blocks):
    """The fixed grid: n_blocks nearly equal blocks of a batch (the first batch %
    n_blocks blocks one row longer)."""
    q, extra = divmod(batch, n_blocks)
    return [q + (j < extra) for j in range(n_blocks)]


class DataParallel:
    """Train `net` with `loss` data-parallel over the ranks of `comm`.

    Parameters
    ----------
    net, loss, optimizer, regularizer : as for :func:`fastnn.plan.build_plan`
    batch_size : int, the global batch (rows per step over all ranks)
    n_blocks : int (default min(8, batch_size)); the fixed block grid.  Results are
        bit-identical across rank counts for the same n_blocks (with the ordered
        reduction).  Ranks beyond n_blocks stay idle.
    comm : an mpi4py communicator (default COMM_WORLD)
    reduction : "ordered" (Allgatherv + sum in block order) or "allreduce"
    """

    def __init__(self, net, loss, *, optimizer="sgd", regularizer=None, batch_size,
                 n_blocks=None, comm=None, reduction="ordered", shuffle_seed=0,
                 epoch=0):
        MPI = _mpi()
        self.comm = get_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if reduction not in ("ordered", "allreduce"):
            raise ValueError(f"reduction must be 'ordered' or 'allreduce', got {reduction!r}")
        if _kernels.get_backend() == "numpy":
            raise ValueError("fastnn.distributed needs the compiled backend")
        for layer in net.layers:
            if isinstance(layer, (Dropout, BatchNorm)):
                raise ValueError(f"fastnn.distributed cannot train a net with "
                                 f"{type(layer).__name__} layers yet")
        if getattr(loss, "params", None):
            raise ValueError("fastnn.distributed cannot train a loss with parameters")
        self.net, self.loss, self.reduction = net, loss, reduction
        self.batch_size = int(batch_size)
        self.n_blocks = min(8, self.batch_size) if n_blocks is None else int(n_blocks)
        if not 1 <= self.n_blocks <= self.batch_size:
            raise ValueError(f"n_blocks must be in [1, batch_size], got {self.n_blocks}")
        self.shuffle_seed, self.epoch = int(shuffle_seed), int(epoch)
        # identical parameters everywhere
        self.comm.Bcast(net.flat_params, root=0)
        # the update plan (apply only) and one gradient plan per block size
        self.plan = build_plan(net, loss, optimizer=optimizer, regularizer=regularizer,
                               batch_size=self.batch_size)
        assert isinstance(self.plan, CompiledPlan)
        self.sizes = block_sizes(self.batch_size, self.n_blocks)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._grad_plans = {b: build_plan(net, loss, batch_size=b) for b in set(self.sizes)}
        G, R = self.n_blocks, self.size
        self.owner_blocks = [list(range(r * G // R, (r + 1) * G // R)) for r in range(R)]
        self.my_blocks = self.owner_blocks[self.rank]
        n, dt = net.flat_params.size, net.dtype
        self._local = np.zeros((max(len(self.my_blocks), 1), n), dtype=dt)
        self._all = np.zeros((G, n), dtype=dt) if reduction == "ordered" else None
        self._counts = [len(b) * n for b in self.owner_blocks]
        self._displs = [self.owner_blocks[r][0] * n if self.owner_blocks[r] else 0
                        for r in range(R)]
        self._mpi_dtype = MPI.FLOAT if dt == np.float32 else MPI.DOUBLE
        self.comm_seconds = 0.0            # time spent in the reduction (for benchmarks)
        self._w = None

    @property
    def t(self):
        """Updates made so far."""
        return self.plan.t

    def shard_sizes(self):
        """Rows of the global batch each rank computes, by rank."""
        return [sum(self.sizes[j] for j in blocks) for blocks in self.owner_blocks]

    def bind(self, X, y, weights=None):
        """The training set (the same on every rank)."""
        self.plan.bind(X, y, weights)
        X, y, w = self.plan._X, self.plan._y, self.plan._w
        for p in self._grad_plans.values():
            p.bind(X, y, w)
        self._w = w
        return self

    def step(self, rows):
        """One step on the global batch `rows` ((batch_size,) int64, the same on every
        rank): returns (loss, data_loss), the same on every rank."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        B, flat_grads = self.batch_size, self.net.flat_grads
        if self._w is None:
            shares = [b / B for b in self.sizes]
        else:
            wb = [float(np.cumsum(self._w[rows[s:e]])[-1])
                  for s, e in zip(self.starts[:-1], self.starts[1:])]
            total = float(np.cumsum(wb)[-1])
            shares = [x / total if total > 0 else 0.0 for x in wb]
        dtype = flat_grads.dtype.type
        losses = np.zeros(self.n_blocks)
        for i, j in enumerate(self.my_blocks):
            plan = self._grad_plans[self.sizes[j]]
            losses[j] = shares[j] * plan.gradient(rows[self.starts[j]:self.starts[j + 1]])
            np.multiply(flat_grads, dtype(shares[j]), out=self._local[i])
        t0 = time.perf_counter()
        if self.reduction == "ordered":
            self.comm.Allgatherv(self._local[:len(self.my_blocks)],
                                 [self._all, self._counts, self._displs, self._mpi_dtype])
            flat_grads[...] = self._all[0]
            for j in range(1, self.n_blocks):
                flat_grads += self._all[j]
        else:
            if self.my_blocks:
                flat_grads[...] = self._local[0]
                for i in range(1, len(self.my_blocks)):
                    flat_grads += self._local[i]
            else:
                flat_grads[...] = 0
            self.comm.Allreduce(_mpi().IN_PLACE, flat_grads, op=_mpi().SUM)
        all_losses = np.zeros((self.size, self.n_blocks))
        self.comm.Allgather(losses, all_losses)
        self.comm_seconds += time.perf_counter() - t0
        data_loss = 0.0
        for j in range(self.n_blocks):          # block order, from its owner
            data_loss += all_losses[next(r for r, b in enumerate(self.owner_blocks)
                                         if j in b), j]
        reg = self.plan.apply()
        return data_loss + reg, data_loss

    def fit(self, X, y, *, epochs, weights=None, checkpoint=None, checkpoint_every=1,
            callback=None):
        """Train `epochs` epochs of whole global batches of a shuffle of the rows (the
        trainer's batch order, a pure function of shuffle_seed and the epoch), from
        self.epoch on.  checkpoint: a path rank 0 writes (atomically) after every
        `checkpoint_every` epochs.  Returns the per-step (losses, data_losses)."""
        from .. import _plan
        self.bind(X, y, weights)
        n, B = self.plan._X.shape[0], self.batch_size
        per_epoch = n // B
        if per_epoch < 1:
            raise ValueError(f"the data set has {n} rows, fewer than one batch of {B}")
        losses, data_losses = [], []
        for _ in range(epochs):
            idx = _plan.shuffled_rows(n, per_epoch * B, 1, self.shuffle_seed, self.epoch)
            for s in range(per_epoch):
                lo, dl = self.step(idx[s * B:(s + 1) * B])
                losses.append(lo)
                data_losses.append(dl)
            self.epoch += 1
            if callback is not None:
                callback(self)
            if checkpoint is not None and self.epoch % checkpoint_every == 0:
                self.save_checkpoint(checkpoint)
        return np.array(losses), np.array(data_losses)

    def save_checkpoint(self, path):
        """Rank 0 writes the checkpoint (atomically, fastnn.io); every rank waits for it."""
        if self.rank == 0:
            io.save_checkpoint(path, self.net, optimizer=self.plan.optimizer,
                               optimizer_state=tuple(self.plan.state), step=self.plan.t,
                               epoch=self.epoch,
                               extra={"shuffle_seed": self.shuffle_seed,
                                      "batch_size": self.batch_size,
                                      "n_blocks": self.n_blocks})
        self.comm.Barrier()

    @classmethod
    def from_checkpoint(cls, path, loss, *, regularizer=None, comm=None, **kwargs):
        """Resume on any number of ranks: every rank reads the checkpoint (rank 0's
        parameters are broadcast anyway)."""
        ckpt = io.load_checkpoint(path)
        extra = ckpt.extra or {}
        for key in ("shuffle_seed", "batch_size", "n_blocks"):
            if key in extra:
                kwargs.setdefault(key, int(extra[key]))
        dp = cls(ckpt.net, loss, optimizer=ckpt.optimizer, regularizer=regularizer,
                 comm=comm, epoch=ckpt.epoch, **kwargs)
        dp.plan.set_state(ckpt.optimizer_state, ckpt.step)
        return dp
