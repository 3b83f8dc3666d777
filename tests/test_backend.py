"""The dispatch point, build configuration and thread settings."""
import importlib.machinery
import os
import platform
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _kernels, datasets
from fastnn.layers import Dropout, Linear
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import Sequential
from fastnn.trainer import gradient_descent


def test_compiled_backend_is_the_default_and_every_kernel_is_compiled():
    assert fastnn.get_backend() == "compiled"
    assert _kernels.COMPILED is not None, _kernels.COMPILED_IMPORT_ERROR
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name, module in _kernels.KERNELS.items():
        fn = getattr(_kernels.COMPILED, name)
        mod = importlib.import_module(f"fastnn.{module}")
        assert mod.__file__.endswith(suffixes), f"{module} is not an extension: {mod.__file__}"
        assert getattr(mod, name) is fn
        assert fn is not getattr(_kernels.NUMPY, name)


def test_use_backend_switches_and_restores():
    assert fastnn.get_backend() == "compiled"
    with fastnn.use_backend("numpy") as ns:
        assert fastnn.get_backend() == "numpy"
        assert ns is _kernels.NUMPY
    assert fastnn.get_backend() == "compiled"
    fastnn.use_backend("numpy")
    try:
        assert _kernels.backend() is _kernels.NUMPY
    finally:
        fastnn.use_backend("compiled")
    with pytest.raises(ValueError, match="backend"):
        fastnn.use_backend("cuda")


def test_training_on_compiled_backend_never_calls_a_twin(twins_forbidden):
    # twins_forbidden makes every NumPy twin raise: this whole path must be compiled.
    X, y = datasets.spiral(20, 3, seed=0)
    rng = np.random.default_rng(0)
    net = Sequential([Linear(2, 16, activation="relu", seed=rng), Dropout(0.9, seed=1),
                      Linear(16, 3, seed=rng)])
    hist = gradient_descent(net, SoftmaxCrossEntropy(), X, y, steps=5, step_size=0.5)
    assert np.all(np.isfinite(hist.loss))
    g = fastnn.gradcheck.numerical_gradient(lambda w: float(np.sum(w ** 2)), np.ones(3))
    np.testing.assert_allclose(g, 2.0, rtol=1e-8)


def test_show_config_reports_the_build(capsys):
    info = fastnn.show_config()
    printed = capsys.readouterr().out
    assert info["backend"] == "compiled" and "compiled" in printed
    assert info["num_threads"] == fastnn.get_num_threads()
    assert info["num_threads_source"] in fastnn.config.SOURCES
    assert 1 <= info["num_threads"] <= info["cores"]
    assert "threads" in printed and "cores" in printed
    if os.environ.get("FASTNN_NO_OPENMP", "") in ("", "0"):
        # CI builds with FASTNN_REQUIRE_OPENMP=1: the kernels must have OpenMP.
        assert info["openmp"] is True
    assert info["blas"], "threadpoolctl found no BLAS library"
    if platform.machine() == "x86_64" and sys.platform == "linux":
        # gcc >= 12 on x86-64 Linux builds the per-ISA loop clones (CI's compiler)
        assert info["isa_dispatch"] is True
    assert {"version", "python", "numpy", "platform"} <= set(info)


