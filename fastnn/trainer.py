"""Training: the Trainer (mini-batch or full-batch, validation, callbacks, progress,
label encoding) and the notes' full-batch gradient descent, both on training plans."""
from __future__ import annotations

import copy
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import _kernels
from ._validation import check_array, check_positive_int, check_random_state, check_scalar
from .history import History
from .optim import SGD
from .plan import ShapeOnly, build_plan
from .regularization import L2
from .regularization import get as get_regularizer

if TYPE_CHECKING:
    from .net import Sequential


@dataclass
class StepHistory:
    """What gradient_descent recorded: the full loss (data + regularization) before each
    step's update, the data loss alone, and the wall time of the loop in seconds."""
    loss: np.ndarray
    data_loss: np.ndarray
    seconds: float
    steps: int = field(default=0)

    @property
    def us_per_step(self) -> float:
        """Mean wall time of one step, in microseconds."""
        return 1e6 * self.seconds / max(self.steps, 1)


def gradient_descent(net: Sequential, loss: Any, X: ArrayLike, y: ArrayLike, *, steps: int,
                     step_size: float = 1.0, reg: float | None = None,
                     regularizer: Any = None, log_every: int = 0,
                     log: Callable[[str], Any] = print,
                     callback: Callable[..., Any] | None = None,
                     progress: bool = False) -> StepHistory:
    """Full-batch gradient descent, as in the notes' case study, run by a training
    plan (:mod:`fastnn.plan`): on the compiled backend whole steps run in compiled code,
    many per call.

    Each step: scores = net(X); L = loss(scores, y) + the regularization penalty of
    every layer with weights; backpropagate; ``param -= step_size * grad`` for every
    parameter; then every constraint (max-norm) projects the weights it governs.  With
    the defaults the penalty is the notes' ``0.5 * reg * sum(W**2)`` over every layer's
    W, reg 1e-3.

    Parameters
    ----------
    net : fastnn.net.Sequential
    loss : a fastnn.losses loss (its forward(scores, y) gives the data loss, backward()
        dL/dscores); a HierarchicalSoftmax takes the net's output as features and its
        own parameters are trained too.
    X : (N, D) array; converted once to the net's dtype and checked for NaN/inf
    y : targets of the loss: (N,) class labels, (N, A) attributes or (N, M) values
    steps : int
    step_size : float
    reg : float or None
        L2 strength (the notes' reg); None means 1e-3 unless ``regularizer`` is given.
        Give reg or regularizer, not both.
    regularizer : None, a fastnn.regularization regularizer, or a list of them
        The global regularizer, e.g. ``ElasticNet(1e-4, 1e-3)`` or
        ``[L2(1e-3), MaxNorm(3)]``; ``regularization.NONE`` (or reg=0) for none.  A
        Linear layer built with ``regularizer=`` uses its own instead
        (``regularization.NONE`` exempts it); biases are regularized only in layers
        built with ``regularize_bias=True``.  Constraints apply to W only.
    log_every : int
        Print "iteration i: loss L" every this many steps (0: silent).
    callback : callable(step, loss) or None, called after every step.
    progress : bool
        Show a tqdm progress bar with the current loss (needs the ``progress`` extra:
        ``pip install 'fastnn[progress]'``).

    Returns
    -------
    StepHistory
        ``loss`` is data loss + penalty (constraints add nothing).
    """
    steps = check_positive_int(steps, "steps")
    log_every = check_positive_int(log_every, "log_every", minimum=0)
    if reg is not None and regularizer is not None:
        raise ValueError("give reg (an L2 strength) or regularizer, not both")
    if regularizer is None:
        regularizer = L2(1e-3 if reg is None else check_scalar(reg, "reg", low=0.0))
    else:
        regularizer = get_regularizer(regularizer, "regularizer")
    X = check_array(X, "X", ndim=2, n_cols=net.n_features, dtype=net.dtype)
    # Each loss validates its own targets (class labels, +-1 attributes, regression
    # values) against the shape of what the net produces: an evaluation-mode forward,
    # which draws no dropout mask and leaves batch-norm statistics alone.
    y = loss._check_y(y, net._eval_forward(X, check=False))
    plan = build_plan(net, loss, optimizer=SGD(step_size), regularizer=regularizer,
                      batch_size=X.shape[0]).bind(X, y)
    history = np.empty(steps)
    data_history = np.empty(steps)
    bar = _progress_bar(steps) if progress else None
    # Steps run in chunks between the points where Python must look: a log line, a
    # callback (every step), a progress-bar refresh.
    chunk = 1 if callback is not None else (log_every or (100 if bar is not None else steps))
    t0 = time.perf_counter()
    i = 0
    while i < steps:
        k = min(chunk, steps - i)
        plan.run(k, losses=history[i:i + k], data_losses=data_history[i:i + k])
        for j in range(i, i + k):
            if log_every and j % log_every == 0:
                log(f"iteration {j}: loss {history[j]:f}")
            if callback is not None:
                callback(j, history[j])
        if bar is not None:
            bar.update(k)
            bar.set_postfix(loss=f"{history[i + k - 1]:.4f}", refresh=False)
        i += k
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return StepHistory(loss=history, data_loss=data_history, seconds=seconds, steps=steps)


