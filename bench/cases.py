"""The benchmark cases, shared by compare.py and the pytest-benchmark suites.

A :class:`Case` is one workload (the spiral training step, affine+ReLU, ...) with a list
of :class:`Candidate` implementations of it: fastnn's and its peers' (the notes' NumPy,
PyTorch, scikit-learn).  A candidate is built lazily by ``make()``, which allocates its
inputs and state and returns ``run(n)``: do ``n`` units of work (``n`` training steps,
``n`` forward+backward passes, ...) and return the last unit's result.  ``Case.verify``
builds a fresh candidate and a fresh reference, runs one check unit of each and measures
how far apart they are, so every timed implementation is also shown to compute the same
thing.

Peers are optional: torch and scikit-learn candidates exist only when importable
(:data:`MISSING` says why one is not).
"""
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _use_source_tree():
    """Import fastnn from this checkout when it has been built in place (the developer's
    loop: ``setup.py build_ext --inplace``); otherwise whatever ``import fastnn`` finds
    (an installed copy).  compare.py prints which one it measured."""
    if any((ROOT / "fastnn").glob("_affine*.so")) or any((ROOT / "fastnn").glob("_affine*.pyd")):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))


_use_source_tree()
# The notes' own loops live with the tests; appended, so nothing there shadows a package.
if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))

import fastnn  # noqa: E402
from fastnn import _kernels, case_study, gradcheck  # noqa: E402
from fastnn.losses import SoftmaxCrossEntropy  # noqa: E402
from fastnn.trainer import gradient_descent  # noqa: E402

import notes_code  # noqa: E402  (tests/notes_code.py: the notes' NumPy, verbatim in spirit)

MISSING = {}
try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # optional peer
    torch = F = None
    MISSING["torch"] = str(exc)
try:
    from sklearn.neural_network import MLPClassifier
except ImportError as exc:  # optional peer
    MLPClassifier = None
    MISSING["sklearn"] = str(exc)

HAVE = {"fastnn": True, "numpy": True, "torch": torch is not None,
        "sklearn": MLPClassifier is not None}

STEP_SIZE = 1.0
REG = 1e-3


def compiled():
    """fastnn's compiled kernel set; a benchmark of the NumPy fallback would be moot."""
    if _kernels.COMPILED is None:
        raise RuntimeError("fastnn's compiled kernels are not importable ("
                           f"{_kernels.COMPILED_IMPORT_ERROR}); build them first: "
                           "python setup.py build_ext --inplace")
    return _kernels.COMPILED


def set_threads(n):
    """One thread count for everyone: fastnn's OpenMP kernels, every BLAS pool loaded
    (numpy's and scipy's OpenBLAS, through threadpoolctl) and torch's.

    fastnn.set_num_threads changes fastnn's kernels only (it leaves BLAS alone since the
    thread setting became per call), so the BLAS pools are limited here: without it
    ``--threads 1`` left numpy's OpenBLAS on every core."""
    from threadpoolctl import threadpool_limits
    fastnn.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
    if torch is not None:
        torch.set_num_threads(n)


@dataclass
class Candidate:
    name: str            # short id, used by pytest ids and --json
    label: str           # what the table prints
    kind: str            # "fastnn" (the case's baseline is the first one), "fastnn-variant"
    #                      (another fastnn path: listed in the summary), "numpy", "torch",
    #                      "jax" or "sklearn"
    make: callable       # () -> run(n)
    versus: str = None   # the fastnn candidate its ratio is taken against (None: the case's)
    check: bool = True   # whether verify() compares it with the reference
    reference: str = None  # its own reference candidate (None: the case's)
    inner_share: float = 1.0  # its units per timed call, as a share of the case's inner
    #                           (slow peers need fewer units to be timed well)


