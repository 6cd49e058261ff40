"""``vsm-phoenix simulate --transport amqp``: the scenario as node processes over RabbitMQ
(:mod:`vsm_phoenix.ext.amqp.simulate`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from vsm_phoenix.cli.node import add_transport_options
from vsm_phoenix.ext.amqp.topology import amqp_url, redact

__all__ = ["main_simulate_amqp", "simulate_parser"]


def simulate_parser() -> argparse.ArgumentParser:
    """The options of ``vsm-phoenix simulate --transport amqp``."""
    p = argparse.ArgumentParser(
        prog="vsm-phoenix simulate --transport amqp",
        description="run the scenario as separate node processes over RabbitMQ",
    )
    p.add_argument("--transport", choices=("amqp",), default="amqp",
                   help="accepted so that `simulate` argv can be passed through as is")
    p.add_argument("--nodes", type=int, default=3, help="number of node processes (default 3)")
    p.add_argument("--scenario", choices=("crdt", "kv"), default="crdt",
                   help="crdt: ORSet replicas converge; kv: Raft KV is linearizable")
    p.add_argument("--ops", type=int, default=200, help="client operations (default 200)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="client operations in flight (default 8)")
    p.add_argument("--cluster", default=None, help="cluster name (default: a fresh one)")
    p.add_argument("--data-dir", default=None,
                   help="directory for stores and logs (default: a temp dir)")
    p.add_argument("--kill", action="store_true",
                   help="SIGKILL one node mid-run and restart it from its SQLite store")
    p.add_argument("--close-connections", action="store_true",
                   help="close the cluster's broker connections mid-run (rabbitmqctl)")
    p.add_argument("--timeout", type=float, default=90.0,
                   help="seconds to wait for convergence (default 90)")
    p.add_argument("--keep", action="store_true",
                   help="keep the data dir, the secrets and the broker queues/exchanges")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument("--json", default=None, help="write the result summary to this file")
    p.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    add_transport_options(p)
    return p


def main_simulate_amqp(argv: list[str]) -> int:
    """``vsm-phoenix simulate --transport amqp ...``; returns the exit status (argv may
    include ``--transport amqp``)."""
    try:
        args = simulate_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.nodes < 1 or args.ops < 0 or args.concurrency < 1:
        print("vsm-phoenix simulate: --nodes and --concurrency must be positive, --ops >= 0",
              file=sys.stderr)
        return 2
    args.amqp_url = args.amqp_url or amqp_url()
    logging.basicConfig(level=logging.ERROR)
    # Reconnections are expected here (--close-connections); keep the display clean.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from vsm_phoenix.ext.amqp.simulate import run_simulation

    try:
        return asyncio.run(run_simulation(args))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(redact(f"simulate failed: {type(exc).__name__}: {exc}", args.amqp_url),
              file=sys.stderr)
        return 1
