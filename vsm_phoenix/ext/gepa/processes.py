"""GEPA over RabbitMQ with one OS process per member (``vsm-phoenix gepa --transport
amqp --processes``).

Theory of operation
-------------------
:func:`run_processes` is the launcher. It makes the run's secrets
(:func:`~vsm_phoenix.ext.gepa.over_amqp.gepa_secrets`) and writes them to a keys
directory under ``work_dir``, then starts, through
:class:`~vsm_phoenix.ext.amqp.process.ProcessCluster`:

* one ``vsm-phoenix node --kind kv`` process per KV node (the Raft KV that leases the
  budget and commits the deployed prompt), and
* one **member process** per GEPA node: ``python -m vsm_phoenix.ext.gepa.processes
  --id N ...`` (:func:`main`), which connects a :class:`~vsm_phoenix.ext.amqp.Cluster`
  member with its own credentials and runs
  :func:`~vsm_phoenix.ext.gepa.over_amqp.run_member` -- the same code as the
  in-process runner: engine, done marks, convergence, deployment. When its report is
  final it writes it to ``<work_dir>/members/<id>.report.json`` (atomically) and keeps
  serving (other members may still be asking for its replica's digest) until SIGTERM.

The launcher waits until every member has written its report, then stops every
process (SIGTERM, SIGKILL after a grace period) and deletes the run's broker
topology. A member that exits without a report, a KV node that exits, or a run past
``timeout_s`` stops everything and raises :class:`MemberFailed` (with the tail of the
process's log) or ``TimeoutError``. Each process's output goes to ``<id>.log`` in its
directory.

The member processes share nothing but the broker: no memory, no files except their
own report (the parent reads them once each member is done).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument, VsmPhoenixError
from vsm_phoenix.ext.gepa.cluster import ClusterConfig
from vsm_phoenix.ext.gepa.deploy import Decision
from vsm_phoenix.ext.gepa.over_amqp import MemberReport, gepa_secrets, run_member
from vsm_phoenix.ext.gepa.state import Frontier

__all__ = [
    "MemberFailed",
    "ProcessRun",
    "main",
    "member_command",
    "report_from_json",
    "report_to_json",
    "run_processes",
]

REPORT_SUFFIX: Final = ".report.json"


class MemberFailed(VsmPhoenixError):
    """A process of the run exited before its report (``node``, ``exit_code``, and the
    tail of its log in ``log``)."""

    def __init__(self, node: str, exit_code: int | None, log: str) -> None:
        super().__init__(f"{node} exited with status {exit_code} before its report:\n{log}")
        self.node = node
        self.exit_code = exit_code
        self.log = log


@attrs.frozen
class ProcessRun:
    """What :func:`run_processes` returns: the cluster's name, each member's report
    (in node order) and the process id of every member and KV node."""

    cluster: str
    reports: tuple[MemberReport, ...]
    pids: dict[str, int] = attrs.field(factory=dict)  # node id -> its process id


# -- reports as JSON ----------------------------------------------------------------------
def report_to_json(r: MemberReport) -> dict[str, Any]:
    """A member's report as JSON-able data (ids and digests in hex)."""
    f = r.frontier
    return {
        "node": r.node, "metric_calls": r.metric_calls, "hits": r.hits,
        "migrated": r.migrated, "published": r.published, "stop_reason": r.stop_reason,
        "leased": r.leased, "state_digest": r.state_digest.hex(),
        "deployed": None if r.deployed is None else r.deployed.to_json(),
        "frontier": {
            "instances": list(f.instances),
            "scores": {c.hex(): list(row) for c, row in f.scores.items()},
            "per_instance": [[top, [c.hex() for c in ids]] for top, ids in f.per_instance],
            "members": [c.hex() for c in f.members],
            "best": None if f.best is None else f.best.hex(),
            "best_score": f.best_score,
        },
    }


