"""The nogil cores of src_c/_*_core.pxd (activation, dropout, batch norm, loss,
regularization) are what the def kernels run, and what a compiled training plan will run.

* Every def kernel of those five modules gives the same bits on 1, 2 and 3 threads at
  sizes above _runtime.parallel_min_work(): the one-thread calls take the cores' serial
  branch (no OpenMP region), the others their parallel branch, so this pins the two
  branches to one arithmetic.
* The penalties return exactly the values they returned when the def kernels formed them
  from the block sums: equal to the NumPy twins where every sum is exact, and equal to
  the documented block / lane summation order, rebuilt here in NumPy, everywhere.
* A small module compiled here cimports all five .pxd files at once (as a plan will)
  and calls every core directly: the results equal the def kernels' bit for bit.
"""
import importlib
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import DTYPES
from fastnn import _kernels, _runtime, losses

C, NP = _kernels.COMPILED, _kernels.NUMPY
MIN_WORK = _runtime.parallel_min_work()
SRC = Path(__file__).resolve().parent.parent / "src_c"


def rng_for(*key):
    """A generator seeded from the test's parameters (crc32: stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---- every def kernel: 1 thread vs 2 and 3, bit for bit -------------------------------
# Each case builds its inputs from its own seed, runs the kernels on n_threads and returns
# every output (arrays and returned floats).  N x H = 1023 x 301 is above the parallel
# threshold and odd (dropout's last element, partial blocks and uneven thread splits).
N, H = 1023, 301


def _activation(dtype, nt):
    rng = rng_for("act", dtype)
    x, dout = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype)
    res = []
    for act in range(5):
        out = C.activation_forward(x, np.empty_like(x), act, 0.1, nt)
        res += [out, C.activation_backward(dout, out, np.empty_like(x), act, 0.1, nt)]
    return res


def _prelu(dtype, nt):
    rng = rng_for("prelu", dtype)
    x, dout, alpha = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype), randn(rng, H, dtype)
    out = C.prelu_forward(x, alpha, np.empty_like(x), nt)
    dx, dal, dal_only = np.empty_like(x), np.empty_like(alpha), np.empty_like(alpha)
    C.prelu_backward(dout, x, alpha, dx, dal, nt)
    C.prelu_backward(dout, x, alpha, None, dal_only, nt)
    return [out, dx, dal, dal_only]


def _dropout(dtype, nt):
    rng = rng_for("dropout", dtype)
    x, dout = randn(rng, (N, H), dtype), randn(rng, (N, H), dtype)
    res = []
    for p in (0.3, 1.0):
        mask = np.empty(x.shape, np.uint8)
        res += [C.dropout_forward(x, np.empty_like(x), mask, p, 17, 3, nt), mask.copy(),
                C.dropout_backward(dout, mask, np.empty_like(x), p, nt)]
        res += [C.dropout_forward_scaled(x, np.empty_like(x), mask, p, 1.0, 17, 4, nt), mask,
                C.dropout_backward_scaled(dout, mask, np.empty_like(x), 1.0, nt)]
    return res


def _batchnorm(dtype, nt):
    rng = rng_for("batchnorm", dtype)
    x, dout = randn(rng, (N, H), dtype, 3.0), randn(rng, (N, H), dtype)
    gamma, beta = randn(rng, H, dtype), randn(rng, H, dtype)
    res = []
    for training in (True, False):
        rm, rv = randn(rng, H, dtype, 0.1), np.full(H, 1.5, dtype)
        out, xhat = np.empty_like(x), np.empty_like(x)
        mean, inv_std = np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_forward(x, gamma, beta, rm, rv, out, xhat, mean, inv_std, training, 0.9,
                            1e-5, nt)
        dx, dg, db = np.empty_like(x), np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_backward(dout, xhat, gamma, inv_std, dx, dg, db, training, nt)
        dg2, db2 = np.empty(H, dtype), np.empty(H, dtype)
        C.batchnorm_backward(dout, xhat, gamma, inv_std, None, dg2, db2, training, nt)
        res += [out, xhat, mean, inv_std, rm, rv, dx, dg, db, dg2, db2]
    return res


def _score_losses(dtype, nt):
    rng = rng_for("scores", dtype)
    s = randn(rng, (N, H), dtype, 2.0)
    labels = rng.integers(0, H, N).astype(np.intp)
    targets = {"attribute_hinge": rng.choice([-1.0, 1.0], (N, H)).astype(dtype),
               "attribute_logistic": rng.integers(0, 2, (N, H)).astype(dtype),
               "l2_regression": randn(rng, (N, H), dtype),
               "l1_regression": randn(rng, (N, H), dtype)}
    res = []
    for name, y, extra in [("softmax_cross_entropy", labels, ()),
                           ("multiclass_svm", labels, (1.0, False)),
                           ("multiclass_svm", labels, (0.5, True))] + \
                          [(name, y, ()) for name, y in targets.items()]:
        d, rl = np.empty_like(s), np.empty(N, dtype)
        res += [getattr(C, name)(s, y, d, rl, *extra, nt), d, rl]
    return res


def _hsoftmax(dtype, nt):
    n, d, k = 2048, 300, 100
    hs = losses.HierarchicalSoftmax(d, k, seed=0, dtype=dtype)
    rng = rng_for("hs", dtype)
    hs.set_params(W=0.1 * rng.standard_normal(hs.W.shape), b=0.1 * rng.standard_normal(k - 1))
    h, y = randn(rng, (n, d), dtype), rng.integers(0, k, n).astype(np.intp)
    dz, rl = np.empty((n, hs.paths.shape[1]), dtype), np.empty(n, dtype)
    loss = C.hierarchical_softmax_forward(h, hs.W, hs.b, y, hs.paths, hs.codes, hs.depths,
                                          dz, rl, nt)
    dh, dW, db = np.empty_like(h), np.empty_like(hs.W), np.empty_like(hs.b)
    C.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, dz, dh, dW, db, nt)
    dW2, db2 = np.empty_like(hs.W), np.empty_like(hs.b)
    C.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, dz, None, dW2, db2, nt)
    return [loss, dz, rl, dh, dW, db, dW2, db2]


def _regularization(dtype, nt):
    rng = rng_for("reg", dtype)
    res = []
    for shape in [(300001,), (600, 500)]:
        W = randn(rng, shape, dtype)
        W.reshape(-1)[::7] = 0
        for name, args in [("l2_penalty", (0.3,)), ("l1_penalty", (0.3,)),
                           ("elastic_net_penalty", (0.2, 0.7))]:
            dW = np.ones(shape, dtype)
            res += [getattr(C, name)(W, dW, *args, nt), dW]
    W = randn(rng, (600, 500), dtype) / np.sqrt(600).astype(dtype)
    res += [C.max_norm_constrain(W, 1.0, nt), W]
    return res


FAMILIES = {"activation": _activation, "prelu": _prelu, "dropout": _dropout,
            "batchnorm": _batchnorm, "score_losses": _score_losses, "hsoftmax": _hsoftmax,
            "regularization": _regularization}


def _same_bits(a, b):
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and np.array(a).tobytes() == np.array(b).tobytes()


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_def_kernels_same_bits_for_1_2_and_3_threads(family, dtype):
    assert N * H >= MIN_WORK and 300001 >= MIN_WORK      # the threaded branch really runs
    one = FAMILIES[family](dtype, 1)
    for nt in (2, 3):
        other = FAMILIES[family](dtype, nt)
        assert len(one) == len(other)
        for i, (a, b) in enumerate(zip(one, other)):
            assert _same_bits(a, b), f"{family}: output {i} differs on {nt} threads"


# ---- penalties: exactly the values the def kernels returned before ------------------
PENALTY_ARGS = {"l2_penalty": (0.375,), "l1_penalty": (0.375,),
                "elastic_net_penalty": (0.25, 0.625)}
PENALTY_SHAPES = [(1,), (7,), (3, 5), (8192,), (8199,), (300, 200), (600, 500), (300001,)]


def _dyadic(shape, dtype, seed):
    """Multiples of 1/64 in [-4, 4] (zeros included): squares, |w| and every sum of them
    here are exact in double in any order, so any summation gives the same bits."""
    w = np.random.default_rng(seed).integers(-256, 257, shape) / 64.0
    return w.astype(dtype)


@pytest.mark.parametrize("kernel", sorted(PENALTY_ARGS))
@pytest.mark.parametrize("shape", PENALTY_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_equals_twin_exactly_where_sums_are_exact(kernel, shape, dtype):
    # Dyadic strengths too: the gradient terms are exact, so dW must match bit for bit.
    W = _dyadic(shape, dtype, 1)
    dW0 = _dyadic(shape, dtype, 2)
    want_dW = dW0.copy()
    want = getattr(NP, kernel)(W, want_dW, *PENALTY_ARGS[kernel])
    for nt in (1, 2, 3):
        dW = dW0.copy()
        got = getattr(C, kernel)(W, dW, *PENALTY_ARGS[kernel], nt)
        assert isinstance(got, float) and got == want
        np.testing.assert_array_equal(dW, want_dW)


def _lane_block_sum(terms):
    """The order of _regularization_core.pxd: blocks of 8192 terms added in block order;
    in a block, 8 lanes summed down its whole groups of 8, then the tail in order, then
    the lanes 0..7 added to the tail's sum."""
    total = 0.0
    for b0 in range(0, terms.size, 8192):
        blk = terms[b0:b0 + 8192]
        m = blk.size // 8 * 8
        lanes = np.cumsum(blk[:m].reshape(-1, 8), axis=0)[-1] if m else np.zeros(8)
        part = 0.0
        for v in blk[m:]:
            part += float(v)
        for v in lanes:
            part += float(v)
        total += part
    return total