@dataclass
class Case:
    key: str             # "spiral-f64", "affine", ...
    title: str
    unit: str            # "us" or "ms": per one unit of work
    inner: int           # units per timed call (compare.py)
    reps: int            # timed calls per candidate (compare.py, default run)
    quick_reps: int
    candidates: list
    reference: str = None        # candidate whose result defines "correct" (None: check alone)
    compare: callable = None     # (result, reference_result or None) -> error (float)
    tol: dict = field(default_factory=dict)   # error tolerance by candidate name
    quick_inner: int = None
    check_units: int = 1         # units each side runs before verify() compares them
    steps_per_unit: int = 1      # the table reports per step: a unit may be an epoch
    per: str = None              # what one reported unit is ("step", "call", ...)
    derived: callable = None     # (stats by name) -> [(label, of medians, of mins)]
    _built: dict = field(default_factory=dict, repr=False)

    def __getitem__(self, name):
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(f"{self.key} has no candidate {name!r}; it has "
                       f"{[c.name for c in self.candidates]}")

    def baseline(self, cand):
        """The fastnn candidate a candidate's ratio is taken against."""
        if cand.versus is not None:
            return self[cand.versus]
        return next(c for c in self.candidates if c.kind == "fastnn")

    def reference_for(self, name):
        """Name of the candidate whose result ``name`` is checked against (None: the
        check needs no reference)."""
        return self[name].reference or self.reference

    def runner(self, name):
        """The (cached) run(n) of a candidate."""
        if name not in self._built:
            self._built[name] = self[name].make()
        return self._built[name]

    def verify(self, name, units=None):
        """Error of a fresh candidate's result against a fresh reference (None when
        the candidate is not checked), after ``units`` units of each (default
        ``check_units``).  A candidate's tolerance is ``tol[name]``."""
        cand = self[name]
        units = self.check_units if units is None else units
        if not cand.check or self.compare is None:
            return None
        ref_name = self.reference_for(name)
        if ref_name == name:
            return 0.0
        got = cand.make()(units)
        ref = self[ref_name].make()(units) if ref_name else None
        return float(self.compare(got, ref))


