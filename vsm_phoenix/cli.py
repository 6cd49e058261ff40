"""The ``vsm-phoenix`` command line.

Sub-commands:

* ``demo`` -- the in-process scenarios behind ``make demo``.
* ``check`` -- check a history for linearizability (:mod:`vsm_phoenix.verify`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from vsm_phoenix.crdt import demo
    from vsm_phoenix.protocol.scenario import run_demo

    crdt_ok = demo.run(seed=args.seed)
    print()
    code = run_demo(seed=args.seed, out_dir=args.out_dir, progress=not args.quiet)
    return 0 if crdt_ok and code == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsm-phoenix",
        description="CRDTs, sans-IO distributed protocols and sealed messaging.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo",
        help="run the in-process scenarios: CRDT convergence, then a 5-node cluster on the "
        "simulator",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out-dir", default="demo-out", help="where the diagram and trace go")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_demo)
    # Listed for --help only: main() hands `check ...` to main_check before parsing.
    sub.add_parser("check", help="check a history for linearizability", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args_list = list(argv) if argv is not None else sys.argv[1:]
    if args_list[:1] == ["check"]:
        from vsm_phoenix.verify.linearizability import main_check

        return main_check(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    code: int = args.func(args)
    return code
