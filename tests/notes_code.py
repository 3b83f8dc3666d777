"""The notes' own NumPy code (case study and optimization notes), rewritten for Python 3:
the reference fastnn's results are compared with."""
import numpy as np


def spiral_data(seed=0, N=100, D=2, K=3):
    """The notes' data generation, from the legacy global-state stream."""
    rs = np.random.RandomState(seed)
    X = np.zeros((N * K, D))
    y = np.zeros(N * K, dtype="uint8")
    for j in range(K):
        ix = range(N * j, N * (j + 1))
        r = np.linspace(0.0, 1, N)
        t = np.linspace(j * 4, (j + 1) * 4, N) + rs.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y, rs


def two_layer_losses(X, y, W, b, W2, b2, steps, step_size=1.0, reg=1e-3):
    """The case study's 2-layer training loop; returns the loss of every step."""
    W, b, W2, b2 = (a.copy() for a in (W, b.reshape(1, -1), W2, b2.reshape(1, -1)))
    num_examples = X.shape[0]
    losses = np.empty(steps)
    for i in range(steps):
        hidden_layer = np.maximum(0, np.dot(X, W) + b)
        scores = np.dot(hidden_layer, W2) + b2
        exp_scores = np.exp(scores)
        probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
        correct_logprobs = -np.log(probs[range(num_examples), y])
        data_loss = np.sum(correct_logprobs) / num_examples
        reg_loss = 0.5 * reg * np.sum(W * W) + 0.5 * reg * np.sum(W2 * W2)
        losses[i] = data_loss + reg_loss
        dscores = probs
        dscores[range(num_examples), y] -= 1
        dscores /= num_examples
        dW2 = np.dot(hidden_layer.T, dscores)
        db2 = np.sum(dscores, axis=0, keepdims=True)
        dhidden = np.dot(dscores, W2.T)
        dhidden[hidden_layer <= 0] = 0
        dW = np.dot(X.T, dhidden)
        db = np.sum(dhidden, axis=0, keepdims=True)
        dW2 += reg * W2
        dW += reg * W
        W += -step_size * dW
        b += -step_size * db
        W2 += -step_size * dW2
        b2 += -step_size * db2
    return losses


def linear_losses(X, y, W, b, steps, step_size=1.0, reg=1e-3):
    """The case study's softmax linear classifier loop."""
    W, b = W.copy(), b.reshape(1, -1).copy()
    num_examples = X.shape[0]
    losses = np.empty(steps)
    for i in range(steps):
        scores = np.dot(X, W) + b
        exp_scores = np.exp(scores)
        probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
        correct_logprobs = -np.log(probs[range(num_examples), y])
        losses[i] = np.sum(correct_logprobs) / num_examples + 0.5 * reg * np.sum(W * W)
        dscores = probs
        dscores[range(num_examples), y] -= 1
        dscores /= num_examples
        dW = np.dot(X.T, dscores) + reg * W
        db = np.sum(dscores, axis=0, keepdims=True)
        W += -step_size * dW
        b += -step_size * db
    return losses


def eval_numerical_gradient(f, x, h=0.00001):
    """The optimization notes' forward-difference gradient."""
    fx = f(x)
    grad = np.zeros(x.shape)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old_value = x[ix]
        x[ix] = old_value + h
        fxh = f(x)
        x[ix] = old_value
        grad[ix] = (fxh - fx) / h
        it.iternext()
    return grad
