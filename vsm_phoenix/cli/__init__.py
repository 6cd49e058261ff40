"""The ``vsm-phoenix`` command line: one parser tree, one module per command.

=============  =====================================================================
``demo``       the in-process scenarios behind ``make demo``
``simulate``   a scenario on the deterministic simulator, or (``--transport amqp``)
               as node processes over RabbitMQ (:mod:`~vsm_phoenix.cli.simulate`)
``keys``       make, show, rotate and export a cluster's keys; sign capability
               grants (:mod:`~.keys`, :mod:`~.router`)
``node``       run one node process against the broker (:mod:`~.node`)
``ctl``        ask running nodes for a control operation, e.g. submit a signed
               command to a router node (:mod:`~.ctl`, :mod:`~.router`)
``check``      check a history for linearizability (:mod:`~.check`)
``bench``      the benchmark report (:mod:`~.bench`)
``gepa``       distributed GEPA on the simulator (:mod:`~.gepa`)
=============  =====================================================================

Every argument parser and every environment variable read of the package lives in this
package (:mod:`~vsm_phoenix.cli.base`); library code takes parameters. Bad usage is one
line on stderr and exit status 2, before any side effect.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vsm_phoenix.cli.base import ArgumentParser

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    """The whole ``vsm-phoenix`` parser (each sub-command sets ``run``)."""
    from vsm_phoenix.cli import bench, check, ctl, gepa, keys, node, simulate

    parser = ArgumentParser(
        prog="vsm-phoenix",
        description="CRDTs, sans-IO distributed protocols and sealed messaging.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=ArgumentParser)
    simulate.register(sub)
    keys.register(sub)
    node.register(sub)
    ctl.register(sub)
    check.register(sub)
    bench.register(sub)
    gepa.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (``--help`` and usage errors exit
    through :class:`SystemExit` as argparse does, with 0 and 2)."""
    args = build_parser().parse_args(list(argv) if argv is not None else sys.argv[1:])
    code: int = args.run(args)
    return code
