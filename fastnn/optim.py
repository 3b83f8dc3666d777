"""Parameter updates, in place on the layers' own arrays."""
from . import _kernels, config
from ._validation import check_scalar


class SGD:
    """Vanilla gradient descent: ``param -= step_size * grad`` (the notes' update)."""

    def __init__(self, step_size=1.0):
        self.step_size = check_scalar(step_size, "step_size", low=0.0, low_open=True)

    def step(self, params_and_grads):
        """Update every (param, grad) pair in place."""
        update = _kernels.backend().sgd_update
        for param, grad in params_and_grads:
            update(param, grad, self.step_size, config._n_threads)

    def __repr__(self):
        return f"SGD(step_size={self.step_size})"
