"""``vsm-phoenix ctl NODE OP ...``: ask running nodes for a control operation.

``NODE`` is a node id, a comma-separated list, or ``all`` (every ``peer`` of the
roster). The operations and the roster role each needs come from one table
(:mod:`vsm_phoenix.ext.amqp.control` and the node kinds): ``status``, ``stop``,
``reset-replay``, ``roster`` on every node; ``add``, ``remove``, ``read``, ``match`` on
``crdt`` nodes; ``get``, ``put``, ``append``, ``cas``, ``delete`` on ``kv`` nodes (a
write follows the leader hint and is applied exactly once); ``command`` (sign a command
and submit it), ``data`` and ``decisions`` on ``router`` nodes; and ``wait-converged``,
which polls ``status`` until the nodes hold equal states.

The client speaks as ``--as PRINCIPAL`` (default: the one identity in the keys
directory that is not a node). Its role is checked against the roster before
anything is sent. Output is plain text, or JSON with ``--json``. Exit status: 0 done,
1 a node refused (a router refused the command) or did not answer (or did not
converge), 2 bad usage or files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vsm_phoenix.cli import router
from vsm_phoenix.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    ArgumentParser,
    UsageError,
    amqp_url,
    keys_dir,
    require_amqp,
    usage_exit,
)
from vsm_phoenix.cli.node import add_key_options, load_credentials
from vsm_phoenix.crypto.identity import ROLE_PEER
from vsm_phoenix.errors import VsmPhoenixError

__all__ = ["all_operations", "register", "run"]

PROG = "vsm-phoenix ctl"
WAIT_CONVERGED = "wait-converged"
COMMAND = "command"


def all_operations() -> dict[str, Any]:
    """Every control operation by name: the node's and each built-in kind's."""
    from vsm_phoenix.ext.amqp.control import NODE_OPERATIONS
    from vsm_phoenix.ext.amqp.kinds import BUILTIN_KINDS
    from vsm_phoenix.ext.router_node import router_operations

    table: dict[str, Any] = dict(NODE_OPERATIONS)
    for ops in [*(make().operations for make in BUILTIN_KINDS.values()),
                router_operations()]:
        for name, op in ops.items():
            table.setdefault(name, op)
    return table


def _common() -> argparse.ArgumentParser:
    p = ArgumentParser(add_help=False)
    g = p.add_argument_group("client")
    g.add_argument("--as", dest="principal", default=None, metavar="PRINCIPAL",
                   help="speak as this principal (default: the keys directory's only "
                        "non-node identity)")
    g.add_argument("--json", action="store_true", help="print the answer as JSON")
    g.add_argument("--timeout-s", type=float, default=None,
                   help="seconds to wait for each answer (default 10; wait-converged: "
                        "for convergence, default 60)")
    g.add_argument("--amqp-url", default=None,
                   help="broker URL (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
    add_key_options(p)
    return p


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ctl", help="ask running nodes for a control operation (add, read, put, command, "
                 "status...)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("nodes", metavar="NODE", help="node id, id,id,... or all")
    ops = p.add_subparsers(dest="op", required=True, metavar="OP", parser_class=ArgumentParser)
    common = _common()
    for name, op in all_operations().items():
        q = ops.add_parser(name, help=f"{op.help} [{op.role}]", parents=[common],
                           description=f"{op.help}. Needs the {op.role!r} role.")
        if name == COMMAND:  # signed here: see vsm_phoenix.cli.router
            router.add_command_arguments(q)
            continue
        for param in op.params:
            if param.optional and not param.many:
                q.add_argument(f"--{param.metavar.lower()}", dest=param.key,
                               metavar=param.metavar, default=None, help=param.help)
            else:
                q.add_argument(param.key, metavar=param.metavar, help=param.help,
                               nargs=("*" if param.optional else "+") if param.many else None)
    q = ops.add_parser(WAIT_CONVERGED, parents=[common],
                       help="wait until the nodes hold equal states (status digests) [read]",
                       description="Poll each node's status until their digests are equal "
                                   "(exit 0), or --timeout-s passes (exit 1).")
    q.add_argument("--replica", default=None, metavar="NAME",
                   help="compare this replica of crdt nodes (default: the node's digest)")
    p.set_defaults(run=run)


def _principal(args: argparse.Namespace) -> str:
    """``--as``, else the only identity in the keys directory that is not a node."""
    if args.principal:
        return str(args.principal)
    directory = keys_dir(args.keys)
    if args.identity:
        from vsm_phoenix.crypto.identity import Identity

        return Identity.load(args.identity).principal
    if not directory:
        raise UsageError("no keys: pass --keys DIR (or set $VSM_PHOENIX_KEYS)")
    from vsm_phoenix.crypto.credentials import ROSTER_FILE
    from vsm_phoenix.crypto.identity import Roster

    roster = Roster.from_bytes(Path(args.roster or Path(directory) / ROSTER_FILE).read_bytes())
    found = sorted(
        p for p, m in roster.members.items()
        if not m.allows(ROLE_PEER) and (Path(directory) / f"{p}.identity.json").exists()
    )
    if len(found) != 1:
        raise UsageError("say who you are with --as PRINCIPAL "
                         f"(client identities in {directory}: {', '.join(found) or 'none'})")
    return found[0]


def _targets(spec: str, peers: list[str]) -> list[str]:
    if spec == "all":
        return peers
    nodes = [n for n in spec.split(",") if n]
    if not nodes:
        raise UsageError("no node given")
    return nodes


def _values(args: argparse.Namespace, op: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in op.params:
        value = getattr(args, param.key, None)
        if param.key == "roster" and op.name == "roster":
            path = Path(str(value))
            if path.stat().st_size > 4 * 1024 * 1024:
                raise UsageError(f"{path}: larger than 4 MiB")
            value = path.read_bytes()
        if value is not None:
            values[param.key] = value
    return values


def run(args: argparse.Namespace) -> int:
    """``vsm-phoenix ctl ...``; returns the exit status."""
    url = amqp_url(args.amqp_url)
    try:  # everything checked before the broker is contacted
        require_amqp()
        from vsm_phoenix.ext.amqp.cluster import roster_peers
        from vsm_phoenix.ext.amqp.control import build_request, may_ask

        table = all_operations()
        if args.timeout_s is None:
            args.timeout_s = 60.0 if args.op == WAIT_CONVERGED else 10.0
        if args.timeout_s <= 0:
            raise UsageError("--timeout-s must be positive")
        principal = _principal(args)
        credentials = load_credentials(args, principal)
        nodes = _targets(args.nodes, roster_peers(credentials))
        unknown = [n for n in nodes if n not in credentials.roster.members]
        if unknown:
            raise UsageError(f"not in the roster: {', '.join(unknown)}")
        op = table.get(args.op)
        role = "read" if op is None else op.role
        if not may_ask(credentials.roster.members[principal], role):
            raise UsageError(f"{args.op} needs the {role!r} role, which the roster does not "
                             f"give {principal!r}")
        request: dict[str, Any] | None = None
        if op is not None and op.name == COMMAND:
            request = router.command_request(args, credentials)
        elif op is not None:
            request = build_request(op, _values(args, op))
    except (UsageError, OSError, ValueError, TypeError, VsmPhoenixError) as exc:
        return usage_exit(PROG, exc)
    try:
        return asyncio.run(_ctl(args, url, credentials, nodes, op, request))
    except KeyboardInterrupt:
        return 130


async def _ctl(args: argparse.Namespace, url: str, credentials: Any, nodes: list[str],
               op: Any, request: dict[str, Any] | None) -> int:
    from vsm_phoenix.ext.amqp.client import ControlError
    from vsm_phoenix.ext.amqp.cluster import Cluster
    from vsm_phoenix.ext.amqp.topology import redact

    try:
        cluster = await Cluster.connect(url, credentials, member=False, timeout_s=args.timeout_s)
    except (OSError, TimeoutError, VsmPhoenixError) as exc:
        print(redact(f"{PROG}: cannot reach the broker: {type(exc).__name__}: {exc}", url),
              file=sys.stderr)
        return EXIT_FAILED
    try:
        await cluster.declare(nodes)
        if op is None:
            return await _wait_converged(args, cluster, nodes)
        answers: dict[str, Any] = {}
        failed = False
        for node in nodes:
            try:
                assert request is not None
                if op.session:  # a KV write: exactly once, at the leader
                    answers[node] = await cluster.kv(first=node).command(request)
                elif op.name == "get":  # a linearizable read, at the leader
                    answers[node] = await cluster.kv(first=node).get(request["k"])
                else:
                    answers[node] = await cluster.ask(node, request)
                if answers[node] is None and op.role != "read":
                    answers[node] = "ok"
                if op.name == COMMAND and (not isinstance(answers[node], Mapping)
                                           or answers[node].get("decision") != "accepted"):
                    failed = True  # the router refused it (the answer says why)
            except (ControlError, TimeoutError) as exc:
                failed = True
                answers[node] = {"error": f"{type(exc).__name__}: {exc}"}
        if op.name == "decisions" and not args.json:  # one line each, as nodes log them
            answers = {n: [router.describe_decision(d) for d in a] if isinstance(a, list)
                       else a for n, a in answers.items()}
        _print(args, nodes, answers)
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        await cluster.close()


async def _wait_converged(args: argparse.Namespace, cluster: Any, nodes: list[str]) -> int:
    deadline = time.monotonic() + args.timeout_s
    while True:
        digests: dict[str, Any] = {}
        for node in nodes:
            try:
                status = await cluster.status(node, timeout_s=min(3.0, args.timeout_s))
            except Exception as exc:
                digests[node] = f"no answer ({type(exc).__name__})"
                continue
            if args.replica is not None:
                entry = status.get("replicas", {}).get(args.replica, {})
                digests[node] = entry.get("digest", "no such replica")
            else:
                digests[node] = status.get("digest", "no digest")
        if len(set(digests.values())) == 1 and not str(next(iter(digests.values()))).startswith(
            ("no answer", "no such", "no digest")
        ):
            _print(args, nodes, {n: {"converged": True, "digest": d} for n, d in digests.items()})
            return EXIT_OK
        if time.monotonic() > deadline:
            _print(args, nodes, {n: {"converged": False, "digest": d}
                                 for n, d in digests.items()})
            return EXIT_FAILED
        await asyncio.sleep(0.3)


def _text(value: Any, indent: str = "") -> list[str]:
    if isinstance(value, Mapping):
        lines = []
        for k, v in sorted(value.items(), key=lambda kv: str(kv[0])):
            if isinstance(v, Mapping) and v:
                lines.append(f"{indent}{k}:")
                lines += _text(v, indent + "  ")
            else:
                lines.append(f"{indent}{k}: {_scalar(v)}")
        return lines
    if isinstance(value, list):
        return [f"{indent}{_scalar(v)}" for v in value]
    return [f"{indent}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _print(args: argparse.Namespace, nodes: list[str], answers: dict[str, Any]) -> None:
    if args.json:
        doc = answers[nodes[0]] if len(nodes) == 1 else answers
        print(json.dumps(doc, default=lambda b: b.hex() if isinstance(b, bytes) else str(b),
                         sort_keys=True))
        return
    for node in nodes:
        lines = _text(answers[node])
        if len(nodes) == 1:
            print("\n".join(lines))
        else:
            print(f"{node}:")
            print("\n".join("  " + line for line in lines))