def _normwise(a, b):
    """max |a - b| / max |b|: how far a result is from the reference, in units of the
    reference's scale (element-wise relative error is meaningless for values near 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0))


def _np(t):
    return t.detach().numpy() if torch is not None and isinstance(t, torch.Tensor) else t


def _many(results, ref):
    return max(_normwise(_np(a), _np(b)) for a, b in zip(results, ref))


# ---------------------------------------------------------------------------------------
# a. the spiral case study's training step
# ---------------------------------------------------------------------------------------
def spiral_problem(dtype):
    """The notes' data (seed 0) and the case study's initial weights, in ``dtype``:
    X (300, 2), y (300,) intp, [W (2, 100), b (100,), W2 (100, 3), b2 (3,)]."""
    X, y, rs = notes_code.spiral_data(seed=0)
    net = case_study.two_layer_net(2, 100, 3, seed=rs, dtype=dtype)
    init = [p.copy() for _, _, p, _ in net.parameters()]
    return X.astype(dtype), y.astype(np.intp), init


def _spiral_fastnn(dtype):
    def make():
        X, y, init = spiral_problem(dtype)
        net = case_study.two_layer_net(2, 100, 3, seed=0, dtype=dtype)
        for (_, _, p, _), v in zip(net.parameters(), init):
            p[...] = v
        loss = SoftmaxCrossEntropy(dtype=dtype)

        def run(n):
            return gradient_descent(net, loss, X, y, steps=n, step_size=STEP_SIZE,
                                    reg=REG).loss[-1]
        return run
    return make


def _spiral_notes(dtype):
    def make():
        X, y, (W, b, W2, b2) = spiral_problem(dtype)

        def run(n):
            # the notes' loop restarts from the initial weights on every call (it copies
            # them: 603 numbers, nothing next to n steps)
            return notes_code.two_layer_losses(X, y, W, b, W2, b2, steps=n,
                                               step_size=STEP_SIZE, reg=REG)[-1]
        return run
    return make


def _spiral_torch_manual(dtype):
    """PyTorch eager with the backward pass written out, as the notes write it."""
    def make():
        X, y, init = spiral_problem(dtype)
        Xt = torch.from_numpy(X)
        n_ex = X.shape[0]
        yi = torch.from_numpy(y.astype(np.int64))[:, None]
        onehot = torch.zeros(n_ex, 3, dtype=Xt.dtype).scatter_(1, yi, 1.0)
        W, b, W2, b2 = (torch.tensor(a) for a in init)

        def run(n):
            with torch.no_grad():
                for _ in range(n):
                    h = torch.addmm(b, Xt, W).clamp_(min=0)
                    s = torch.addmm(b2, h, W2)
                    p = torch.softmax(s, dim=1)
                    loss = (-p.gather(1, yi).log().mean()
                            + 0.5 * REG * ((W * W).sum() + (W2 * W2).sum()))
                    dscores = p.sub_(onehot).div_(n_ex)
                    dW2 = h.t() @ dscores
                    db2 = dscores.sum(0)
                    dh = (dscores @ W2.t()).mul_(h > 0)
                    dW = Xt.t() @ dh
                    db = dh.sum(0)
                    dW2.add_(W2, alpha=REG)
                    dW.add_(W, alpha=REG)
                    W.add_(dW, alpha=-STEP_SIZE)
                    b.add_(db, alpha=-STEP_SIZE)
                    W2.add_(dW2, alpha=-STEP_SIZE)
                    b2.add_(db2, alpha=-STEP_SIZE)
            return float(loss)
        return run
    return make


def _spiral_torch_autograd(dtype):
    """PyTorch eager, autograd and F.cross_entropy, plain SGD update in place."""
    def make():
        X, y, init = spiral_problem(dtype)
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.astype(np.int64))
        params = [torch.tensor(a, requires_grad=True) for a in init]
        W, b, W2, b2 = params

        def run(n):
            for _ in range(n):
                s = torch.addmm(b2, torch.relu(torch.addmm(b, Xt, W)), W2)
                loss = F.cross_entropy(s, yt) + 0.5 * REG * ((W * W).sum() + (W2 * W2).sum())
                loss.backward()
                with torch.no_grad():
                    for p in params:
                        p.add_(p.grad, alpha=-STEP_SIZE)
                        p.grad = None
            return loss.item()
        return run
    return make


def _spiral_sklearn(dtype):
    """MLPClassifier with the case study's settings: plain SGD (no momentum), step size
    1, one batch of all 300 rows, so one partial_fit epoch is one gradient step.  Its own
    (Glorot) initialization and its own L2 scaling, so it is timed, not compared."""
    def make():
        from sklearn.exceptions import ConvergenceWarning
        X, y, _ = spiral_problem(dtype)
        clf = MLPClassifier(hidden_layer_sizes=(100,), activation="relu", solver="sgd",
                            alpha=REG, batch_size=X.shape[0], learning_rate="constant",
                            learning_rate_init=STEP_SIZE, momentum=0.0,
                            nesterovs_momentum=False, shuffle=False, max_iter=1,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, y, classes=np.arange(3))

        def run(n):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for _ in range(n):
                    clf.partial_fit(X, y)
            return clf.loss_
        return run
    return make


def spiral_case(dtype=np.float64):
    dtype = np.dtype(dtype)
    tag = "f64" if dtype == np.float64 else "f32"
    cands = [
        Candidate("fastnn", "fastnn gradient_descent", "fastnn", _spiral_fastnn(dtype)),
        Candidate("notes", "notes' NumPy loop", "numpy", _spiral_notes(dtype)),
    ]
    if HAVE["torch"]:
        cands += [
            Candidate("torch_manual", "torch eager, hand-written backward", "torch",
                      _spiral_torch_manual(dtype)),
            Candidate("torch_autograd", "torch eager, autograd", "torch",
                      _spiral_torch_autograd(dtype)),
        ]
    if HAVE["sklearn"]:
        cands.append(Candidate("sklearn", "sklearn MLPClassifier, 1 full-batch epoch",
                               "sklearn", _spiral_sklearn(dtype), check=False))
    # Same math from the same weights: after 5 steps the losses agree to rounding
    # (float32 keeps ~7 digits; the summation orders differ).
    tol = 1e-10 if dtype == np.float64 else 1e-5
    return Case(
        key=f"spiral-{tag}",
        title=f"a. spiral training step: 300x2 -> 100 ReLU -> 3, full batch, {dtype.name}",
        unit="us", inner=50, reps=30, quick_reps=10, quick_inner=20,
        candidates=cands, reference="notes",
        compare=lambda got, ref: abs(got - ref) / abs(ref),
        tol={c.name: tol for c in cands})


# ---------------------------------------------------------------------------------------
# b. affine + ReLU forward and backward, GEMM-bound
# ---------------------------------------------------------------------------------------
AFFINE_SHAPE = (256, 1024, 1024)     # N, D, H


def affine_problem(dtype=np.float32, shape=AFFINE_SHAPE):
    """x (N, D), W (D, H), b (H,), dout (N, H), seeded."""
    n, d, h = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(dtype)
    W = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(dtype)
    b = (0.1 * rng.standard_normal(h)).astype(dtype)
    dout = rng.standard_normal((n, h)).astype(dtype)
    return x, W, b, dout


def _affine_fastnn(dtype, shape):
    def make():
        K = compiled()
        x, W, b, dout = affine_problem(dtype, shape)
        n, d, h = shape
        out, dz, dx = np.empty((n, h), dtype), np.empty((n, h), dtype), np.empty((n, d), dtype)
        dW, db = np.empty((d, h), dtype), np.empty(h, dtype)
        nt = fastnn.get_num_threads()

        def run(k):
            for _ in range(k):
                K.affine_forward(x, W, b, out, 1, 0.0, nt)
                K.affine_backward(dout, x, W, out, dz, dx, dW, db, 1, 0.0, nt)
            return out, dW, db, dx
        return run
    return make


def _affine_notes(dtype, shape):
    def make():
        x, W, b, dout = affine_problem(dtype, shape)
        # the notes mask the freshly computed upstream gradient in place
        # (dhidden[hidden_layer <= 0] = 0); masking our own copy of dout in place does
        # the same work and, since the mask is the same every time, the same numbers
        dhidden = dout.copy()

        def run(k):
            for _ in range(k):
                hidden = np.maximum(0, np.dot(x, W) + b)
                dhidden[hidden <= 0] = 0
                dW = np.dot(x.T, dhidden)
                db = np.sum(dhidden, axis=0)
                dx = np.dot(dhidden, W.T)
            return hidden, dW, db, dx
        return run
    return make


def _affine_gemms(dtype, shape):
    """The three matrix products alone, into preallocated outputs: the floor."""
    def make():
        x, W, b, dout = affine_problem(dtype, shape)
        n, d, h = shape
        dz = dout * (np.maximum(0, x @ W + b) > 0)
        out, dx, dW = np.empty((n, h), dtype), np.empty((n, d), dtype), np.empty((d, h), dtype)
        xT, WT = x.T, W.T

        def run(k):
            for _ in range(k):
                np.matmul(x, W, out=out)
                np.matmul(xT, dz, out=dW)
                np.matmul(dz, WT, out=dx)
            return out, dW, dx      # out lacks bias and ReLU: timed, not compared
        return run
    return make


def _affine_torch_manual(dtype, shape):
    def make():
        x, W, b, dout = (torch.from_numpy(a) for a in affine_problem(dtype, shape))

        def run(k):
            with torch.no_grad():
                for _ in range(k):
                    hidden = torch.addmm(b, x, W).clamp_(min=0)
                    dz = dout * (hidden > 0)
                    dW = x.t() @ dz
                    db = dz.sum(0)
                    dx = dz @ W.t()
            return hidden, dW, db, dx
        return run
    return make


def _affine_torch_autograd(dtype, shape):
    def make():
        x, W, b, dout = (torch.from_numpy(a) for a in affine_problem(dtype, shape))
        x, W, b = (t.clone().requires_grad_() for t in (x, W, b))

        def run(k):
            for _ in range(k):
                for t in (x, W, b):
                    t.grad = None
                hidden = torch.relu(torch.addmm(b, x, W))
                hidden.backward(dout)
            return hidden, W.grad, b.grad, x.grad
        return run
    return make


def affine_case(dtype=np.float32, shape=AFFINE_SHAPE):
    args = (np.dtype(dtype), tuple(shape))
    cands = [
        Candidate("fastnn", "fastnn fused kernels (preallocated)", "fastnn",
                  _affine_fastnn(*args)),
        Candidate("notes", "notes-style NumPy", "numpy", _affine_notes(*args)),
        Candidate("gemms", "its 3 GEMMs alone (np.matmul out=)", "numpy",
                  _affine_gemms(*args)),
    ]
    if HAVE["torch"]:
        cands += [
            Candidate("torch_manual", "torch eager, hand-written backward", "torch",
                      _affine_torch_manual(*args)),
            Candidate("torch_autograd", "torch eager, autograd", "torch",
                      _affine_torch_autograd(*args)),
        ]

    n, d, h = shape
    # float32 GEMMs of length 1024 summed in different orders (BLAS blocking, MKL vs
    # OpenBLAS): a few ulp times sqrt(length) relative to the output's scale.
    tol = {c.name: (1e-4 if args[0] == np.float32 else 1e-12) for c in cands}
    case = Case(
        key="affine",
        title=f"b. affine+ReLU forward+backward: x {n}x{d} @ W {d}x{h}, {args[0].name}",
        unit="ms", inner=2, reps=25, quick_reps=8, quick_inner=1, candidates=cands,
        reference="notes", compare=_many, tol=tol)
    case["gemms"].check = False
    case.derived = lambda st: [
        ("fastnn / its 3 GEMMs alone (the fused epilogues' cost, aim <= 1.05)",
         st["fastnn"]["median"] / st["gemms"]["median"], st["fastnn"]["min"] / st["gemms"]["min"])]
    return case


# ---------------------------------------------------------------------------------------
# c. softmax cross-entropy, loss and gradient
# ---------------------------------------------------------------------------------------
SOFTMAX_SHAPE = (4096, 1000)


def softmax_problem(dtype=np.float32, shape=SOFTMAX_SHAPE):
    n, k = shape
    rng = np.random.default_rng(1)
    scores = (2.0 * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, size=n).astype(np.intp)
    return scores, y


def _softmax_fastnn(dtype, shape):
    def make():
        K = compiled()
        scores, y = softmax_problem(dtype, shape)
        dscores, row_loss = np.empty_like(scores), np.empty(shape[0], dtype)
        nt = fastnn.get_num_threads()

        def run(k):
            for _ in range(k):
                loss = K.softmax_cross_entropy(scores, y, dscores, row_loss, nt)
            return loss, dscores
        return run
    return make


def _softmax_notes(dtype, shape):
    """The case study's loss and dscores, line for line (no max subtraction: scores of
    this scale cannot overflow)."""
    def make():
        scores, y = softmax_problem(dtype, shape)
        num_examples = scores.shape[0]

        def run(k):
            for _ in range(k):
                exp_scores = np.exp(scores)
                probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
                correct_logprobs = -np.log(probs[range(num_examples), y])
                loss = np.sum(correct_logprobs) / num_examples
                dscores = probs
                dscores[range(num_examples), y] -= 1
                dscores /= num_examples
            return loss, dscores
        return run
    return make


def _softmax_torch_manual(dtype, shape):
    def make():
        s, y = softmax_problem(dtype, shape)
        s = torch.from_numpy(s)
        yt = torch.from_numpy(y.astype(np.int64))
        ar = torch.arange(s.shape[0])
        n = s.shape[0]

        def run(k):
            for _ in range(k):
                p = torch.softmax(s, dim=1)
                loss = -p[ar, yt].log().mean()
                p[ar, yt] -= 1
                p /= n
            return float(loss), p
        return run
    return make


def _softmax_torch_autograd(dtype, shape):
    def make():
        s, y = softmax_problem(dtype, shape)
        s = torch.from_numpy(s).clone().requires_grad_()
        yt = torch.from_numpy(y.astype(np.int64))

        def run(k):
            for _ in range(k):
                s.grad = None
                loss = F.cross_entropy(s, yt)
                loss.backward()
            return loss.item(), s.grad
        return run
    return make


def softmax_case(dtype=np.float32, shape=SOFTMAX_SHAPE):
    args = (np.dtype(dtype), tuple(shape))
    cands = [
        Candidate("fastnn", "fastnn fused kernel", "fastnn", _softmax_fastnn(*args)),
        Candidate("notes", "notes' NumPy (exp, normalize, -log, dscores)", "numpy",
                  _softmax_notes(*args)),
    ]
    if HAVE["torch"]:
        cands += [
            Candidate("torch_manual", "torch, hand-written (softmax, gather, -1, /N)",
                      "torch", _softmax_torch_manual(*args)),
            Candidate("torch_autograd", "torch F.cross_entropy + autograd", "torch",
                      _softmax_torch_autograd(*args)),
        ]
    n, k = shape
    tol = {c.name: (1e-5 if args[0] == np.float32 else 1e-12) for c in cands}
    return Case(
        key="softmax",
        title=f"c. softmax cross-entropy forward+backward: {n}x{k}, {args[0].name}",
        unit="ms", inner=2, reps=25, quick_reps=8, quick_inner=1, candidates=cands,
        reference="notes", compare=lambda got, ref: max(
            abs(got[0] - ref[0]) / abs(ref[0]), _normwise(_np(got[1]), ref[1])),
        tol=tol)


# ---------------------------------------------------------------------------------------
# d. inverted dropout: mask + apply forward, backward
# ---------------------------------------------------------------------------------------
DROPOUT_SHAPE = (4096, 1024)
DROPOUT_P = 0.5      # probability of keeping a unit (the notes' p)


def dropout_problem(dtype=np.float32, shape=DROPOUT_SHAPE):
    rng = np.random.default_rng(2)
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _dropout_fastnn(dtype, shape, p):
    def make():
        K = compiled()
        x, dout = dropout_problem(dtype, shape)
        out, dx = np.empty_like(x), np.empty_like(x)
        mask = np.empty(shape, np.uint8)
        nt = fastnn.get_num_threads()
        state = {"step": 0}

        def run(k):
            for _ in range(k):
                K.dropout_forward(x, out, mask, p, 12345, state["step"], nt)
                state["step"] += 1      # a new mask every time, as the peers draw one
                K.dropout_backward(dout, mask, dx, p, nt)
            return x, dout, out, dx
        return run
    return make


def _dropout_numpy(dtype, shape, p, legacy):
    """The notes' inverted dropout: U = (rand(*H.shape) < p) / p; H *= U, and the same
    U on the way back.  ``H *= U`` is written as multiply(..., out=) into a buffer so
    that x survives for the next repetition; the float64 U is the notes' own."""
    def make():
        x, dout = dropout_problem(dtype, shape)
        out, dx = np.empty_like(x), np.empty_like(x)
        rng = np.random.default_rng(3)
        if legacy:
            np.random.seed(3)

        def run(k):
            for _ in range(k):
                if legacy:
                    U = (np.random.rand(*x.shape) < p) / p
                else:
                    U = (rng.random(x.shape) < p) / p
                np.multiply(x, U, out=out, casting="same_kind")
                np.multiply(dout, U, out=dx, casting="same_kind")
            return x, dout, out, dx
        return run
    return make


