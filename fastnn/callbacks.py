"""Callbacks: code a Trainer runs between epochs.

The protocol is two optional methods; a callback may define either or both:

``on_fit_begin(trainer)``
    Once, after the data are checked and the plan is built, before the first step.
``on_epoch_end(trainer, epoch, logs) -> bool or None``
    After every History record (every ``record_every`` epochs of ``Trainer.fit``;
    ``epoch`` is the last epoch it covers, counted from 0 over all fits).  ``logs`` holds
    the record (the keys of :data:`fastnn.history.EPOCH_KEYS`, "dead_units" and
    "epoch").  Return True to stop training (the trainer records the callback in
    ``history.stopped_by``).
``on_fit_end(trainer, history)``
    Once, when fit returns (also after an early stop or Ctrl-C).

With a callback that has an ``on_epoch_end`` (or says ``acts_per_epoch = True``), fit's
``record_every="auto"`` makes a record every epoch.  One whose ``every_epoch`` attribute
is true must act at the end of every epoch (LearningRateScheduler): fit refuses any
other ``record_every`` than 1.  Records end at epoch boundaries, except the last one of
a fit that ends mid-epoch (``fit(steps=...)``); ``trainer.epoch`` counts the epochs
completed, ``trainer.epoch_step`` the steps into the next.

``trainer.plan`` is the training plan (``trainer.plan.net`` the net); the callbacks
below use only the public attributes of a Trainer.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_positive_int, check_scalar

if TYPE_CHECKING:
    from .history import History
    from .trainer import Trainer


class Callback:
    """Base class with no-op hooks (subclassing it is optional)."""

    def on_fit_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool | None:
        return None

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when a monitored record stops improving.

    monitor : "val_loss" (default), "val_metric", "loss" or "metric"
    mode : "min" or "max"; default "min" for losses and "max" for a classifier's
        accuracy (the metric when fit is given no ``metric``); for fit's own ``metric=``
        its ``greater_is_better`` attribute if it has one, else an explicit mode is
        needed (ValueError otherwise)
    patience : History records (epochs, with fit's default record_every) tolerated
        without an improvement of more than min_delta: the next one without stops
        training, as scikit-learn's n_iter_no_change does
    min_delta : the smallest change that counts as an improvement (>= 0)
    restore_best : put back the weights (and optimizer state) of the best epoch at the end
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 5,
                 min_delta: float = 0.0, mode: str | None = None,
                 restore_best: bool = True) -> None:
        if monitor not in ("val_loss", "val_metric", "loss", "metric"):
            raise ValueError("monitor must be 'val_loss', 'val_metric', 'loss' or 'metric', "
                             f"got {monitor!r}")
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be None, 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.min_delta = check_scalar(min_delta, "min_delta", low=0.0)
        self.restore_best = bool(restore_best)

    def on_fit_begin(self, trainer: Trainer) -> None:
        mode = self.mode
        metric = getattr(trainer, "_metric", None)
        if mode is None and self.monitor.endswith("metric"):
            if metric is None:
                mode = "max" if trainer.is_classifier else "min"
            elif getattr(metric, "greater_is_better", None) is not None:
                mode = "max" if metric.greater_is_better else "min"
            else:
                raise ValueError(f"EarlyStopping monitors {self.monitor!r}, fit's own metric: "
                                 "give mode='min' or mode='max' (or the metric a "
                                 "greater_is_better attribute)")
        self._sign = -1.0 if mode == "max" else 1.0
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self._snapshot: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool | None:
        value = logs[self.monitor]
        if math.isnan(value):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is NaN: "
                             "give validation_data or validation_split to monitor val_*")
        score = self._sign * value
        if score < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = score, epoch, 0
            if self.restore_best:
                self._snapshot = trainer.plan.snapshot(self._snapshot)
            return None
        self.wait += 1
        return self.wait > self.patience

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if self.restore_best and self._snapshot is not None:
            trainer.plan.restore(self._snapshot)

    @property
    def best_value(self) -> float:
        """The best monitored value seen (in its own sign)."""
        return self._sign * self.best


class TerminateOnNonFinite(Callback):
    """Stop when a step's loss is NaN or infinite (the Trainer adds one by default).

    The trainer then puts back the weights of the last step whose loss was finite and
    warns (or, with ``error=True``, raises FloatingPointError) naming the step."""

    def __init__(self, error: bool = False) -> None:
        self.error = bool(error)


class Checkpoint(Callback):
    """Save a checkpoint (Trainer.save_checkpoint: safetensors, written atomically) each
    time training passes another ``every`` epochs, to ``path``; ``{epoch}`` in the path
    is replaced by the epoch number.  Checked at every History record (``record_every``
    epochs), so a checkpoint lands at the first record at or after each multiple."""

    def __init__(self, path: str | os.PathLike[str], every: int = 1) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError(f"path must be a str or os.PathLike of str, got {path!r}")
        try:                # a bad pattern fails here, not after the first epochs' work
            self.path.format(epoch=0)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"path {self.path!r} is not a pattern with only {{epoch}} in "
                             f"it: {type(exc).__name__} {exc}") from None
        self.every = check_positive_int(every, "every")

    def on_fit_begin(self, trainer: Trainer) -> None:
        # from the last epoch a record saw: a multiple passed with no record (Ctrl-C
        # after a chunk) is saved at the next record
        self._saved = getattr(trainer, "_recorded_epochs", trainer.epoch) // self.every

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        # completed epochs: a record that ends mid-epoch does not count its epoch
        if trainer.epoch // self.every > self._saved:
            self._saved = trainer.epoch // self.every
            trainer.save_checkpoint(self.path.format(epoch=epoch))
        return None


class LearningRateScheduler(Callback):
    """Set the learning rate at the end of every epoch: ``schedule(epoch, lr) -> new lr``
    (epoch counts from 0 over all fits; lr is the current base learning rate), once
    per completed epoch (fit records every epoch with it: ``every_epoch``).  For a
    per-step schedule give the optimizer a fastnn.optim schedule instead."""

    every_epoch = True

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {type(schedule).__name__}")
        self.schedule = schedule

    def on_fit_begin(self, trainer: Trainer) -> None:
        # the first epoch whose end no record saw: epochs that ended with none (Ctrl-C
        # after a chunk, an unfinished epoch ended by a fit on other data) are scheduled
        # before the fit's first step
        self._next = getattr(trainer, "_recorded_epochs", trainer.epoch)
        self._catch_up(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._catch_up(trainer)
        return None

    def _catch_up(self, trainer):
        lr = trainer.plan.optimizer.lr
        for e in range(self._next, trainer.epoch):
            lr = check_scalar(self.schedule(e, lr), "the schedule's learning rate",
                              low=0.0, low_open=True)
        if trainer.epoch > self._next:
            trainer.plan.set_lr(lr)
            self._next = trainer.epoch


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_epoch_end(trainer, epoch, logs)`` (its
    truthy return stops training), ``on_fit_begin(trainer)``, ``on_fit_end(trainer,
    history)``."""

    def __init__(self,
                 on_epoch_end: Callable[[Trainer, int, dict[str, Any]], Any] | None = None,
                 on_fit_begin: Callable[[Trainer], Any] | None = None,
                 on_fit_end: Callable[[Trainer, History], Any] | None = None) -> None:
        self._epoch_end, self._begin, self._end = on_epoch_end, on_fit_begin, on_fit_end
        self.acts_per_epoch = on_epoch_end is not None     # (fit's record_every="auto")

    def on_fit_begin(self, trainer: Trainer) -> None:
        if self._begin is not None:
            self._begin(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> Any:
        return None if self._epoch_end is None else self._epoch_end(trainer, epoch, logs)

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if self._end is not None:
            self._end(trainer, history)


def _finite_prefix(losses):
    """Number of leading finite entries of a float array."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else len(losses)
