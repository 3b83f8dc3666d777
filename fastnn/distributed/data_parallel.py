"""DataParallel: one model trained over the ranks of an MPI communicator, each step's
batch cut on a fixed block grid (see the package docstring for the design)."""
from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from .. import _kernels, config, io
from .._validation import check_positive_int
from ..layers import BatchNorm, Dropout
from ..plan import CompiledPlan, build_plan

if TYPE_CHECKING:
    from typing_extensions import Self     # typing.Self from Python 3.11

    from ..net import Sequential

__all__ = ["DataParallel", "get_comm", "block_sizes", "apportion"]

_T = TypeVar("_T")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:          # pragma: no cover - depends on the environment
        raise ImportError("fastnn.distributed needs mpi4py and an MPI runtime: "
                          "pip install 'fastnn[mpi]' (mpi4py and the mpich wheel)") from exc
    return MPI


def get_comm(comm: Any = None) -> Any:
    """`comm`, or MPI.COMM_WORLD (imports mpi4py, which initializes MPI)."""
    if comm is None:
        return _mpi().COMM_WORLD
    if not all(hasattr(comm, name) for name in ("Get_rank", "Get_size", "allgather")):
        raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
    return comm


def block_sizes(n: int, n_blocks: int) -> list[int]:
    """The fixed grid: n_blocks nearly equal blocks of n rows (the first n % n_blocks
    blocks one row longer)."""
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    q, extra = divmod(n, n_blocks)
    return [q + (j < extra) for j in range(n_blocks)]


