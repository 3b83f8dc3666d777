"""Losses: the mean data loss over a batch and its gradient on the scores."""
import numpy as np

from . import _kernels, config
from ._validation import check_array, check_labels, float_dtype
from .layers import BatchBuffers


class SoftmaxCrossEntropy:
    """Softmax classifier loss: L = mean_i [ -log softmax(s_i)[y_i] ].

    ``forward(scores, y)`` returns the mean loss (a float) and, in the same compiled
    pass, computes ``dscores`` = dL/dscores, returned by ``backward()``; both are
    buffers owned by the loss.  scores (N, K) float32/float64, y (N,) integer labels in
    [0, K).
    """

    def __init__(self, dtype=np.float64):
        self.dtype = float_dtype(dtype)
        self._buffers = BatchBuffers(self.dtype)
        self.dscores = None
        self.row_loss = None

    def forward(self, scores, y):
        scores = check_array(scores, "scores", ndim=2, dtype=self.dtype)
        y = check_labels(y, "y", n_samples=scores.shape[0], n_classes=scores.shape[1])
        return self._forward(scores, y)

    __call__ = forward

    def _forward(self, scores, y):
        n, k = scores.shape
        self.dscores = self._buffers.get("dscores", n, (k,))
        self.row_loss = self._buffers.get("row_loss", n, ())
        return _kernels.backend().softmax_cross_entropy(scores, y, self.dscores,
                                                        self.row_loss, config._n_threads)

    def backward(self):
        """dL/dscores of the last forward, shape (N, K)."""
        if self.dscores is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        return self.dscores

    def __repr__(self):
        return "SoftmaxCrossEntropy()"
