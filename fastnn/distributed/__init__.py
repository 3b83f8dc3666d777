"""Data-parallel training over MPI ranks (mpi4py): one model, each step's batch computed
in blocks across the ranks.

**The block grid.**  Each step's batch of B rows is cut into ``n_blocks`` blocks, a grid
fixed independently of the rank count; rank r computes the gradients of its contiguous
run of blocks with the compiled plan (``CompiledPlan.gradient``: forward, loss, backward,
no update).  Block j's gradient is the mean over its rows, so it is scaled by its share
of the batch, ``n_j / B`` (with per-row weights ``W_j / W``, its part of the batch's
weight): the scaled blocks sum to the gradient of the whole batch's (weighted) mean loss,
whatever the shard sizes.

**Where the rows live.**  By default every rank holds the training set and draws the
same global batch (the Trainer's shuffle: a pure function of seed and epoch); block j is
the batch's j-th slice.  With ``sharded=True`` each rank holds only its own rows: it cuts
them into its blocks (``DataParallel.shard(n)`` names the rows of the grid's blocks, the
layout that makes results independent of the rank count), every block gives each step
its share of the batch, in proportion to its rows (``apportion``), drawn from its own
shuffle keyed (seed, epoch * n_blocks + j).  Shards of any size are weighted correctly.

**The sum, in a fixed order.**  ``reduction="ordered"`` (default) gathers every block's
gradient on every rank (``Allgatherv``) and adds them in block order 0, 1, ..., so the
result depends neither on the rank count nor on MPI's reduction algorithm: **training on
1, 2 or more ranks with the same n_blocks gives bit-identical weights**.  (It is the
single-process ``plan.run`` bit for bit only with n_blocks = 1: BLAS reduces a GEMM over
B rows in its own order, which a blocked sum cannot reproduce; the difference is rounding,
a few ulps per step.)  ``reduction="allreduce"`` sums each rank's blocks locally and then
``Allreduce(SUM)``s them: less traffic, but MPI may group the sum differently for other
rank counts, so results agree only to rounding.  Every rank then applies the same update
(``CompiledPlan.apply``: the penalty gradients added once, the optimizer, the max-norm
constraints) to parameters that started identical (rank 0's, broadcast).

**Layers with per-batch state.**  Dropout: block j of the step with counter c draws its
masks with counter ``c * n_blocks + j`` (unique per block and step, independent of the
ranks; c itself at n_blocks = 1).  Batch norm normalizes each block by the block's own
statistics (as PyTorch's DistributedDataParallel does without SyncBatchNorm: "ghost"
batches of B / n_blocks rows); the running statistics become the row-weighted mean of
what each block's update left, summed in block order with the gradients.  The
hierarchical softmax's own gradient is reduced with the net's.

Checkpoints are written by rank 0 only, atomically (fastnn.io); resuming works on any
rank count.  :class:`fastnn.trainer.Trainer` takes ``distributed="mpi"`` and trains on a
DataParallel, with its history, validation and callbacks.

Run with e.g. ``mpiexec -n 2 python -m fastnn.distributed.demo``.
"""
from .data_parallel import DataParallel, apportion, block_sizes, get_comm

__all__ = ["DataParallel", "get_comm", "block_sizes", "apportion"]
