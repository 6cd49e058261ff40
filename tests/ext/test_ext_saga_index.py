"""The KV saga log's index: ended sagas leave it, stuck ones stay listed, concurrent
coordinators never lose an entry, and an ended saga left listed -- by a crash or a
lost answer between its terminal record and its removal, what stalled the 200-saga
AMQP run for good -- is settled by whoever sees it ended."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from saga_helpers import Clock, Ledger, check_outcome, order_saga

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.ext.saga import (
    KVSagaLog,
    PermanentError,
    Record,
    SagaOrchestrator,
    SimulatedRaftKV,
    StepContext,
    StorageSagaLog,
)
from vsm_phoenix.ext.saga.log import format_index, parse_index, parse_log_value
from vsm_phoenix.ext.saga.records import TERMINAL
from vsm_phoenix.storage import MemoryStorage


class _Crash(BaseException):
    """The coordinator's process dies (not an error any code handles)."""


class _FaultyKV:
    """A :class:`SimulatedRaftKV` whose ``cas`` writing a saga's terminal record takes
    effect and then raises ``fault`` (once per saga): the coordinator dies, or the
    answer is lost. Counts the index writes that lost their compare-and-set."""

    def __init__(self, kv: SimulatedRaftKV, fault: type[BaseException] | None = None) -> None:
        self.kv, self.fault = kv, fault
        self.struck: set[str] = set()
        self.index_cas = self.index_cas_lost = 0
        self.fail_index_cas: set[int] = set()  # these index writes time out, unapplied

    async def get(self, key: str, *, timeout_s: float | None = None) -> str | None:
        return await self.kv.get(key)

    async def append(self, key: str, value: str, *, timeout_s: float | None = None) -> None:
        await self.kv.append(key, value)

    async def cas(self, key: str, expected: str | None, value: str, *,
                  timeout_s: float | None = None) -> bool:
        if key.endswith("/index"):
            self.index_cas += 1
            if self.index_cas in self.fail_index_cas:
                raise TimeoutError("the index write did not answer")
        ok = await self.kv.cas(key, expected, value)
        if key.endswith("/index") and not ok:
            self.index_cas_lost += 1
        if (ok and self.fault is not None and "/log/" in key and key not in self.struck
                and parse_log_value(value)[-1].kind in TERMINAL):
            self.struck.add(key)
            raise self.fault("the answer never came")
        return ok


async def _gate(ctx: StepContext) -> None:
    """A declined charge compensates the saga; an undeliverable order is stuck."""
    if ctx.compensation:
        return
    if ctx.step == "charge" and ctx.context.get("declined"):
        raise PermanentError("declined")
    if ctx.step == "ship" and ctx.context.get("undeliverable"):
        raise PermanentError("no such address")


def test_ended_sagas_leave_the_index_and_stuck_ones_stay_listed() -> None:
    ledger = Ledger()

    async def main() -> None:
        kv = SimulatedRaftKV(seed=11)
        log = KVSagaLog(kv)
        o = SagaOrchestrator(log, "n1", [order_saga(ledger, gate=_gate)], clock_ms=Clock(),
                             rng=random.Random(11))
        done = await o.run("order", {}, saga_id="k1")
        undone = await o.run("order", {"declined": True}, saga_id="k2")
        stuck = await o.run("order", {"undeliverable": True}, saga_id="k3")
        assert [r.outcome for r in (done, undone, stuck)] == [
            "completed", "compensated", "stuck"]
        for r in (done, undone, stuck):
            check_outcome(ledger, r.saga_id, r.outcome)
        # only the stuck saga is left, marked stuck: the index does not grow with history
        assert await kv.get(log.index_key) == "!k3\n"
        assert await log.saga_ids() == ["k3"]
        assert await log.saga_ids(active_only=True) == []
        assert [s.saga_id for s in await o.sagas(state="stuck")] == ["k3"]
        assert await o.sagas(state="completed") == []
        # an ended saga's log stays: its status still answers
        status = await o.status("k1")
        assert status is not None and status.state == "completed"
        assert await o.status("never-ran") is None
        # settling is idempotent and leaves the stuck saga listed
        for saga_id in ("k1", "k3", "never-ran"):
            await log.settle(saga_id)
        assert await log.saga_ids() == ["k3"]

    asyncio.run(main())


