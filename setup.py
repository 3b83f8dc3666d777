"""Build fastnn's Cython kernels (every src_c/*.pyx becomes fastnn.<name>).

OpenMP: the compiler is asked to build *and run* a small OpenMP program. If it can, the
kernels are compiled with OpenMP; if not, they are built serial and a warning is printed.
FASTNN_REQUIRE_OPENMP=1 turns that warning into an error (CI sets it);
FASTNN_NO_OPENMP=1 skips the probe and builds serial kernels.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()
SRC = "src_c"

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n >= 1 ? 0 : 1;
}
"""


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _openmp_flags(compiler):
    """Return (compile_args, link_args) that give working OpenMP, or None."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    tmp = tempfile.mkdtemp(prefix="fastnn-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                exe = "probe"
                compiler.link_executable(objs, exe, output_dir=tmp, extra_postargs=lflags)
                subprocess.run([os.path.join(tmp, exe)], check=True, capture_output=True,
                               timeout=60)
                return cflags, lflags
            except Exception:  # noqa: BLE001 - any failure means "no OpenMP here"
                continue
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            base = ["/O2"]
        else:
            # No -march=native: a build must run on any CPU of its architecture.
            # -fno-math-errno lets gcc vectorize loops that call sqrt; -fno-trapping-math
            # lets it if-convert the clamps in fastnn_math.h's exp (no kernel relies on FP
            # traps).  Neither changes a computed value.
            base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unreachable-code"]
        flags = None
        if _env_flag("FASTNN_NO_OPENMP"):
            msg = "FASTNN_NO_OPENMP is set: building serial kernels"
        else:
            flags = _openmp_flags(self.compiler)
            msg = "the C compiler cannot build and run an OpenMP program: building serial kernels"
        if flags is None:
            if _env_flag("FASTNN_REQUIRE_OPENMP"):
                raise RuntimeError("FASTNN_REQUIRE_OPENMP=1 but " + msg)
            warnings.warn(msg, stacklevel=1)
            print("WARNING: fastnn: " + msg, file=sys.stderr)
            cflags, lflags = [], []
        else:
            cflags, lflags = flags
        for ext in self.extensions:
            ext.extra_compile_args = base + cflags + list(ext.extra_compile_args)
            ext.extra_link_args = lflags + list(ext.extra_link_args)
        super().build_extensions()


def render_templates():
    """Render every src_c/X.tp into src_c/X with Tempita (as scikit-learn does its .tp
    files), the names of src_c/prototypes.py in scope.  A rendered file is rewritten
    only when its text changes: an unchanged template leaves it, and the extensions
    that depend on it, alone."""
    spec = importlib.util.spec_from_file_location("prototypes", HERE / SRC / "prototypes.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    namespace = {k: v for k, v in vars(helpers).items() if not k.startswith("_")}
    for tp in sorted((HERE / SRC).glob("*.tp")):
        text = Tempita.Template(tp.read_text("utf-8"), name=str(tp),
                                namespace=namespace).substitute()
        out = tp.with_suffix("")
        if not out.exists() or out.read_text("utf-8") != text:
            out.write_text(text, "utf-8")


def extensions():
    render_templates()
    # The C headers, loop bodies and .pxd files every module includes: a change to any
    # of them must rebuild the extensions (setuptools only sees the .c otherwise).  The
    # rendered .pxd files are among them, rewritten when their template changes.
    headers = sorted(f"{SRC}/{h.name}" for pattern in ("*.h", "*.inc", "*.pxd")
                     for h in (HERE / SRC).glob(pattern))
    exts = []
    for pyx in sorted((HERE / SRC).glob("*.pyx")):
        exts.append(Extension(
            f"fastnn.{pyx.stem}",
            [f"{SRC}/{pyx.name}"],
            depends=headers,
            include_dirs=[np.get_include(), SRC],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        ))
    return cythonize(
        exts,
        include_path=[SRC],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