def _dropout_torch_manual(dtype, shape, p):
    def make():
        x, dout = (torch.from_numpy(a) for a in dropout_problem(dtype, shape))
        torch.manual_seed(3)

        def run(k):
            for _ in range(k):
                U = (torch.rand_like(x) < p).to(x.dtype).div_(p)
                out = x * U
                dx = dout * U
            return x, dout, out, dx
        return run
    return make


def _dropout_torch_functional(dtype, shape, p):
    def make():
        x, dout = (torch.from_numpy(a) for a in dropout_problem(dtype, shape))
        xg = x.clone().requires_grad_()
        torch.manual_seed(3)

        def run(k):
            for _ in range(k):
                xg.grad = None
                out = F.dropout(xg, p=1.0 - p, training=True)   # torch's p: drop probability
                out.backward(dout)
            return x, dout, out, xg.grad
        return run
    return make


def dropout_check(result, p=DROPOUT_P):
    """No reference (every generator draws its own mask): check what any correct
    inverted dropout must satisfy.  Returns the largest of: |kept fraction - p| and the
    normwise errors of out vs x * keep / p and of dx vs dout * keep / p, with keep read
    off out != 0 (x is Gaussian, so x == 0 has probability 0)."""
    x, dout, out, dx = (np.asarray(_np(a), dtype=np.float64) for a in result)
    keep = out != 0
    return max(abs(keep.mean() - p), _normwise(out, x * keep / p),
               _normwise(dx, dout * keep / p))


