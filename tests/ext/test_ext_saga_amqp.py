"""Sagas whose log is the Raft KV run as node processes' peers over real RabbitMQ:
the AMQP :class:`~vsm_phoenix.ext.amqp.cluster.KV` client is a saga log as it is, and a
second coordinator on another connection takes over a saga whose driver died."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from saga_helpers import Clock, Ledger, check_outcome, order_saga

from vsm_phoenix.ext.saga import KVSagaLog, PermanentError, SagaOrchestrator, StepContext

pytest.importorskip("aio_pika")
pytestmark = pytest.mark.amqp


def test_sagas_on_the_kv_over_rabbitmq(clusters: Any, broker_url: str) -> None:
    from vsm_phoenix.ext.amqp import Cluster

    ids = ("n1", "n2", "n3")
    secrets = clusters.secrets(*ids)
    ledger = Ledger()
    hang = asyncio.Event

    async def main() -> None:
        started = hang()

        async def gate(ctx: StepContext) -> None:
            if ctx.step == "charge" and ctx.context.get("declined"):
                raise PermanentError("declined")
            if ctx.step == "ship" and ctx.context.get("crash") and not started.is_set():
                started.set()
                await asyncio.sleep(3600)

        d = order_saga(ledger, gate=gate, timeout_ms=2_000)
        async with contextlib.AsyncExitStack() as stack:
            for n in ids:
                await stack.enter_async_context(
                    Cluster.connect(broker_url, secrets.credentials(n), kind="kv"))
            a_conn = await stack.enter_async_context(
                Cluster.connect(broker_url, secrets.credentials("writer")))
            clock = Clock()
            a = SagaOrchestrator(KVSagaLog(a_conn.kv()), "a", [d], clock_ms=clock,
                                 lease_ms=5_000, rng=random.Random(1))
            ok = await a.run("order", {}, saga_id="q1")
            no = await a.run("order", {"declined": True}, saga_id="q2")
            assert (ok.outcome, no.outcome) == ("completed", "compensated")
            task = asyncio.create_task(a.run("order", {"crash": True}, saga_id="q3"))
            await started.wait()
            task.cancel()  # coordinator a dies in the middle of shipping
            with pytest.raises(asyncio.CancelledError):
                await task
            b = SagaOrchestrator(KVSagaLog(a_conn.kv()), "b", [d],
                                 clock_ms=clock.skewed(60_000), rng=random.Random(2))
            (taken,) = await b.recover()
            assert taken.saga_id == "q3" and taken.outcome == "completed"
            for r in (ok, no, taken):
                check_outcome(ledger, r.saga_id, r.outcome)

    asyncio.run(main())


def test_the_saga_scenario_over_rabbitmq(broker_url: str, tmp_path: Any,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """What ``simulate --scenario saga --transport amqp`` runs: three KV node processes
    hold the log; a coordinator crashes (a peer takes its sagas over), and more faults
    follow while sagas run (partitions, KV leader SIGKILLs); every saga ends
    consistently and the outcome is printed."""
    import json

    from vsm_phoenix.ext.saga.amqp import SagaAmqpSettings, run_saga_amqp

    out = tmp_path / "saga.json"
    # seed 9: the nemesis' first faults are a coordinator crash, then a KV leader kill;
    # a 1.5 s lease paces the faults so that they strike while the sagas run
    settings = SagaAmqpSettings(url=broker_url, sagas=30, seed=9, lease_ms=1_500,
                                progress=False, json=str(out))
    code = asyncio.run(run_saga_amqp(settings))
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"] and result["violations"] == []
    assert sum(result["outcomes"].values()) == 30 and result["outcomes"]["completed"] > 0
    assert result["stats"]["crashes"] >= 1
    assert "OK: " in printed.out and "0 invariant violations" in printed.out
