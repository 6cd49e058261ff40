"""Sagas whose log is the Raft-replicated KV (in-process SimulatedRaftKV): runs,
compensation, a KV leader crash and a partition under running sagas, takeover of a
crashed coordinator's saga by another node, and the log's strict decoding."""

from __future__ import annotations

import asyncio
import random

import pytest
from saga_helpers import Clock, Faults, Ledger, check_outcome, order_saga

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.ext.saga import (
    KVSagaLog,
    PermanentError,
    SagaOrchestrator,
    SimulatedRaftKV,
    StepContext,
)
from vsm_phoenix.ext.saga.log import format_log_value, parse_log_value


def test_sagas_on_the_raft_kv_complete_and_compensate() -> None:
    ledger = Ledger()

    async def gate(ctx: StepContext) -> None:
        if ctx.step == "charge" and ctx.context.get("declined"):
            raise PermanentError("declined")

    async def main() -> None:
        kv = SimulatedRaftKV(seed=1)
        log = KVSagaLog(kv)
        o = SagaOrchestrator(log, "n1", [order_saga(ledger, gate=gate)], clock_ms=Clock(),
                             rng=random.Random(1))
        ok = await o.run("order", {}, saga_id="k1")
        no = await o.run("order", {"declined": True}, saga_id="k2")
        assert (ok.outcome, no.outcome) == ("completed", "compensated")
        check_outcome(ledger, "k1", ok.outcome)
        check_outcome(ledger, "k2", no.outcome)
        assert await log.saga_ids() == []  # ended sagas leave the index
        assert await log.saga_ids(active_only=True) == []
        # every replica holds the same log: it went through Raft
        leader_log = await log.load("k1")
        assert leader_log is not None
        kv.sim.run_for(500)
        values = {n: kv.sim.node(n).state_machine.data.get("saga/log/k1")  # type: ignore[union-attr]
                  for n in kv.nodes}
        assert len(set(values.values())) == 1
        assert parse_log_value(next(iter(values.values())) or "") == leader_log

    asyncio.run(main())


def test_kv_faults_under_running_sagas_lose_nothing() -> None:
    """The KV leader crashes and later a partition isolates one replica while 20 sagas
    with random step failures run; every saga ends and matches its resources."""
    ledger = Ledger()
    faults = Faults(random.Random(2), p_retryable=0.1, p_permanent=0.05)

    async def main() -> None:
        kv = SimulatedRaftKV(seed=2)
        # Sagas that reach "ship" wait there until both faults have struck, so the
        # faults hit running sagas however fast the machine is (on a quiet machine all
        # 20 sagas used to finish before the partition).
        release = asyncio.Event()

        async def gate(ctx: StepContext) -> None:
            if ctx.step == "ship":
                await release.wait()

        o = SagaOrchestrator(KVSagaLog(kv), "n1", [order_saga(ledger, faults, gate=gate)],
                             clock_ms=Clock(), rng=random.Random(2))

        during: list[int] = []

        async def nemesis() -> None:
            while not o.driving:
                await asyncio.sleep(0.005)
            leader = kv.leader or kv.nodes[0]
            during.append(len(o.driving))
            kv.sim.crash(leader)
            await asyncio.sleep(0.05)
            kv.sim.restart(leader)
            kv.sim.partition([kv.nodes[1]])
            await asyncio.sleep(0.05)
            during.append(len(o.driving))
            kv.sim.heal()
            release.set()

        results, _ = await asyncio.gather(
            asyncio.gather(*(o.run("order", {"i": i}, saga_id=f"f{i}") for i in range(20))),
            nemesis())
        assert during[0] > 0 and during[1] > 0, during  # the faults hit running sagas
        for r in results:
            assert r.outcome in ("completed", "compensated", "stuck")
            check_outcome(ledger, r.saga_id, r.outcome)

    asyncio.run(main())


def test_another_node_takes_over_a_crashed_coordinators_saga_through_the_kv() -> None:
    ledger = Ledger()

    async def main() -> None:
        kv = SimulatedRaftKV(seed=3)
        started = asyncio.Event()

        async def gate(ctx: StepContext) -> None:
            if ctx.step == "ship" and ctx.attempt == 1 and not started.is_set():
                started.set()
                await asyncio.sleep(3600)  # the coordinator dies while this hangs

        d = order_saga(ledger, gate=gate)
        clock = Clock()
        a = SagaOrchestrator(KVSagaLog(kv), "a", [d], clock_ms=clock, lease_ms=1_000,
                             rng=random.Random(3))
        task = asyncio.create_task(a.run("order", {}, saga_id="t1"))
        await started.wait()
        task.cancel()  # a's process is gone
        with pytest.raises(asyncio.CancelledError):
            await task
        b = SagaOrchestrator(KVSagaLog(kv), "b", [d], clock_ms=clock.skewed(60_000),
                             rng=random.Random(4))
        (r,) = await b.recover()
        assert r.outcome == "completed"
        check_outcome(ledger, "t1", r.outcome)
        log = await KVSagaLog(kv).load("t1")
        assert log is not None
        assert [x.by for x in log if x.kind == "claimed"][-1] == "b"
        ship = [x for x in log if x.fields.get("step") == "ship"]
        assert [(x.kind, x.fields.get("f")) for x in ship] == [
            ("step-started", None), ("step-failed", "timeout"), ("step-started", None),
            ("step-completed", None)]

    asyncio.run(main())


def test_a_kv_log_value_decodes_strictly() -> None:
    from vsm_phoenix.ext.saga import Record

    recs = [Record("started", 1, "n1", 1, {"saga": "s", "ctx": {}, "timeout_ms": 5}),
            Record("claimed", 1, "n1", 1, {"until": 9})]
    value = format_log_value(recs)
    assert parse_log_value(value) == recs
    for bad in ["", "\n", value + "\n", value + "\n!!!", value.replace("\n", "\n "),
                "é", "AAAA"]:
        with pytest.raises(DecodeError):
            parse_log_value(bad)
