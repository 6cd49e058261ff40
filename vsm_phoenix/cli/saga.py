"""``vsm-phoenix simulate --scenario saga``: three saga coordinators under faults
(:func:`vsm_phoenix.ext.saga.scenario.run_saga_scenario`), every saga checked; with
``--transport amqp`` the log is the Raft KV of three node processes over RabbitMQ
(:mod:`vsm_phoenix.ext.saga.amqp`)."""

from __future__ import annotations

from typing import Any

__all__ = ["simulate_saga_amqp_cli", "simulate_saga_cli"]


def simulate_saga_cli(first: int, runs: int, log: str, sagas: int, quiet: bool) -> int:
    """Run ``runs`` seeds; one summary line per seed; exit status 0 when every saga of
    every run ended consistently, 1 otherwise."""
    from vsm_phoenix.ext.saga.scenario import run_saga_scenario

    where = {"kv": "a 3-node Raft KV (in-process)", "sqlite": "one SQLite file",
             "memory": "one in-memory store"}[log]
    if not quiet:
        print(f"vsm-phoenix simulate: saga scenario, 3 coordinators sharing {where}, "
              f"{sagas} order sagas per seed (order -> stock | credit -> charge (pivot) -> "
              "ship -> notify) under step failures, coordinator crashes and partitions"
              + (", KV leader crashes" if log == "kv" else "")
              + f"; seeds {first}..{first + runs - 1}")
    bad = 0
    for seed in range(first, first + runs):
        run = run_saga_scenario(log=log, seed=seed, sagas=sagas,
                                say=(lambda _line: None) if quiet else print)
        bad += not run.ok
        if not quiet or not run.ok:
            o = run.outcomes
            print(f"seed {seed}: {o['completed']} completed, {o['compensated']} compensated, "
                  f"{o['stuck']} stuck (reported) of {run.sagas} in {run.elapsed_s:.1f} s; "
                  f"{len(run.violations)} invariant violations; "
                  + ", ".join(f"{k} {v}" for k, v in sorted(run.stats.items())))
            for line in run.violations[:20]:
                print(f"  {line}")
        if not run.ok:
            print(f"  replay with: vsm-phoenix simulate --scenario saga --saga-log {log} "
                  f"--seed {seed}")
    print(f"{runs - bad}/{runs} runs: every saga completed, compensated or stuck-and-reported; "
          "nothing applied twice; no compensation after the pivot or for a step that never "
          "ran")
    return 1 if bad else 0


#: ``simulate`` options the saga scenario over RabbitMQ does not take (dest -> flag).
_NOT_FOR_SAGA_AMQP = {
    "runs": "--runs", "check_timeout_s": "--check-timeout-s", "out_dir": "--out-dir",
    "quiet": "--quiet", "reconfigure": "--reconfigure", "ops": "--ops",
    "kill": "--kill", "close_connections": "--close-connections",
    "converge_timeout_s": "--converge-timeout-s",
}


def simulate_saga_amqp_cli(args: Any, prog: str) -> int:
    """``simulate --scenario saga --transport amqp`` (:mod:`vsm_phoenix.ext.saga.amqp`):
    three KV node processes over RabbitMQ hold the saga log; coordinators crash, are
    partitioned, the KV leader is SIGKILLed. Exit status 0 when every saga ended
    consistently, 1 otherwise, 2 for bad usage or no broker."""
    import asyncio
    import logging
    import sys

    from vsm_phoenix.cli.base import (
        EXIT_FAILED,
        UsageError,
        amqp_url,
        configure_logging,
        require_amqp,
        usage_exit,
    )
    from vsm_phoenix.cli.node import config_from, transport_argv
    from vsm_phoenix.errors import VsmPhoenixError

    wrong = [flag for dest, flag in _NOT_FOR_SAGA_AMQP.items()
             if getattr(args, dest, None) is not None]
    if wrong:
        return usage_exit(prog, f"{', '.join(wrong)} not with --scenario saga "
                                "--transport amqp")
    if args.saga_log not in (None, "kv"):
        return usage_exit(prog, "over RabbitMQ the saga log is the Raft KV (--saga-log kv)")
    if args.nodes not in (None, 3):
        return usage_exit(prog, "the saga scenario has 3 KV nodes and 3 coordinators")
    url = amqp_url(args.amqp_url)
    try:
        require_amqp()
        from vsm_phoenix.ext.saga.amqp import SagaAmqpSettings, run_saga_amqp

        settings = SagaAmqpSettings(
            url=url, sagas=200 if args.sagas is None else args.sagas,
            concurrency=20 if args.concurrency is None else args.concurrency,
            seed=args.seed, cluster=args.cluster, data_dir=args.data_dir,
            keep=bool(args.keep), progress=not args.no_progress, json=args.json,
            node_args=tuple(transport_argv(args)))
        config_from(args, url)  # the transport options, checked here rather than in a child
    except (UsageError, ValueError, TypeError, RuntimeError, VsmPhoenixError) as exc:
        return usage_exit(prog, exc)
    configure_logging(logging.ERROR, url, "%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_saga_amqp(settings))
    except KeyboardInterrupt:
        return 130
    except (TimeoutError, RuntimeError, OSError) as exc:
        from vsm_phoenix.ext.broker_url import redact

        print(redact(f"{prog} failed: {type(exc).__name__}: {exc}", url), file=sys.stderr)
        return EXIT_FAILED
