"""What `python -m build` puts in the sdist, and setup.py's refusal to build without its
kernels.  (The wheel itself, built from that sdist and tested in a virtual environment
with no C compiler, is CI's second step: .ci/run.)

These tests look at the source tree: they run from a checkout or an unpacked sdist (with
setup.py beside tests/), not from a copy of tests/ run against an installed wheel."""
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import fastnn

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "setup.py").is_file():
    raise RuntimeError(f"tests/test_packaging.py needs the source tree: no setup.py in {ROOT} "
                       "(against an installed wheel, run the suite without this file)")

#: src_c files the build reads, by suffix; plus the template helpers, by name
BUILD_SUFFIXES = (".pyx", ".pxd", ".tp", ".h", ".inc")


def _source_version():
    text = (ROOT / "fastnn" / "__init__.py").read_text("utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def _needed():
    """Every file of the checkout that building and testing from an sdist needs."""
    src = ROOT / "src_c"
    rendered = {tp.stem for tp in src.glob("*.tp")}      # setup.py writes these
    files = {f"src_c/{p.name}" for p in src.iterdir()
             if p.suffix in BUILD_SUFFIXES and p.name not in rendered}
    files |= {"src_c/prototypes.py", "setup.py", "pyproject.toml", "MANIFEST.in",
              "README.md", "LICENSE", "fastnn/py.typed"}
    files |= {f"fastnn/{p.name}" for p in (ROOT / "fastnn").glob("*.py")}
    files |= {f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")}
    if (ROOT / ".git").exists() and shutil.which("git"):
        # and whatever git tracks there, whatever its suffix
        tracked = subprocess.run(["git", "ls-files", "src_c", "fastnn", "tests"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.split()
        files |= set(tracked)
    return files


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist, as `python -m build --sdist` makes it (isolated build environment)."""
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (path,) = out.glob("fastnn-*.tar.gz")
    return path


def test_the_sdist_carries_every_file_the_build_and_tests_need(sdist):
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        pkg_info = tar.extractfile(f"fastnn-{_source_version()}/PKG-INFO").read().decode()
    prefix = f"fastnn-{_source_version()}/"
    assert all(n.startswith(prefix) for n in names)
    got = {n[len(prefix):] for n in names}
    missing = sorted(_needed() - got)
    assert not missing, f"missing from the sdist: {missing}"
    # and nothing that the build generates (it would be stale, or for another platform)
    rendered = {f"src_c/{tp.stem}" for tp in (ROOT / "src_c").glob("*.tp")}
    generated = sorted(n for n in got if n.endswith((".so", ".pyd", ".pyc")) or n in rendered
                       or (n.startswith("src_c/") and n.endswith(".c")))
    assert not generated, f"build outputs in the sdist: {generated}"
    assert "\nLicense-Expression: BSD-3-Clause\n" in pkg_info
    assert "\nLicense-File: LICENSE\n" in pkg_info
    assert f"\nVersion: {_source_version()}\n" in pkg_info
    assert "\nClassifier: Typing :: Typed\n" in pkg_info
    assert "\nDescription-Content-Type: text/markdown\n" in pkg_info
    assert "# fastnn" in pkg_info                     # the README, as long description


def test_the_version_has_one_source():
    """pyproject.toml reads it from fastnn/__init__.py; the package imported is the same
    version, and so is what pip recorded for it when it was installed."""
    from importlib.metadata import PackageNotFoundError, version
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split(
        "[tool.setuptools.dynamic]")[0]
    assert fastnn.__version__ == _source_version()
    try:
        assert version("fastnn") == fastnn.__version__
    except PackageNotFoundError:     # a build in place, never installed
        pass


def test_setup_py_refuses_a_tree_without_its_kernel_sources(tmp_path):
    """An sdist that lost src_c/*.pyx must fail to build, not make a pure-Python wheel."""
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    (tmp_path / "src_c").mkdir()
    spec = importlib.util.spec_from_file_location("fastnn_setup", tmp_path / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)                # defines; setup() runs only as __main__
    with pytest.raises(RuntimeError, match=r"no src_c/\*\.pyx .* incomplete"):
        module.extensions()
    real = importlib.util.spec_from_file_location("fastnn_setup_real", ROOT / "setup.py")
    module = importlib.util.module_from_spec(real)
    real.loader.exec_module(module)
    names = sorted(ext.name for ext in module.extensions())
    assert names == sorted(f"fastnn.{p.stem}" for p in (ROOT / "src_c").glob("*.pyx"))
    assert set(fastnn._kernels.KERNELS.values()) | {"_runtime"} <= {n[7:] for n in names}


def test_py_typed_marks_the_installed_package():
    assert (Path(fastnn.__file__).parent / "py.typed").is_file()
