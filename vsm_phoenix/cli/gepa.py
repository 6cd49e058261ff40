"""``vsm-phoenix gepa``: the shipped GEPA task on N simulated nodes sharing one
replicated evolution state (:mod:`vsm_phoenix.ext.gepa.cluster`).

Prints a progress line while it runs, then the frontier, the prompt committed through
the Raft KV and the counts. ``--transport amqp`` runs one Cluster member per node in
this process, syncing the state through RabbitMQ, and ``--kv-nodes`` Raft KV members
that lease the budget and commit the deployed prompt
(:mod:`vsm_phoenix.ext.gepa.over_amqp`); with ``--processes`` every member and KV node
is an OS process of its own (:mod:`vsm_phoenix.ext.gepa.processes`).

Exit status: 0 ran (and reached ``--target`` when one is set), 1 ran but the target
was not reached, the replicas or the committed prompt differ between nodes, or no
broker answered, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vsm_phoenix.cli.base import EXIT_FAILED, UsageError, amqp_url, require_amqp, usage_exit

__all__ = ["register", "run"]

PROG = "vsm-phoenix gepa"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gepa",
        help="distributed GEPA prompt evolution on the simulator (the shipped task)",
        description="Evolve the shipped ticket-triage rules with the upstream GEPA engine "
                    "on N simulated nodes that share evaluations, candidates and the "
                    "metric-call budget through CRDT sync; commit the best prompt "
                    "through the Raft KV. Needs the gepa extra "
                    "(pip install 'vsm-phoenix[gepa]'). No network is used: the task "
                    "and reflection models are deterministic and local.",
    )
    p.add_argument("--nodes", type=int, default=3, help="simulated nodes (default 3)")
    p.add_argument("--independent", action="store_true",
                   help="no sharing: each node alone on budget/NODES (the baseline)")
    p.add_argument("--schedule", choices=["parallel", "turns"], default="parallel",
                   help="parallel: nodes overlap in virtual time (default); turns: one "
                        "step at a time, synced in between")
    p.add_argument("--budget", type=int, default=1500,
                   help="cluster-wide metric calls (default 1500)")
    p.add_argument("--target", type=float, default=0.875,
                   help="stop when a replica's best validation score reaches this "
                        "(default 0.875; negative: run the whole budget)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--transport", choices=["sim", "amqp"], default="sim",
                   help="sim: the deterministic simulator (default); amqp: one Cluster "
                        "member per node, state synced through RabbitMQ, the deployed "
                        "prompt committed through --kv-nodes Raft KV members (needs the "
                        "amqp extra)")
    p.add_argument("--processes", action="store_true",
                   help="with --transport amqp: one OS process per member and per KV "
                        "node (default: every member in this process)")
    p.add_argument("--kv-nodes", type=int, default=None,
                   help="Raft KV members that commit the deployed prompt, for --transport "
                        "amqp (default 3)")
    p.add_argument("--amqp-url", default=None,
                   help="broker URL for --transport amqp (default: $AMQP_URL, else the "
                        "local guest broker)")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def _config(args: argparse.Namespace) -> Any:
    from vsm_phoenix.errors import InvalidArgument
    from vsm_phoenix.ext.gepa.cluster import ClusterConfig

    if args.transport == "amqp" and (args.independent or args.schedule != "parallel"):
        raise UsageError("--independent and --schedule are simulator options")
    if args.amqp_url is not None and args.transport != "amqp":
        raise UsageError("--amqp-url only means something with --transport amqp")
    if args.nodes < 1 or args.nodes > 16:
        raise UsageError("--nodes must be between 1 and 16")
    if args.processes and args.transport != "amqp":
        raise UsageError("--processes only means something with --transport amqp")
    if args.kv_nodes is not None and args.transport != "amqp":
        raise UsageError("--kv-nodes only means something with --transport amqp")
    if args.kv_nodes is None:
        args.kv_nodes = 3
    if not 1 <= args.kv_nodes <= 7:
        raise UsageError("--kv-nodes must be between 1 and 7")
    try:
        return ClusterConfig(nodes=args.nodes, share=not args.independent,
                             max_metric_calls=args.budget,
                             target=None if args.target < 0 else args.target,
                             seed=args.seed, schedule=args.schedule)
    except InvalidArgument as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    try:
        import gepa  # noqa: F401
    except ImportError:
        return usage_exit(PROG, "this command needs the gepa extra: "
                                "pip install 'vsm-phoenix[gepa]'")
    try:
        config = _config(args)
    except UsageError as exc:
        return usage_exit(PROG, exc)
    if args.transport == "amqp":
        try:
            require_amqp()
        except UsageError as exc:
            return usage_exit(PROG, exc)
        return _run_amqp(args, config)
    from vsm_phoenix.ext.gepa.cluster import SimulatedCluster

    budget = config.max_metric_calls

    tty = sys.stderr.isatty()

    def progress(step: int, info: dict[str, Any]) -> None:
        if not tty and step % 25 and step != 1:
            return  # a log, not a terminal: every 25th step, one per line
        line = (f"{PROG}: step {step:5d}  metric calls {info['metric_calls']:5d}/{budget}  "
                f"model calls {info['model_calls']:5d}  "
                f"virtual {info['virtual_ms'] / 1000:7.1f} s")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr,
              flush=True)

    cluster = SimulatedCluster(config, progress=None if args.no_progress else progress)
    report = cluster.run()
    if not args.no_progress and tty:
        print(file=sys.stderr)
    data = summary(report)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))
    failed = (config.target is not None and not report.reached) or (
        config.share and not report.deployed_agree)
    return EXIT_FAILED if failed else 0


def _run_amqp(args: argparse.Namespace, config: Any) -> int:
    import asyncio
    import uuid

    from vsm_phoenix.ext.amqp import Topology, broker_available, delete_topology
    from vsm_phoenix.ext.gepa.over_amqp import connected, gepa_secrets, run_members

    url = amqp_url(args.amqp_url)
    reason = asyncio.run(broker_available(url))
    if reason is not None:
        print(f"{PROG}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    name = f"gepa-{uuid.uuid4().hex[:8]}"
    nodes = [f"n{i + 1}" for i in range(config.nodes)]
    kv_nodes = [f"kv{i + 1}" for i in range(args.kv_nodes)]
    if args.processes:
        return _run_processes(args, config, url, nodes, kv_nodes)
    secrets = gepa_secrets(name, nodes, kv_nodes)

    async def main() -> list[Any]:
        try:
            async with connected(url, secrets, nodes, kv_nodes) as members:
                if not args.no_progress:
                    print(f"{PROG}: {len(members)} members and {len(kv_nodes)} KV nodes on "
                          f"cluster {name}, running", file=sys.stderr)
                return await run_members(members, config, kv_nodes=kv_nodes)
        finally:
            await delete_topology(Topology(name), (*nodes, *kv_nodes), url)

    reports = asyncio.run(main())
    return _amqp_report(args, config, name, reports)


def _run_processes(args: argparse.Namespace, config: Any, url: str, nodes: list[str],
                   kv_nodes: list[str]) -> int:
    import tempfile
    from pathlib import Path

    from vsm_phoenix.errors import VsmPhoenixError
    from vsm_phoenix.ext.gepa.processes import run_processes

    def say(msg: str) -> None:
        if not args.no_progress:
            print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="vsm-gepa-") as work:
        try:
            run = run_processes(url, config, work_dir=Path(work), nodes=nodes,
                                kv_nodes=kv_nodes, progress=say)
        except (VsmPhoenixError, TimeoutError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return _amqp_report(args, config, run.cluster, list(run.reports),
                        processes=len(set(run.pids.values())))


def _amqp_report(args: argparse.Namespace, config: Any, name: str, reports: list[Any],
                 processes: int = 1) -> int:
    agree = len({r.state_digest for r in reports}) == 1 and all(
        r.frontier == reports[0].frontier for r in reports)
    committed_agree = len({None if r.deployed is None else r.deployed.to_json()
                           for r in reports}) == 1
    f = reports[0].frontier
    d = reports[0].deployed
    data = {
        "transport": "amqp", "cluster": name, "nodes": len(reports), "processes": processes,
        "replicas_agree": agree,
        "best_score": f.best_score,
        "best_candidate": None if f.best is None else f.best.hex()[:12],
        "reached_target": config.target is not None and f.best_score is not None
        and f.best_score >= config.target,
        "committed": None if d is None else {
            "candidate": d.candidate.hex()[:12], "version": d.version, "score": d.score,
            "lineage": [c.hex()[:12] for c in d.lineage], "texts": dict(d.texts)},
        "committed_agree": committed_agree,
        "metric_calls": sum(r.metric_calls for r in reports),
        "per_node": [{"node": r.node, "metric_calls": r.metric_calls, "hits": r.hits,
                      "migrated": r.migrated, "published": r.published,
                      "stop": r.stop_reason} for r in reports],
    }
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        where = f"in {processes} processes" if processes > 1 else "in one process"
        print(f"{data['nodes']} members {where} over RabbitMQ (cluster {name}); every replica the "
              f"same: {agree}; best validation score {f.best_score} "
              f"({data['best_candidate']})")
        c = data["committed"]
        if c is None:
            print("committed prompt: none")
        else:
            print(f"committed prompt (Raft KV, all members read the same: {committed_agree}): "
                  f"{c['candidate']} version {c['version']} score {c['score']:.4f}")
        for n in data["per_node"]:
            print(f"  {n['node']}: metric calls {n['metric_calls']}, cache hits {n['hits']}, "
                  f"migrated in {n['migrated']}, published {n['published']}, "
                  f"stopped: {n['stop']}")
    failed = not agree or not committed_agree or d is None or (
        config.target is not None and not data["reached_target"])
    return EXIT_FAILED if failed else 0


def summary(report: Any) -> dict[str, Any]:
    """The report as plain data (what ``--json`` prints)."""
    f = report.frontier
    frontier = []
    if f is not None:
        for cid in f.members:
            frontier.append({"candidate": cid.hex()[:12], "mean": round(f.mean(cid), 4)})
        frontier.sort(key=lambda r: (-r["mean"], r["candidate"]))
    d = report.deployed
    return {
        "nodes": report.config.nodes, "share": report.config.share,
        "schedule": report.config.schedule, "steps": report.steps,
        "reached_target": report.reached,
        "metric_calls_to_target": report.metric_calls_to_target,
        "model_calls_to_target": report.model_calls_to_target,
        "virtual_ms_to_target": report.virtual_ms_to_target,
        "metric_calls": report.metric_calls, "model_calls": report.model_calls,
        "budget": report.config.max_metric_calls, "leased_calls": report.leased_calls,
        "virtual_ms": report.virtual_ms, "accepted_candidates": report.accepted_candidates,
        "evaluated_keys": report.evaluated_keys, "duplicate_keys": report.duplicate_keys,
        "sync_bytes": report.sync_bytes, "frontiers_agree": report.frontiers_agree,
        "frontier": frontier,
        "best_score": None if f is None else f.best_score,
        "committed": None if d is None else {
            "candidate": d.candidate.hex()[:12], "version": d.version, "score": d.score,
            "lineage": [c.hex()[:12] for c in d.lineage], "texts": dict(d.texts)},
        "committed_agree": report.deployed_agree,
        "per_node": [{"node": n.node, "metric_calls": n.metric_calls, "hits": n.hits,
                      "task_model_calls": n.task_model_calls,
                      "reflection_calls": n.reflection_calls, "migrated": n.migrated,
                      "published": n.published, "stop": n.stop_reason}
                     for n in report.nodes],
    }


def render(data: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`summary`."""
    lines = [
        f"{data['nodes']} node(s), {'shared' if data['share'] else 'independent'}, "
        f"{data['schedule']} schedule, {data['steps']} engine steps",
        f"target reached: {data['reached_target']}"
        + (f" after {data['metric_calls_to_target']} metric calls, "
           f"{data['model_calls_to_target']} model calls, "
           f"{data['virtual_ms_to_target'] / 1000:.1f} s virtual"
           if data["reached_target"] else ""),
        f"metric calls {data['metric_calls']}, model calls {data['model_calls']}, "
        f"virtual {data['virtual_ms'] / 1000:.1f} s, candidates {data['accepted_candidates']}, "
        f"evaluated keys {data['evaluated_keys']} ({data['duplicate_keys']} evaluated twice), "
        f"sync {data['sync_bytes']} bytes",
        f"budget {data['budget']} metric calls, leased through the Raft KV "
        f"{data['leased_calls']}" if data["leased_calls"] else
        f"budget {data['budget']} metric calls (soft: no leases)",
        f"frontier (every replica derives the same: {data['frontiers_agree']}):",
    ]
    for row in data["frontier"][:10]:
        lines.append(f"  {row['candidate']}  mean {row['mean']:.4f}")
    if len(data["frontier"]) > 10:
        lines.append(f"  ... {len(data['frontier']) - 10} more")
    c = data["committed"]
    if c is None:
        lines.append("committed prompt: none")
    else:
        lines.append(f"committed prompt (Raft KV, all nodes agree: {data['committed_agree']}): "
                     f"{c['candidate']} version {c['version']} score {c['score']:.4f}, "
                     f"lineage {' <- '.join(c['lineage'])}")
        for name, text in c["texts"].items():
            lines.append(f"  [{name}]")
            lines.extend(f"    {t}" for t in text.splitlines())
    lines.append("per node:")
    for n in data["per_node"]:
        lines.append(f"  {n['node']}: metric calls {n['metric_calls']}, cache hits {n['hits']}, "
                     f"reflection calls {n['reflection_calls']}, migrated in {n['migrated']}, "
                     f"published {n['published']}, stopped: {n['stop']}")
    return "\n".join(lines)
