"""The training engine's cases (bench/engine.py, bench/test_bench_engine.py): whole
training steps run by fastnn's compiled plan (fastnn.plan) beside the per-layer path
it replaced, the notes' NumPy loop, PyTorch and JAX, and the GEMMs alone.

Same machinery as bench/cases.py: a :class:`cases.Case` holds :class:`cases.Candidate`
implementations whose ``make()`` returns ``run(n)``.  Two additions:

* ``Case.steps_per_unit``: the mini-batch cases time whole epochs (run(n) runs n
  epochs, one permutation of the rows drawn per epoch, as a training loop does), and
  report per step.
* Candidates in a **worker process** (:func:`_remote`): the same candidate built in a
  fresh Python with another import order (``import torch`` before ``import fastnn``) or
  another environment (``OMP_WAIT_POLICY=PASSIVE``).  The worker times its own calls and
  the parent interleaves it with everything else (``run.self_timed``), so the IPC is
  not on anyone's clock.

A training candidate's ``run(n)`` returns a float (the last step's loss; a checksum
for the GEMM floors, which are timed and not compared), so a worker can send it back;
the Adam update's candidates return the updated weights.
"""
import atexit
import ctypes
import glob
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import cases
from cases import Candidate, Case, REG, STEP_SIZE, spiral_problem, torch, F

from fastnn import case_study, config
from fastnn import plan as fplan
from fastnn._runtime import gemm_grid
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn.optim import SGD, Adam

HERE = Path(__file__).resolve().parent

# JAX is optional and heavy: imported on first use (never in worker processes).
_JAX = {}


def jax_modules():
    """(jax, jax.numpy, jax.lax), or None when JAX is not installed (then MISSING says
    why).  float64 needs jax_enable_x64, switched on here for the whole process: it only
    changes JAX's *default* dtypes, and every array below has an explicit one."""
    if "mods" not in _JAX:
        try:
            import jax
            jax.config.update("jax_enable_x64", True)
            import jax.numpy as jnp
            from jax import lax
            _JAX["mods"] = (jax, jnp, lax)
        except ImportError as exc:
            _JAX["mods"] = None
            cases.MISSING["jax"] = f"{exc} (pip install jax jaxlib)"
    return _JAX["mods"]


def have_jax():
    """Whether JAX is importable, without importing it."""
    import importlib.util
    ok = importlib.util.find_spec("jax") is not None and \
        importlib.util.find_spec("jaxlib") is not None
    if not ok:
        cases.MISSING["jax"] = "not installed (pip install jax jaxlib)"
    return ok


HAVE_TORCH = cases.HAVE["torch"]
HAVE_JAX = have_jax()


def _losses_buf(cache, n):
    """Preallocated (losses, data_losses) of at least n entries (a training loop keeps
    them; plan.run would otherwise allocate two arrays per call)."""
    if cache.get("n", 0) < n:
        cache["n"] = n
        cache["bufs"] = (np.empty(n), np.empty(n))
    lo, dl = cache["bufs"]
    return lo[:n], dl[:n]


def _runner(plan, n_threads):
    """run(n): n steps of a full-batch or MLP plan into reused loss buffers; the last
    step's loss (what the checks compare)."""
    kw = {} if n_threads is None else {"n_threads": n_threads}
    bufs = {}

    def run(n):
        lo, dl = _losses_buf(bufs, n)
        plan.run(n, losses=lo, data_losses=dl, **kw)
        return float(lo[n - 1])
    return run


# ---------------------------------------------------------------------------------------
# 1. the spiral full-batch step
# ---------------------------------------------------------------------------------------
def _spiral_net(dtype):
    X, y, init = spiral_problem(dtype)
    net = case_study.two_layer_net(2, 100, 3, seed=0, dtype=dtype)
    for (_, _, p, _), v in zip(net.parameters(), init):
        p[...] = v
    return net, SoftmaxCrossEntropy(dtype=dtype), X, y


def _spiral_plan(dtype, layer_path=False, n_threads=None):
    """fastnn's plan (or the per-layer path) on the case study's net and data: SGD
    step 1.0, L2 1e-3 on both W, one step per run unit; returns the last total loss."""
    def make():
        net, loss, X, y = _spiral_net(dtype)
        if layer_path:
            plan = fplan.LayerPath(net, loss, SGD(STEP_SIZE), REG, X.shape[0]).bind(X, y)
        else:
            plan = fplan.build_plan(net, loss, optimizer=SGD(STEP_SIZE), regularizer=REG,
                                    batch_size=X.shape[0]).bind(X, y)
        return _runner(plan, n_threads)
    return make