def test_set_num_threads_validates_and_round_trips():
    try:
        fastnn.set_num_threads(1)
        assert fastnn.get_num_threads() == 1
    finally:
        fastnn.set_num_threads(None)     # back to automatic, as the other tests expect
    assert fastnn.config._requested is None
    with pytest.raises(ValueError, match="n"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        fastnn.set_num_threads(1.5)


def test_vector_exp_is_within_two_ulp_of_exp():
    from fastnn import _runtime
    # float64 against an 80-bit long double reference, over exp's whole finite range
    # including gradual underflow; float32 against float64.
    x = np.concatenate([np.linspace(-745.0, 709.7, 200_001), np.linspace(-1, 1, 10_001),
                        [0.0, -0.0, -1e-300, 1e-300]])
    out = _runtime.vector_exp(x, np.empty_like(x))
    ref = np.exp(x.astype(np.longdouble))
    normal = ref > np.finfo(np.float64).tiny
    ulp = np.abs(out[normal] - ref[normal]) / np.spacing(ref[normal].astype(np.float64))
    assert ulp.max() <= 2.0
    sub = ~normal   # subnormal results: absolute error within one subnormal step
    assert np.all(np.abs(out[sub] - ref[sub].astype(np.float64)) <= 2 * 5e-324)
    x32 = np.linspace(-103.0, 88.7, 100_001, dtype=np.float32)
    out32 = _runtime.vector_exp(x32, np.empty_like(x32))
    ref32 = np.exp(x32.astype(np.float64))
    normal = ref32 > np.finfo(np.float32).tiny
    ulp32 = np.abs(out32[normal] - ref32[normal]) / np.spacing(ref32[normal].astype(np.float32))
    assert ulp32.max() <= 2.0
    special = np.array([-np.inf, np.inf, np.nan, 800.0, -800.0])
    got = _runtime.vector_exp(special, np.empty_like(special))
    np.testing.assert_array_equal(got[[0, 1, 3, 4]], [0.0, np.inf, np.inf, 0.0])
    assert np.isnan(got[2])


def test_kernels_refuse_memory_they_would_misread_or_clobber():
    from fastnn import _kernels as K
    C = K.COMPILED
    x = np.arange(6.0).reshape(2, 3)
    W, b = np.ones((3, 4)), np.zeros(4)
    # byte-swapped and misaligned arrays have the right type number but other bits
    with pytest.raises(ValueError, match="byte order"):
        C.affine_forward(x.astype(">f8"), W, b, np.empty((2, 4)), 0, 0.0, 1)
    raw = np.zeros(2 * 3 * 8 + 1, np.uint8)[1:].view(np.float64).reshape(2, 3)
    with pytest.raises(ValueError, match="aligned"):
        C.affine_forward(raw, W, b, np.empty((2, 4)), 0, 0.0, 1)
    # an output that overlaps an input would be read while being written
    sq = np.ones((3, 3))
    with pytest.raises(ValueError, match="share memory"):
        C.affine_forward(sq, sq, np.zeros(3), sq, 0, 0.0, 1)
    s = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="share memory"):
        C.softmax_cross_entropy(s, np.zeros(4, np.intp), s, np.empty(4), 1)
    w = np.ones(5)
    with pytest.raises(ValueError, match="share memory"):
        C.sgd_update(w, w, 0.1, 1)
    with pytest.raises(ValueError, match="share memory"):
        C.l2_penalty(w, w, 0.1)
    with pytest.raises(ValueError, match="share memory"):
        C.numerical_gradient(lambda a: 0.0, w, w, 1e-5, True)
    big = np.ones((10, 4))
    with pytest.raises(ValueError, match="share memory"):     # a partial overlap
        C.affine_forward(big[:5], np.ones((4, 4)), np.zeros(4), big[3:8], 0, 0.0, 1)
    # element-wise kernels may work in place: the very same buffer is allowed
    y = np.random.default_rng(1).standard_normal((100, 7))
    want = np.maximum(y, 0)
    C.activation_forward(y, y, 1, 0.0, 1)
    np.testing.assert_array_equal(y, want)


def test_thread_counts_below_one_run_serially():
    from fastnn import _kernels as K
    x = np.ones(100_000, np.float32)
    out, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    ref = K.COMPILED.dropout_forward(x, out.copy(), mask.copy(), 0.5, 1, 0, 1)
    for bad in (0, -1, -(2 ** 31)):
        np.testing.assert_array_equal(
            K.COMPILED.dropout_forward(x, out, mask, 0.5, 1, 0, bad), ref)


@pytest.mark.parametrize("backend_name", ["compiled", "numpy"])
def test_numerical_gradient_refuses_a_step_below_the_resolution_of_x(backend_name):
    x = np.array([1.0, 1024.0], np.float32)      # 1024 + 1e-5 rounds to 1024 in float32
    with fastnn.use_backend(backend_name):
        with pytest.raises(ValueError, match="h = 1e-05 is below the resolution"):
            fastnn.gradcheck.numerical_gradient(lambda a: float(a.sum()), x)
    np.testing.assert_array_equal(x, [1.0, 1024.0])


