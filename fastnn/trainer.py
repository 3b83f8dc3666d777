"""Training loops: the notes' full-batch gradient descent."""
import time
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_array, check_positive_int, check_scalar
from .optim import SGD
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
    """Full-batch gradient descent, as in the notes' case study.

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
    X = check_array(X, "X", ndim=2, n_cols=net.n_features, dtype=net.dtype)
    # Each loss validates its own targets (class labels, +-1 attributes, regression
    # values) against the shape of what the net produces: an evaluation-mode forward,
    # which draws no dropout mask and leaves batch-norm statistics alone.
    y = loss._check_y(y, net._eval_forward(X, check=False))
    if reg is not None and regularizer is not None:
        raise ValueError("give reg (an L2 strength) or regularizer, not both")
    if regularizer is None:
        regularizer = L2(1e-3 if reg is None else check_scalar(reg, "reg", low=0.0))
    else:
        regularizer = get_regularizer(regularizer, "regularizer")
    penalized, constrained = _regularized(net, regularizer)
    optimizer = SGD(step_size)
    pairs = [(p, g) for _, _, p, g in net.parameters()]
    # A loss with parameters of its own (HierarchicalSoftmax) is trained with the net;
    # its weights are not regularized.
    loss_params = getattr(loss, "params", None)
    if loss_params:
        pairs += [(loss.params[name], loss.grads[name]) for name in loss_params]
    history = np.empty(steps)
    data_history = np.empty(steps)
    bar = _progress_bar(steps) if progress else None
    t0 = time.perf_counter()
    for i in range(steps):
        scores = net._forward(X)
        data_loss = loss._forward(scores, y)
        net._backward(loss.backward())
        reg_loss = 0.0
        for r, W, dW in penalized:
            reg_loss += r.penalty_and_grad(W, dW)
        optimizer.step(pairs)
        for r, W in constrained:
            r.constrain(W)
        total = data_loss + reg_loss
        history[i] = total
        data_history[i] = data_loss
        if log_every and i % log_every == 0:
            log(f"iteration {i}: loss {total:f}")
        if callback is not None:
            callback(i, total)
        if bar is not None:
            bar.update(1)
            if i % 100 == 0:
                bar.set_postfix(loss=f"{total:.4f}", refresh=False)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return History(loss=history, data_loss=data_history, seconds=seconds, steps=steps)


def _regularized(net, regularizer):
    """What a step regularizes: ([(regularizer, param, grad)] for the penalties,
    [(regularizer, W)] for the constraints), from the global regularizer and each
    layer's ``regularizer`` / ``regularize_bias``.  Every layer with a weight matrix
    ``W`` (Linear, Maxout) is regularized; gains and shifts (BatchNorm, PReLU) are not."""
    penalized, constrained = [], []
    for layer in net.layers:
        params = layer.params
        if "W" not in params:
            continue
        r = getattr(layer, "regularizer", None)
        r = regularizer if r is None else r
        if r.has_penalty:
            penalized.append((r, layer.W, layer.dW))
            if getattr(layer, "regularize_bias", False):
                penalized.append((r, layer.b, layer.db))
        if r.has_constraint:
            constrained.append((r, layer.W))
    return penalized, constrained


def _progress_bar(steps):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install 'fastnn[progress]'") from None
    return tqdm(total=steps, unit="step")