def _spiral_torch_sgd(dtype):
    """PyTorch eager as one would write it: nn.Sequential, F.cross_entropy, autograd,
    optim.SGD with the L2 as weight decay on the two weight matrices (the gradient of
    0.5*reg*|W|^2); the penalty is added to the returned loss, not to the graph."""
    def make():
        nn = torch.nn
        X, y, (W, b, W2, b2) = spiral_problem(dtype)
        model = nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 3))
        _torch_load(model, [(W, b), (W2, b2)])
        opt = _torch_sgd(model, STEP_SIZE, REG)
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.astype(np.int64))
        weights = [m.weight for m in model if isinstance(m, nn.Linear)]

        def run(n):
            for i in range(n):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(Xt), yt)
                loss.backward()
                if i == n - 1:          # the reported loss is taken before the update
                    with torch.no_grad():
                        last = loss.item() + 0.5 * REG * sum(float((w * w).sum())
                                                             for w in weights)
                opt.step()
            return last
        return run
    return make


def _torch_load(model, pairs):
    """fastnn's (W (in, out), b) into a torch nn.Sequential's Linear layers."""
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, (W, b) in zip(lins, pairs):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
    model.to(torch.from_numpy(pairs[0][0]).dtype)


def _torch_sgd(model, lr, reg):
    """optim.SGD, weight decay on the weight matrices only (as fastnn's L2)."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": reg}, {"params": biases, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr)


_JAX_TRAIN = {}


def _jax_train_fn():
    """The whole training as one jitted function: lax.fori_loop over n steps (n a traced
    argument, so every n shares one compilation) of value_and_grad + the SGD update.
    Compiled once per dtype and shape (module-level cache)."""
    if "fn" in _JAX_TRAIN:
        return _JAX_TRAIN["fn"]
    jax, jnp, lax = jax_modules()

    def loss_fn(params, X, y):
        W, b, W2, b2 = params
        h = jnp.maximum(0, X @ W + b)
        s = h @ W2 + b2
        logp = jax.nn.log_softmax(s, axis=1)
        data = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return data + 0.5 * REG * (jnp.sum(W * W) + jnp.sum(W2 * W2))

    grad_fn = jax.value_and_grad(loss_fn)

    @jax.jit
    def train(params, X, y, n):
        def body(i, carry):
            params, _ = carry
            loss, g = grad_fn(params, X, y)
            return tuple(p - STEP_SIZE * gp for p, gp in zip(params, g)), loss
        return lax.fori_loop(0, n, body, (params, jnp.zeros((), X.dtype)))

    _JAX_TRAIN["fn"] = train
    return train


def _spiral_jax(dtype):
    def make():
        jax, jnp, _ = jax_modules()
        X, y, init = spiral_problem(dtype)
        train = _jax_train_fn()
        Xj, yj = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
        state = {"params": tuple(jnp.asarray(a) for a in init)}

        def run(n):
            params, loss = train(state["params"], Xj, yj, n)
            state["params"] = params
            return float(loss)          # waits for the result
        return run
    return make


def engine_spiral_case(dtype=np.float64):
    dtype = np.dtype(dtype)
    tag = "f64" if dtype == np.float64 else "f32"
    cands = [
        Candidate("plan", "fastnn plan (100 steps per call)", "fastnn", _spiral_plan(dtype)),
        Candidate("layers", "fastnn LayerPath (per-layer, main before the plan)",
                  "fastnn-variant", _spiral_plan(dtype, layer_path=True), versus="plan",
                  inner_share=0.5),
        Candidate("notes", "notes' NumPy loop", "numpy", cases._spiral_notes(dtype),
                  inner_share=0.25),
    ]
    if HAVE_TORCH:
        cands += [
            Candidate("torch_manual", "torch eager, hand-written backward", "torch",
                      cases._spiral_torch_manual(dtype), inner_share=0.1),
            Candidate("torch_sgd", "torch eager, nn + autograd + optim.SGD", "torch",
                      _spiral_torch_sgd(dtype), inner_share=0.1),
        ]
    if HAVE_JAX:
        cands.append(Candidate("jax", "JAX jit(lax.fori_loop) of the whole training", "jax",
                               _spiral_jax(dtype)))
    # the same math from the same weights: the 5th step's loss agrees to rounding
    tol = 1e-10 if dtype == np.float64 else 1e-5
    case = Case(
        key=f"engine-spiral-{tag}",
        title=f"1. spiral full-batch step: 300x2 -> 100 ReLU -> 3, softmax, L2 1e-3, "
              f"SGD 1.0, {dtype.name}",
        unit="us", inner=100, reps=12, quick_reps=6, quick_inner=100,
        candidates=cands, reference="notes",
        compare=lambda got, ref: abs(got - ref) / abs(ref),
        tol={c.name: tol for c in cands}, check_units=5, per="step")
    return case


# ---------------------------------------------------------------------------------------
# 2. mini-batch steps: indices drawn per epoch
# ---------------------------------------------------------------------------------------
MB_DTYPE = np.float32
DIGITS_LR = 0.1


class Epochs:
    """One permutation of the N rows per epoch (numpy Generator, seeded), cut into
    N // B batches (the rest dropped): ``next()`` gives the epoch's (N//B * B,) int64
    row indices.  Every implementation draws the same stream."""

    def __init__(self, n_rows, batch, seed=7):
        self.n_rows, self.batch = n_rows, batch
        self.steps = n_rows // batch
        self.rng = np.random.default_rng(seed)

    def next(self):
        return self.rng.permutation(self.n_rows)[:self.steps * self.batch]


def digits_problem(dtype=MB_DTYPE):
    """scikit-learn's bundled digits (1797 x 64), standardized per column (constant
    columns left at 0), labels 0-9."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(dtype), y.astype(np.intp)


