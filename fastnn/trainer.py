"""Training loops: the notes' full-batch gradient descent."""
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_array, check_positive_int, check_scalar
from .optim import SGD
from .plan import build_plan
from .regularization import L2
from .regularization import get as get_regularizer


@dataclass
class History:
    """What a training run recorded: the full loss (data + regularization) before each
    step's update, the data loss alone, and the wall time of the loop in seconds."""
    loss: np.ndarray
    data_loss: np.ndarray
    seconds: float
    steps: int = field(default=0)

    @property
    def us_per_step(self):
        """Mean wall time of one step, in microseconds."""
        return 1e6 * self.seconds / max(self.steps, 1)


def gradient_descent(net, loss, X, y, *, steps, step_size=1.0, reg=None, regularizer=None,
                     log_every=0, log=print, callback=None, progress=False):
    """Full-batch gradient descent, as in the notes' case study, run by a training
    plan (:mod:`fastnn.plan`): on the compiled backend whole steps run in compiled code,
    many per call.

    Each step: scores = net(X); L = loss(scores, y) + the regularization penalty of
    every layer with weights; backpropagate; ``param -= step_size * grad`` for every
    parameter; then every constraint (max-norm) projects the weights it governs.  With the defaults the
    penalty is the notes' ``0.5 * reg * sum(W**2)`` over every layer's W, reg 1e-3.

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
    History
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
    return History(loss=history, data_loss=data_history, seconds=seconds, steps=steps)


def _progress_bar(steps):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install 'fastnn[progress]'") from None
    return tqdm(total=steps, unit="step")
