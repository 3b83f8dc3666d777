"""What a training run recorded: a row every few epochs (Trainer.fit's record_every) and
every step's loss."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: Per-epoch records every History has (a value of NaN where it does not apply).
EPOCH_KEYS = ("loss", "data_loss", "reg_loss", "metric", "val_loss", "val_metric", "lr",
              "seconds")


class History:
    """Training records.

    Per row (lists, one entry per row; a row covers ``record_every`` epochs and
    ``epochs`` holds the last epoch of each; ``as_dict()`` gives arrays): ``loss`` (mean
    total loss of the row's steps), ``data_loss``, ``reg_loss``, ``metric`` (training
    metric at the row's end: accuracy for classifiers, the loss's own mean data loss for
    regression and attributes), ``val_loss`` and ``val_metric`` (NaN without validation
    data), ``lr`` (the learning rate of the row's last step), ``seconds`` (wall time of
    the row's steps and evaluation), and ``dead_units``: per hidden ReLU-family layer, the
    fraction of units that did not fire on any training row examined (the notes'
    dead-ReLU check; an evaluation-mode pass over at most 2,048 fixed training rows).

    Per step: ``step_loss`` and ``step_data_loss`` (float64 arrays of every step run).

    ``metric_name`` says what ``metric`` is ("accuracy" or "loss"); ``stopped_by`` the
    callback or event that ended training early (None when it ran to the end), and
    ``interrupted`` whether Ctrl-C ended it.
    """

    # the per-epoch records of EPOCH_KEYS, set by __init__ with setattr
    loss: list[float]
    data_loss: list[float]
    reg_loss: list[float]
    metric: list[float]
    val_loss: list[float]
    val_metric: list[float]
    lr: list[float]
    seconds: list[float]

    def __init__(self, metric_name: str = "accuracy") -> None:
        self.metric_name = metric_name
        self.epochs: list[int] = []
        for key in EPOCH_KEYS:
            setattr(self, key, [])
        self.dead_units: list[list[float]] = []
        self.step_loss = np.empty(0)
        self.step_data_loss = np.empty(0)
        self.stopped_by: Any = None
        self.interrupted = False

    def _append(self, epoch, **values):
        self.epochs.append(epoch)
        for key in EPOCH_KEYS:
            getattr(self, key).append(float(values.get(key, np.nan)))
        self.dead_units.append(list(values.get("dead_units", [])))

    def __len__(self) -> int:
        return len(self.epochs)

    def as_dict(self) -> dict[str, np.ndarray]:
        """{name: array}: "epoch" and every per-epoch record ("dead_units" as a
        (epochs, hidden layers) array), plus "step_loss" and "step_data_loss"."""
        out: dict[str, np.ndarray] = {"epoch": np.asarray(self.epochs, dtype=np.int64)}
        for key in EPOCH_KEYS:
            out[key] = np.asarray(getattr(self, key), dtype=np.float64)
        out["dead_units"] = np.asarray(self.dead_units, dtype=np.float64)
        out["step_loss"] = self.step_loss.copy()
        out["step_data_loss"] = self.step_data_loss.copy()
        return out

    def to_dataframe(self) -> pd.DataFrame:
        """The per-epoch records as a pandas DataFrame indexed by epoch (needs pandas);
        dead-unit fractions as columns dead_units_0, dead_units_1, ..."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas") from None
        data = {key: getattr(self, key) for key in EPOCH_KEYS}
        dead = np.asarray(self.dead_units, dtype=np.float64).reshape(
            len(self), -1 if len(self) else 0)
        for j in range(dead.shape[1]):
            data[f"dead_units_{j}"] = dead[:, j]
        return pd.DataFrame(data, index=pd.Index(self.epochs, name="epoch"))

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"History({len(self)} epochs{last})"
