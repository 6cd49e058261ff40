"""The ``vsm-phoenix`` command line.

Sub-commands:

* ``demo`` -- the in-process scenarios behind ``make demo``.
* ``check`` -- check a history for linearizability (:mod:`vsm_phoenix.verify`).
* ``simulate`` -- run a scenario in-process on the deterministic simulator (default) or,
  with ``--transport amqp``, as separate node processes over RabbitMQ.
* ``node`` -- run one node process against the broker (:mod:`vsm_phoenix.cli.node`).
* ``bench`` -- the benchmark report (``make bench``).
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


def _cmd_simulate(args: argparse.Namespace) -> int:
    """The in-process simulator run of the ``crdt`` or ``kv`` scenario."""
    if args.scenario == "crdt":
        from vsm_phoenix.protocol.scenario import run_demo

        return run_demo(seed=args.seed, out_dir=args.out_dir, progress=not args.quiet)
    from pathlib import Path

    from vsm_phoenix.verify import Verdict, check_history, render_html
    from vsm_phoenix.verify.kv_workload import simulate_kv

    bad = 0
    for seed in range(args.seed, args.seed + args.runs):
        run = simulate_kv(seed, nodes=args.nodes)
        result = check_history(run.history, timeout=args.timeout)
        ok = result.verdict is Verdict.OK and not run.violations
        bad += not ok
        if not args.quiet or not ok:
            print(
                f"seed {seed}: {len(run.history.operations)} ops, "
                f"{result.verdict.name}, invariant violations: {len(run.violations)}"
            )
        for violation in run.violations:
            print(f"  {violation}")
        if not ok:
            out = Path(args.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            run.sim.write_html(out / f"kv-seed{seed}-spacetime.html")
            if result.verdict is Verdict.ILLEGAL:
                (out / f"kv-seed{seed}-history.html").write_text(
                    render_html(result, title=f"KV seed {seed}"), encoding="utf-8"
                )
            print(f"  replay with: vsm-phoenix simulate --scenario kv --seed {seed}; "
                  f"diagrams in {out}")
    print(f"{args.runs - bad}/{args.runs} runs linearizable with every Raft invariant intact")
    return 1 if bad else 0


def _bench(argv: list[str]) -> int:
    try:
        from bench.__main__ import main as bench_main
    except ImportError:
        print("vsm-phoenix bench: run from a source checkout (the bench/ folder)",
              file=sys.stderr)
        return 2
    return int(bench_main(argv))


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
    p = sub.add_parser(
        "simulate",
        help="run a scenario on the deterministic simulator (or --transport amqp)",
    )
    p.add_argument("--transport", choices=["sim", "amqp"], default="sim",
                   help="sim: in-process simulator (default); amqp: node processes over "
                   "RabbitMQ (see `vsm-phoenix simulate --transport amqp --help`)")
    p.add_argument("--scenario", choices=["crdt", "kv"], default="crdt",
                   help="crdt: SWIM + delta sync cluster; kv: Raft KV checked for "
                   "linearizability")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--runs", type=int, default=1, help="kv: number of seeds (default 1)")
    p.add_argument("--nodes", type=int, default=3, help="kv: cluster size (default 3)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="kv: linearizability check budget in seconds (default 60)")
    p.add_argument("--out-dir", default="demo-out", help="where diagrams go")
    p.add_argument("--quiet", action="store_true", help="print only failures and totals")
    p.set_defaults(func=_cmd_simulate)
    sub.add_parser("bench", help="benchmark report (ratios; JSON in bench/results/)",
                   add_help=False)
    # Listed for --help only: main() hands these to their own parsers before parsing.
    sub.add_parser("check", help="check a history for linearizability", add_help=False)
    sub.add_parser("node", help="run one node process against RabbitMQ", add_help=False)
    return parser


def _transport(argv: list[str]) -> str | None:
    """The value of ``--transport`` in ``argv`` (``--transport X`` or ``--transport=X``)."""
    for i, arg in enumerate(argv):
        if arg == "--transport" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--transport="):
            return arg.partition("=")[2]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args_list = list(argv) if argv is not None else sys.argv[1:]
    if args_list[:1] == ["check"]:
        from vsm_phoenix.verify.check_cli import main_check

        return main_check(args_list[1:])
    if args_list[:1] == ["bench"]:
        return _bench(args_list[1:])
    if args_list[:1] == ["node"]:
        from vsm_phoenix.cli.node import main_node

        return main_node(args_list[1:])
    if args_list[:1] == ["simulate"] and _transport(args_list[1:]) == "amqp":
        from vsm_phoenix.cli.simulate import main_simulate_amqp

        return main_simulate_amqp(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    code: int = args.func(args)
    return code
