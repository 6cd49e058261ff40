"""``vsm-phoenix bench``: the benchmark report (ratios measured side by side).

The suites live in the source tree's ``bench/`` folder, not in the installed package
(they compare against other libraries, from the ``bench`` extra). ``vsm-phoenix bench``
runs them from ``./bench`` (the project root) or ``--suites DIR``, exactly as
``python -m bench`` does; elsewhere it says so in one line (exit 2). ``--help`` works
everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from vsm_phoenix.cli.base import UsageError, usage_exit

__all__ = ["add_options", "find_suites", "register", "run"]

PROG = "vsm-phoenix bench"


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of ``vsm-phoenix bench`` and ``python -m bench`` (one definition)."""
    p.add_argument("--quick", action="store_true", help="a short pass (about a minute)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this suite (repeatable): crdt, sync, crypto, "
                        "linearizability, raft, amqp, ... (bench_NAME.py)")
    p.add_argument("--out", type=Path, default=None,
                   help="where the JSON report goes (default: the suites' results/ folder)")
    p.add_argument("--no-progress", action="store_true",
                   help="no bar or per-measurement lines: one line per suite start and end")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="benchmark report (ratios; JSON in bench/results/)",
        description="Run the benchmark suites side by side and print a table of ratios; "
                    "the full report goes to JSON. Needs the source tree's bench/ folder "
                    "(run from the project root, or pass --suites) and the bench extra "
                    "(pip install 'vsm-phoenix[bench]'). Benchmarks never assert times.",
    )
    p.add_argument("--suites", default=None, metavar="DIR",
                   help="the bench/ folder of a source checkout (default: ./bench)")
    add_options(p)
    p.set_defaults(run=run)


def find_suites(given: str | None) -> Path:
    """The ``bench`` folder to run: ``given``, else ``./bench``; ``UsageError`` when it
    is not a suites folder."""
    folder = Path(given) if given else Path.cwd() / "bench"
    if not (folder / "__main__.py").is_file() or not any(folder.glob("bench_*.py")):
        where = f"{folder} is not" if given else "no ./bench folder here:"
        raise UsageError(
            f"{where} the benchmark suites, which ship with the source tree, not the "
            "package: run from a checkout's root, or pass --suites PATH/TO/bench"
        )
    return folder.resolve()


def run(args: argparse.Namespace) -> int:
    try:
        folder = find_suites(args.suites)
    except UsageError as exc:
        return usage_exit(PROG, exc)
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        runner = importlib.import_module(f"{folder.name}.__main__")
    except ImportError as exc:
        return usage_exit(PROG, f"cannot load the suites from {folder}: {exc}")
    code: int = runner.run_suites(args)
    return code
