"""``vsm-phoenix node``: run one node process against RabbitMQ until SIGTERM (or a
``stop`` control request).

Order of events:

1. Every argument and file is checked -- the node kind, the log level, the keyset,
   the node's identity and the roster (the identity must be the node id, the roster
   must list it with the ``peer`` role), and for ``--kind router`` the routes, the
   grants and the pinned authority key (:mod:`vsm_phoenix.cli.router`). A problem is
   one line on stderr and exit status 2; no file has been created and the broker has
   not been contacted.
2. The data directory is locked (``<data-dir>/<id>.lock``): one process per node id
   (exit 2 when taken).
3. The broker: while it does not answer, the node says so in one line and retries
   with exponential backoff (0.5 s doubling to 10 s), for ever unless
   ``--broker-wait-s`` limits it (then exit 1).
4. The node starts (exit 2 if another process consumes its queue) and prints
   ``READY <id> start|restart``. From then on, a lost broker connection is one WARNING
   line when it comes back; tracebacks of the AMQP libraries show at ``--log-level
   DEBUG`` only. Passwords in broker URLs never reach the output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from vsm_phoenix.cli import router
from vsm_phoenix.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    amqp_url,
    configure_logging,
    keys_dir,
    parse_level,
    require_amqp,
    usage_exit,
)
from vsm_phoenix.crypto.credentials import KEYSET_FILE, ROSTER_FILE, Credentials, identity_file
from vsm_phoenix.errors import PermissionDenied, VsmPhoenixError

__all__ = [
    "add_key_options",
    "add_transport_options",
    "config_from",
    "load_credentials",
    "register",
    "run",
    "transport_argv",
]

PROG = "vsm-phoenix node"


def add_transport_options(p: argparse.ArgumentParser) -> None:
    """Broker and batching options shared by ``node`` and ``simulate --transport amqp``."""
    g = p.add_argument_group("broker and batching")
    g.add_argument("--amqp-url", default=None,
                   help="broker URL (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
    g.add_argument("--batch-max", type=int, default=256,
                   help="frames per publish; 1 disables batching (default 256)")
    g.add_argument("--linger-ms", type=float, default=2.0,
                   help="how long a partial batch waits for company (default 2)")
    g.add_argument("--window", type=int, default=64,
                   help="unconfirmed publishes in flight (default 64)")
    g.add_argument("--ttl-ms", type=int, default=60_000,
                   help="per-message TTL in the broker (default 60000)")
    g.add_argument("--sync", choices=("full", "normal"), default="normal",
                   help="SQLite synchronous mode: full survives power loss, normal "
                        "survives process crashes (default normal)")


def transport_argv(args: argparse.Namespace) -> list[str]:
    """The transport options of ``args`` as ``node`` arguments (for child processes)."""
    return ["--batch-max", str(args.batch_max), "--linger-ms", str(args.linger_ms),
            "--window", str(args.window), "--ttl-ms", str(args.ttl_ms), "--sync", args.sync]


def config_from(args: argparse.Namespace, url: str) -> Any:
    """The adapter configuration the transport options describe (``InvalidArgument``
    for values out of range)."""
    from vsm_phoenix.ext.amqp.endpoint import AmqpConfig

    return AmqpConfig(url=url, batch_max_messages=args.batch_max,
                      linger_ms=args.linger_ms, window=args.window,
                      message_ttl_ms=args.ttl_ms)


def add_key_options(p: argparse.ArgumentParser) -> None:
    """``--keys`` and the per-file overrides (``node`` and ``ctl``)."""
    g = p.add_argument_group("keys (see `vsm-phoenix keys new`)")
    g.add_argument("--keys", default=None, metavar="DIR",
                   help="directory with keyset.json, roster.cbor and <principal>.identity.json "
                        "(default $VSM_PHOENIX_KEYS)")
    g.add_argument("--keyset", default=None, metavar="FILE",
                   help="cluster keyset file (overrides --keys)")
    g.add_argument("--identity", default=None, metavar="FILE",
                   help="identity file (overrides --keys)")
    g.add_argument("--roster", default=None, metavar="FILE",
                   help="signed roster file (overrides --keys)")


def load_credentials(args: argparse.Namespace, principal: str) -> Credentials:
    """``principal``'s credentials from ``--keys`` / ``$VSM_PHOENIX_KEYS`` and the
    per-file overrides. ``OSError``, ``UsageError`` or a ``VsmPhoenixError``."""
    directory = keys_dir(args.keys)
    base = Path(directory) if directory else None

    def pick(given: str | None, name: str, what: str) -> Path:
        if given:
            return Path(given)
        if base is None:
            raise UsageError(f"no {what}: pass --keys DIR (or set $VSM_PHOENIX_KEYS) or --{what}")
        return base / name

    return Credentials.load(
        keyset=pick(args.keyset, KEYSET_FILE, "keyset"),
        identity=pick(args.identity, identity_file(principal), "identity"),
        roster=pick(args.roster, ROSTER_FILE, "roster"),
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "node", help="run one node process against RabbitMQ",
        description="Run one node process against RabbitMQ until SIGTERM or a `stop` "
                    "control request. Exit status: 0 stopped, 1 no broker within "
                    "--broker-wait-s, 2 bad argument or file, or the node runs elsewhere.",
    )
    p.add_argument("--id", required=True, help="node id (its identity's principal)")
    p.add_argument("--kind", default="crdt",
                   help="crdt (default: SWIM + delta-synced CRDT replicas), swim, kv "
                        "(Raft KV), router (signed commands: see the router options), or "
                        "module:attribute naming a NodeKind")
    p.add_argument("--peers", default=None,
                   help="comma-separated ids of the other nodes (default: every peer "
                        "in the roster)")
    p.add_argument("--data-dir", default="vsm-data",
                   help="directory of the node's SQLite store and lock (default ./vsm-data)")
    p.add_argument("--cluster", default=None,
                   help="cluster name; when given it must match the roster's")
    p.add_argument("--seed", type=int, default=None, help="seed of the node's random source")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    p.add_argument("--broker-wait-s", type=float, default=None,
                   help="give up (exit 1) when the broker does not answer within this many "
                        "seconds (default: wait for ever)")
    add_key_options(p)
    add_transport_options(p)
    router.add_node_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``vsm-phoenix node ...``; returns the exit status."""
    url = amqp_url(args.amqp_url)
    try:  # 1. every argument and file, before any side effect
        require_amqp()
        from vsm_phoenix.ext.amqp.kinds import load_kind

        level = parse_level(args.log_level)
        if args.broker_wait_s is not None and args.broker_wait_s < 0:
            raise UsageError("--broker-wait-s must be >= 0")
        router.check_node_options(args)
        kind = None if args.kind == "router" else load_kind(args.kind)
        credentials = load_credentials(args, args.id)
        if credentials.principal != args.id:
            raise UsageError(f"the identity is {credentials.principal!r}, not {args.id!r}")
        if args.cluster is not None and args.cluster != credentials.cluster:
            raise UsageError(f"the roster is for cluster {credentials.cluster!r}, "
                             f"not {args.cluster!r}")
        from vsm_phoenix.ext.amqp.cluster import roster_peers

        if not credentials.roster.members[args.id].allows("peer"):
            raise UsageError(f"the roster does not give {args.id!r} the peer role")
        peers = (roster_peers(credentials) if args.peers is None
                 else [p for p in args.peers.split(",") if p])
        config = config_from(args, url)
        if kind is None:  # built from the roster, the grants and the routes
            kind = router.router_kind(args, credentials,
                                      logging.getLogger("vsm_phoenix.router"))
    except (UsageError, OSError, ValueError, TypeError, VsmPhoenixError) as exc:
        return usage_exit(PROG, exc)
    configure_logging(level, url,
                      f"%(asctime)s {args.id} %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args, kind, credentials, config, peers, url))
    except KeyboardInterrupt:
        return 130


async def _serve(args: argparse.Namespace, kind: Any, credentials: Credentials, config: Any,
                 peers: list[str], url: str) -> int:
    from vsm_phoenix.ext.amqp.cluster import lock_data_dir, start_node
    from vsm_phoenix.ext.amqp.node import NodeFenced
    from vsm_phoenix.ext.amqp.topology import redact, wait_for_broker
    from vsm_phoenix.storage import SQLiteStorage

    data = Path(args.data_dir)
    try:  # 2. one process per node id
        lock = lock_data_dir(data, args.id)
    except (NodeFenced, OSError) as exc:
        return usage_exit(PROG, exc)
    said = False

    def waiting(reason: str, delay_s: float) -> None:
        nonlocal said
        if not said:
            print(f"{PROG} {args.id}: waiting for the broker ({reason}); retrying with "
                  "backoff", file=sys.stderr, flush=True)
            said = True

    try:
        # 3. the broker, with backoff
        try:
            await wait_for_broker(url, timeout_s=args.broker_wait_s, on_wait=waiting)
        except TimeoutError as exc:
            print(f"{PROG} {args.id}: giving up: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except PermissionDenied as exc:
            return usage_exit(PROG, exc)
        if said:
            print(f"{PROG} {args.id}: the broker answers", file=sys.stderr, flush=True)
        storage = SQLiteStorage(data / f"{args.id}.sqlite", synchronous=args.sync.upper())
        try:
            try:  # 4. the node
                runner = await start_node(kind, credentials, storage=storage, config=config,
                                          peers=peers, seed=args.seed)
            except NodeFenced as exc:
                return usage_exit(PROG, exc)
            except OSError as exc:  # the broker went away while the node started
                print(redact(f"{PROG} {args.id}: the broker failed while starting: "
                             f"{type(exc).__name__}: {exc}", url), file=sys.stderr)
                return EXIT_FAILED
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.request_stop)
            # One write for the whole line: nodes started together share a terminal or a
            # pipe, and print() writes the text and its newline separately when stdout
            # is unbuffered, so two nodes' lines could run together.
            sys.stdout.write(f"READY {args.id} {runner.booted_with}\n")
            sys.stdout.flush()
            await runner.wait_stopped()
        finally:
            storage.close()
    finally:
        lock.close()
    return EXIT_OK