def report_from_json(d: Any) -> MemberReport:
    """The inverse of :func:`report_to_json`; ``DecodeError`` for anything else."""
    try:
        f = d["frontier"]
        frontier = Frontier(
            instances=tuple(str(i) for i in f["instances"]),
            scores={bytes.fromhex(c): tuple(float(x) for x in row)
                    for c, row in f["scores"].items()},
            per_instance=tuple((float(top), tuple(bytes.fromhex(c) for c in ids))
                               for top, ids in f["per_instance"]),
            members=tuple(bytes.fromhex(c) for c in f["members"]),
            best=None if f["best"] is None else bytes.fromhex(f["best"]),
            best_score=None if f["best_score"] is None else float(f["best_score"]),
        )
        out = MemberReport(
            node=str(d["node"]), metric_calls=int(d["metric_calls"]), hits=int(d["hits"]),
            migrated=int(d["migrated"]), published=int(d["published"]),
            stop_reason=None if d["stop_reason"] is None else str(d["stop_reason"]),
            frontier=frontier, state_digest=bytes.fromhex(d["state_digest"]),
            deployed=None if d["deployed"] is None else Decision.from_json(d["deployed"]),
            leased=int(d["leased"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"not a member report: {type(exc).__name__}: {exc}") from None
    return out


# -- the member process -------------------------------------------------------------------
def member_command(node: str, *, keys_dir: Path, members: Sequence[str],
                   kv_nodes: Sequence[str], config: ClusterConfig, url: str,
                   report_dir: Path, timeout_s: float) -> list[str]:
    """The command line of ``node``'s member process."""
    return [sys.executable, "-m", "vsm_phoenix.ext.gepa.processes", "--id", node,
            "--keys", str(keys_dir), "--members", ",".join(members),
            "--kv-nodes", ",".join(kv_nodes), "--config", json.dumps(attrs.asdict(config)),
            "--amqp-url", url, "--report-dir", str(report_dir),
            "--timeout-s", str(timeout_s)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vsm_phoenix.ext.gepa.processes",
                                description="One GEPA member process (started by "
                                            "run_processes / vsm-phoenix gepa --processes).")
    p.add_argument("--id", required=True)
    p.add_argument("--keys", required=True, help="the run's keys directory")
    p.add_argument("--members", required=True, help="every member id, comma-separated")
    p.add_argument("--kv-nodes", default="", help="the KV node ids, comma-separated")
    p.add_argument("--config", required=True, help="the ClusterConfig as JSON")
    p.add_argument("--amqp-url", required=True)
    p.add_argument("--report-dir", required=True)
    p.add_argument("--timeout-s", type=float, default=300.0)
    return p


async def _member(args: argparse.Namespace) -> int:
    from vsm_phoenix.crypto.credentials import (
        KEYSET_FILE,
        ROSTER_FILE,
        Credentials,
        identity_file,
        write_atomically,
    )
    from vsm_phoenix.ext.amqp import Cluster

    keys = Path(args.keys)
    creds = Credentials.load(keyset=keys / KEYSET_FILE, identity=keys / identity_file(args.id),
                             roster=keys / ROSTER_FILE)
    members = [m for m in args.members.split(",") if m]
    kv_nodes = [k for k in args.kv_nodes.split(",") if k]
    if args.id not in members:
        raise InvalidArgument(f"{args.id!r} is not one of --members")
    config = ClusterConfig(**json.loads(args.config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Cluster.connect(args.amqp_url, creds, peers=members) as cluster:
        report = await run_member(cluster, config, seed_offset=members.index(args.id),
                                  members=members, kv_nodes=kv_nodes,
                                  converge_timeout_s=args.timeout_s)
        data = json.dumps(report_to_json(report), sort_keys=True).encode()
        write_atomically(Path(args.report_dir) / f"{args.id}{REPORT_SUFFIX}", data, 0o644)
        print(f"REPORTED {args.id}", flush=True)
        await stop.wait()  # others may still ask for this replica's digest
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """A member process: exit status 0 after SIGTERM once reported, 1 on failure."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_member(args))
    except Exception as exc:  # the launcher shows the log's tail
        print(f"member {args.id} failed: {type(exc).__name__}: {exc}", file=sys.stderr,
              flush=True)
        raise


# -- the launcher -------------------------------------------------------------------------
def run_processes(
    url: str,
    config: ClusterConfig,
    *,
    work_dir: Path,
    nodes: Sequence[str] | None = None,
    kv_nodes: Sequence[str] = ("kv1", "kv2", "kv3"),
    timeout_s: float = 300.0,
    progress: Callable[[str], None] | None = None,
) -> ProcessRun:
    """Run ``config`` with one OS process per member (``nodes``, default ``n1..nN``) and
    one per KV node, through the broker at ``url``; see the module docstring."""
    from vsm_phoenix.ext.amqp import Topology, delete_topology
    from vsm_phoenix.ext.amqp.process import ProcessCluster

    nodes = list(nodes) if nodes is not None else [f"n{i + 1}" for i in range(config.nodes)]
    if not kv_nodes:
        raise InvalidArgument("a run over processes needs KV nodes (budget and deployment)")
    name = f"gepa-{uuid.uuid4().hex[:8]}"
    secrets = gepa_secrets(name, nodes, kv_nodes)
    keys = secrets.write(Path(work_dir) / "keys")
    report_dir = Path(work_dir) / "members"
    kv_dir = Path(work_dir) / "kv"
    report_dir.mkdir(parents=True, exist_ok=True)
    kv_dir.mkdir(parents=True, exist_ok=True)
    kv_procs = ProcessCluster(node_ids=kv_nodes, kind="kv", data_dir=kv_dir, keys_dir=keys,
                              node_args=["--amqp-url", url, "--broker-wait-s", "30"])
    member_procs = ProcessCluster(
        node_ids=nodes, kind="gepa-member", data_dir=report_dir, keys_dir=keys,
        command=lambda nid: member_command(nid, keys_dir=keys, members=nodes,
                                           kv_nodes=kv_nodes, config=config, url=url,
                                           report_dir=report_dir, timeout_s=timeout_s))
    say = progress or (lambda _msg: None)
    try:
        kv_procs.start_all()
        member_procs.start_all()
        say(f"started {len(kv_nodes)} KV and {len(nodes)} member processes (cluster {name})")
        paths = {n: report_dir / f"{n}{REPORT_SUFFIX}" for n in nodes}
        deadline = time.monotonic() + timeout_s
        reported: set[str] = set()
        while len(reported) < len(nodes):
            for n in nodes:
                if n not in reported and paths[n].exists():
                    reported.add(n)
                    say(f"{n} reported ({len(reported)}/{len(nodes)})")
                elif n not in reported and member_procs.exit_code(n) is not None:
                    raise MemberFailed(n, member_procs.exit_code(n), member_procs.log_tail(n))
            for k in kv_nodes:
                if kv_procs.exit_code(k) is not None:
                    raise MemberFailed(k, kv_procs.exit_code(k), kv_procs.log_tail(k))
            if time.monotonic() > deadline:
                raise TimeoutError(f"members without a report after {timeout_s} s: "
                                   f"{sorted(set(nodes) - reported)}")
            time.sleep(0.2)
        reports = tuple(report_from_json(json.loads(paths[n].read_text(encoding="utf-8")))
                        for n in nodes)
        pids = {n: p.pid for procs in (member_procs, kv_procs) for n, p in procs.procs.items()}
    finally:
        member_procs.stop_all()
        kv_procs.stop_all()
        asyncio.run(delete_topology(Topology(name), (*nodes, *kv_nodes), url))
    return ProcessRun(name, reports, pids)


if __name__ == "__main__":  # pragma: no cover - run as a member process
    sys.exit(main())
