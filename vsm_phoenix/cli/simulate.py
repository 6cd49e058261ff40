"""``vsm-phoenix demo`` and ``vsm-phoenix simulate``: scenarios in-process on the
deterministic simulator, or (``simulate --transport amqp``) as node processes over
RabbitMQ (:mod:`vsm_phoenix.ext.amqp.simulate`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from vsm_phoenix.cli.base import (
    EXIT_FAILED,
    UsageError,
    amqp_url,
    configure_logging,
    require_amqp,
    usage_exit,
)
from vsm_phoenix.cli.node import add_transport_options, transport_argv
from vsm_phoenix.errors import VsmPhoenixError

__all__ = ["register"]

#: Options that only mean something with ``--transport amqp`` (dest -> flag).
AMQP_ONLY = {
    "ops": "--ops", "concurrency": "--concurrency", "cluster": "--cluster",
    "data_dir": "--data-dir", "kill": "--kill", "close_connections": "--close-connections",
    "converge_timeout_s": "--converge-timeout-s", "keep": "--keep",
    "no_progress": "--no-progress", "json": "--json", "amqp_url": "--amqp-url",
}
#: Options that only mean something on the simulator.
SIM_ONLY = {"runs": "--runs", "check_timeout_s": "--check-timeout-s", "out_dir": "--out-dir",
            "quiet": "--quiet", "reconfigure": "--reconfigure", "saga_log": "--saga-log",
            "sagas": "--sagas"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the in-process scenarios: CRDT convergence, then a 5-node cluster on the "
        "simulator",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out-dir", default="demo-out", help="where the diagram and trace go")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=_demo)

    p = sub.add_parser(
        "simulate",
        help="run a scenario on the deterministic simulator (or --transport amqp)",
        description="Run a scenario in-process on the deterministic simulator (default), or "
                    "as separate node processes over RabbitMQ (--transport amqp). Exit "
                    "status: 0 converged / linearizable, 1 not, 2 bad usage or no broker.",
    )
    p.add_argument("--transport", choices=["sim", "amqp"], default="sim",
                   help="sim: in-process simulator (default); amqp: node processes over "
                   "RabbitMQ")
    p.add_argument("--scenario", choices=["crdt", "kv", "agents", "saga"], default="crdt",
                   help="crdt: SWIM + delta sync cluster converges; kv: Raft KV checked for "
                   "linearizability; agents: capability-aware agents with leased roles, "
                   "audited in the evidence graph (sim only); saga: three coordinators run "
                   "order sagas under faults, every saga checked (on the Raft KV of 3 node "
                   "processes with --transport amqp)")
    p.add_argument("--seed", type=int, default=0, help="(first) seed (default 0)")
    p.add_argument("--nodes", type=int, default=None,
                   help="cluster size (default: 5 for sim crdt, 3 otherwise; sim crdt is "
                        "always 5)")
    g = p.add_argument_group("--transport sim")
    g.add_argument("--runs", type=int, default=None, help="kv: number of seeds (default 1)")
    g.add_argument("--check-timeout-s", type=float, default=None,
                   help="kv: linearizability check budget in seconds (default 60)")
    g.add_argument("--out-dir", default=None, help="where diagrams go (default demo-out)")
    g.add_argument("--quiet", action="store_true", default=None,
                   help="print only failures and totals")
    g.add_argument("--saga-log", choices=["kv", "sqlite", "memory"], default=None,
                   help="saga: the shared log (default kv: the Raft KV)")
    g.add_argument("--sagas", type=int, default=None,
                   help="saga: sagas per seed (default 200; also with --transport amqp)")
    g.add_argument("--reconfigure", action="store_true", default=None,
                   help="kv: change the membership during each run (two spare servers "
                        "added as learners, promoted, and the leader of the moment "
                        "removed, twice) and check the cluster ends as requested")
    g = p.add_argument_group("--transport amqp")
    g.add_argument("--ops", type=int, default=None, help="client operations (default 200)")
    g.add_argument("--concurrency", type=int, default=None,
                   help="client operations in flight (default 8)")
    g.add_argument("--cluster", default=None, help="cluster name (default: a fresh one)")
    g.add_argument("--data-dir", default=None,
                   help="directory for stores and logs (default: a temp dir)")
    g.add_argument("--kill", action="store_true", default=None,
                   help="SIGKILL one node mid-run (the KV leader) and restart it from its "
                        "SQLite store")
    g.add_argument("--close-connections", action="store_true", default=None,
                   help="close the cluster's connections on the broker of --amqp-url "
                        "mid-run (its management API, or rabbitmqctl for a local broker)")
    g.add_argument("--converge-timeout-s", type=float, default=None,
                   help="seconds to wait for convergence (default 90)")
    g.add_argument("--keep", action="store_true", default=None,
                   help="keep the data dir, the secrets and the broker queues/exchanges")
    g.add_argument("--no-progress", action="store_true", default=None,
                   help="no live progress line")
    g.add_argument("--json", default=None, help="write the result summary to this file")
    add_transport_options(p)
    p.set_defaults(run=_simulate)


def _demo(args: argparse.Namespace) -> int:
    from vsm_phoenix.crdt import demo
    from vsm_phoenix.protocol.scenario import run_demo

    crdt_ok = demo.run(seed=args.seed)
    print()
    code = run_demo(seed=args.seed, out_dir=args.out_dir, progress=not args.quiet)
    return 0 if crdt_ok and code == 0 else 1


def _given(args: argparse.Namespace, table: dict[str, str]) -> list[str]:
    return [flag for dest, flag in table.items() if getattr(args, dest) is not None]


def _simulate(args: argparse.Namespace) -> int:
    prog = "vsm-phoenix simulate"
    if args.transport == "amqp" and args.scenario == "saga":
        from vsm_phoenix.cli.saga import simulate_saga_amqp_cli

        return simulate_saga_amqp_cli(args, prog)
    wrong = _given(args, AMQP_ONLY if args.transport == "sim" else SIM_ONLY)
    if wrong:
        other = "amqp" if args.transport == "sim" else "sim"
        return usage_exit(prog, f"{', '.join(wrong)} only with --transport {other}")
    if args.transport == "amqp":
        if args.scenario == "agents":
            return usage_exit(prog, f"the {args.scenario} scenario runs on the simulator only")
        return _simulate_amqp(args)
    if args.scenario == "crdt":
        if args.reconfigure:
            return usage_exit(prog, "--reconfigure only with --scenario kv")
        if args.nodes not in (None, 5):
            return usage_exit(prog, "the crdt scenario on the simulator has 5 nodes")
        from vsm_phoenix.protocol.scenario import run_demo

        return run_demo(seed=args.seed, out_dir=args.out_dir or "demo-out",
                        progress=not args.quiet, command="simulate")
    runs = 1 if args.runs is None else args.runs
    if args.scenario != "saga" and (args.saga_log is not None or args.sagas is not None):
        return usage_exit(prog, "--saga-log and --sagas only with --scenario saga")
    if args.scenario == "saga":
        from vsm_phoenix.cli.saga import simulate_saga_cli

        sagas = 200 if args.sagas is None else args.sagas
        if runs < 1 or sagas < 1 or args.nodes not in (None, 3):
            return usage_exit(prog, "--runs and --sagas must be positive; the saga scenario "
                              "has 3 coordinators")
        return simulate_saga_cli(args.seed, runs, args.saga_log or "kv", sagas,
                                 bool(args.quiet))
    if args.scenario == "agents":
        from vsm_phoenix.cli.agents import simulate_agents_cli

        agents = 5 if args.nodes is None else args.nodes
        budget = 60.0 if args.check_timeout_s is None else args.check_timeout_s
        if runs < 1 or not 2 <= agents <= 20 or budget <= 0:
            return usage_exit(prog, "--runs and --check-timeout-s must be positive, --nodes "
                              "(agents) in 2..20")
        return simulate_agents_cli(args.seed, runs, agents, budget,
                                   None if args.out_dir is None else Path(args.out_dir),
                                   bool(args.quiet))
    nodes = 3 if args.nodes is None else args.nodes
    budget = 60.0 if args.check_timeout_s is None else args.check_timeout_s
    if runs < 1 or nodes < 1 or budget <= 0:
        return usage_exit(prog, "--runs, --nodes and --check-timeout-s must be positive")
    return _simulate_kv(args.seed, runs, nodes, budget, Path(args.out_dir or "demo-out"),
                        bool(args.quiet), bool(args.reconfigure))


def _simulate_kv(first: int, runs: int, nodes: int, budget: float, out: Path,
                 quiet: bool, reconfigure: bool = False) -> int:
    """The in-process simulator runs of the ``kv`` scenario."""
    from vsm_phoenix.verify import Verdict, check_history, render_html
    from vsm_phoenix.verify.kv_workload import simulate_kv

    if not quiet:
        print(f"vsm-phoenix simulate: Raft KV, {nodes} nodes, seeds {first}..{first + runs - 1}, "
              "under a nemesis (partitions, crashes, restarts, loss, duplication); each "
              "history checked for linearizability")
        if reconfigure:
            print("  with membership changes: two spares added as learners, promoted, and "
                  "the leader of the moment removed after each")
    bad = 0
    for seed in range(first, first + runs):
        run = simulate_kv(seed, nodes=nodes, reconfigure=reconfigure)
        result = check_history(run.history, timeout=budget)
        ok = (result.verdict is Verdict.OK and not run.violations
              and not run.membership_problems)
        bad += not ok
        if not quiet or not ok:
            print(
                f"seed {seed}: {len(run.history.operations)} client operations, "
                f"history {result.verdict.name}, Raft invariant violations: "
                f"{len(run.violations)}"
                + (f", final membership {run.membership} "
                   f"({len(run.membership_steps)} changes acknowledged"
                   f"{', as requested' if not run.membership_problems else ''})"
                   if reconfigure else "")
            )
        for violation in run.violations:
            print(f"  {violation}")
        for problem in run.membership_problems:
            print(f"  membership: {problem}")
        if not ok:
            out.mkdir(parents=True, exist_ok=True)
            run.sim.write_html(out / f"kv-seed{seed}-spacetime.html")
            if result.verdict is Verdict.ILLEGAL:
                (out / f"kv-seed{seed}-history.html").write_text(
                    render_html(result, title=f"KV seed {seed}"), encoding="utf-8"
                )
            again = " --reconfigure" if reconfigure else ""
            print(f"  replay with: vsm-phoenix simulate --scenario kv --seed {seed}{again}; "
                  f"diagrams in {out}")
    print(f"{runs - bad}/{runs} runs linearizable with every Raft invariant intact"
          + (" and the membership as requested" if reconfigure else ""))
    return 1 if bad else 0


def _simulate_amqp(args: argparse.Namespace) -> int:
    prog = "vsm-phoenix simulate"
    url = amqp_url(args.amqp_url)
    try:
        require_amqp()
        from vsm_phoenix.ext.amqp.process import BrokerAdmin
        from vsm_phoenix.ext.amqp.simulate import SimulationSettings, run_simulation

        settings = SimulationSettings(
            url=url, scenario=args.scenario, nodes=3 if args.nodes is None else args.nodes,
            ops=200 if args.ops is None else args.ops,
            concurrency=8 if args.concurrency is None else args.concurrency,
            seed=args.seed, cluster=args.cluster, data_dir=args.data_dir,
            kill=bool(args.kill), close_connections=bool(args.close_connections),
            converge_timeout_s=90.0 if args.converge_timeout_s is None
            else args.converge_timeout_s,
            keep=bool(args.keep), progress=not args.no_progress, json=args.json,
            node_args=tuple(transport_argv(args)),
        )
        from vsm_phoenix.cli.node import config_from

        config_from(args, url)  # the transport options, checked here rather than in a child
        # --close-connections must be possible on *this* broker before anything starts
        admin = BrokerAdmin.for_url(url) if settings.close_connections else None
    except (UsageError, ValueError, TypeError, RuntimeError, VsmPhoenixError) as exc:
        return usage_exit(prog, exc)
    configure_logging(logging.ERROR, url, "%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_simulation(settings, admin))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143
    except (TimeoutError, RuntimeError, OSError) as exc:
        from vsm_phoenix.ext.broker_url import redact

        print(redact(f"{prog} failed: {type(exc).__name__}: {exc}", url), file=sys.stderr)
        return EXIT_FAILED