def test_an_unfinished_saga_stays_listed_whatever_settle_is_asked() -> None:
    async def main() -> None:
        kv = SimulatedRaftKV(seed=12)
        log = KVSagaLog(kv)
        started = Record("started", 1, "n1", 1, {"saga": "order", "ctx": {}, "timeout_ms": 5})
        claimed = Record("claimed", 1, "n1", 1, {"until": 9})
        assert await log.append("u1", 0, [started, claimed])
        await log.settle("u1")
        assert await log.saga_ids(active_only=True) == ["u1"]
        with pytest.raises(InvalidArgument):
            await log.settle("../index")
        assert await log.saga_ids(active_only=True) == ["u1"]

    asyncio.run(main())


@pytest.mark.parametrize("fault", [_Crash, TimeoutError], ids=["crash", "lost-answer"])
def test_an_ended_saga_left_listed_is_settled(fault: type[BaseException]) -> None:
    """The terminal record is durable but the coordinator dies (or never hears back)
    before the saga leaves the index. Before the fix the saga stayed listed as
    unfinished for ever, and the scenario's final recovery waited on it until its
    timeout. Now a lost answer is settled by the coordinator itself (it finds its
    records in the log), and a crash by the next recovery scan of another node."""
    ledger = Ledger()

    async def main() -> None:
        kv = SimulatedRaftKV(seed=13)
        faulty = _FaultyKV(kv, fault)
        d = order_saga(ledger)
        clock = Clock()
        a = SagaOrchestrator(KVSagaLog(faulty), "a", [d], clock_ms=clock,
                             rng=random.Random(13))
        if fault is _Crash:
            with pytest.raises(_Crash):
                await a.run("order", {}, saga_id="e1")
            log = KVSagaLog(kv)
            assert await log.saga_ids(active_only=True) == ["e1"]  # left listed
            b = SagaOrchestrator(log, "b", [d], clock_ms=clock, rng=random.Random(14))
            assert await b.recover() == []  # nothing to resume: it has ended...
        else:
            r = await a.run("order", {}, saga_id="e1")
            assert r.outcome == "completed"
            log = KVSagaLog(kv)
        assert faulty.struck == {"saga/log/e1"}
        assert await log.saga_ids(active_only=True) == []  # ...and it is no longer listed
        assert await kv.get(log.index_key) == ""
        check_outcome(ledger, "e1", "completed")

    asyncio.run(main())


def test_concurrent_coordinators_never_lose_an_index_entry() -> None:
    """Four coordinators start and end 40 sagas at once on one Raft KV (a quarter of
    them stuck, a quarter compensated) while the KV leader crashes; the index writes
    race (some compare-and-sets lose). On every replica at every moment, every saga
    whose log exists and has not ended is listed; at the end only the stuck ones are."""
    ledger = Ledger()

    async def main() -> None:
        kv = SimulatedRaftKV(seed=15)
        faulty = _FaultyKV(kv)
        d = order_saga(ledger, gate=_gate)
        clock = Clock()
        nodes = [SagaOrchestrator(KVSagaLog(faulty), f"c{i}", [d], clock_ms=clock,
                                  rng=random.Random(i)) for i in range(4)]
        contexts: list[dict[str, Any]] = [{}, {"declined": True}, {"undeliverable": True}, {}]
        problems: list[str] = []
        checks = 0

        def check_replicas() -> None:
            nonlocal checks
            checks += 1
            for node in kv.nodes:
                replica = kv.sim.node(node)
                if replica is None:
                    continue  # crashed
                data = replica.state_machine.data  # type: ignore[attr-defined]
                listed, _ = parse_index(data.get("saga/index"))
                for key, value in data.items():
                    if key.startswith("saga/log/"):
                        saga_id = key[len("saga/log/"):]
                        last = parse_log_value(value.rsplit("\n", 1)[-1])[0]
                        if (last.kind not in TERMINAL
                                and saga_id not in listed):
                            problems.append(f"{node}: {saga_id} unfinished, not listed")

        async def monitor(stop: asyncio.Event) -> None:
            while not stop.is_set():
                check_replicas()
                await asyncio.sleep(0.005)

        async def nemesis() -> None:
            while kv.calls < 60:
                await asyncio.sleep(0.002)
            leader = kv.leader or kv.nodes[0]
            kv.sim.crash(leader)
            await asyncio.sleep(0.05)
            kv.sim.restart(leader)

        stop = asyncio.Event()
        watcher = asyncio.create_task(monitor(stop))
        results, _ = await asyncio.gather(
            asyncio.gather(*(nodes[i % 4].run("order", contexts[i % 4], saga_id=f"c{i}")
                             for i in range(40))),
            nemesis())
        stop.set()
        await watcher
        check_replicas()
        assert problems == [] and checks > 10
        assert faulty.index_cas_lost > 0  # the removals did race
        outcomes = {r.saga_id: r.outcome for r in results}
        for saga_id, outcome in outcomes.items():
            check_outcome(ledger, saga_id, outcome)
        stuck = sorted(s for s, o in outcomes.items() if o == "stuck")
        assert len(stuck) >= 10
        log = KVSagaLog(kv)
        assert sorted(await log.saga_ids()) == stuck
        assert await log.saga_ids(active_only=True) == []
        assert parse_index(await kv.get(log.index_key)) == ([], await log.saga_ids())

    asyncio.run(main())


