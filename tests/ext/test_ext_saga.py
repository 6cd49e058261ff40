"""Sagas end to end on the asyncio orchestrator: outcomes, compensation order, retries,
timeouts, parallel groups, the pivot, stuck sagas, and crash recovery on SQLite."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from saga_helpers import Clock, Faults, Ledger, check_outcome, order_saga

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.ext.saga import (
    ABANDONED,
    LeaseHeld,
    Parallel,
    PermanentError,
    Record,
    RetryPolicy,
    SagaDefinition,
    SagaLog,
    SagaOrchestrator,
    Step,
    StepContext,
    StorageSagaLog,
    fold,
)
from vsm_phoenix.ext.saga.records import (
    R_COMP_COMPLETED,
    R_COMP_STARTED,
    R_COMPENSATING,
    R_STEP_STARTED,
)
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage


def _kinds(log: Sequence[Record], *kinds: str) -> list[tuple[str, str]]:
    return [(r.kind, r.fields.get("step", "")) for r in log if r.kind in kinds]


def _orch(log: SagaLog, node: str, defs: Sequence[SagaDefinition], clock: Clock,
          **kw: Any) -> SagaOrchestrator:
    return SagaOrchestrator(log, node, defs, clock_ms=clock, rng=random.Random(node),
                            lease_ms=kw.pop("lease_ms", 2_000), **kw)


def test_a_saga_completes_and_its_log_tells_the_story(tmp_path: Path) -> None:
    ledger = Ledger()

    async def main() -> None:
        log = StorageSagaLog(SQLiteStorage(tmp_path / "s.db"))
        o = _orch(log, "n1", [order_saga(ledger)], Clock())
        r = await o.run("order", {"order": 7}, saga_id="o7")
        assert r.outcome == "completed"
        assert r.results["charge"] == "charge-ok"
        check_outcome(ledger, "o7", r.outcome)
        records = await log.load("o7")
        assert records is not None
        started = [s for _, s in _kinds(records, R_STEP_STARTED)]
        assert started[0] == "order" and set(started[1:3]) == {"stock", "credit"}
        assert started[3:] == ["charge", "ship", "notify"]
        st = await o.status("o7")
        assert st is not None and st.state == "completed" and st.owner == "n1"
        assert [s.saga_id for s in await o.sagas(state="completed")] == ["o7"]
        assert await o.sagas(state="running") == []

    asyncio.run(main())


def test_failure_before_the_pivot_compensates_in_reverse_order_of_completion() -> None:
    ledger = Ledger()
    order: list[str] = []

    async def gate(ctx: StepContext) -> None:
        if not ctx.compensation and ctx.step == "stock":
            await asyncio.sleep(0.02)  # stock completes after credit
        if ctx.compensation:
            order.append(ctx.step)
        if ctx.step == "charge":
            raise PermanentError("card declined")

    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        o = _orch(log, "n1", [order_saga(ledger, gate=gate)], Clock())
        r = await o.run("order", {}, saga_id="o1")
        assert r.outcome == "compensated" and "card declined" in r.reason
        assert order == ["stock", "credit", "order"]
        check_outcome(ledger, "o1", r.outcome)
        records = await log.load("o1")
        assert records is not None
        kinds = [r.kind for r in records]
        # the decision is durable before the first compensation starts
        assert kinds.index(R_COMPENSATING) < kinds.index(R_COMP_STARTED)
        assert ("step-started", "ship") not in _kinds(records, R_STEP_STARTED)

    asyncio.run(main())


def test_retryable_errors_are_retried_with_backoff_then_compensate() -> None:
    ledger = Ledger()
    calls: list[int] = []

    async def flaky(ctx: StepContext) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError("down")

    async def undo(ctx: StepContext) -> None:
        ledger.undo(ctx)

    async def ok(ctx: StepContext) -> str:
        return ledger.do(ctx)

    d = SagaDefinition(name="t", stages=[
        Step(name="a", action=ok, compensation=undo),
        Step(name="b", action=flaky, compensation=undo,
             retry=RetryPolicy(max_attempts=4, base_ms=5, cap_ms=20))])

    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        o = _orch(log, "n1", [d], Clock())
        r = await o.run(d, {}, saga_id="t1")
        assert r.outcome == "compensated" and "after 4 attempts" in r.reason
        assert calls == [1, 2, 3, 4]
        records = await log.load("t1")
        assert records is not None
        # b may have taken effect on a retryable failure: it is compensated too
        assert _kinds(records, R_COMP_COMPLETED) == [("comp-completed", "b"),
                                                     ("comp-completed", "a")]

    asyncio.run(main())


def test_backoff_is_capped_exponential_with_jitter() -> None:
    p = RetryPolicy(max_attempts=10, base_ms=10, cap_ms=100)
    rng = random.Random(3)
    for attempt, top in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = {p.delay_ms(attempt, rng) for _ in range(50)}
        assert min(delays) >= top // 2 and max(delays) <= top
        assert len(delays) > 1


def test_after_the_pivot_the_saga_only_moves_forward() -> None:
    ledger = Ledger()
    failures = {"ship": 5}

    async def gate(ctx: StepContext) -> None:
        if failures.get(ctx.step, 0) > 0:
            failures[ctx.step] -= 1
            raise ConnectionError("carrier down")

    async def main() -> None:
        o = _orch(StorageSagaLog(MemoryStorage()), "n1", [order_saga(ledger, gate=gate)],
                  Clock())
        r = await o.run("order", {}, saga_id="o2")
        # five failures, more than max_attempts=3: after the pivot, retried until done
        assert r.outcome == "completed"
        check_outcome(ledger, "o2", r.outcome)

    asyncio.run(main())


def test_a_permanent_failure_after_the_pivot_parks_the_saga_as_stuck() -> None:
    ledger = Ledger()

    async def gate(ctx: StepContext) -> None:
        if ctx.step == "ship":
            raise PermanentError("address does not exist")

    async def main() -> None:
        o = _orch(StorageSagaLog(MemoryStorage()), "n1", [order_saga(ledger, gate=gate)],
                  Clock())
        r = await o.run("order", {}, saga_id="o3")
        assert r.outcome == "stuck" and "after the pivot" in r.reason
        stuck = await o.sagas(state="stuck")
        assert [s.saga_id for s in stuck] == ["o3"]
        assert stuck[0].steps["ship"]["last_error"].startswith("PermanentError")
        assert all(v == "applied" for v in ledger.net("o3").values())

    asyncio.run(main())


def test_a_compensation_that_keeps_failing_parks_the_saga_as_stuck() -> None:
    async def ok(ctx: StepContext) -> None:
        return None

    async def broken(ctx: StepContext) -> None:
        raise ConnectionError("undo service gone")

    async def no(ctx: StepContext) -> None:
        raise PermanentError("no")

    d = SagaDefinition(name="t", stages=[Step(name="a", action=ok, compensation=broken),
                                         Step(name="b", action=no)],
                       compensation_retry=RetryPolicy(max_attempts=3, base_ms=1, cap_ms=2))

    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        o = _orch(log, "n1", [d], Clock())
        r = await o.run(d, {}, saga_id="t2")
        assert r.outcome == "stuck" and "compensation of a failed 3 times" in r.reason
        st = await o.status("t2")
        assert st is not None and st.steps["a"]["compensation_attempts"] == 3

    asyncio.run(main())


def test_a_step_that_times_out_is_compensated_and_a_never_started_one_is_not() -> None:
    ledger = Ledger()

    async def slow(ctx: StepContext) -> None:
        ledger.do(ctx)  # takes effect, but answers too late
        await asyncio.sleep(1)

    async def undo(ctx: StepContext) -> None:
        ledger.undo(ctx)

    async def ok(ctx: StepContext) -> str:
        return ledger.do(ctx)

    once = RetryPolicy(max_attempts=1)
    d = SagaDefinition(name="t", stages=[
        Step(name="a", action=ok, compensation=undo),
        Step(name="b", action=slow, compensation=undo, timeout_ms=30, retry=once),
        Step(name="c", action=ok, compensation=undo)])

    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        o = _orch(log, "n1", [d], Clock())
        r = await o.run(d, {}, saga_id="t3")
        assert r.outcome == "compensated"
        assert ledger.net("t3") == {"a": "undone", "b": "undone"}  # c never started

    asyncio.run(main())


def test_a_parallel_group_waits_for_every_member_before_compensating() -> None:
    ledger = Ledger()

    async def slow_ok(ctx: StepContext) -> str:
        await asyncio.sleep(0.05)
        return ledger.do(ctx)

    async def fail(ctx: StepContext) -> None:
        raise PermanentError("no")

    async def undo(ctx: StepContext) -> None:
        ledger.undo(ctx)

    d = SagaDefinition(name="t", stages=[Parallel([
        Step(name="a", action=slow_ok, compensation=undo),
        Step(name="b", action=fail, compensation=undo)])])

    async def main() -> None:
        log = StorageSagaLog(MemoryStorage())
        o = _orch(log, "n1", [d], Clock())
        r = await o.run(d, {}, saga_id="t4")
        assert r.outcome == "compensated"
        assert ledger.net("t4") == {"a": "undone", "b": "refused"} or \
            ledger.net("t4") == {"a": "undone"}
        records = await log.load("t4")
        assert records is not None
        kinds = [(r.kind, r.fields.get("step")) for r in records]
        assert kinds.index(("step-completed", "a")) < kinds.index((R_COMPENSATING, None))
        assert ("comp-started", "b") not in kinds  # failed permanently: nothing to undo

    asyncio.run(main())


def test_the_whole_saga_timeout_compensates_before_the_pivot() -> None:
    async def ok(ctx: StepContext) -> None:
        return None

    async def slow(ctx: StepContext) -> None:
        raise ConnectionError("try later")

    d = SagaDefinition(name="t", timeout_ms=80, stages=[
        Step(name="a", action=ok, compensation=ok),
        Step(name="b", action=slow, compensation=ok,
             retry=RetryPolicy(max_attempts=1000, base_ms=10, cap_ms=10))])

    async def main() -> None:
        o = _orch(StorageSagaLog(MemoryStorage()), "n1", [d], Clock())
        r = await o.run(d, {}, saga_id="t5")
        assert r.outcome == "compensated" and "timed out" in r.reason

    asyncio.run(main())


class _Crash(BaseException):
    """The coordinator's process dies (not an error any code handles)."""


