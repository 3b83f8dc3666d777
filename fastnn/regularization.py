"""Weight penalties added to the data loss."""
from . import _kernels
from ._validation import check_scalar


class L2:
    """L2 regularization as the notes define it: ``0.5 * reg * sum(W**2)``, gradient
    ``reg * W`` (the 0.5 makes the gradient that simple).  Biases are not penalized."""

    def __init__(self, reg=1e-3):
        self.reg = check_scalar(reg, "reg", low=0.0)

    def penalty_and_grad(self, W, dW):
        """Return the penalty of W and add its gradient to dW, in one compiled pass."""
        if self.reg == 0.0:
            return 0.0
        return _kernels.backend().l2_penalty(W, dW, self.reg)

    def __repr__(self):
        return f"L2(reg={self.reg})"
