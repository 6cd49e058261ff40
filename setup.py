"""Build script: the optional Cython kernels.

Everything else lives in pyproject.toml. The native extensions are optional: when
Cython or a C compiler is missing, or a build fails, the install still succeeds and
the package runs on its pure-Python backend (``vsm_phoenix.crdt.BACKEND == "pure"``).

``VSM_PHOENIX_REQUIRE_NATIVE=1`` (set by ``.ci/run``) turns that fallback into a build
failure, so that CI cannot go green on a build that silently lost its second backend.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


def native_required() -> bool:
    return os.environ.get("VSM_PHOENIX_REQUIRE_NATIVE") == "1"


class OptionalBuildExt(build_ext):
    """A build_ext that downgrades compiler failures to a warning (unless the native
    kernels are required)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._warn(exc)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc: BaseException) -> None:
        if native_required():
            raise RuntimeError(
                f"vsm-phoenix: native kernels not built ({exc}) and "
                "VSM_PHOENIX_REQUIRE_NATIVE=1"
            ) from exc
        msg = (
            f"vsm-phoenix: native kernels not built ({exc}); "
            "falling back to the pure-Python backend"
        )
        warnings.warn(msg, stacklevel=1)
        print("WARNING: " + msg, file=sys.stderr)


def native_extensions() -> list:  # type: ignore[type-arg]
    if os.environ.get("VSM_PHOENIX_PURE") == "1" and not native_required():
        return []
    sources = sorted(glob.glob("vsm_phoenix/**/*.pyx", recursive=True))
    if not sources:
        if native_required():
            raise RuntimeError("vsm-phoenix: no .pyx sources but VSM_PHOENIX_REQUIRE_NATIVE=1")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if native_required():
            raise RuntimeError(
                "vsm-phoenix: Cython missing and VSM_PHOENIX_REQUIRE_NATIVE=1"
            ) from None
        warnings.warn("vsm-phoenix: Cython missing; pure-Python backend only", stacklevel=1)
        return []
    return cythonize(
        sources,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
        quiet=True,
    )


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
