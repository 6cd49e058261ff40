"""``vsm-phoenix node``: run one protocol node against RabbitMQ until SIGTERM.

Every argument and file is checked before anything else happens (exit status 2 with a
one-line error, no files created, the broker not contacted): the role, the keyset, the
node's identity and the roster (the identity must be the node id, and the roster must
list it with the ``peer`` role). Then the data directory is locked -- one process per
node id -- and the broker is contacted. Passwords in broker URLs never reach the
output.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import random
import signal
import sys
from pathlib import Path
from typing import IO

from vsm_phoenix.crypto.credentials import (
    KEYSET_FILE,
    ROSTER_FILE,
    Credentials,
    identity_file,
)
from vsm_phoenix.errors import VsmPhoenixError
from vsm_phoenix.ext.amqp.endpoint import AmqpConfig
from vsm_phoenix.ext.amqp.topology import amqp_url, broker_available, redact

__all__ = ["add_transport_options", "config_from", "main_node", "node_parser"]

EXIT_USAGE = 2


def add_transport_options(p: argparse.ArgumentParser) -> None:
    """Broker and batching options shared by ``node`` and ``simulate --transport amqp``."""
    p.add_argument("--amqp-url", default=None,
                   help="broker URL (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/)")
    p.add_argument("--batch-max", type=int, default=256,
                   help="frames per publish; 1 disables batching (default 256)")
    p.add_argument("--linger-ms", type=float, default=2.0,
                   help="how long a partial batch waits for company (default 2)")
    p.add_argument("--window", type=int, default=64,
                   help="unconfirmed publishes in flight (default 64)")
    p.add_argument("--ttl-ms", type=int, default=60_000,
                   help="per-message TTL in the broker (default 60000)")
    p.add_argument("--sync", choices=("full", "normal"), default="normal",
                   help="SQLite synchronous mode: full survives power loss, normal "
                        "survives process crashes (default normal)")


def config_from(args: argparse.Namespace) -> AmqpConfig:
    """The adapter configuration the transport options describe."""
    return AmqpConfig(url=args.amqp_url, batch_max_messages=args.batch_max,
                      linger_ms=args.linger_ms, window=args.window,
                      message_ttl_ms=args.ttl_ms)


def node_parser() -> argparse.ArgumentParser:
    """The options of ``vsm-phoenix node``."""
    p = argparse.ArgumentParser(prog="vsm-phoenix node",
                                description="run one protocol node against RabbitMQ")
    p.add_argument("--id", required=True, help="node id (its identity's principal)")
    p.add_argument("--role", default="crdt",
                   help="crdt (default), swim, kv, or module:attribute")
    p.add_argument("--peers", default="", help="comma-separated ids of the other nodes")
    p.add_argument("--data-dir", default="vsm-data",
                   help="directory of the node's SQLite store (default ./vsm-data)")
    p.add_argument("--keys", default=None,
                   help="directory with keyset.json, roster.cbor and <id>.identity.json "
                        "(default $VSM_PHOENIX_KEYS)")
    p.add_argument("--keyset", default=None, help="cluster keyset file (overrides --keys)")
    p.add_argument("--identity", default=None, help="node identity file (overrides --keys)")
    p.add_argument("--roster", default=None, help="signed roster file (overrides --keys)")
    p.add_argument("--cluster", default=None,
                   help="cluster name; when given it must match the roster's")
    p.add_argument("--seed", type=int, default=None, help="seed of the node's random source")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    add_transport_options(p)
    return p


class _Redact(logging.Filter):
    """Removes AMQP URL passwords from every log record."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.url)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.url)
        return True


def _credentials(args: argparse.Namespace) -> Credentials:
    keys = args.keys or os.environ.get("VSM_PHOENIX_KEYS")
    base = Path(keys) if keys else None

    def pick(given: str | None, name: str, what: str) -> Path:
        if given:
            return Path(given)
        if base is None:
            raise ValueError(f"no {what}: pass --keys DIR or --{what}")
        return base / name

    return Credentials.load(
        keyset=pick(args.keyset, KEYSET_FILE, "keyset"),
        identity=pick(args.identity, identity_file(args.id), "identity"),
        roster=pick(args.roster, ROSTER_FILE, "roster"),
    )


def _lock(data: Path, node_id: str) -> IO[str]:
    """An exclusive lock on ``<data>/<id>.lock`` held for the process's lifetime."""
    fh = open(data / f"{node_id}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise VsmPhoenixError(
            f"node {node_id!r} already runs on data dir {data} (pid {holder})"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


async def _run_node(args: argparse.Namespace) -> int:
    from vsm_phoenix.ext.amqp.node import AmqpNode
    from vsm_phoenix.ext.amqp.roles import load_role
    from vsm_phoenix.storage import SQLiteStorage

    # 1. every argument and file, before any side effect
    try:
        role = load_role(args.role)
        credentials = _credentials(args)
        if credentials.principal != args.id:
            raise ValueError(f"the identity is {credentials.principal!r}, not {args.id!r}")
        if args.cluster is not None and args.cluster != credentials.cluster:
            raise ValueError(f"the roster is for cluster {credentials.cluster!r}, "
                             f"not {args.cluster!r}")
        config = config_from(args)
    except (OSError, ValueError, TypeError, VsmPhoenixError) as exc:
        print(f"vsm-phoenix node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # 2. one process per node id
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    try:
        lock = _lock(data, args.id)
    except VsmPhoenixError as exc:
        print(f"vsm-phoenix node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        reason = await broker_available(args.amqp_url)
        if reason is not None:
            print(f"vsm-phoenix node: {reason}", file=sys.stderr)
            return EXIT_USAGE
        peers = [p for p in args.peers.split(",") if p and p != args.id]
        storage = SQLiteStorage(data / f"{args.id}.sqlite", synchronous=args.sync.upper())
        try:
            boots = storage.get("runner/boots")
            seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "big")
            rng = random.Random(f"{seed}/{args.id}/{int.from_bytes(boots or b'', 'big')}")
            runner = AmqpNode(role.build(args.id, rng, peers), credentials=credentials,
                              storage=storage, config=config, codec=role)
            try:
                await runner.start()
            except VsmPhoenixError as exc:
                print(f"vsm-phoenix node: {exc}", file=sys.stderr)
                return EXIT_USAGE
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.request_stop)
            print(f"READY {args.id} {runner.booted_with}", flush=True)
            await runner.wait_stopped()
        finally:
            storage.close()
    finally:
        lock.close()
    return 0


def main_node(argv: list[str]) -> int:
    """``vsm-phoenix node ...``: run one node until SIGTERM; returns the exit status."""
    try:
        args = node_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.amqp_url = args.amqp_url or amqp_url()
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        print(f"vsm-phoenix node: unknown log level {args.log_level!r}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=level,
                        format=f"%(asctime)s {args.id} %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redact(args.amqp_url))
    try:
        return asyncio.run(_run_node(args))
    except KeyboardInterrupt:
        return 130