@pytest.mark.parametrize("shape", PENALTY_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_values_follow_the_documented_order(shape, dtype):
    # float32-representable weights (either dtype): their squares are exact in double,
    # so the sums below are those of the kernel's loop with or without a fused multiply-add
    w = np.random.default_rng(3).standard_normal(shape).astype(np.float32).astype(dtype)
    w.reshape(-1)[::5] = 0
    w64 = w.astype(np.float64).reshape(-1)
    s_abs, s_sq = _lane_block_sum(np.abs(w64)), _lane_block_sum(w64 * w64)
    reg, l1, l2 = 0.3, 0.2, 0.7
    for nt in (1, 2):
        assert C.l2_penalty(w, np.zeros_like(w), reg, nt) == 0.5 * reg * s_sq
        assert C.l1_penalty(w, np.zeros_like(w), reg, nt) == reg * s_abs
        assert C.elastic_net_penalty(w, np.zeros_like(w), l1, l2, nt) == l1 * s_abs + l2 * s_sq
    # and the twins agree to rounding (they sum pairwise)
    np.testing.assert_allclose(NP.l2_penalty(w, np.zeros_like(w), reg), 0.5 * reg * s_sq,
                               rtol=1e-12)


# ---- the cores themselves, cimported together, vs the def kernels ------------------
PROBE = textwrap.dedent('''
    # A module that cimports every core of the five families at once, as a plan does.
    import numpy as np
    cimport numpy as cnp
    from libc.stdint cimport uint8_t, uint64_t
    from _activation_core cimport (act_backward_core, act_forward_core, prelu_backward_core,
                                   prelu_forward_core)
    from _dropout_core cimport (dropout_backward_core, dropout_forward_core, dropout_key,
                                keep_threshold_value)
    from _batchnorm_core cimport batchnorm_backward_core, batchnorm_forward_core
    from _loss_core cimport (EW_ATTR_HINGE, EW_ATTR_LOGISTIC, EW_L1, EW_L2,
                             elementwise_loss_core, hs_backward_core, hs_forward_core,
                             row_loss_mean, softmax_xent_core, svm_core)
    from _regularization_core cimport (PEN_ELASTIC, PEN_L1, PEN_L2, max_norm_core,
                                       penalty_core, penalty_scratch_len)
    cnp.import_array()

    EW = {"attribute_hinge": EW_ATTR_HINGE, "attribute_logistic": EW_ATTR_LOGISTIC,
          "l2_regression": EW_L2, "l1_regression": EW_L1}
    PEN = {"l2_penalty": PEN_L2, "l1_penalty": PEN_L1, "elastic_net_penalty": PEN_ELASTIC}

    cdef double* D(a):
        return NULL if a is None else <double*>cnp.PyArray_DATA(a)

    cdef Py_ssize_t* I(a):
        return <Py_ssize_t*>cnp.PyArray_DATA(a)

    # Sizes go through typed locals: Cython does not pick a fused specialization for
    # Python-object arguments.
    def act(x, out, dout, dx, int a, double alpha, int nt):
        cdef Py_ssize_t n = x.size
        act_forward_core(D(x), D(out), n, a, alpha, nt)
        act_backward_core(D(dout), D(out), D(dx), n, a, alpha, nt)

    def prelu(x, alpha, out, dout, dx, dalpha, int nt):
        cdef Py_ssize_t n = x.shape[0], h = x.shape[1]
        prelu_forward_core(D(x), D(alpha), D(out), n, h, nt)
        prelu_backward_core(D(dout), D(x), D(alpha), D(dx), D(dalpha), n, h, nt)

    def dropout(x, out, mask, dout, dx, double p, double scale, uint64_t seed,
                uint64_t step, int nt):
        cdef Py_ssize_t n = x.size
        dropout_forward_core(D(x), D(out), <uint8_t*>cnp.PyArray_DATA(mask), n,
                             dropout_key(seed, step), keep_threshold_value(p), scale, nt)
        dropout_backward_core(D(dout), <uint8_t*>cnp.PyArray_DATA(mask), D(dx), n, scale,
                              nt)

    def batchnorm(x, g, b, rm, rv, out, xhat, mean, inv_std, dout, dx, dg, db,
                  bint training, int nt):
        cdef Py_ssize_t n = x.shape[0], h = x.shape[1]
        batchnorm_forward_core(D(x), D(g), D(b), D(rm), D(rv), D(out), D(xhat), D(mean),
                               D(inv_std), n, h, training, 0.9, 1e-5, nt)
        batchnorm_backward_core(D(dout), D(xhat), D(g), D(inv_std), D(dx), D(dg), D(db), n,
                                h, training, nt)

    def softmax(s, y, d, rl, int nt):
        cdef Py_ssize_t n = s.shape[0], k = s.shape[1]
        softmax_xent_core(D(s), I(y), D(d), D(rl), n, k, nt)
        return row_loss_mean(D(rl), n)

    def svm(s, y, d, rl, double delta, bint squared, int nt):
        cdef Py_ssize_t n = s.shape[0], k = s.shape[1]
        svm_core(D(s), I(y), D(d), D(rl), n, k, delta, squared, nt)
        return row_loss_mean(D(rl), n)

    def elementwise(name, s, y, d, rl, int nt):
        cdef Py_ssize_t n = s.shape[0], a = s.shape[1]
        cdef int kind = EW[name]
        elementwise_loss_core(kind, D(s), D(y), D(d), D(rl), n, a, nt)
        return row_loss_mean(D(rl), n)

    def hs(h, W, b, y, paths, codes, depths, dz, rl, dh, dW, db, int nt):
        cdef Py_ssize_t n = h.shape[0], d = h.shape[1], m = W.shape[0], p = paths.shape[1]
        hs_forward_core(D(h), D(W), D(b), I(y), I(paths), I(codes), I(depths), D(dz), D(rl),
                        n, d, p, nt)
        hs_backward_core(D(h), D(W), I(y), I(paths), I(depths), D(dz), D(dh), D(dW), D(db),
                         n, d, m, p, nt)
        return row_loss_mean(D(rl), n)

    def penalty(name, W, dW, double a, double b, int nt):
        cdef Py_ssize_t n = W.size
        cdef int kind = PEN[name]
        scratch = np.zeros(penalty_scratch_len(n))
        return penalty_core(kind, D(W), D(dW), n, a, b, D(scratch), nt)

    def max_norm(W, double c, int nt):
        cdef Py_ssize_t n_in = W.shape[0], n_out = W.shape[1]
        scale = np.zeros(n_out)
        return max_norm_core(D(W), n_in, n_out, c, D(scale), nt)
''')

SETUP = textwrap.dedent('''
    import sys
    import numpy as np
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    src, openmp = sys.argv.pop(1), sys.argv.pop(1) == "1"
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math"] + (["-fopenmp"] if openmp else [])
    ext = Extension("_coreprobe", ["_coreprobe.pyx"], include_dirs=[np.get_include(), src],
                    extra_compile_args=flags, extra_link_args=["-fopenmp"] if openmp else [],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")])
    setup(ext_modules=cythonize([ext], include_path=[src], quiet=True,
                                compiler_directives={"language_level": 3, "boundscheck": False,
                                                     "wraparound": False, "cdivision": True}))
''')


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The probe module, built with the kernels' flags (gcc/clang) against src_c."""
    pytest.importorskip("Cython", reason="building the core probe needs Cython")
    if not (SRC / "_loss_core.pxd").exists():
        pytest.skip("no src_c next to the tests")
    if sys.platform == "win32":
        pytest.skip("the probe is built with gcc-style flags")
    d = tmp_path_factory.mktemp("coreprobe")
    (d / "_coreprobe.pyx").write_text(PROBE)
    (d / "setup_probe.py").write_text(SETUP)
    run = subprocess.run([sys.executable, "setup_probe.py", str(SRC),
                          "1" if _runtime.openmp_enabled() else "0",
                          "build_ext", "--inplace", "-q"],
                         cwd=d, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sys.path.insert(0, str(d))
    try:
        yield importlib.import_module("_coreprobe")
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("_coreprobe", None)


def _assert_same(got, want):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert _same_bits(a, b), f"output {i} differs"


def _nan(shape, dtype=np.float64):
    return np.full(shape, np.nan, dtype)


# float64 inputs (the float32 specializations are the ones the def kernels run); 1 and 2
# threads, above the parallel threshold, so both branches of every core are compared.
DT = np.float64
THREADS = [1, 2]


@pytest.fixture(scope="module")
def data():
    rng = rng_for("probe")
    return {"x": randn(rng, (N, H), DT), "dout": randn(rng, (N, H), DT),
            "alpha": randn(rng, H, DT, 0.3), "gamma": randn(rng, H, DT),
            "beta": randn(rng, H, DT), "rm": randn(rng, H, DT, 0.1),
            "labels": rng.integers(0, H, N).astype(np.intp),
            "pm1": rng.choice([-1.0, 1.0], (N, H)), "01": rng.integers(0, 2, (N, H)) * 1.0,
            "targets": randn(rng, (N, H), DT), "W": randn(rng, 300001, DT),
            "Wm": randn(rng, (600, 500), DT) / np.sqrt(600)}


@pytest.mark.parametrize("nt", THREADS)
def test_activation_cores(probe, data, nt):
    x, dout = data["x"], data["dout"]
    for act in range(5):
        got = [_nan(x.shape), _nan(x.shape)]
        probe.act(x, got[0], dout, got[1], act, 0.1, nt)
        out = C.activation_forward(x, _nan(x.shape), act, 0.1, nt)
        _assert_same(got, [out, C.activation_backward(dout, out, _nan(x.shape), act, 0.1, nt)])
    alpha = data["alpha"]
    got = [_nan(x.shape), _nan(x.shape), _nan(H)]
    probe.prelu(x, alpha, got[0], dout, got[1], got[2], nt)
    want = [C.prelu_forward(x, alpha, _nan(x.shape), nt), _nan(x.shape), _nan(H)]
    C.prelu_backward(dout, x, alpha, want[1], want[2], nt)
    _assert_same(got, want)


@pytest.mark.parametrize("nt", THREADS)
def test_dropout_cores(probe, data, nt):
    x, dout = data["x"], data["dout"]
    for p, scale in [(0.3, 1 / 0.3), (0.6, 1.0)]:        # inverted and vanilla
        got = [_nan(x.shape), np.zeros(x.shape, np.uint8), _nan(x.shape)]
        probe.dropout(x, got[0], got[1], dout, got[2], p, scale, 5, 9, nt)
        mask = np.zeros(x.shape, np.uint8)
        want = [C.dropout_forward_scaled(x, _nan(x.shape), mask, p, scale, 5, 9, nt), mask,
                C.dropout_backward_scaled(dout, mask, _nan(x.shape), scale, nt)]
        _assert_same(got, want)


@pytest.mark.parametrize("nt", THREADS)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_cores(probe, data, nt, training):
    x, dout, gamma, beta = data["x"], data["dout"], data["gamma"], data["beta"]
    got, want = ([data["rm"].copy(), np.full(H, 1.5), _nan(x.shape), _nan(x.shape), _nan(H),
                  _nan(H), _nan(x.shape), _nan(H), _nan(H)] for _ in range(2))
    probe.batchnorm(x, gamma, beta, *got[:6], dout, *got[6:], training, nt)
    rm, rv, out, xhat, mean, inv_std, dx, dg, db = want
    C.batchnorm_forward(x, gamma, beta, rm, rv, out, xhat, mean, inv_std, training, 0.9,
                        1e-5, nt)
    C.batchnorm_backward(dout, xhat, gamma, inv_std, dx, dg, db, training, nt)
    _assert_same(got, want)


@pytest.mark.parametrize("nt", THREADS)
def test_score_loss_cores(probe, data, nt):
    s, labels = 2 * data["x"], data["labels"]
    cases = [(lambda *a: probe.softmax(*a, nt), lambda *a: C.softmax_cross_entropy(*a, nt),
              labels),
             (lambda *a: probe.svm(*a, 0.5, True, nt),
              lambda *a: C.multiclass_svm(*a, 0.5, True, nt), labels)]
    for name, y in [("attribute_hinge", data["pm1"]), ("attribute_logistic", data["01"]),
                    ("l2_regression", data["targets"]), ("l1_regression", data["targets"])]:
        cases.append((lambda *a, name=name: probe.elementwise(name, *a, nt),
                      lambda *a, name=name: getattr(C, name)(*a, nt), y))
    for core, kernel, y in cases:
        got, want = [None, _nan(s.shape), _nan(N)], [None, _nan(s.shape), _nan(N)]
        got[0] = core(s, y, got[1], got[2])
        want[0] = kernel(s, y, want[1], want[2])
        _assert_same(got, want)


@pytest.mark.parametrize("nt", THREADS)
def test_hsoftmax_cores(probe, nt):
    n, d, k = 700, 64, 300
    hs = losses.HierarchicalSoftmax(d, k, seed=0, dtype=DT)
    rng = rng_for("probe-hs")
    h, y = randn(rng, (n, d), DT), rng.integers(0, k, n).astype(np.intp)
    tree = (hs.paths, hs.codes, hs.depths)
    got, want = ([None, _nan((n, hs.paths.shape[1])), _nan(n), _nan(h.shape),
                  _nan(hs.W.shape), _nan(k - 1)] for _ in range(2))
    got[0] = probe.hs(h, hs.W, hs.b, y, *tree, *got[1:], nt)
    want[0] = C.hierarchical_softmax_forward(h, hs.W, hs.b, y, *tree, want[1], want[2], nt)
    C.hierarchical_softmax_backward(h, hs.W, y, hs.paths, hs.depths, want[1], *want[3:], nt)
    _assert_same(got, want)


@pytest.mark.parametrize("nt", THREADS)
def test_regularization_cores(probe, data, nt):
    W = data["W"]
    for name, core_args, def_args in [("l2_penalty", (0.3, 0.0), (0.3,)),
                                      ("l1_penalty", (0.3, 0.0), (0.3,)),
                                      ("elastic_net_penalty", (0.2, 0.7), (0.2, 0.7))]:
        got, want = [None, np.ones_like(W)], [None, np.ones_like(W)]
        got[0] = probe.penalty(name, W, got[1], *core_args, nt)
        want[0] = getattr(C, name)(W, want[1], *def_args, nt)
        _assert_same(got, want)
    got, want = [None, data["Wm"].copy()], [None, data["Wm"].copy()]
    got[0] = probe.max_norm(got[1], 1.0, nt)
    want[0] = C.max_norm_constrain(want[1], 1.0, nt)
    assert want[0] > 0
    _assert_same(got, want)