def _progress_bar(steps):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install 'fastnn[progress]'") from None
    return tqdm(total=steps, unit="step")


# ---- the Trainer ---------------------------------------------------------------------------

#: Training rows the per-epoch training metric and dead-unit check look at (a fixed random
#: subset, chosen once per fit): an evaluation pass over all of a large data set every
#: epoch would cost a third of the epoch itself.
METRIC_ROWS = 2048
#: Steps a History row covers at least with record_every="auto": evaluating the metrics,
#: the dead units and the callbacks costs tens of steps of a small net (a batch-64 spiral
#: step is ~13 us, a row's evaluation ~0.5 ms), so a row every 1024 steps keeps the
#: trainer within a few percent of the bare plan.
RECORD_STEPS = 1024


class Trainer:
    """Mini-batch (or full-batch) training of a net on the compiled training plan, with
    validation, callbacks, progress and label encoding.

    Parameters
    ----------
    model : fastnn.net.Sequential or MLP
    loss : a fastnn.losses loss, or None for SoftmaxCrossEntropy.  It computes in the
        net's dtype (a float32 net with the default float64 loss just works).
    optimizer : a fastnn.optim optimizer or its name ("sgd", "momentum", "nesterov",
        "adagrad", "rmsprop", "adam" with their default hyperparameters)
    batch_size : None for full-batch gradient descent (the notes' case study: one step
        per epoch), or the rows of every step: each epoch then takes N // batch_size
        batches of a fresh random permutation of the rows (the rows left over differ from
        epoch to epoch), gathered by index inside the plan (the data is never copied).
    regularizer, reg : a fastnn.regularization regularizer (or list), or an L2 strength;
        give at most one; default no penalty.
    seed : None, int or numpy Generator: the batch order (``shuffle_seed``, drawn from it)
        and the validation split.  The same seed gives the same bits.
    verbose : 0 silent; 1 (default) a tqdm progress bar on a terminal (the progress
        extra), else one line per epoch.
    shuffle : True (default): each epoch's batches come from a fresh shuffle of the rows.
        False: the rows in their order, cyclically: epoch e continues where epoch e - 1
        stopped (wrapping around), so every row is seen even when N is not a multiple
        of batch_size.
    distributed : None (default), "mpi", or a dict of :class:`fastnn.distributed.DataParallel`
        options (``comm``, ``n_blocks``, ``reduction``): train data-parallel over MPI
        ranks (the mpi extra).  Run the same script on every rank (``mpiexec -n R``),
        each giving fit the same data; each step's batch is computed in blocks across
        the ranks and the gradients summed in a fixed order (the same weights on any
        number of ranks for the same n_blocks).  The parameters, the seed's random state
        and the callbacks' decision to stop are rank 0's; only rank 0 writes checkpoints.
        Batch norm then normalizes each block by the block's own statistics (batches of
        batch_size / n_blocks rows), and dropout draws other masks than a plain run's:
        see :mod:`fastnn.distributed`.  Ctrl-C's clean stop is for one process: the
        ranks would stop at different steps, so under MPI end the whole job instead.

    After fit: ``history_``, ``classes_`` (classifiers: the labels seen, sorted),
    ``plan`` (the training plan, kept for the next fit while it still matches).
    """

    def __init__(self, model: Sequential, loss: Any = None, optimizer: Any = "sgd", *,
                 batch_size: int | None = None, regularizer: Any = None,
                 reg: float | None = None, seed: int | np.random.Generator | None = None,
                 verbose: int = 1, shuffle: bool = True,
                 distributed: str | dict[str, Any] | None = None) -> None:
        from . import optim as _optim
        from .losses import SoftmaxCrossEntropy
        from .net import Sequential
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a fastnn Sequential or MLP, got "
                            f"{type(model).__name__}")
        self.model = model
        self.loss = _as_dtype(SoftmaxCrossEntropy() if loss is None else loss, model.dtype)
        self.optimizer = _optim.get(optimizer)
        self.batch_size = (None if batch_size is None
                           else check_positive_int(batch_size, "batch_size"))
        if reg is not None and regularizer is not None:
            raise ValueError("give reg (an L2 strength) or regularizer, not both")
        self.regularizer = get_regularizer(regularizer if reg is None else
                                           check_scalar(reg, "reg", low=0.0), "regularizer")
        rng = check_random_state(seed)
        if not isinstance(rng, np.random.Generator):    # checkpoints keep a Generator's state
            raise TypeError("seed must be None, an int or a numpy Generator, got "
                            f"{type(seed).__name__}")
        self.rng = rng
        self.distributed = _distributed_options(distributed)
        if self.distributed is not None:
            self.rng = _rank0_generator(self.rng, self.distributed)
        #: keys the batch order: epoch e's batches are shuffled_rows(..., shuffle_seed, e)
        self.shuffle_seed = int(self.rng.integers(0, 2**63))
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = int(verbose)
        self.shuffle = bool(shuffle)
        self.plan: Any = None
        self.classes_: np.ndarray | None = None
        self.history_: History | None = None
        self._resume: tuple[Any, ...] | None = None
        self.epoch = 0              # epochs completed over all fits
        #: steps taken into epoch ``epoch`` by a fit that ended mid-epoch (fit(steps=),
        #: Ctrl-C, a non-finite loss): the next fit continues that epoch's batches
        self.epoch_step = 0
        #: the (rows, batch size, shuffle) of that epoch: only a fit on the same
        #: continues it
        self._epoch_of: tuple[int, int, bool] | None = None
        #: epochs whose end the callbacks have seen (a History record ended there or
        #: after): behind ``epoch`` after Ctrl-C or an unfinished epoch ended by a fit on
        #: other data; a per-epoch callback catches up from here
        self._recorded_epochs = 0

    # -- pickling: parameters and state, never the plan's buffers --------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_metric", None)           # fit's metric callable, only used during fit
        plan = state.pop("plan", None)
        if plan is not None:       # the optimizer's progress, to resume exactly
            state["_resume"] = ([a.copy() for a in plan.state], plan.t,
                                [a.copy() for a in plan.loss_state], plan.optimizer)
        state["plan"] = None
        return state

    def __setstate__(self, state):
        state.setdefault("epoch_step", 0)         # (pickled before they were kept)
        state.setdefault("_epoch_of", None)
        state.setdefault("_recorded_epochs", state.get("epoch", 0))
        self.__dict__.update(state)

    def _adopt_resume(self, plan):
        """Optimizer state and step count saved with a pickled trainer or a checkpoint
        (and a loss's own parameters and their state, the hierarchical softmax's), into a
        new plan: all checked before anything is copied, and kept for the next try when
        refused."""
        from . import io
        resume = self.__dict__.get("_resume")
        if resume is None:
            return
        state, t, *rest = resume
        if len(rest) > 1 and rest[1] is not self.optimizer:
            # trainer.optimizer was replaced since: a new optimizer starts afresh
            del self.__dict__["_resume"]
            return
        io._resume_plan(plan, state, t, self.loss, None, tuple(rest[0]) if rest else ())
        del self.__dict__["_resume"]

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a checkpoint (fastnn.io, safetensors, atomic): the net, the optimizer and
        its state, the step and epoch counters, the random state of the batch order and
        the classes, and a loss's own parameters with their optimizer state (the
        hierarchical softmax's, with its tree as ``extra["loss_tree"]``);
        :meth:`from_checkpoint` resumes from it bit for bit."""
        from . import io
        if self.plan is None:
            raise RuntimeError("save_checkpoint needs a fitted trainer (call fit first)")
        if self.distributed is not None:    # rank 0 writes, every rank waits for it
            self.plan.on_rank0(lambda: self._write_checkpoint(io, path))
        else:
            self._write_checkpoint(io, path)

    def _write_checkpoint(self, io, path):
        classes = None if self.classes_ is None else self.classes_.tolist()
        io.save_checkpoint(path, self.model, optimizer=self.optimizer,
                           optimizer_state=tuple(self.plan.state), step=self.plan.t,
                           epoch=self.epoch, rng_state=self.rng,
                           extra={"classes": classes, "batch_size": self.batch_size,
                                  "shuffle_seed": self.shuffle_seed, "shuffle": self.shuffle,
                                  "epoch_step": self.epoch_step,
                                  "epoch_of": (None if self._epoch_of is None
                                               else list(self._epoch_of)),
                                  "recorded_epochs": self._recorded_epochs,
                                  **io._loss_tree_extra(self.loss)},
                           loss_params=getattr(self.loss, "params", None) or None,
                           loss_state=tuple(self.plan.loss_state))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], loss: Any = None, *,
                        regularizer: Any = None, reg: float | None = None,
                        verbose: int = 1,
                        distributed: str | dict[str, Any] | None = None) -> Trainer:
        """A Trainer that continues a checkpoint: the next fit takes the steps an
        uninterrupted run would have taken next (same batches, dropout masks and optimizer
        state).  Give the loss and regularizer the first run used; a loss with parameters
        of its own (the hierarchical softmax, built with the same tree) gets the saved
        ones; a hierarchical softmax on another tree is refused (ValueError), except
        against a checkpoint written before fastnn recorded the tree."""
        from . import io
        ckpt = io.load_checkpoint(path)
        io._check_loss_params(loss, ckpt.loss_params)
        extra = _checked_extra(ckpt, path)
        io._check_loss_tree(loss, extra, path)
        trainer = cls(ckpt.net, loss, ckpt.optimizer, batch_size=extra.get("batch_size"),
                      regularizer=regularizer, reg=reg, verbose=verbose,
                      shuffle=extra.get("shuffle", True), distributed=distributed)
        if ckpt.rng_state is not None:
            trainer.rng = io.generator_from_state(ckpt.rng_state)  # (checked when loaded)
        if extra.get("classes") is not None:
            trainer.classes_ = np.asarray(extra["classes"])
            if len(trainer.classes_) > trainer._n_outputs():
                raise ValueError(f"{path}: the checkpoint names {len(trainer.classes_)} "
                                 f"classes, its net has {trainer._n_outputs()} outputs")
        if extra.get("shuffle_seed") is not None:
            trainer.shuffle_seed = extra["shuffle_seed"]
        trainer.epoch = ckpt.epoch
        trainer._recorded_epochs = min(extra.get("recorded_epochs", ckpt.epoch), ckpt.epoch)
        trainer.epoch_step = extra.get("epoch_step", 0)
        of = extra.get("epoch_of")
        trainer._epoch_of = None if of is None else (of[0], of[1], of[2])
        trainer._resume = (ckpt.optimizer_state, ckpt.step, list(ckpt.loss_state),
                           trainer.optimizer)
        if ckpt.loss_params:                   # (checked above, before building)
            loss.set_params(**ckpt.loss_params)
        return trainer

    # -- what kind of model --------------------------------------------------------------
    @property
    def is_classifier(self) -> bool:
        """True when the loss takes class labels (softmax, SVMs, hierarchical softmax)."""
        from .losses import HierarchicalSoftmax, _ClassLabelLoss
        return isinstance(self.loss, (_ClassLabelLoss, HierarchicalSoftmax))

    def _n_outputs(self):
        return getattr(self.loss, "n_classes", None) or self.model._fused[-1][0].n_out

    # -- targets -------------------------------------------------------------------------
    def _encode(self, y, name, classes):
        """Class labels of any kind -> (intp codes into `classes`, classes).  classes None:
        the sorted labels of y (the first fit); they are kept afterwards."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinity")
        if classes is None:
            classes = np.unique(y)
            if len(classes) > self._n_outputs():
                raise ValueError(f"{name} has {len(classes)} classes but the model has "
                                 f"{self._n_outputs()} outputs")
        codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
        unknown = classes[codes] != y
        if np.any(unknown):
            raise ValueError(f"{name} contains label {y[np.argmax(unknown)].item()!r}, not "
                             f"one of the classes seen in training {classes[:10].tolist()}")
        return codes.astype(np.intp), classes

    def _targets(self, y, name, n, classes=None) -> tuple[np.ndarray, Any]:
        """(targets as the loss takes them, classes); classes as in _encode."""
        if self.is_classifier:
            y, classes = self._encode(y, name, classes)
            if y.shape[0] != n:
                raise ValueError(f"{name} has {y.shape[0]} labels but X has {n} rows")
            return y, classes
        return self.loss._check_y(y, ShapeOnly(n, self._n_outputs())), None

    def _weights(self, w, name, n):
        if w is None:
            return None
        w = check_array(w, name, ndim=1, n_rows=n, dtype=np.float64)
        if np.any(w < 0):
            raise ValueError(f"{name} must be >= 0")
        return w

    def _X(self, X, name) -> np.ndarray:
        return check_array(X, name, ndim=2, n_cols=self.model.n_features,
                           dtype=self.model.dtype)

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int | None = None,
            steps: int | None = None,
            validation_data: tuple[ArrayLike, ...] | None = None,
            validation_split: float = 0.0, callbacks: Iterable[Any] | None = (),
            record_every: int | str = "auto", sample_weight: ArrayLike | None = None,
            train_metric: bool = True, metric: Any = None) -> History:
        """Train; returns the History (also ``self.history_``).

        X (N, D) and y (N,) labels of any kind for classifiers, (N, M) targets otherwise;
        checked and converted once.  Give epochs or steps: epochs=E runs E epochs' worth of
        steps (E * (N // batch_size)), steps=k that many steps, ending mid-epoch if need
        be; a fit that ends mid-epoch (also by Ctrl-C or a non-finite loss) leaves
        ``epoch_step`` steps taken into epoch ``epoch``, and the next fit on the same rows,
        batch size and order takes that epoch's remaining batches first, as an
        uninterrupted run would (on other data the unfinished epoch ends there).
        validation_data=(X_val, y_val), or validation_split: the fraction of rows held
        out for validation (picked at random with the seed; the same rows at every fit of
        this trainer on data of this size).  callbacks: a list of fastnn.callbacks
        objects (a TerminateOnNonFinite is added unless one is given).  Ctrl-C stops
        cleanly between epochs' chunks: the weights are those of the last complete step,
        the steps it took are counted, and the history so far is returned.

        record_every: epochs per History row (and per round of metrics, validation and
        callbacks); "auto" makes a row every epoch when a callback acts at epoch ends
        (it has an ``on_epoch_end``: EarlyStopping, LearningRateScheduler, ...), else at
        least every RECORD_STEPS (1024) steps, so that evaluating the metrics costs
        little next to training (full-batch training takes one step per epoch: there a
        row covers 1024 epochs).  A callback with ``every_epoch`` (LearningRateScheduler)
        refuses any other record_every than 1.  Rows end at epoch boundaries and where
        the fit ends; a row's epoch is the one its last step belongs to.  The per-step
        losses are always kept.

        sample_weight: None or (N,) weights >= 0, one per row: every step minimizes the
        weighted mean of its batch's losses (see :meth:`fastnn.plan._Plan.bind`); the
        validation split takes its rows' weights, and validation_data may be a triple
        (X_val, y_val, w_val); the validation loss is then weighted the same way.

        train_metric: False skips the per-record evaluation of the training rows (the
        "metric" and "dead_units" records are then NaN and empty): the training losses
        come from the steps themselves.  metric: None (accuracy for classifiers, the data
        loss otherwise) or a callable ``metric(scores, y, w)`` -> float, given the
        evaluation-mode scores, the targets as the loss takes them and the rows' weights
        (None without weights), used for "metric" and "val_metric".
        """
        from . import callbacks as cb
        from .plan import build_plan
        if (epochs is None) == (steps is None):
            raise ValueError("give exactly one of epochs and steps")
        X = self._X(X, "X")
        y, classes = self._targets(y, "y", X.shape[0], self.classes_)
        w = self._weights(sample_weight, "sample_weight", X.shape[0])
        if metric is not None and not callable(metric):
            raise TypeError(f"metric must be None or a callable, got {type(metric).__name__}")
        split = check_scalar(validation_split, "validation_split", low=0.0, high=1.0,
                             high_open=True)
        if validation_data is not None and split:
            raise ValueError("give validation_data or validation_split, not both")
        if split:
            # keyed by the trainer's seed and the data size, not drawn afresh: a warm
            # refit holds out the same rows, never rows it has trained on
            order = np.random.default_rng([self.shuffle_seed, X.shape[0]]).permutation(
                X.shape[0])
            n_val = int(round(split * X.shape[0]))
            if not 0 < n_val < X.shape[0]:
                raise ValueError(f"validation_split={split} leaves no rows for training or "
                                 "for validation")
            val = (X[order[:n_val]], y[order[:n_val]],
                   None if w is None else w[order[:n_val]])
            X, y = X[order[n_val:]], y[order[n_val:]]
            w = None if w is None else w[order[n_val:]]
        elif validation_data is not None:
            try:
                Xv, yv, *wv = validation_data
                if len(wv) > 1:
                    raise ValueError
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val) or a triple "
                                "(X_val, y_val, w_val)") from None
            Xv = self._X(Xv, "X_val")
            val = (Xv, self._targets(yv, "y_val", Xv.shape[0], classes)[0],
                   self._weights(wv[0] if wv else None, "w_val", Xv.shape[0]))
        else:
            val = None
        n = X.shape[0]
        batch = n if self.batch_size is None else self.batch_size
        if batch > n:
            raise ValueError(f"batch_size {batch} is larger than the {n} training rows")
        per_epoch = n // batch
        if epochs is not None:
            total = check_positive_int(epochs, "epochs") * per_epoch
        else:
            total = check_positive_int(steps, "steps")
        callback_list = _callback_list(callbacks)
        if record_every == "auto":
            # a callback acting at epoch ends (EarlyStopping's patience counts records)
            # gets every epoch; otherwise a row repays its evaluation
            record_every = (1 if any(_acts_per_epoch(c) for c in callback_list)
                            else max(1, -(-RECORD_STEPS // per_epoch)))
        record_every = check_positive_int(record_every, "record_every")
        for c in callback_list:
            if getattr(c, "every_epoch", False) and record_every != 1:
                raise ValueError(f"{type(c).__name__} acts at the end of every epoch: it "
                                 f"needs record_every=1 (or 'auto'), got {record_every}")
        self.classes_ = classes     # every argument checked: the labels are fixed now
        # an epoch a previous fit left unfinished continues on the same rows, batch size
        # and order only; otherwise it ends where it stopped (committed once training
        # starts, below: a refused fit changes no counter)
        epoch_of = (n, batch, self.shuffle)
        start = ((self.epoch + 1, 0) if self.epoch_step and self._epoch_of != epoch_of
                 else (self.epoch, self.epoch_step))
        # rows end at epoch boundaries (every record_every epochs) and where the fit does
        row_steps = record_every * per_epoch
        rounds = -(-(start[1] + total) // row_steps)
        # (a user may have assigned trainer.regularizer a float or a list: normalized, so
        # that the plan's, the same object, is recognized below)
        self.regularizer = get_regularizer(self.regularizer, "regularizer")
        if (self.plan is None or not self.plan.matches(self.model, self.loss, batch)
                or self.plan.optimizer is not self.optimizer
                or self.plan.regularizer is not self.regularizer):
            self.plan = self._new_plan(batch)
        plan = self.plan.bind(X, y, w)
        nonfinite = next((c for c in callback_list if isinstance(c, cb.TerminateOnNonFinite)),
                         None)
        if nonfinite is None:
            nonfinite = cb.TerminateOnNonFinite()
            callback_list.append(nonfinite)
        history = History("accuracy" if self.is_classifier else "loss")
        history.step_loss = np.full(total, np.nan)
        history.step_data_loss = np.full(total, np.nan)
        self.history_ = history
        metric_rows = (np.sort(self.rng.choice(n, METRIC_ROWS, replace=False))
                       if n > METRIC_ROWS else None)
        Xm, ym = (X, y) if metric_rows is None else (X[metric_rows], y[metric_rows])
        wm = None if w is None else (w if metric_rows is None else w[metric_rows])
        self._metric, self._train_metric = metric, bool(train_metric)
        counters = (self.epoch, self.epoch_step, self._epoch_of)
        lr = self.plan.optimizer.lr
        self.epoch, self.epoch_step = start
        try:
            for c in callback_list:
                if hasattr(c, "on_fit_begin"):
                    c.on_fit_begin(self)
        except BaseException:      # refused before any step: as it was (a scheduler's
            self.epoch, self.epoch_step, self._epoch_of = counters   # catch-up too)
            if self.plan.optimizer.lr != lr:
                self.plan.set_lr(lr)
            raise
        # under MPI every rank has the same history: rank 0 alone reports it
        quiet = self.distributed is not None and self.plan.rank != 0
        reporter = _Reporter(0 if quiet else self.verbose, rounds, history.metric_name)
        snapshot, done, t_start = None, 0, plan.t
        try:
            for e in range(rounds):
                s = self.epoch_step         # steps already taken into epoch self.epoch
                k = min(row_steps - s, total - done)
                t0 = time.perf_counter()
                snapshot = plan.snapshot(snapshot)
                # each epoch's batches: whole batches of a shuffle of the rows, a pure
                # function of (the trainer's shuffle seed, the epoch): a resumed run
                # takes the batches an uninterrupted one would
                span = -(-(s + k) // per_epoch)            # the epochs this row touches
                idx = (None if self.batch_size is None else
                       _kernels.backend().shuffled_rows(
                           n, per_epoch * batch, span, self.shuffle_seed,
                           self.epoch)[s * batch:(s + k) * batch] if self.shuffle else
                       _in_order(n, per_epoch * batch, self.epoch, (s + k) * batch)[s * batch:])
                losses = history.step_loss[done:done + k]
                data_losses = history.step_data_loss[done:done + k]
                plan.run(k, idx, losses, data_losses)
                good = cb._finite_prefix(losses)
                if good < k:
                    self._stop_nonfinite(plan, snapshot, idx, good, done, batch, nonfinite)
                    history.stopped_by = nonfinite
                    done += good
                    self._advance(good, epoch_of)
                    break
                done += k
                self._advance(k, epoch_of)
                logs = self._epoch_logs(e, losses, data_losses, Xm, ym, wm, val,
                                        time.perf_counter() - t0)
                # the row's epoch: the one its last step belongs to
                last = self.epoch - 1 if self.epoch_step == 0 else self.epoch
                history._append(last, **logs)
                logs["epoch"] = last
                reporter.epoch(logs)
                stop = False
                for c in callback_list:
                    if hasattr(c, "on_epoch_end") and c.on_epoch_end(self, logs["epoch"], logs):
                        history.stopped_by = history.stopped_by or c
                        stop = True
                self._recorded_epochs = self.epoch
                if self.distributed is not None:    # every rank stops with rank 0
                    stop = self.plan.comm.bcast(stop, root=0)
                if stop:
                    break
        except KeyboardInterrupt:
            # the steps taken are the plan's count, whatever line Ctrl-C interrupted
            plan.sync()
            self._advance(plan.t - t_start - done, epoch_of)
            done = plan.t - t_start
            history.interrupted = True
        finally:
            reporter.close()
            self._metric = None          # (a closure would make the trainer unpicklable)
        history.step_loss = history.step_loss[:done]
        history.step_data_loss = history.step_data_loss[:done]
        for c in callback_list:
            if hasattr(c, "on_fit_end"):
                c.on_fit_end(self, history)
        return history

    def _new_plan(self, batch):
        """A plan for the trainer's net, loss, optimizer and regularizer at this batch
        size.  It continues the optimizer state and step count of the plan it replaces
        when the net, loss and optimizer are the same objects and the state fits (a new
        batch or data size, regularizer or backend); otherwise it starts afresh, or from
        a checkpoint's or a pickle's saved state (refused: no plan kept, the state kept)."""
        plan: Any
        if self.distributed is not None:
            from .distributed import DataParallel
            plan = DataParallel(self.model, self.loss, optimizer=self.optimizer,
                                regularizer=self.regularizer, batch_size=batch,
                                shuffle_seed=self.shuffle_seed, **self.distributed)
        else:
            plan = build_plan(self.model, self.loss, optimizer=self.optimizer,
                              regularizer=self.regularizer, batch_size=batch)
        old = self.plan
        # (the same net, loss and optimizer objects keep the state's layout)
        if (self.__dict__.get("_resume") is None and old is not None
                and old.net is plan.net and old.loss is plan.loss
                and old.optimizer is plan.optimizer):
            old.sync()
            plan.set_state(old.state, old.t, old.loss_state)
        self._adopt_resume(plan)
        return plan

    def _advance(self, steps, epoch_of):
        """Count `steps` more steps into the epochs of (rows, batch size, shuffle)."""
        per_epoch = epoch_of[0] // epoch_of[1]
        pos = self.epoch_step + steps
        self.epoch += pos // per_epoch
        self.epoch_step = pos % per_epoch
        self._epoch_of = epoch_of if self.epoch_step else None

    def _stop_nonfinite(self, plan, snapshot, idx, good, done, batch, callback):
        """Back to the weights after the last step whose loss was finite: restore the
        epoch's start and re-run its `good` finite steps (the same batches and dropout
        masks, so the same bits)."""
        plan.restore(snapshot)
        if good:
            plan.run(good, None if idx is None else idx[:good * batch])
        msg = (f"the loss became non-finite at step {done + good} (epoch {self.epoch}); "
               f"training stopped with the weights after step {done + good - 1}"
               if good or done else
               "the loss was non-finite at the first step; the weights are the initial ones")
        if callback.error:
            raise FloatingPointError(msg)
        warnings.warn(msg + " (lower the learning rate?)", RuntimeWarning, stacklevel=3)

    def _epoch_logs(self, e, losses, data_losses, Xm, ym, wm, val, seconds):
        logs = {"loss": float(np.mean(losses)), "data_loss": float(np.mean(data_losses))}
        logs["reg_loss"] = logs["loss"] - logs["data_loss"]
        if self._train_metric:
            logs["metric"], logs["dead_units"] = self._evaluate(Xm, ym, wm, dead=True)
        else:
            logs["metric"], logs["dead_units"] = float("nan"), []
        if val is not None:
            Xv, yv, wv = val
            scores, _ = self._forward_eval(Xv)       # one pass for both records
            logs["val_metric"] = self._metric_of(scores, yv, wv)
            logs["val_loss"] = self._loss_value(scores, yv, wv)
        logs["lr"] = float(self.plan.optimizer.schedule(max(self.plan.t - 1, 0)))
        logs["seconds"] = seconds
        return logs

    def _forward_eval(self, X, dead=False):
        """Evaluation-mode scores (and dead-unit fractions of the ReLU-family layers)."""
        net = self.model
        modes = [layer.training for layer in net.layers]
        fractions = []
        try:
            net.eval()
            h = X
            last = len(net._fused) - 1
            for i, (layer, act) in enumerate(net._fused):
                h = layer._forward(h, act.act_code, act.alpha) if act is not None else \
                    layer._forward(h)
                code = act.act_code if act is not None else (
                    layer._act if hasattr(layer, "_act") else getattr(layer, "act_code", 0))
                if dead and i < last and code in (1, 2):      # relu, leaky relu
                    fractions.append(float(np.mean(~np.any(h > 0, axis=0))))
            return h, fractions
        finally:
            for layer, mode in zip(net.layers, modes):
                layer.train(mode)

    def _evaluate(self, X, y, w=None, dead=False):
        """(metric, dead-unit fractions): accuracy for classifiers, else the data loss
        (or fit's metric)."""
        scores, fractions = self._forward_eval(X, dead)
        return self._metric_of(scores, y, w), fractions

    def _metric_of(self, scores, y, w=None):
        metric = getattr(self, "_metric", None)
        if metric is not None:
            return float(metric(scores, y, w))
        if self.is_classifier and not hasattr(self.loss, "n_nodes"):
            return float(np.average(np.argmax(scores, axis=1) == y, weights=w))
        if hasattr(self.loss, "n_nodes"):
            return float(np.average(self.loss.predict(scores) == y, weights=w))
        return self._loss_value(scores, y, w)

    def _loss_value(self, scores, y, w=None):
        mean = float(self.loss._forward(np.ascontiguousarray(scores), y))
        if w is None:
            return mean
        total = float(np.sum(w))
        return float(np.dot(w, self.loss.row_loss)) / total if total > 0 else 0.0

    def _data_loss(self, X, y, w=None):
        scores, _ = self._forward_eval(X)
        return self._loss_value(scores, y, w)

    # -- using the trained model --------------------------------------------------------
    def predict(self, X: ArrayLike) -> np.ndarray:
        """Classifiers: the predicted labels (of the kind given to fit); otherwise the
        net's outputs, (N, M) (a new array)."""
        scores, _ = self._forward_eval(self._X(X, "X"))
        if not self.is_classifier:
            return scores.copy()
        if self.classes_ is None:
            raise RuntimeError("predict called before fit")
        if hasattr(self.loss, "n_nodes"):
            return self.classes_[self.loss.predict(scores)]
        return self.classes_[np.argmax(scores[:, :len(self.classes_)], axis=1)]

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Classifiers: accuracy against labels y (an unknown label is a ValueError);
        otherwise the coefficient of determination R^2 of the outputs."""
        X = self._X(X, "X")
        if self.is_classifier:
            if self.classes_ is None:
                raise RuntimeError("score called before fit")
            codes, _ = self._targets(y, "y", X.shape[0], self.classes_)
            return float(np.mean(self.classes_[codes] == self.predict(X)))
        y, _ = self._targets(y, "y", X.shape[0])
        pred = self.predict(X)
        ss_res = np.sum((y - pred) ** 2)
        ss_tot = np.sum((y - y.mean(axis=0)) ** 2)
        return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else 0.0


#: The hooks of the callback protocol (fastnn.callbacks): a callback has one at least.
_HOOKS = ("on_fit_begin", "on_epoch_end", "on_fit_end")


def _callback_list(callbacks):
    """fit's callbacks as a list, each checked to be one."""
    if callbacks is None:
        return []
    if any(hasattr(callbacks, h) for h in _HOOKS):
        raise TypeError("callbacks must be a list of callbacks; wrap a single one in a list")
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of callbacks, got "
                        f"{type(callbacks).__name__}") from None
    for c in callbacks:
        if not any(hasattr(c, h) for h in _HOOKS):
            raise TypeError(f"{c!r} is not a callback: it has none of on_fit_begin, "
                            "on_epoch_end, on_fit_end")
    return callbacks


def _acts_per_epoch(callback):
    """Whether a callback does something at epoch ends: its ``acts_per_epoch`` if it
    says, else whether it has an on_epoch_end other than the base class's no-op."""
    from .callbacks import Callback
    said = getattr(callback, "acts_per_epoch", None)
    if said is not None:
        return bool(said)
    hook = getattr(type(callback), "on_epoch_end", None)
    if hook is None:
        return callable(getattr(callback, "on_epoch_end", None))   # (set on the object)
    return hook is not Callback.on_epoch_end


def _checked_extra(ckpt, path):
    """A Trainer checkpoint's ``extra`` with the fields from_checkpoint reads checked
    (ValueError naming the file): a file is data, and a damaged one must not reach
    the trainer as a crash later on."""
    extra = dict(ckpt.extra or {})

    def integer(key, low, high=2**63 - 1, none=False):
        value = extra.get(key)
        if value is None and none:
            return
        if (isinstance(value, bool) or not isinstance(value, int)
                or not low <= value <= high):
            raise ValueError(f"{path}: checkpoint extra[{key!r}] must be an integer in "
                             f"[{low}, {high}]{' or null' if none else ''}, got {value!r:.60}")

    integer("batch_size", 1, none=True)
    integer("shuffle_seed", 0, 2**64 - 1, none=True)
    integer("epoch_step", 0, none=True)
    integer("recorded_epochs", 0, none=True)
    of = extra.get("epoch_of")
    if of is not None and not (isinstance(of, list) and len(of) == 3
                               and all(isinstance(v, int) and not isinstance(v, bool)
                                       and v >= 1 for v in of[:2])
                               and of[1] <= of[0] and isinstance(of[2], bool)):
        raise ValueError(f"{path}: checkpoint extra['epoch_of'] must be null or [rows, "
                         f"batch size <= rows, shuffle], got {of!r:.60}")
    step = extra.get("epoch_step") or 0
    if step and (of is None or step >= of[0] // of[1]):
        raise ValueError(f"{path}: checkpoint extra['epoch_step'] {step} is not within the "
                         f"epoch extra['epoch_of'] describes ({of!r:.40})")
    if not isinstance(extra.get("shuffle", True), bool):
        raise ValueError(f"{path}: checkpoint extra['shuffle'] must be true or false")
    classes = extra.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes):
        raise ValueError(f"{path}: checkpoint extra['classes'] must be a non-empty list "
                         "or null")
    return extra


def _distributed_options(distributed):
    """None, or the DataParallel keyword arguments `distributed` asks for."""
    if distributed is None:
        return None
    if isinstance(distributed, str) and distributed == "mpi":
        return {}
    if isinstance(distributed, dict):
        unknown = set(distributed) - {"comm", "n_blocks", "reduction"}
        if unknown:
            raise ValueError(f"distributed: unknown option(s) {sorted(unknown)}; give comm, "
                             "n_blocks, reduction")
        return dict(distributed)
    raise ValueError(f"distributed must be None, 'mpi' or a dict of options, got "
                     f"{distributed!r}")


def _rank0_generator(rng, options):
    """Every rank's random state made rank 0's (the batch order and the validation split
    must agree); rank 0 keeps its own generator."""
    from .distributed import get_comm
    comm = get_comm(options.get("comm"))
    from .io import generator_from_state
    state = comm.bcast(rng.bit_generator.state, root=0)
    if comm.Get_rank() == 0:
        return rng
    return generator_from_state(state)


def _in_order(n, keep, epoch, size):
    """The rows in order, cyclically, for shuffle=False: epoch e's `keep` rows start where
    epoch e - 1's stopped (row (e * keep) mod n), a pure function of the epoch."""
    return (np.arange(size, dtype=np.int64) + (epoch * keep) % n) % n


def _as_dtype(loss, dtype):
    """The loss computing in `dtype`: itself, or a copy of a parameterless loss."""
    if getattr(loss, "dtype", dtype) == dtype or getattr(loss, "params", None):
        return loss
    from .layers import BatchBuffers
    clone = copy.copy(loss)
    clone.dtype = np.dtype(dtype)
    clone._buffers = BatchBuffers(clone.dtype)
    clone.dscores = clone.row_loss = None
    return clone


class _Reporter:
    """Progress: a tqdm bar over epochs on a terminal (verbose >= 1, tqdm installed),
    else one line per epoch (verbose >= 1), else nothing."""

    def __init__(self, verbose, epochs, metric_name):
        self.verbose, self.bar, self.metric_name = verbose, None, metric_name
        if verbose and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=epochs, unit="epoch")
            except ImportError:
                pass

    def epoch(self, logs):
        if not self.verbose:
            return
        parts = {"loss": f"{logs['loss']:.4g}", self.metric_name: f"{logs['metric']:.4g}"}
        if "val_loss" in logs:
            parts["val_loss"] = f"{logs['val_loss']:.4g}"
            parts["val_" + self.metric_name] = f"{logs['val_metric']:.4g}"
        if self.bar is not None:
            self.bar.set_postfix(parts, refresh=False)
            self.bar.update(1)
        else:
            print(f"epoch {logs['epoch']}: " + " ".join(f"{k} {v}" for k, v in parts.items())
                  + f" ({logs['seconds']:.3g} s)", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