def dropout_case(dtype=np.float32, shape=DROPOUT_SHAPE, p=DROPOUT_P):
    args = (np.dtype(dtype), tuple(shape), p)
    cands = [
        Candidate("fastnn", "fastnn kernels (counter-based RNG)", "fastnn",
                  _dropout_fastnn(*args)),
        Candidate("numpy_generator", "NumPy Generator: (rng.random(shape) < p) / p",
                  "numpy", _dropout_numpy(*args, legacy=False)),
        Candidate("numpy_legacy", "NumPy legacy: (np.random.rand(*shape) < p) / p",
                  "numpy", _dropout_numpy(*args, legacy=True)),
    ]
    if HAVE["torch"]:
        cands += [
            Candidate("torch_manual", "torch, hand-written (rand_like < p) / p", "torch",
                      _dropout_torch_manual(*args)),
            Candidate("torch_functional", "torch F.dropout + autograd", "torch",
                      _dropout_torch_functional(*args)),
        ]
    n, k = shape
    # kept fraction of 4M Bernoulli(0.5) draws: standard deviation 2.5e-4, so 2e-3 is
    # eight sigma; out and dx are exact up to the float32 rounding of 1/p products.
    return Case(
        key="dropout",
        title=f"d. inverted dropout forward (mask+apply) + backward: {n}x{k}, "
              f"{args[0].name}, p={p}",
        unit="ms", inner=1, reps=15, quick_reps=5, candidates=cands,
        reference=None, compare=lambda got, ref: dropout_check(got, p),
        tol={c.name: 2e-3 for c in cands})