def _records(saga_id: str, end: str) -> tuple[list[Record], list[Record]]:
    head = [Record("started", 1, "n1", 1, {"saga": "order", "ctx": {}, "timeout_ms": 5}),
            Record("claimed", 1, "n1", 1, {"until": 9})]
    reason = {} if end == "completed" else {"reason": "r"}
    return head, [Record(end, 2, "n1", 1, reason)]


@pytest.mark.parametrize("fail", [False, True], ids=["clean", "a-batch-times-out"])
def test_sagas_ending_at_once_leave_the_index_in_a_few_writes(fail: bool) -> None:
    """30 sagas of one client end at once: their removals share a handful of index
    writes instead of 30 racing ones. When a write carrying others' removals times
    out, only its own caller sees the error; the others are written on their turns."""

    async def main() -> None:
        kv = SimulatedRaftKV(seed=16)
        faulty = _FaultyKV(kv)
        log = KVSagaLog(faulty)
        ends = {f"g{i}": ("stuck" if i % 5 == 0 else "completed") for i in range(30)}
        for saga_id, end in ends.items():
            assert await log.append(saga_id, 0, _records(saga_id, end)[0])
        if fail:
            faulty.fail_index_cas = {2}  # the write after the first: a batch of many
        answers = await asyncio.gather(
            *(log.append(i, 2, _records(i, end)[1]) for i, end in ends.items()),
            return_exceptions=True)
        failed = [i for i, a in zip(ends, answers, strict=True) if a is not True]
        assert faulty.index_cas <= 6
        stuck = [i for i, end in ends.items() if end == "stuck"]
        if fail:
            assert len(failed) == 1 and isinstance(answers[list(ends).index(failed[0])],
                                                   TimeoutError)
            assert await log.saga_ids(active_only=True) == failed  # the others are out
            await log.settle(failed[0])
        else:
            assert failed == []
        assert await log.saga_ids(active_only=True) == []
        assert sorted(await log.saga_ids()) == sorted(stuck)

    asyncio.run(main())


_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(st.lists(_ids, max_size=8, unique=True), st.lists(_ids, max_size=8, unique=True))
def test_the_index_value_round_trips(unfinished: list[str], stuck: list[str]) -> None:
    unfinished = [i for i in unfinished if i not in stuck]
    assert parse_index(format_index(unfinished, stuck)) == (unfinished, stuck)


@given(st.text(max_size=80))
def test_a_hostile_index_value_decodes_or_is_refused(value: str) -> None:
    try:
        unfinished, stuck = parse_index(value)
    except DecodeError:
        return
    assert parse_index(format_index(unfinished, stuck)) == (unfinished, stuck)


def test_a_storage_log_settles_in_its_transaction() -> None:
    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        ledger = Ledger()
        o = SagaOrchestrator(log, "n1", [order_saga(ledger)], clock_ms=Clock())
        await o.run("order", {}, saga_id="t1")
        assert await log.saga_ids(active_only=True) == []
        await log.settle("t1")  # nothing left to do
        assert await log.saga_ids() == ["t1"]  # a storage log lists every saga it holds

    asyncio.run(main())
