"""Training loops.  For now the notes' full-batch gradient descent; the mini-batch
trainer builds on the same step."""
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_array, check_labels, check_positive_int
from .layers import Linear
from .optim import SGD
from .regularization import L2


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
        return 1e6 * self.seconds / max(self.steps, 1)


def gradient_descent(net, loss, X, y, *, steps, step_size=1.0, reg=1e-3, log_every=0,
                     log=print, callback=None):
    """Full-batch gradient descent, as in the notes' case study.

    Each step: scores = net(X); L = loss(scores, y) + 0.5 * reg * sum of every Linear
    layer's W**2; backpropagate; ``param -= step_size * grad`` for every parameter.

    Parameters
    ----------
    net : fastnn.net.Sequential
    loss : a loss with forward(scores, y) -> float and backward() -> dscores
    X : (N, D) array; converted once to the net's dtype and checked for NaN/inf
    y : (N,) integer labels
    steps : int
    step_size, reg : float
    log_every : int
        Print "iteration i: loss L" every this many steps (0: silent).
    callback : callable(step, loss) or None, called after every step.

    Returns
    -------
    History
    """
    steps = check_positive_int(steps, "steps")
    log_every = check_positive_int(log_every, "log_every", minimum=0)
    X = check_array(X, "X", ndim=2, n_cols=net.n_features, dtype=net.dtype)
    y = check_labels(y, "y", n_samples=X.shape[0])
    regularizer = L2(reg)
    optimizer = SGD(step_size)
    params = net.parameters()
    weights = [(p, g) for layer, name, p, g in params if isinstance(layer, Linear) and name == "W"]
    pairs = [(p, g) for _, _, p, g in params]
    history = np.empty(steps)
    data_history = np.empty(steps)
    t0 = time.perf_counter()
    for i in range(steps):
        scores = net._forward(X)
        data_loss = loss._forward(scores, y) if hasattr(loss, "_forward") else loss(scores, y)
        net._backward(loss.backward())
        reg_loss = 0.0
        for W, dW in weights:
            reg_loss += regularizer.penalty_and_grad(W, dW)
        optimizer.step(pairs)
        total = data_loss + reg_loss
        history[i] = total
        data_history[i] = data_loss
        if log_every and i % log_every == 0:
            log(f"iteration {i}: loss {total:f}")
        if callback is not None:
            callback(i, total)
    seconds = time.perf_counter() - t0
    return History(loss=history, data_loss=data_history, seconds=seconds, steps=steps)