# ---------------------------------------------------------------------------------------
# e. numerical gradient of the spiral net
# ---------------------------------------------------------------------------------------
def eval_numerical_gradient_centered(f, x, h=0.00001):
    """The notes' eval_numerical_gradient (tests/notes_code.py) with the centered
    difference (f(x + h) - f(x - h)) / 2h the notes recommend; same nditer loop."""
    grad = np.zeros(x.shape)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old_value = x[ix]
        x[ix] = old_value + h
        fxph = f(x)
        x[ix] = old_value - h
        fxmh = f(x)
        x[ix] = old_value
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def numgrad_problem(numpy_loss=False):
    """The spiral 2-layer net in float64 after 200 training steps (so its gradient is
    not the near-symmetric one at initialization), its data loss as a callable f(_) that
    reads the net's parameters (the gradient loops perturb them in place), the four
    parameter arrays and the analytic gradient there.

    numpy_loss: f computes the loss with the notes' NumPy forward pass instead of
    fastnn's net (the notes' whole pipeline, for scale)."""
    X, y, init = spiral_problem(np.float64)
    net = case_study.two_layer_net(2, 100, 3, seed=0)
    for (_, _, p, _), v in zip(net.parameters(), init):
        p[...] = v
    loss = SoftmaxCrossEntropy()
    gradient_descent(net, loss, X, y, steps=200, step_size=STEP_SIZE, reg=REG)
    params = [p for _, _, p, _ in net.parameters()]

    if numpy_loss:
        W, b, W2, b2 = params
        num_examples = X.shape[0]

        def f(_):
            hidden_layer = np.maximum(0, np.dot(X, W) + b)
            scores = np.dot(hidden_layer, W2) + b2
            exp_scores = np.exp(scores)
            probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
            return np.sum(-np.log(probs[range(num_examples), y])) / num_examples
    else:
        def f(_):
            return loss._forward(net._forward(X), y)

    loss._forward(net._forward(X), y)
    net._backward(loss.backward())
    analytic = [g.copy() for _, _, _, g in net.parameters()]
    return f, params, analytic