def test_importing_fastnn_changes_no_process_wide_setting(tmp_path):
    import json
    import subprocess
    import textwrap

    from threadpoolctl import threadpool_info
    # The child loads the OpenMP runtime the kernels link (and numpy's and scipy's BLAS)
    # before importing fastnn, so that every pool fastnn could touch is there to compare.
    omp_libs = [i["filepath"] for i in threadpool_info() if i["user_api"] == "openmp"]
    code = textwrap.dedent("""
        import ctypes, json, os, sys
        import numpy, scipy.linalg
        from threadpoolctl import threadpool_info
        for path in sys.argv[1:]:
            ctypes.CDLL(path)
        pools = lambda: {i["filepath"]: i["num_threads"] for i in threadpool_info()}
        env0, pools0 = dict(os.environ), pools()
        import fastnn
        n = fastnn.get_num_threads()
        fastnn.show_config(print_out=False)
        print(json.dumps({"env": [env0, dict(os.environ)], "pools": [pools0, pools()],
                          "threads": n}))
    """)
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FASTNN_NUM_THREADS")}
    # cwd outside the repository: the child must import the package the tests run
    # (installed, or built in place and on sys.path), not an unbuilt source tree
    base["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnn.__file__))
    # FASTNN_NUM_THREADS=1: fastnn's own count follows it, nobody else's pool does
    for env, want in ((base, None), ({**base, "FASTNN_NUM_THREADS": "1"}, 1)):
        out = subprocess.run([sys.executable, "-c", code, *omp_libs], env=env, cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        got = json.loads(out)
        assert got["env"][1] == got["env"][0]
        before, after = got["pools"]
        assert len(before) >= 1 + bool(omp_libs)     # BLAS, and OpenMP when built with it
        assert {path: after.get(path) for path in before} == before
        if want is not None:
            assert got["threads"] == want


# ---- a missing or broken build: an ImportError that says what to do, never a fallback ----

_CHILD_NUMPY = """
import sys
import numpy as np
import fastnn
from fastnn import datasets
from fastnn.losses import SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn.trainer import gradient_descent
assert fastnn.get_backend() == "numpy", fastnn.get_backend()
info = fastnn.show_config()
assert info["backend"] == "numpy" and info["compiled_available"] is False, info
assert info["openmp"] is None and info["num_threads"] >= 1
try:
    fastnn.use_backend("compiled")
except ImportError as exc:
    print("USE_BACKEND:", exc)
else:
    raise AssertionError("use_backend('compiled') worked without the extensions")
assert fastnn.get_backend() == "numpy"
X, y = datasets.spiral(20, 3, seed=0)
hist = gradient_descent(MLP([2, 8, 3], seed=0), SoftmaxCrossEntropy(), X, y, steps=3)
assert np.all(np.isfinite(hist.loss))
from fastnn.cli import main
sys.exit(main(["config"]))
"""


def _package_copy(root, with_extensions=()):
    """fastnn's Python files (and the named extension modules) copied under root."""
    import shutil
    src = os.path.dirname(fastnn.__file__)
    dst = root / "fastnn"
    dst.mkdir(parents=True)
    for name in os.listdir(src):
        if name.endswith(".py") or name.split(".")[0] in with_extensions:
            shutil.copy(os.path.join(src, name), dst / name)
    return dst


def _import_in(path, code="import fastnn", copy=True, **env):
    """Run code in a child importing fastnn from path.  copy: path holds a copy of the
    package, and the child runs with -S (no .pth files: an editable install's finder
    would map fastnn's submodules back to the checkout), site-packages on PYTHONPATH."""
    import subprocess
    import sysconfig
    base = {k: v for k, v in os.environ.items() if k not in ("FASTNN_BACKEND", "PYTHONPATH")}
    paths = [str(path)]
    if copy:
        paths += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return subprocess.run([sys.executable, *(["-S"] if copy else []), "-c", code], cwd=path,
                          capture_output=True, text=True, timeout=120,
                          env={**base, **env, "PYTHONPATH": os.pathsep.join(paths)})


def _import_error(result):
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: "), result.stderr
    assert "Warning" not in result.stderr, result.stderr
    return last


def test_an_installation_without_its_extensions_cannot_be_imported(tmp_path):
    _package_copy(tmp_path)
    msg = _import_error(_import_in(tmp_path))
    assert "compiled kernels cannot be imported: the installation is broken" in msg
    assert "pip install --force-reinstall" in msg and "FASTNN_BACKEND=numpy" in msg
    assert "No module named 'fastnn._" in msg


def test_a_broken_extension_cannot_be_imported(tmp_path):
    modules = sorted(set(_kernels.KERNELS.values()) | {"_runtime"})
    pkg = _package_copy(tmp_path, with_extensions=modules)
    broken = next(p for p in pkg.iterdir() if p.name.startswith("_loss.")
                  and p.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))
    broken.write_bytes(b"not a shared object")
    # the other extensions load
    assert _import_in(tmp_path, "import fastnn._affine", FASTNN_BACKEND="numpy").returncode == 0
    msg = _import_error(_import_in(tmp_path))
    assert "installation is broken" in msg and broken.name in msg


def test_an_unbuilt_source_checkout_says_so(tmp_path):
    _package_copy(tmp_path)
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "src_c").mkdir()
    msg = _import_error(_import_in(tmp_path))
    assert f"imported from its source checkout ({tmp_path.resolve()})" in msg
    assert "pip install ." in msg and "FASTNN_BACKEND=numpy" in msg


def test_the_numpy_backend_runs_without_extensions_only_when_asked_for(tmp_path):
    _package_copy(tmp_path)
    r = _import_in(tmp_path, _CHILD_NUMPY, FASTNN_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                     # asked for: no warning
    assert "USE_BACKEND: fastnn's compiled kernels cannot be imported" in r.stdout
    assert "FASTNN_BACKEND=numpy" in r.stdout
    assert "backend        : numpy (FASTNN_BACKEND=numpy; compiled kernels NOT available: " \
        "No module named 'fastnn._" in r.stdout


def test_fastnn_backend_selects_the_default_and_refuses_a_typo(tmp_path):
    code = "import fastnn; print(fastnn.get_backend()); fastnn.use_backend('compiled'); " \
           "print(fastnn.get_backend())"
    installed = os.path.dirname(os.path.dirname(fastnn.__file__))
    r = _import_in(installed, code, copy=False, FASTNN_BACKEND="numpy")
    assert r.returncode == 0 and r.stdout.split() == ["numpy", "compiled"], r.stderr
    r = _import_in(installed, code, copy=False, FASTNN_BACKEND="compiled")
    assert r.returncode == 0 and r.stdout.split() == ["compiled", "compiled"], r.stderr
    msg = _import_error(_import_in(installed, code, copy=False, FASTNN_BACKEND="cuda"))
    assert "FASTNN_BACKEND must be one of ('compiled', 'numpy'), got 'cuda'" in msg