def apportion(batch: int, sizes: Sequence[int]) -> list[int]:
    """`batch` rows split over data blocks of `sizes` rows in proportion to their sizes
    (largest remainder; ties to the lower block), in integers only, so every rank gets
    the same answer."""
    n = sum(sizes)
    if n < 1 or min(sizes) < 0:
        raise ValueError(f"sizes must be >= 0 with a positive sum, got {sizes}")
    share = [batch * m // n for m in sizes]
    left = batch - sum(share)
    order = sorted(range(len(sizes)), key=lambda j: (-(batch * sizes[j] % n), j))
    for j in order[:left]:
        share[j] += 1
    return share


def _fingerprint(*arrays):
    """A cheap digest of arrays' shapes, dtypes and bytes (CRC-32), to check that every
    rank was given the same data."""
    crc = 0
    for a in arrays:
        if a is None:
            crc = zlib.crc32(b"none", crc)
            continue
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(f"{a.shape}{a.dtype.str}".encode(), crc)
        crc = zlib.crc32(a.view(np.uint8).reshape(-1), crc)
    return crc


class DataParallel:
    """Train `net` with `loss` data-parallel over the ranks of `comm`.

    Parameters
    ----------
    net, loss, optimizer, regularizer : as for :func:`fastnn.plan.build_plan`.  Every
        layer of the toolbox and every loss are supported (see the package docstring for
        dropout, batch norm and the hierarchical softmax).
    batch_size : int, the global batch (rows per step over all ranks)
    n_blocks : int (default min(8, batch_size)); the fixed block grid.  Results are
        bit-identical across rank counts for the same n_blocks (with the ordered
        reduction).  Ranks beyond n_blocks stay idle.
    comm : an mpi4py communicator (default COMM_WORLD)
    reduction : "ordered" (Allgatherv + sum in block order) or "allreduce"
    sharded : False (default): every rank is given the whole training set and every
        step draws one global batch of it.  True: each rank is given only its own rows;
        each of the rank's blocks is a block of its rows, and every step draws from
        each data block its share of the batch (see the package docstring).
    shuffle_seed, epoch : the batch order is a pure function of (shuffle_seed, epoch)

    A DataParallel also serves as the :class:`fastnn.trainer.Trainer`'s plan
    (``Trainer(..., distributed="mpi")``): it has a plan's ``bind``, ``run``, ``t``,
    ``state``, ``snapshot`` / ``restore`` and ``matches``.
    """

    def __init__(self, net: Sequential, loss: Any, *, optimizer: Any = "sgd",
                 regularizer: Any = None, batch_size: int, n_blocks: int | None = None,
                 comm: Any = None, reduction: str = "ordered", sharded: bool = False,
                 shuffle_seed: int = 0, epoch: int = 0) -> None:
        MPI = _mpi()
        self.comm = get_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if reduction not in ("ordered", "allreduce"):
            raise ValueError(f"reduction must be 'ordered' or 'allreduce', got {reduction!r}")
        if _kernels.get_backend() == "numpy":
            raise ValueError("fastnn.distributed needs the compiled backend")
        self.net, self.loss, self.reduction = net, loss, reduction
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.n_blocks = (min(8, self.batch_size) if n_blocks is None
                         else check_positive_int(n_blocks, "n_blocks"))
        if self.n_blocks > self.batch_size:
            raise ValueError(f"n_blocks must be at most batch_size ({self.batch_size}), got "
                             f"{self.n_blocks}")
        self.sharded = bool(sharded)
        self.shuffle_seed = check_positive_int(shuffle_seed, "shuffle_seed", minimum=0)
        if self.shuffle_seed >= 2**64:
            raise ValueError(f"shuffle_seed must be below 2**64, got {self.shuffle_seed}")
        self.epoch = check_positive_int(epoch, "epoch", minimum=0)
        self._dropouts = [layer for layer in net.layers if isinstance(layer, Dropout)]
        self._norms = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
        # identical starting state everywhere: rank 0's (dropout seeds before any plan
        # is built: a plan copies them)
        seeds = self.comm.bcast([(layer.seed, layer.step) for layer in self._dropouts],
                                root=0)
        for layer, (seed, step) in zip(self._dropouts, seeds):
            layer.seed, layer.step = seed, step
        # the update plan (apply only); the gradient plans, one per block size, come
        # with the data (bind)
        self.plan = build_plan(net, loss, optimizer=optimizer, regularizer=regularizer,
                               batch_size=self.batch_size)
        assert isinstance(self.plan, CompiledPlan)
        self.optimizer, self.regularizer = self.plan.optimizer, self.plan.regularizer
        self._stats = [a for layer in self._norms
                       for a in (layer.running_mean, layer.running_var)]
        self._loss_params = self.plan.loss_flat        # (params, grads) of a loss, or None
        for a in [net.flat_params] + self._stats + (
                [] if self._loss_params is None else [self._loss_params[0]]):
            self.comm.Bcast(a, root=0)
        G, R = self.n_blocks, self.size
        # rank r's run of blocks (the first ranks get the extra ones; ranks beyond G none)
        self.owner_blocks = [list(range(-(-r * G // R), -(-(r + 1) * G // R)))
                             for r in range(R)]
        self.my_blocks = self.owner_blocks[self.rank]
        self._owner = [r for r, blocks in enumerate(self.owner_blocks) for _ in blocks]
        # what a step reduces, one row per block: the data-loss gradient, a loss's own
        # gradient, the batch-norm running statistics each block left
        n, dt = net.flat_params.size, net.dtype
        self._n_loss = 0 if self._loss_params is None else self._loss_params[1].size
        self._n_stats = sum(a.size for a in self._stats)
        width = n + self._n_loss + self._n_stats
        self._local = np.zeros((max(len(self.my_blocks), 1), width), dtype=dt)
        self._all = np.zeros((G, width), dtype=dt) if reduction == "ordered" else None
        self._sum = np.zeros(width, dtype=dt)
        self._stats0 = np.zeros(self._n_stats, dtype=dt)
        self._counts = [len(b) * width for b in self.owner_blocks]
        self._displs = [self.owner_blocks[r][0] * width if self.owner_blocks[r] else 0
                        for r in range(R)]
        self._mpi_dtype = MPI.FLOAT if dt == np.float32 else MPI.DOUBLE
        self.comm_seconds = 0.0            # time spent in the reduction (for benchmarks)
        self._block_losses = np.zeros(G)                  # per step: blocks' data losses
        self._all_losses = np.zeros((R, G))
        self._grad_plans: dict[int, CompiledPlan] = {}
        self._bound: tuple[Any, Any, Any] | None = None
        self.sizes: list[int] = []                    # the batch grid (_batch_grid)
        self.starts = np.zeros(1, dtype=np.int64)
        if not self.sharded:
            self._batch_grid(block_sizes(self.batch_size, G))

    # -- the grid ------------------------------------------------------------------------
    def _batch_grid(self, sizes):
        """Rows of each block per step: `sizes` (G,); block j's rows are
        batch[starts[j]:starts[j + 1]]."""
        least = 2 if self._norms else 1
        if min(sizes) < least:
            raise ValueError(
                f"a step gives its blocks {sizes} rows: every block needs at least "
                f"{least} (" + ("batch norm needs 2 rows for its statistics; "
                                if self._norms else "") + "use fewer n_blocks or a larger "
                "batch_size)")
        self.sizes = list(sizes)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def _grad_plan(self, b):
        plan = self._grad_plans.get(b)
        if plan is None:
            plan = self._grad_plans[b] = build_plan(self.net, self.loss, batch_size=b)
        return plan

    def shard(self, n: int) -> tuple[int, int]:
        """(start, stop): the rows of an n-row data set this rank should hold in sharded
        mode for the result not to depend on the rank count (its run of the fixed grid's
        blocks)."""
        bounds = np.concatenate([[0], np.cumsum(block_sizes(n, self.n_blocks))])
        if not self.my_blocks:
            return 0, 0
        return int(bounds[self.my_blocks[0]]), int(bounds[self.my_blocks[-1] + 1])

    def shard_sizes(self) -> list[int]:
        """Rows of each step's batch each rank computes, by rank."""
        if not self.sizes:
            raise RuntimeError("in sharded mode the batch grid comes with the data: call "
                               "bind (or fit) first")
        return [sum(self.sizes[j] for j in blocks) for blocks in self.owner_blocks]

    # -- the plan interface ----------------------------------------------------------------
    @property
    def t(self) -> int:
        """Updates made so far."""
        return self.plan.t

    @property
    def state(self) -> tuple[np.ndarray, ...]:
        """The optimizer's state arrays (the same on every rank)."""
        return self.plan.state

    @property
    def loss_state(self) -> tuple[np.ndarray, ...]:
        """The optimizer's state of a loss's own parameters (empty without any)."""
        return self.plan.loss_state

    @property
    def batch(self) -> int:
        return self.batch_size

    def matches(self, net: Sequential, loss: Any, batch_size: int) -> bool:
        """True when this can train (net, loss) at this global batch size as it is now."""
        return self.plan.matches(net, loss, batch_size)

    def set_state(self, state: Sequence[ArrayLike], t: int,
                  loss_state: Sequence[ArrayLike] | None = None) -> None:
        self.plan.set_state(state, t, loss_state)

    def set_lr(self, lr: float) -> None:
        self.plan.set_lr(lr)

    def learning_rate(self) -> float:
        return self.plan.learning_rate()

    def snapshot(self, into: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.plan.snapshot(into)

    def restore(self, snap: dict[str, Any]) -> None:
        self.plan.restore(snap)

    def sync(self) -> None:
        """Nothing to catch up: every step ends in Python."""

    def bind(self, X: ArrayLike, y: ArrayLike,
             weights: ArrayLike | None = None) -> DataParallel:
        """The training data: the whole set on every rank (checked to be the same), or in
        sharded mode this rank's rows (a rank that owns no block gives none).  Checked on
        every rank; an error on one is raised on all."""
        if self.sharded:
            self._bind_shard(X, y, weights)
        else:
            self._agree(lambda: self.plan.bind(X, y, weights))
            crcs = self.comm.allgather(_fingerprint(self.plan._X, self.plan._y, self.plan._w))
            if len(set(crcs)) > 1:
                raise ValueError("the ranks were given different training data; give every "
                                 "rank the same X, y and weights, or use sharded=True")
            self.n_rows = self.plan._X.shape[0]
            self.steps_per_epoch = self.n_rows // self.batch_size
        X, y, w = self.plan._X, self.plan._y, self.plan._w
        for b in {self.sizes[j] for j in self.my_blocks}:
            self._grad_plan(b).bind(X, y, w)
        self._bound = (X, y, w)
        self._weighted = weights is not None        # the same on every rank (checked)
        return self

    def _bind_shard(self, X, y, weights):
        """This rank's rows checked (a rank without blocks must give none); the data
        blocks of every rank (each cuts its rows into its blocks), the batch each block
        gives per step, and the steps of an epoch."""
        mine = self.my_blocks

        def local():
            if mine:
                self.plan.bind(X, y, weights)
                return self.plan._X.shape[0]
            if len(X):
                raise ValueError(f"rank {self.rank} holds {len(X)} rows but no block of the "
                                 f"grid ({self.n_blocks} blocks over {self.size} ranks): "
                                 "give it no rows, or use n_blocks >= the number of ranks")
            self.plan._X = self.plan._y = self.plan._w = None
            return 0

        n_local = self._agree(local)
        if len(set(self.comm.allgather(weights is None))) > 1:
            raise ValueError("weights: give per-row weights on every rank or on none")
        sizes = self.comm.allgather(block_sizes(n_local, len(mine)) if mine else [])
        self.data_sizes = [m for s in sizes for m in s]
        if min(self.data_sizes) < 1:
            raise ValueError(f"every block needs rows; the ranks' data blocks have "
                             f"{self.data_sizes} rows")
        self.n_rows = sum(self.data_sizes)
        if self.batch_size > self.n_rows:
            raise ValueError(f"batch_size {self.batch_size} is larger than the {self.n_rows} "
                             "rows of all ranks")
        self._batch_grid(apportion(self.batch_size, self.data_sizes))
        self.steps_per_epoch = min(m // b for m, b in zip(self.data_sizes, self.sizes))
        first = mine[0] if mine else 0
        self._data_starts = {j: sum(self.data_sizes[first:j]) for j in mine}

    def _agree(self, fn):
        """fn() on every rank; if it raised on any, every rank raises (the rank's own
        error, or the first failing rank's as a ValueError, TypeError or RuntimeError),
        so that no rank is left waiting in a collective."""
        try:
            out, error = fn(), None
        except Exception as exc:        # noqa: BLE001 - re-raised on every rank below
            out, error = None, exc
        errors = self.comm.allgather(None if error is None
                                     else (type(error).__name__, str(error)))
        for r, e in enumerate(errors):
            if e is None:
                continue
            if error is not None:
                raise error
            kind = {"ValueError": ValueError, "TypeError": TypeError}.get(e[0], RuntimeError)
            raise kind(f"on rank {r}: {e[1]}")
        return out

    def on_rank0(self, fn: Callable[[], _T]) -> _T | None:
        """fn() on rank 0 only (a checkpoint write); every rank returns when it is done,
        and raises if it failed."""
        return self._agree(lambda: fn() if self.rank == 0 else None)

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """Sharded mode: this rank's rows of every step of `epoch`, (steps_per_epoch,
        rows of its blocks) int64, block by block in each step, indices into its own
        rows.  Block j's rows come from its own shuffle, keyed (shuffle_seed,
        epoch * n_blocks + j): a pure function of the grid, not of the ranks."""
        steps, G = self.steps_per_epoch, self.n_blocks
        out = np.empty((steps, sum(self.sizes[j] for j in self.my_blocks)), dtype=np.int64)
        col = 0
        for j in self.my_blocks:
            b, m = self.sizes[j], self.data_sizes[j]
            rows = _kernels.backend().shuffled_rows(m, steps * b, 1, self.shuffle_seed,
                                                    epoch * G + j)
            out[:, col:col + b] = rows.reshape(steps, b) + self._data_starts[j]
            col += b
        return out

    def run(self, k: int, indices: ArrayLike | None = None, losses: np.ndarray | None = None,
            data_losses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k steps, as a plan runs them.  Replicated data: indices None (every step the
        whole data set, which must be one batch) or (k * batch_size,) int64 rows of the
        data set, the same on every rank.  Sharded: indices (k, rows of this rank's
        blocks), as :meth:`epoch_rows` gives them.  Returns (losses, data_losses)."""
        if self._bound is None:
            raise RuntimeError("bind(X, y) must be called before run")
        losses = np.empty(k) if losses is None else losses
        data_losses = np.empty(k) if data_losses is None else data_losses
        B = self.batch_size
        if indices is None:
            if self.sharded or self.n_rows != B:
                raise ValueError("without indices every step takes the whole data set, "
                                 f"which has {self.n_rows} rows, not one batch of {B}")
            steps = np.broadcast_to(np.arange(B, dtype=np.int64), (k, B))   # no copies
        else:
            indices = np.asarray(indices)
            if indices.dtype.kind not in "iu":
                raise TypeError(f"indices must be integers, got {indices.dtype}")
            if self.sharded:
                width = sum(self.sizes[j] for j in self.my_blocks)
                if indices.shape != (k, width):
                    raise ValueError(f"indices must be ({k}, {width}): the rows of this "
                                     "rank's blocks for each step, as epoch_rows gives "
                                     f"them; got {indices.shape}")
                steps = indices
            else:
                if indices.shape != (k * B,):
                    raise ValueError(f"indices must be a ({k * B},) int64 array, got "
                                     f"{indices.shape}")
                steps = indices.reshape(k, B)
            self._check_rows(steps, "indices")
        nt = config.resolve_num_threads()   # a rank's share of the node (fastnn.config)
        for s in range(k):
            losses[s], data_losses[s] = self._step(steps[s], nt)
        return losses, data_losses

    # -- one step ----------------------------------------------------------------------------
    def step(self, rows: ArrayLike) -> tuple[float, float]:
        """One step on the global batch `rows` ((batch_size,) int64, the same on every
        rank; replicated data only): returns (loss, data_loss), the same on every rank."""
        if self.sharded:
            raise ValueError("step takes a global batch; in sharded mode use fit or run "
                             "with epoch_rows")
        if self._bound is None:
            raise RuntimeError("bind(X, y) must be called before step")
        rows = np.asarray(rows)
        if rows.dtype.kind not in "iu":
            raise TypeError(f"rows must be integers, got {rows.dtype}")
        if rows.shape != (self.batch_size,):
            raise ValueError(f"rows must be ({self.batch_size},) integers, got {rows.shape}")
        self._check_rows(rows, "rows")
        return self._step(rows.astype(np.int64), config.resolve_num_threads())

    def _check_rows(self, rows, name):
        """Every index a row of the bound data, checked before any block's work: a rank
        raising alone would leave the others waiting in a collective.  Replicated data:
        the same rows and data everywhere, so every rank raises together; sharded: each
        rank checks its own, and all raise if one does."""
        X = self._bound[0]              # (bound: run and step check; a sharded rank
        n = 0 if X is None else X.shape[0]   # without blocks holds no rows)

        def check():
            bad = (rows < 0) | (rows >= n)
            if np.any(bad):
                where = np.unravel_index(int(np.argmax(bad)), rows.shape)
                raise ValueError(f"{name}[{', '.join(map(str, where))}] = {rows[where]} is "
                                 f"not a row of this rank's data [0, {n})")
        if self.sharded:
            self._agree(check)
        else:
            check()

    def _my_rows(self, rows):
        """{block: its rows} of this rank's blocks."""
        if self.sharded:
            out, col = {}, 0
            for j in self.my_blocks:
                out[j] = np.ascontiguousarray(rows[col:col + self.sizes[j]])
                col += self.sizes[j]
            return out
        return {j: np.ascontiguousarray(rows[self.starts[j]:self.starts[j + 1]])
                for j in self.my_blocks}

    def _shares(self, my_rows, rows):
        """Each block's share of the batch: its rows, or with per-row weights its part of
        the batch's weight."""
        B, w = self.batch_size, self._bound[2]
        if not self._weighted:
            return [b / B for b in self.sizes]
        if self.sharded:            # each rank knows its own blocks' weights
            mine = np.zeros(self.n_blocks)
            for j, rows in my_rows.items():
                mine[j] = float(np.cumsum(w[rows])[-1])
            every = np.zeros((self.size, self.n_blocks))
            self.comm.Allgather(mine, every)
            wb = [every[self._owner[j], j] for j in range(self.n_blocks)]
        else:                       # every rank holds the whole batch
            wb = [float(np.cumsum(w[rows[s:e]])[-1])
                  for s, e in zip(self.starts[:-1], self.starts[1:])]
        total = float(np.cumsum(wb)[-1])
        return [x / total if total > 0 else 0.0 for x in wb]

    def _step(self, rows, nt):
        G, n = self.n_blocks, self.net.flat_params.size
        flat_grads = self.net.flat_grads
        dtype = flat_grads.dtype.type
        my_rows = self._my_rows(rows)
        shares = self._shares(my_rows, rows)
        counters = [layer.step for layer in self._dropouts]
        if self._stats:
            np.concatenate(self._stats, out=self._stats0)
        losses = self._block_losses
        losses[...] = 0
        for i, j in enumerate(self.my_blocks):
            plan = self._grad_plan(self.sizes[j])
            # block j's dropout masks: the step counter c * G + j, a pure function of
            # the global step and the block (c at G = 1: the single-process sequence)
            plan.set_dropout_steps([c * G + j for c in counters])
            self._put_stats(self._stats0)      # every block starts from the same state
            losses[j] = shares[j] * plan.gradient(my_rows[j], nt)
            row = self._local[i]
            np.multiply(flat_grads, dtype(shares[j]), out=row[:n])
            if self._n_loss:
                np.multiply(self._loss_params[1], dtype(shares[j]),
                            out=row[n:n + self._n_loss])
            if self._stats:
                # the running statistics as block j left them, weighted by its rows
                np.concatenate(self._stats, out=row[n + self._n_loss:])
                row[n + self._n_loss:] *= dtype(self.sizes[j] / self.batch_size)
        t0 = time.perf_counter()
        total = self._sum
        if self.reduction == "ordered":
            self.comm.Allgatherv(self._local[:len(self.my_blocks)],
                                 [self._all, self._counts, self._displs, self._mpi_dtype])
            total[...] = self._all[0]
            for j in range(1, G):
                total += self._all[j]
        else:
            MPI = _mpi()
            if self.my_blocks:
                total[...] = self._local[0]
                for i in range(1, len(self.my_blocks)):
                    total += self._local[i]
            else:
                total[...] = 0
            self.comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        all_losses = self._all_losses
        self.comm.Allgather(losses, all_losses)
        self.comm_seconds += time.perf_counter() - t0
        flat_grads[...] = total[:n]
        if self._n_loss:
            self._loss_params[1][...] = total[n:n + self._n_loss]
        if self._stats:
            self._put_stats(total[n + self._n_loss:])
        data_loss = 0.0
        for j in range(G):              # block order, from its owner
            data_loss += all_losses[self._owner[j], j]
        reg = self.plan.apply(nt)
        for layer, c in zip(self._dropouts, counters):
            layer.step = c + 1
        return data_loss + reg, data_loss

    def _put_stats(self, flat):
        at = 0
        for a in self._stats:
            a[...] = flat[at:at + a.size]
            at += a.size

    # -- whole runs --------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int,
            weights: ArrayLike | None = None,
            checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1,
            callback: Callable[[DataParallel], Any] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Train `epochs` epochs from self.epoch on.  Replicated data: whole global batches
        of a shuffle of the rows (the Trainer's batch order, a pure function of
        shuffle_seed and the epoch).  Sharded: :meth:`epoch_rows`.  checkpoint: a path
        rank 0 writes (atomically) after every `checkpoint_every` epochs; callback(self)
        after every epoch.  Returns the per-step (losses, data_losses)."""
        epochs = check_positive_int(epochs, "epochs")
        checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        self.bind(X, y, weights)
        B, per_epoch = self.batch_size, self.steps_per_epoch
        if per_epoch < 1:
            raise ValueError(f"the data set has {self.n_rows} rows, fewer than one batch "
                             f"of {B}")
        losses = np.empty(epochs * per_epoch)
        data_losses = np.empty(epochs * per_epoch)
        for e in range(epochs):
            part = slice(e * per_epoch, (e + 1) * per_epoch)
            idx = (self.epoch_rows(self.epoch) if self.sharded else
                   _kernels.backend().shuffled_rows(self.n_rows, per_epoch * B, 1,
                                                    self.shuffle_seed, self.epoch))
            self.run(per_epoch, idx, losses[part], data_losses[part])
            self.epoch += 1
            if callback is not None:
                callback(self)
            if checkpoint is not None and self.epoch % checkpoint_every == 0:
                self.save_checkpoint(checkpoint)
        return losses, data_losses

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Rank 0 writes the checkpoint (atomically, fastnn.io); every rank waits for it.
        A loss's own parameters and their optimizer state are saved with it."""
        self.on_rank0(lambda: io.save_checkpoint(
            path, self.net, optimizer=self.plan.optimizer,
            optimizer_state=tuple(self.plan.state), step=self.plan.t, epoch=self.epoch,
            extra={"shuffle_seed": self.shuffle_seed, "batch_size": self.batch_size,
                   "n_blocks": self.n_blocks, "sharded": self.sharded,
                   **io._loss_tree_extra(self.loss)},
            loss_params=getattr(self.loss, "params", None) or None,
            loss_state=tuple(self.plan.loss_state)))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], loss: Any, *,
                        regularizer: Any = None, comm: Any = None,
                        **kwargs: Any) -> Self:
        """Resume on any number of ranks: every rank reads the checkpoint (rank 0's
        parameters are broadcast anyway).  A loss with parameters of its own gets the
        saved ones (build it as the first run did)."""
        ckpt = io.load_checkpoint(path)
        io._check_loss_params(loss, ckpt.loss_params)
        extra = ckpt.extra or {}
        io._check_loss_tree(loss, extra, path)
        for key in ("shuffle_seed", "batch_size", "n_blocks"):
            if key in extra:
                kwargs.setdefault(key, int(extra[key]))
        if "sharded" in extra:
            kwargs.setdefault("sharded", bool(extra["sharded"]))
        dp = cls(ckpt.net, loss, optimizer=ckpt.optimizer, regularizer=regularizer,
                 comm=comm, epoch=ckpt.epoch, **kwargs)
        io._resume_plan(dp.plan, ckpt.optimizer_state, ckpt.step, loss, ckpt.loss_params,
                        ckpt.loss_state)
        # rank 0's loss weights were broadcast when dp was built; every rank read the
        # same file, so every rank holds the same weights again
        return dp