class _CrashingLog:
    """A log that kills its coordinator at the ``at``-th append: before it reaches the
    log, or (``applied``) after it is durable but before the answer."""

    def __init__(self, inner: StorageSagaLog, at: int, applied: bool) -> None:
        self.inner, self.at, self.applied, self.n = inner, at, applied, 0

    async def load(self, saga_id: str) -> list[Record] | None:
        return await self.inner.load(saga_id)

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        self.n += 1
        if self.n == self.at and not self.applied:
            raise _Crash
        ok = await self.inner.append(saga_id, expected, records)
        if self.n == self.at:
            raise _Crash
        return ok

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        return await self.inner.saga_ids(active_only=active_only)

    async def settle(self, saga_id: str) -> None:
        await self.inner.settle(saga_id)


@pytest.mark.parametrize("applied", [False, True], ids=["before-append", "after-append"])
@pytest.mark.parametrize("fail_at", [None, "charge", "ship"])
def test_a_crash_at_every_append_is_recovered_by_another_node(
        tmp_path: Path, applied: bool, fail_at: str | None) -> None:
    """Crash the coordinator at each log write in turn (the write lost, or durable but
    unanswered); a second node recovers the saga from the SQLite file: it ends, nothing
    is applied twice, and the resources match its outcome."""

    async def main() -> None:
        at = 1
        while True:
            ledger = Ledger()

            async def gate(ctx: StepContext, fail_at: str | None = fail_at) -> None:
                if ctx.step == fail_at and not ctx.compensation:
                    raise PermanentError("no")

            d = order_saga(ledger, gate=gate)
            clock = Clock()
            storage = SQLiteStorage(tmp_path / f"crash-{applied}-{fail_at}-{at}.db")
            crashing = _CrashingLog(StorageSagaLog(storage), at, applied)
            a = _orch(crashing, "a", [d], clock)
            try:
                r = await a.run("order", {}, saga_id="x")
            except _Crash:
                r = None
            if r is not None:  # no append number `at`: every crash point is covered
                assert at > 5
                return
            await asyncio.sleep(0.02)  # let a's orphaned actions (if any) finish
            b = _orch(StorageSagaLog(SQLiteStorage(storage.path)), "b", [d],
                      clock.skewed(10_000))  # b's clock is past a's lease
            results = await b.recover()
            log = await StorageSagaLog(storage).load("x")
            if log is None:
                assert results == [] and ledger.effects == []
            else:
                if results:
                    assert [r.saga_id for r in results] == ["x"]
                    outcome = results[0].outcome
                else:  # a crashed right after writing the terminal record
                    outcome = fold(log).outcome or ""
                    assert outcome
                check_outcome(ledger, "x", outcome)
                expected = {None: "completed", "charge": "compensated", "ship": "stuck"}
                assert outcome == expected[fail_at]
                assert {r.by for r in log} <= {"a", "b"}
                assert [r.epoch for r in log] == sorted(r.epoch for r in log)
            at += 1

    asyncio.run(main())


