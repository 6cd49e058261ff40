"""The built wheel, installed in a fresh virtual environment, works without the source
tree: ``vsm-phoenix demo`` runs and ``vsm-phoenix bench --help`` answers. With a C
compiler the wheel carries the native kernels; without one (``CC=false``) the build
still succeeds and the package runs on the pure-Python kernels -- unless
``VSM_PHOENIX_REQUIRE_NATIVE=1`` (CI), which makes that build fail.

The wheel is built with ``python -m build --wheel --no-isolation`` (the test
environment's setuptools and Cython: no download) from a copy of the tracked files, as
a clean clone would have them; dependencies install from the configured package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.packaging


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _source_copy(target: Path) -> Path:
    """The tracked files (what a clean clone has), or the tree minus build outputs."""
    target.mkdir()
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            if (ROOT / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target / name)
    else:  # pragma: no cover - an unpacked tree without git
        shutil.copytree(ROOT, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".venv", "build", "dist", "*.egg-info", "*.so", "*.c", "__pycache__", ".git"))
    return target


def _build(src: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    pytest.importorskip("build", reason="python -m build (the dev extra) is not installed")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
          str(src)], cwd=src, env={"VSM_PHOENIX_PURE": "", **(env or {})})
    (wheel,) = out.glob("vsm_phoenix-*.whl")
    return wheel


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def test_wheel_installs_in_a_fresh_venv_with_native_kernels_or_pure_fallback(
    tmp_path: Path
) -> None:
    src = _source_copy(tmp_path / "src")
    wheel = _build(src, tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    native = [n for n in names if n.startswith("vsm_phoenix/crdt/_native") and
              n.endswith((".so", ".pyd"))]
    assert "vsm_phoenix/py.typed" in names and "vsm_phoenix/cli/__init__.py" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    if _compiler():
        assert native, "a compiler is present but the wheel has no native kernels"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py, cmd = venv / "bin" / "python", venv / "bin" / "vsm-phoenix"
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
         cwd=tmp_path)
    away = tmp_path / "elsewhere"  # no source tree in sight
    away.mkdir()
    env = {"PYTHONPATH": "", "VSM_PHOENIX_PURE": ""}
    where = _run([str(py), "-c", "import vsm_phoenix.crdt as c; print(c.BACKEND, c.__file__)"],
                 cwd=away, env=env).stdout.split()
    assert where[1].startswith(str(venv)), where  # the wheel, not the checkout
    assert where[0] == ("native" if native else "pure")
    demo = _run([str(cmd), "demo", "--quiet", "--out-dir", str(away / "out")], cwd=away, env=env)
    assert "CONVERGED" in demo.stdout and (away / "out" / "spacetime.html").exists()
    helped = _run([str(cmd), "bench", "--help"], cwd=away, env=env)
    assert "--quick" in helped.stdout and "--no-progress" in helped.stdout
    # without the amqp extra, the broker commands say what to install, in one line
    no_amqp = subprocess.run([str(cmd), "ctl", "n1", "status"], cwd=away, text=True,
                             capture_output=True, env={**os.environ, **env}, check=False)
    assert no_amqp.returncode == 2 and no_amqp.stderr.strip().splitlines() == [
        "vsm-phoenix ctl: this command needs the amqp extra: pip install 'vsm-phoenix[amqp]'"]

    # no compiler: the build still succeeds, and the package runs on pure Python
    shutil.rmtree(src / "build", ignore_errors=True)  # no compiled leftovers to reuse
    for c_file in src.glob("vsm_phoenix/**/*.c"):
        c_file.unlink()
    no_cc = {"CC": "false", "CXX": "false"}
    # ... unless the native kernels are required (CI): then the build fails, loudly
    required = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
         str(tmp_path / "dist-required"), str(src)], cwd=src, text=True, capture_output=True,
        env={**os.environ, "VSM_PHOENIX_PURE": "", "VSM_PHOENIX_REQUIRE_NATIVE": "1", **no_cc},
        timeout=600, check=False)
    assert required.returncode != 0 and "VSM_PHOENIX_REQUIRE_NATIVE=1" in (
        required.stdout + required.stderr), required.stdout[-2000:] + required.stderr[-2000:]
    assert not list((tmp_path / "dist-required").glob("*.whl"))
    pure_wheel = _build(src, tmp_path / "dist-pure",
                        env={**no_cc, "VSM_PHOENIX_REQUIRE_NATIVE": ""})
    assert not [n for n in zipfile.ZipFile(pure_wheel).namelist() if n.endswith(".so")]
    _run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--force-reinstall", str(pure_wheel)], cwd=tmp_path)
    backend = _run([str(py), "-c", "import vsm_phoenix.crdt as c; print(c.BACKEND)"],
                   cwd=away, env=env).stdout.strip()
    assert backend == "pure"
    demo = _run([str(cmd), "demo", "--quiet", "--out-dir", str(away / "out2")], cwd=away,
                env=env)
    assert "CONVERGED" in demo.stdout