def _numgrad_candidate(which, centered, numpy_loss=False):
    def make():
        f, params, analytic = numgrad_problem(numpy_loss)

        if which == "fastnn":
            def one():
                return [gradcheck.numerical_gradient(f, p, h=1e-5, centered=centered)
                        for p in params]
        elif centered:
            def one():
                return [eval_numerical_gradient_centered(f, p) for p in params]
        else:
            def one():
                return [notes_code.eval_numerical_gradient(f, p) for p in params]

        def run(k):
            for _ in range(k):
                grads = one()
            return grads, analytic
        return run
    return make


def numgrad_check(result, reference):
    """Largest gradcheck.rel_error over the four parameter arrays between two numerical
    gradients of the same kind (same f, h and points).  Not against the analytic
    gradient: among 300 samples x 100 hidden units a few pre-activations lie within h
    of the ReLU kink, where any finite difference is off by up to a few percent."""
    return max(gradcheck.rel_error(g, r) for g, r in zip(result[0], reference[0]))


def numgrad_case():
    cands = [
        Candidate("fastnn_centered", "fastnn numerical_gradient, centered", "fastnn",
                  _numgrad_candidate("fastnn", True), reference="notes_centered"),
        Candidate("fastnn_forward", "fastnn numerical_gradient, forward", "fastnn",
                  _numgrad_candidate("fastnn", False), reference="notes_forward",
                  versus="fastnn_forward"),
        Candidate("notes_forward", "notes' eval_numerical_gradient (forward)", "numpy",
                  _numgrad_candidate("notes", False), versus="fastnn_forward",
                  reference="notes_forward"),
        Candidate("notes_centered", "notes' loop, centered differences", "numpy",
                  _numgrad_candidate("notes", True), versus="fastnn_centered",
                  reference="notes_centered"),
        Candidate("notes_forward_numpy", "notes' loop + notes' NumPy loss (forward)",
                  "numpy", _numgrad_candidate("notes", False, numpy_loss=True),
                  versus="fastnn_forward", reference="notes_forward"),
    ]
    # the same differences of the same loss values: they differ only in the divisor
    # (fastnn divides by the step as stored, x+h - (x-h), the notes by 2h exactly),
    # a relative 1e-11 or so for weights of this size
    tol = {c.name: 1e-8 for c in cands}
    # a different loss code: its rounding (~1e-16 of a loss ~0.7) over h = 1e-5 is ~1e-11
    # absolute, relative to gradient entries as small as 1e-6
    tol["notes_forward_numpy"] = 1e-4
    return Case(
        key="numgrad",
        title="e. numerical gradient of the spiral net (603 parameters, h=1e-5, float64; "
              "all but the last row call the same fastnn loss)",
        unit="ms", inner=1, reps=9, quick_reps=5, candidates=cands,
        reference=None, compare=numgrad_check, tol=tol)


# ---------------------------------------------------------------------------------------
def all_cases():
    """Every case, in the order compare.py runs them (built lazily: cheap)."""
    return [spiral_case(np.float64), spiral_case(np.float32), affine_case(), softmax_case(),
            dropout_case(), numgrad_case()]


def machine_info():
    """What the numbers were measured on: a dict (compare.py prints it)."""
    import platform
    info = fastnn.show_config(print_out=False)
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import scipy
    info.update(cpu_model=model, cpu_count=os.cpu_count(), scipy=scipy.__version__,
                fastnn_path=str(Path(fastnn.__file__).parent),
                torch=torch.__version__ if torch is not None else None,
                torch_threads=torch.get_num_threads() if torch is not None else None,
                torch_blas=(("MKL" if torch.backends.mkl.is_available() else "no MKL")
                            if torch is not None else None),
                sklearn=None, missing=dict(MISSING))
    if MLPClassifier is not None:
        import sklearn
        info["sklearn"] = sklearn.__version__
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        info["loadavg"] = None
    return info