def test_an_unexpired_lease_is_respected_and_a_deposed_owner_abandons(tmp_path: Path) -> None:
    """b's clock runs far ahead, so it takes over while a still drives: a's next append
    fails its compare-and-set, a abandons, b finishes; each step applied once."""
    ledger = Ledger()
    release = asyncio.Event

    async def main() -> None:
        go = release()
        started = release()

        async def gate(ctx: StepContext) -> None:
            if ctx.step == "charge" and not ctx.compensation and ctx.attempt == 1:
                started.set()
                await go.wait()

        d = order_saga(ledger, gate=gate, timeout_ms=5_000)
        path = tmp_path / "lease.db"
        clock = Clock()
        a = _orch(StorageSagaLog(SQLiteStorage(path)), "a", [d], clock, lease_ms=60_000)
        task = asyncio.create_task(a.run("order", {}, saga_id="y"))
        await started.wait()
        b_same = _orch(StorageSagaLog(SQLiteStorage(path)), "b", [d], clock)
        with pytest.raises(LeaseHeld):
            await b_same.resume("y")
        assert await b_same.recover() == []
        b = _orch(StorageSagaLog(SQLiteStorage(path)), "b", [d], clock.skewed(3_600_000))
        rb = await b.resume("y")
        go.set()
        ra = await task
        assert rb.outcome == "completed" and ra.outcome == ABANDONED
        check_outcome(ledger, "y", "completed")
        log = await StorageSagaLog(SQLiteStorage(path)).load("y")
        assert log is not None
        epochs = [r.epoch for r in log]
        assert epochs == sorted(epochs) and {r.by for r in log if r.epoch == 2} == {"b"}

    asyncio.run(main())