def _mb_problem(which, dtype=MB_DTYPE):
    """(net, loss, X, y, lr, reg): the spiral net (case study init) or a 64-100-10 ReLU
    MLP (He init, seed 0) on digits."""
    if which == "spiral":
        net, loss, X, y = _spiral_net(dtype)
        return net, loss, X, y, STEP_SIZE, REG
    X, y = digits_problem(dtype)
    net = MLP([64, 100, 10], seed=0, dtype=dtype)
    return net, SoftmaxCrossEntropy(dtype=dtype), X, y, DIGITS_LR, REG


def _mb_fastnn(which, batch, layer_path=False):
    """One epoch per run unit: draw the permutation, then plan.run(N // B, indices)."""
    def make():
        net, loss, X, y, lr, reg = _mb_problem(which)
        if layer_path:
            plan = fplan.LayerPath(net, loss, SGD(lr), reg, batch).bind(X, y)
        else:
            plan = fplan.build_plan(net, loss, optimizer=SGD(lr), regularizer=reg,
                                    batch_size=batch).bind(X, y)
        epochs = Epochs(X.shape[0], batch)
        lo, dl = np.empty(epochs.steps), np.empty(epochs.steps)

        def run(n):
            for _ in range(n):
                plan.run(epochs.steps, epochs.next(), losses=lo, data_losses=dl)
            return float(dl[-1])
        return run
    return make


def _mb_torch(which, batch):
    """nn.Sequential + optim.SGD (weight decay on the weights), the batch gathered with
    X[rows] from the epoch's permutation (the same stream as fastnn's)."""
    def make():
        nn = torch.nn
        net, _, X, y, lr, reg = _mb_problem(which)
        sizes = [net.layers[0].n_in] + [layer.n_out for layer in net.layers]
        mods = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        model = nn.Sequential(*mods)
        _torch_load(model, [(layer.W, layer.b) for layer in net.layers])
        opt = _torch_sgd(model, lr, reg)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        epochs = Epochs(X.shape[0], batch)

        def run(n):
            for _ in range(n):
                perm = torch.from_numpy(epochs.next())
                for s in range(epochs.steps):
                    rows = perm[s * batch:(s + 1) * batch]
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(Xt[rows]), yt[rows])
                    loss.backward()
                    opt.step()
            return loss.item()
        return run
    return make


MB_CONFIGS = (("spiral", 32), ("spiral", 64), ("digits", 64))


