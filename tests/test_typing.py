"""The public API's type hints (the package ships py.typed): every public function and
method of the public modules is annotated, parameters and return, and mypy finds no
error in the package."""
import ast
import pathlib
import shutil

import pytest

import fastnn

PACKAGE = pathlib.Path(fastnn.__file__).parent
#: modules that are not the importable API: the command line, and the NumPy twins (the
#: kernels' oracle, mirroring the compiled kernels' signatures)
NOT_API = {"cli.py", "reference.py"}


def _public_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if not any(part.startswith("_") for part in rel.parts) and rel.name not in NOT_API:
            yield path


def _unannotated(path):
    """Public functions, and public methods (with __init__ and __call__) of public
    classes, missing a parameter or return annotation."""
    def missing(fn):
        a = fn.args
        params = [p for p in a.posonlyargs + a.args + a.kwonlyargs
                  if p.arg not in ("self", "cls")] + [p for p in (a.vararg, a.kwarg) if p]
        return fn.returns is None or any(p.annotation is None for p in params)

    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found += [node.name] if missing(node) else []
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += [f"{node.name}.{m.name}" for m in node.body
                      if isinstance(m, ast.FunctionDef) and missing(m)
                      and (not m.name.startswith("_") or m.name in ("__init__", "__call__"))]
    return found


def test_the_public_modules_are_found():
    names = {p.name for p in _public_modules()}
    assert {"net.py", "trainer.py", "layers.py", "optim.py", "sklearn.py",
            "data_parallel.py"} <= names


@pytest.mark.parametrize("path", list(_public_modules()), ids=lambda p: p.name)
def test_every_public_function_is_annotated(path):
    assert _unannotated(path) == []


def test_mypy_finds_no_error(tmp_path):
    """mypy over a copy of the package's sources (so that it checks the same files from a
    checkout and from an installed wheel), with the pyproject's settings."""
    from mypy import api      # the test extra has it
    copy = tmp_path / "fastnn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns(
        "*.so", "*.pyd", "*.c", "__pycache__"))
    out, err, status = api.run([str(copy), "--follow-imports=silent",
                                "--ignore-missing-imports", "--cache-dir",
                                str(tmp_path / "cache"), "--no-error-summary"])
    assert status == 0, out + err


def test_types_import_no_optional_dependency(tmp_path):
    """Annotations name optional packages only under TYPE_CHECKING: importing every
    public module but fastnn.sklearn (which is scikit-learn's estimators) loads none of
    them."""
    import subprocess
    import sys
    modules = sorted(".".join(("fastnn",) + p.relative_to(PACKAGE).with_suffix("").parts)
                     for p in _public_modules())
    modules = [m for m in modules if m != "fastnn.sklearn"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(sorted(m for m in ('matplotlib', 'onnx', 'onnxruntime', 'pandas', "
            "'typing_extensions', 'mpi4py', 'sklearn', 'torch', 'tqdm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