def test_many_sagas_with_random_faults_all_end_consistently() -> None:
    ledger = Ledger()
    faults = Faults(random.Random(5), p_retryable=0.1, p_permanent=0.03, p_slow=0.03,
                    slow_s=0.05, compensation_p_retryable=0.2)

    async def main() -> None:
        o = _orch(StorageSagaLog(MemoryStorage()), "n1",
                  [order_saga(ledger, faults, timeout_ms=20)], Clock())
        results = await asyncio.gather(*(o.run("order", {"i": i}, saga_id=f"m{i}")
                                         for i in range(40)))
        outcomes = {r.outcome for r in results}
        assert outcomes <= {"completed", "compensated", "stuck"}
        assert "completed" in outcomes and "compensated" in outcomes
        for r in results:
            check_outcome(ledger, r.saga_id, r.outcome)

    asyncio.run(main())


def test_bad_arguments_are_refused() -> None:
    async def ok(ctx: StepContext) -> None:
        return None

    with pytest.raises(InvalidArgument):
        SagaDefinition(name="t", stages=[])
    with pytest.raises(InvalidArgument):
        SagaDefinition(name="t", stages=[Step(name="a", action=ok),
                                         Step(name="a", action=ok)])
    with pytest.raises(InvalidArgument):
        SagaDefinition(name="t", stages=[Step(name="a", action=ok, pivot=True),
                                         Step(name="b", action=ok, pivot=True)])
    with pytest.raises(InvalidArgument):
        Step(name="p", action=ok, compensation=ok, pivot=True)
    with pytest.raises(InvalidArgument):
        Parallel([Step(name="p", action=ok, pivot=True)])
    with pytest.raises(InvalidArgument):
        SagaDefinition(name="t", stages=[Step(name="p", action=ok, pivot=True),
                                         Step(name="b", action=ok, compensation=ok)])
    with pytest.raises(InvalidArgument):
        Step(name="bad name", action=ok)
    with pytest.raises(TypeMismatch):
        Step(name="a", action=ok, timeout_ms=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        RetryPolicy(max_attempts=0)
    with pytest.raises(TypeMismatch):
        StorageSagaLog({})  # type: ignore[arg-type]
    d = SagaDefinition(name="t", stages=[Step(name="a", action=ok)])

    async def main() -> None:
        o = SagaOrchestrator(StorageSagaLog(MemoryStorage()), "n1", [d])
        with pytest.raises(InvalidArgument):
            await o.run("nope", {})
        with pytest.raises(InvalidArgument):
            await o.run(d, {"x": object()})  # not encodable: refused before any write
        assert await o.log.saga_ids() == []
        with pytest.raises(InvalidArgument):
            await o.resume("missing")
        with pytest.raises(InvalidArgument):
            await o.sagas(state="weird")

    asyncio.run(main())


class _CountingLog(StorageSagaLog):
    """Counts the saga logs read."""

    loads = 0

    async def load(self, saga_id: str) -> list[Record] | None:
        self.loads += 1
        return await super().load(saga_id)


def test_a_scan_reads_a_leased_saga_again_only_once_its_lease_may_have_ended() -> None:
    """Frequent recovery scans cost a read per saga per lease, not per scan; and a
    saga whose owner died is still found as soon as its lease ends."""
    ledger = Ledger()

    async def main() -> None:
        hang = asyncio.Event()

        async def gate(ctx: StepContext) -> None:
            if ctx.step == "ship":
                hang.set()
                await asyncio.sleep(3600)

        d = order_saga(ledger, gate=gate, timeout_ms=400)
        log = _CountingLog(MemoryStorage())
        a = _orch(log, "a", [d], Clock(), lease_ms=1_000)
        task = asyncio.create_task(a.run("order", {}, saga_id="w1"))
        await hang.wait()
        task.cancel()  # a dies holding a lease that covers the step's timeout
        with pytest.raises(asyncio.CancelledError):
            await task
        until = fold(await log.load("w1") or []).lease_until
        now = [until - 1_000]
        b = SagaOrchestrator(log, "b", [d], clock_ms=lambda: now[0], rng=random.Random(2))
        log.loads = 0
        assert await b.expired() == []
        assert log.loads == 1
        for _ in range(5):
            now[0] += 150
            assert await b.expired() == []
        assert log.loads == 1  # the lease was seen to run until `until`
        now[0] = until
        assert await b.expired() == ["w1"]
        assert log.loads == 2

    asyncio.run(main())
