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


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:        # pip gives no -j: compile on every core
            self.parallel = _cores()

    def run(self):
        # Here, not at import: `setup.py sdist` and pip's metadata step need neither.
        import numpy as np
        from Cython.Build import cythonize
        if not getattr(self, "_cythonized", False):
            render_templates()
            for ext in self.extensions:
                ext.include_dirs.insert(0, np.get_include())
            compiled = cythonize(self.extensions, include_path=[SRC],
                                 compiler_directives=COMPILER_DIRECTIVES,
                                 nthreads=_cores() if self.parallel else 0)
            # The .c files into the Extensions setuptools has finalized (cythonize
            # returns new objects, without setuptools' own attributes).
            c_sources = {ext.name: ext.sources for ext in compiled}
            for ext in self.extensions:
                ext.sources = c_sources[ext.name]
            self._cythonized = True
        super().run()

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
    from Cython import Tempita
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


COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}


def depends():
    """The C headers, loop bodies and .pxd files every module includes: a change to any
    of them must rebuild the extensions (setuptools only sees the .c otherwise).  The
    rendered .pxd files are among them (rewritten when their template changes), and the
    templates and their helpers, so that an sdist carries them (setuptools adds an
    extension's sources and depends to the sdist)."""
    files = {h.name for pattern in ("*.h", "*.inc", "*.pxd", "*.tp")
             for h in (HERE / SRC).glob(pattern)}
    files |= {tp.stem for tp in (HERE / SRC).glob("*.tp")} | {"prototypes.py"}
    return sorted(f"{SRC}/{name}" for name in files)


def extensions():
    """One Extension per src_c/*.pyx, its source still the .pyx: build_ext renders the
    templates and cythonizes, so that an sdist or metadata step does neither.  No .pyx
    is an error: a wheel without its kernels is no fastnn (an incomplete sdist must fail
    here, not build a pure-Python wheel that cannot import)."""
    pyx = sorted((HERE / SRC).glob("*.pyx"))
    if not pyx:
        raise RuntimeError(f"fastnn: no {SRC}/*.pyx in {HERE}: this source tree or sdist "
                           "is incomplete, and fastnn cannot be built without its "
                           "compiled kernels")
    return [Extension(
        f"fastnn.{p.stem}",
        [f"{SRC}/{p.name}"],
        depends=depends(),
        include_dirs=[SRC],              # and numpy's, added by build_ext
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    ) for p in pyx]


if __name__ == "__main__":          # as pip and `python -m build` run it; importable by tests
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