def engine_minibatch_case(which, batch):
    net, _, X, _, lr, reg = _mb_problem(which)
    n_rows = X.shape[0]
    steps = n_rows // batch
    arch = "300x2 -> 100 ReLU -> 3 (spiral)" if which == "spiral" else \
        "1797x64 -> 100 ReLU -> 10 (digits, standardized)"
    cands = [
        Candidate("plan", "fastnn plan (one call per epoch)", "fastnn", _mb_fastnn(which, batch)),
        Candidate("layers", "fastnn LayerPath", "fastnn-variant",
                  _mb_fastnn(which, batch, True), versus="plan", inner_share=0.3),
    ]
    if HAVE_TORCH:
        cands.append(Candidate("torch_sgd", "torch nn.Sequential + optim.SGD", "torch",
                               _mb_torch(which, batch), inner_share=0.1))
    # plan vs LayerPath: bit for bit (the plan's contract); torch: float32 rounding over
    # 2 epochs of steps, relative on the last step's data loss
    tol = {c.name: 1e-5 for c in cands}
    tol["plan"] = 0.0
    case = Case(
        key=f"engine-minibatch-{which}-b{batch}",
        title=f"2. mini-batch SGD, {arch}, batch {batch} ({steps} steps per epoch, "
              f"permutation per epoch), lr {lr}, L2 {reg}, {np.dtype(MB_DTYPE).name}",
        unit="us", inner=max(1, 200 // steps), reps=12, quick_reps=5,
        quick_inner=max(1, 100 // steps),
        candidates=cands, reference="layers",
        compare=lambda got, ref: abs(got - ref) / abs(ref), tol=tol,
        check_units=2, steps_per_unit=steps, per=f"step (1 unit = 1 epoch = {steps} steps)")
    return case


# ---------------------------------------------------------------------------------------
# 3. the MLP step, GEMM-bound: 784-1024-1024-10, batch 256, float32
# ---------------------------------------------------------------------------------------
MLP_SIZES = (784, 1024, 1024, 10)
MLP_BATCH = 256
MLP_LR = 0.01


def mlp_problem(dtype=np.float32):
    """The net (He init, seed 0), X (256, 784) standard normal, y 10 classes: one
    full batch, bound once (no gather)."""
    net = MLP(list(MLP_SIZES), seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((MLP_BATCH, MLP_SIZES[0])).astype(dtype)
    y = rng.integers(0, MLP_SIZES[-1], MLP_BATCH).astype(np.intp)
    return net, SoftmaxCrossEntropy(dtype=dtype), X, y


def _mlp_optimizer(opt):
    return SGD(MLP_LR) if opt == "sgd" else Adam(lr=1e-3)


def _mlp_plan(opt="sgd", layer_path=False, n_threads=None):
    """fastnn's plan on the MLP, no regularizer; returns the last step's loss."""
    def make():
        net, loss, X, y = mlp_problem()
        if layer_path:
            plan = fplan.LayerPath(net, loss, _mlp_optimizer(opt), None, MLP_BATCH).bind(X, y)
        else:
            plan = fplan.build_plan(net, loss, optimizer=_mlp_optimizer(opt),
                                    regularizer=None, batch_size=MLP_BATCH).bind(X, y)
        return _runner(plan, n_threads)
    return make


def _mlp_torch(opt="sgd", **opt_kw):
    """nn.Sequential(Linear, ReLU, Linear, ReLU, Linear), F.cross_entropy, autograd, the
    optimizer's step; the same initial weights as fastnn's."""
    def make():
        nn = torch.nn
        net, _, X, y = mlp_problem()
        s = MLP_SIZES
        model = nn.Sequential(nn.Linear(s[0], s[1]), nn.ReLU(), nn.Linear(s[1], s[2]),
                              nn.ReLU(), nn.Linear(s[2], s[3]))
        _torch_load(model, [(layer.W, layer.b) for layer in net.layers])
        if opt == "sgd":
            optim = torch.optim.SGD(model.parameters(), lr=MLP_LR, **opt_kw)
        else:
            optim = torch.optim.Adam(model.parameters(), lr=1e-3, **opt_kw)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

        def run(n):
            for _ in range(n):
                optim.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(Xt), yt)
                loss.backward()
                optim.step()
            return loss.item()
        return run
    return make


def mlp_gemm_shapes(batch=MLP_BATCH, sizes=MLP_SIZES):
    """The step's GEMMs as fastnn's affine cores issue them, row-major
    (trans_a, trans_b, m, n, k, a, b, c) with operand names: forward out = x @ W per
    layer (3), backward dW = x.T @ dz per layer (3) and dx = dz @ W.T for every layer
    but the first (2): 8 in all."""
    L = len(sizes) - 1
    out = []
    for i in range(L):
        out.append((False, False, batch, sizes[i + 1], sizes[i], f"h{i}", f"W{i}", f"h{i + 1}"))
    for i in reversed(range(L)):
        out.append((True, False, sizes[i], sizes[i + 1], batch, f"h{i}", f"dz{i + 1}", f"dW{i}"))
        if i > 0:
            out.append((False, True, batch, sizes[i], sizes[i + 1], f"dz{i + 1}", f"W{i}",
                        f"dh{i}"))
    return out


def _mlp_buffers(dtype=np.float32):
    rng = np.random.default_rng(1)
    s, B = MLP_SIZES, MLP_BATCH
    bufs = {}
    for i in range(len(s)):
        bufs[f"h{i}"] = rng.standard_normal((B, s[i])).astype(dtype)
        bufs[f"dh{i}"] = np.empty((B, s[i]), dtype)
    for i in range(len(s) - 1):
        bufs[f"W{i}"] = (rng.standard_normal((s[i], s[i + 1])) / np.sqrt(s[i])).astype(dtype)
        bufs[f"dW{i}"] = np.empty((s[i], s[i + 1]), dtype)
        bufs[f"dz{i + 1}"] = rng.standard_normal((B, s[i + 1])).astype(dtype)
    return bufs


def _mlp_gemms_numpy():
    """The 8 GEMMs with np.matmul into preallocated out= arrays (numpy's OpenBLAS, its
    own threading): a floor for the whole step."""
    def make():
        bufs = _mlp_buffers()
        calls = []
        for ta, tb, m, n, k, a, b, c in mlp_gemm_shapes():
            A = bufs[a].T if ta else bufs[a]
            Bm = bufs[b].T if tb else bufs[b]
            assert A.shape == (m, k) and Bm.shape == (k, n) and bufs[c].shape == (m, n)
            calls.append((A, Bm, bufs[c]))

        def run(n):
            for _ in range(n):
                for A, Bm, C in calls:
                    np.matmul(A, Bm, out=C)
            return float(bufs["dW0"][0, 0])
        return run
    return make


def scipy_openblas():
    """ctypes handles on the OpenBLAS scipy's cython_blas calls (the one fastnn's
    kernels use): (cblas_sgemm, set_num_threads, get_num_threads), or None."""
    import scipy
    pattern = os.path.join(os.path.dirname(scipy.__file__), "..", "scipy.libs", "*openblas*")
    for path in sorted(glob.glob(pattern)):
        lib = ctypes.CDLL(path)       # CDLL: calls release the GIL
        for pre in ("scipy_", ""):
            if (hasattr(lib, pre + "cblas_sgemm")
                    and hasattr(lib, pre + "openblas_set_num_threads")):
                sg = getattr(lib, pre + "cblas_sgemm")
                sg.restype = None
                sg.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                                    ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                                    ctypes.c_void_p, ctypes.c_int]
                setn = getattr(lib, pre + "openblas_set_num_threads")
                setn.argtypes = [ctypes.c_int]
                getn = getattr(lib, pre + "openblas_get_num_threads")
                getn.restype = ctypes.c_int
                return sg, setn, getn
    return None


def _mlp_gemms_grid(n_threads=None):
    """The 8 GEMMs as fastnn runs them: each cut into fastnn's shape-only block grid
    (asked of the compiled team_gemm's own gemm_blocks / gemm_edge, not re-derived here),
    every block one single-threaded call of scipy's OpenBLAS sgemm (through ctypes,
    which releases the GIL), the blocks of each GEMM shared in contiguous runs by
    n_threads Python threads (fastnn's team takes them dynamically; at one thread the
    order is the same).  No synchronization between the GEMMs (their operands are
    fixed): a lower bound on any step that does these products this way."""
    def make():
        blas = scipy_openblas()
        if blas is None:
            raise RuntimeError("scipy's OpenBLAS (cblas_sgemm, openblas_set_num_threads) "
                               "not found")
        sgemm, set_n, get_n = blas
        nt = config.resolve_num_threads() if n_threads is None else n_threads
        bufs = _mlp_buffers()
        per_thread = [[] for _ in range(nt)]
        RowMajor, NoT, T = 101, 111, 112
        for ta, tb, m, n, k, a, b, c in mlp_gemm_shapes():
            A, Bm, C = bufs[a], bufs[b], bufs[c]
            lda, ldb, ldc = A.shape[1], Bm.shape[1], C.shape[1]
            isz = C.itemsize
            by_cols, edges = gemm_grid(m, n, k)
            nb = len(edges) - 1
            team = min(nt, nb)
            chunk = -(-nb // team)
            for blk in range(nb):
                lo, hi = edges[blk], edges[blk + 1]
                if hi <= lo:
                    continue
                if by_cols:
                    args = (m, hi - lo, k, A.ctypes.data, lda,
                            Bm.ctypes.data + isz * (lo * ldb if tb else lo), ldb,
                            C.ctypes.data + isz * lo, ldc)
                else:
                    args = (hi - lo, n, k, A.ctypes.data + isz * (lo if ta else lo * lda), lda,
                            Bm.ctypes.data, ldb, C.ctypes.data + isz * lo * ldc, ldc)
                mm, nn_, kk, pa, la, pb, lb, pc, lc = args
                per_thread[blk // chunk].append(
                    (RowMajor, T if ta else NoT, T if tb else NoT, mm, nn_, kk, 1.0, pa, la, pb,
                     lb, 0.0, pc, lc))

        def work(calls, n):
            for _ in range(n):
                for args in calls:
                    sgemm(*args)

        def run(n):
            prev = get_n()
            set_n(1)
            try:
                if nt == 1:
                    work(per_thread[0], n)
                else:
                    others = [threading.Thread(target=work, args=(calls, n))
                              for calls in per_thread[1:]]
                    for th in others:
                        th.start()
                    work(per_thread[0], n)
                    for th in others:
                        th.join()
            finally:
                set_n(prev)
            return float(bufs["dW0"][0, 0])
        return run
    return make


def _grid_description():
    parts = []
    for ta, tb, m, n, k, *_ in mlp_gemm_shapes():
        parts.append(f"{m}x{n}x{k}:{len(gemm_grid(m, n, k)[1]) - 1}")
    return " ".join(parts)


def engine_mlp_case(remote=True):
    cands = [
        Candidate("plan", "fastnn plan, SGD", "fastnn", _mlp_plan("sgd")),
        Candidate("layers", "fastnn LayerPath, SGD", "fastnn-variant", _mlp_plan("sgd", True),
                  versus="plan"),
        Candidate("gemms_numpy", "its 8 GEMMs alone: np.matmul(out=), numpy's BLAS threads",
                  "numpy", _mlp_gemms_numpy(), check=False),
        Candidate("gemms_grid", "its 8 GEMMs alone: fastnn's block grid, 1-thread BLAS",
                  "numpy", _mlp_gemms_grid(), check=False),
    ]
    if HAVE_TORCH:
        cands.append(Candidate("torch_sgd", "torch nn + optim.SGD", "torch", _mlp_torch("sgd")))
        if remote:
            cands += [
                Candidate("plan_fresh", "fastnn plan, fresh process, fastnn imported first",
                          "fastnn-variant", _remote("default", "engine-mlp", "plan"),
                          versus="plan"),
                Candidate("plan_torch_first", "fastnn plan, fresh process, `import torch` first",
                          "fastnn-variant", _remote("torch-first", "engine-mlp", "plan"),
                          versus="plan_fresh"),
                Candidate("torch_sgd_torch_first", "torch nn + optim.SGD, same subprocess",
                          "torch", _remote("torch-first", "engine-mlp", "torch_sgd"),
                          versus="plan_torch_first"),
            ]
    # float32, K up to 1024, 3 steps: torch's MKL/oneDNN vs OpenBLAS summation orders
    tol = {c.name: 1e-5 for c in cands}
    tol["plan"] = tol["plan_fresh"] = tol["plan_torch_first"] = 0.0
    case = Case(
        key="engine-mlp",
        title="3. MLP 784-1024-1024-10 ReLU, batch 256, float32, softmax, one SGD step "
              "(lr 0.01, no penalty)",
        unit="ms", inner=2, reps=7, quick_reps=4, quick_inner=1,
        candidates=cands, reference="layers",
        compare=lambda got, ref: abs(got - ref) / abs(ref), tol=tol,
        check_units=3, per="step", derived=_mlp_derived)
    return case


def _ratio(stats, a, b):
    return (stats[a]["median"] / stats[b]["median"], stats[a]["min"] / stats[b]["min"])


def _mlp_derived(stats):
    """plan / each GEMM floor (aim <= 1.05), also with torch imported first."""
    out = []
    for plan in ("plan", "plan_torch_first"):
        for floor in ("gemms_numpy", "gemms_grid"):
            if plan in stats and floor in stats:
                label = "plan" if plan == "plan" else "plan (torch first)"
                out.append((f"fastnn {label} / {floor} (aim <= 1.05)",
                            *_ratio(stats, plan, floor)))
    return out


# ---------------------------------------------------------------------------------------
# 4. Adam: the MLP step, and the update alone
# ---------------------------------------------------------------------------------------
def engine_adam_case():
    cands = [
        Candidate("plan", "fastnn plan, Adam", "fastnn", _mlp_plan("adam")),
        Candidate("layers", "fastnn LayerPath, Adam", "fastnn-variant",
                  _mlp_plan("adam", True),
                  versus="plan"),
    ]
    if HAVE_TORCH:
        cands += [
            Candidate("torch_default", "torch nn + optim.Adam (default: for-loop on CPU)",
                      "torch", _mlp_torch("adam")),
            Candidate("torch_foreach", "torch nn + optim.Adam(foreach=True)", "torch",
                      _mlp_torch("adam", foreach=True)),
            Candidate("torch_fused", "torch nn + optim.Adam(fused=True)", "torch",
                      _mlp_torch("adam", fused=True)),
        ]
    tol = {c.name: 1e-5 for c in cands}
    tol["plan"] = 0.0
    case = Case(
        key="engine-adam-step",
        title="4a. MLP 784-1024-1024-10, batch 256, float32: one Adam step (lr 1e-3)",
        unit="ms", inner=2, reps=6, quick_reps=3, quick_inner=1,
        candidates=cands, reference="layers",
        compare=lambda got, ref: abs(got - ref) / abs(ref), tol=tol,
        check_units=3, per="step")
    return case


def mlp_n_params(sizes=MLP_SIZES):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


ADAM_BYTES_PER_PARAM = 7     # read w, g, m, v; write w, m, v


def _adam_arrays(dtype=np.float32):
    n = mlp_n_params()
    rng = np.random.default_rng(5)
    w = (0.05 * rng.standard_normal(n)).astype(dtype)
    g = (0.01 * rng.standard_normal(n)).astype(dtype)
    return w, g


def _adam_fastnn():
    """fastnn.optim.Adam().update on one flat array (the compiled optimizer_update)."""
    def make():
        w, g = _adam_arrays()
        opt = Adam(lr=1e-3)
        state = opt.init_state(w.size, w.dtype)
        t = {"t": 0}

        def run(n):
            for _ in range(n):
                t["t"] += 1
                opt.update(w, g, state, t["t"])
            return w
        return run
    return make


def _adam_notes():
    """The notes' Adam in NumPy (float32 arrays), bias-corrected, in place where NumPy
    allows: the reference."""
    def make():
        w, g = _adam_arrays()
        m, v = np.zeros_like(w), np.zeros_like(w)
        b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-3
        t = {"t": 0}

        def run(n):
            for _ in range(n):
                t["t"] += 1
                m[...] = b1 * m + (1 - b1) * g
                v[...] = b2 * v + (1 - b2) * (g * g)
                mt = m / (1 - b1 ** t["t"])
                vt = v / (1 - b2 ** t["t"])
                w[...] += -lr * mt / (np.sqrt(vt) + eps)
            return w
        return run
    return make


def _adam_torch(**kw):
    """torch.optim.Adam on one flat parameter of the same size, its .grad fixed."""
    def make():
        w, g = _adam_arrays()
        p = torch.nn.Parameter(torch.from_numpy(w.copy()))
        p.grad = torch.from_numpy(g.copy())
        opt = torch.optim.Adam([p], lr=1e-3, **kw)

        def run(n):
            for _ in range(n):
                opt.step()
            return p
        return run
    return make


def engine_adam_update_case():
    n = mlp_n_params()
    cands = [
        Candidate("fastnn", "fastnn.optim.Adam().update (compiled)", "fastnn", _adam_fastnn()),
        Candidate("notes", "notes' NumPy Adam", "numpy", _adam_notes()),
    ]
    if HAVE_TORCH:
        cands += [
            Candidate("torch_foreach", "torch optim.Adam(foreach=True), one flat tensor",
                      "torch", _adam_torch(foreach=True)),
            Candidate("torch_fused", "torch optim.Adam(fused=True), one flat tensor",
                      "torch", _adam_torch(fused=True)),
        ]
    case = Case(
        key="engine-adam-update",
        title=f"4b. the Adam update alone on {n:,} float32 parameters (the MLP's), "
              f"{ADAM_BYTES_PER_PARAM * 4 * n / 1e6:.0f} MB moved per update",
        unit="ms", inner=5, reps=12, quick_reps=5, quick_inner=3,
        candidates=cands, reference="notes",
        compare=lambda got, ref: cases._normwise(cases._np(got), ref),
        tol={c.name: 1e-5 for c in cands}, check_units=3, per="update",
        derived=_adam_derived)
    return case


def _adam_derived(stats):
    """GB/s of every candidate (bytes: read w, g, m, v; write w, m, v), of the median
    time and of the best time."""
    return [(f"GB/s {name}", adam_gbps(st["median"]), adam_gbps(st["min"]))
            for name, st in stats.items()]


def adam_gbps(seconds):
    return ADAM_BYTES_PER_PARAM * 4 * mlp_n_params() / seconds / 1e9


# ---------------------------------------------------------------------------------------
# 5. thread scaling and OMP_WAIT_POLICY
# ---------------------------------------------------------------------------------------
def engine_threads_case(which):
    """The spiral (float64) or MLP (float32, SGD) plan at 1 and 2 threads, in this
    process, in a fresh one with the default environment and in one with
    OMP_WAIT_POLICY=PASSIVE."""
    make = (lambda nt: _spiral_plan(np.float64, n_threads=nt)) if which == "spiral" else \
        (lambda nt: _mlp_plan("sgd", n_threads=nt))
    key = f"engine-threads-{which}"
    cands = [
        Candidate("t1", "plan, 1 thread", "fastnn", make(1)),
        Candidate("t2", "plan, 2 threads", "fastnn-variant", make(2), versus="t1"),
        Candidate("t2_fresh", "plan, 2 threads, fresh process, default env", "fastnn-variant",
                  _remote("default", key, "t2"), versus="t2"),
        Candidate("t1_passive", "plan, 1 thread, OMP_WAIT_POLICY=PASSIVE", "fastnn-variant",
                  _remote("passive", key, "t1"), versus="t1"),
        Candidate("t2_passive", "plan, 2 threads, OMP_WAIT_POLICY=PASSIVE", "fastnn-variant",
                  _remote("passive", key, "t2"), versus="t2_fresh"),
    ]
    if which == "spiral":
        title = "5a. threads: spiral plan step (float64, full batch)"
        unit, inner, reps = "us", 100, 12
    else:
        title = "5b. threads: MLP plan step (float32, batch 256, SGD)"
        unit, inner, reps = "ms", 2, 5
    case = Case(key=key, title=title, unit=unit, inner=inner, reps=reps, quick_reps=4,
                candidates=cands, reference="t1",
                compare=lambda got, ref: abs(got - ref) / abs(ref),
                tol={c.name: 0.0 for c in cands},      # thread-count independent bits
                check_units=3, per="step")
    return case


# ---------------------------------------------------------------------------------------
# worker processes
# ---------------------------------------------------------------------------------------
WORKER_MODES = {
    "torch-first": ({}, True),                          # env, import torch first
    "default": ({}, False),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
}
_WORKERS = {}
_WORKER_LOCK = threading.Lock()


class Worker:
    """A fresh Python running ``bench/engine.py --worker``: builds candidates of the
    engine cases there and runs them on request, timing each call itself."""

    def __init__(self, mode):
        env_extra, torch_first = WORKER_MODES[mode]
        env = dict(os.environ, **env_extra)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE),
                                                          env.get("PYTHONPATH", "")]))
        cmd = [sys.executable, str(HERE / "engine.py"), "--worker",
               "--threads", str(config.resolve_num_threads())]
        if torch_first:
            cmd.append("--torch-first")
        self.mode = mode
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        self.next_id = 0
        self.info = self.ask({"op": "info"})

    def ask(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker ({self.mode}) died; rc {self.proc.poll()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker ({self.mode}): {reply['error']}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def worker(mode):
    with _WORKER_LOCK:
        w = _WORKERS.get(mode)
        if w is None or w.proc.poll() is not None:
            w = _WORKERS[mode] = Worker(mode)
        return w


@atexit.register
def close_workers():
    for w in list(_WORKERS.values()):
        w.close()
    _WORKERS.clear()


def _remote(mode, case_key, cand):
    """A candidate built and run in a worker process (mode: WORKER_MODES)."""
    def make():
        w = worker(mode)
        ident = w.ask({"op": "build", "case": case_key, "cand": cand})["id"]

        def run(n):
            reply = w.ask({"op": "run", "id": ident, "n": int(n)})
            run.last_seconds = reply["seconds"]
            return reply["result"]
        run.self_timed = True
        run.last_seconds = None
        return run
    return make


def serve(stream_in=sys.stdin, stream_out=sys.stdout):
    """The worker's loop: one JSON request per line, one JSON reply per line."""
    built = {}
    for line in stream_in:
        msg = json.loads(line)
        try:
            if msg["op"] == "info":
                reply = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                         "torch_first": "--torch-first" in sys.argv,
                         "libgomp": _loaded_gomp()}
            elif msg["op"] == "build":
                case = get_case(msg["case"], remote=False)
                ident = len(built)
                built[ident] = case[msg["cand"]].make()
                reply = {"id": ident}
            elif msg["op"] == "run":
                run = built[msg["id"]]
                t0 = time.perf_counter()
                result = run(msg["n"])
                seconds = time.perf_counter() - t0
                reply = {"seconds": seconds, "result": float(result)}
            else:
                reply = {"error": f"unknown op {msg['op']!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        stream_out.write(json.dumps(reply) + "\n")
        stream_out.flush()


def _loaded_gomp():
    """The libgomp files mapped into this process (torch ships its own libgomp.so.1)."""
    try:
        with open("/proc/self/maps") as fh:
            return sorted({ln.split()[-1] for ln in fh if "gomp" in ln.split()[-1]})
    except OSError:
        return []


# ---------------------------------------------------------------------------------------
GROUPS = {
    "engine-spiral": lambda: [engine_spiral_case(np.float64), engine_spiral_case(np.float32)],
    "engine-minibatch": lambda: [engine_minibatch_case(w, b) for w, b in MB_CONFIGS],
    "engine-mlp": lambda: [engine_mlp_case()],
    "engine-adam": lambda: [engine_adam_case(), engine_adam_update_case()],
    "engine-threads": lambda: [engine_threads_case("spiral"), engine_threads_case("mlp")],
}


def all_engine_cases():
    return [c for make in GROUPS.values() for c in make()]


def get_case(key, remote=True):
    """One case by key (workers build the case their candidate belongs to)."""
    if key == "engine-mlp":
        return engine_mlp_case(remote=remote)
    for group, make in GROUPS.items():
        if key.startswith(group):
            for c in make():
                if c.key == key:
                    return c
    raise KeyError(f"no engine case {key!r}")
