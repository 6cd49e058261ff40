"""The saga scenario: three coordinators run orders through a shared durable log under
step failures, coordinator crashes and partitions, and every saga is checked.

An order saga (the demo's shape): ``order`` -> ``stock`` | ``credit`` (in parallel) ->
``charge`` (the pivot) -> ``ship`` -> ``notify``. The steps act on :class:`Resources`
that keep the idempotency-key contract of :mod:`~vsm_phoenix.ext.saga.definition` and
count every effect. :func:`run_saga_scenario` starts ``sagas`` of them spread over
three :class:`~vsm_phoenix.ext.saga.orchestrator.SagaOrchestrator` s sharing one log
(SQLite file, in-memory store, or the Raft KV of :class:`SimulatedRaftKV`), while a
nemesis

* makes steps fail: retryable errors, permanent ones (a declined charge, a stock-out,
  an undeliverable address after the pivot) and answers that come too late (the
  effect applied, the coordinator timed out);
* **crashes** a coordinator: its tasks are cancelled mid-flight, whatever they were
  doing; it restarts later and recovers what is left;
* **partitions** a coordinator from the log: its log calls fail until the partition
  heals, its lease runs out, a peer takes its sagas over, and when it comes back its
  writes lose the compare-and-set -- it must abandon them;
* with the KV log, crashes the KV leader and partitions a KV replica.

Every coordinator scans the log every half lease (:meth:`~SagaOrchestrator.expired`,
what :meth:`~SagaOrchestrator.recover` does at a node's start) and resumes each saga it
finds in its own task, so every saga whose driver died is resumed within about 1.5
leases, however long the sagas taken over earlier take. At the end
:func:`check_saga` checks each saga's log and resources: it ended exactly once
(completed, compensated or stuck with a reason); the log's epochs never interleave;
no step was started after it completed or after the decision to compensate; no
compensation for a step that never started or after the pivot; no effect applied
twice; a completed saga has every step applied, a compensated one none. And the log
lists no ended saga as unfinished once a recovery scan has run.

Each saga is counted once, from its log. The run cannot hang: when no saga has ended
for ``stall_s`` (a saga counts as ended when its coordinator reports it or its log
shows it), it stops with a ``stalled`` violation that describes every unfinished saga
(:func:`describe_saga`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.saga.core import LeaseHeld, fold
from vsm_phoenix.ext.saga.definition import (
    Parallel,
    PermanentError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)
from vsm_phoenix.ext.saga.log import KVSagaLog, SagaLog, StorageSagaLog
from vsm_phoenix.ext.saga.orchestrator import ABANDONED, SagaOrchestrator, SagaResult
from vsm_phoenix.ext.saga.raftkv import SimulatedRaftKV
from vsm_phoenix.ext.saga.records import (
    R_CLAIMED,
    R_COMP_STARTED,
    R_COMPENSATED,
    R_COMPENSATING,
    R_COMPLETED,
    R_STEP_COMPLETED,
    R_STEP_STARTED,
    R_STUCK,
    TERMINAL,
    Record,
)
from vsm_phoenix.storage import MemoryStorage, SQLiteStorage

__all__ = ["LOGS", "Resources", "SagaRun", "ScenarioBackend", "check_saga", "describe_saga",
           "order_definition", "run_saga_scenario", "run_scenario_on"]

LOGS: Final = ("kv", "sqlite", "memory")
STEPS: Final = ("order", "stock", "credit", "charge", "ship", "notify")
PIVOT: Final = "charge"


class LogUnavailable(ConnectionError):
    """The coordinator is partitioned from the log."""


@attrs.define
class Resources:
    """Every step's resource, keyed by idempotency key (see the module docstring)."""

    state: dict[str, str] = attrs.field(factory=dict)  # saga/step -> applied/refused/undone
    effects: dict[tuple[str, str], int] = attrs.field(factory=dict)  # (do/undo, saga/step)

    def do(self, ctx: StepContext, refuse: bool) -> str:
        base = ctx.idempotency_key.rsplit("/", 1)[0]
        st = self.state.get(base)
        if st == "refused":
            raise PermanentError(f"{ctx.step} refused")
        if st is None:
            if refuse:
                self.state[base] = "refused"
                raise PermanentError(f"{ctx.step} refused")
            self.state[base] = "applied"
            self.effects[("do", base)] = self.effects.get(("do", base), 0) + 1
        return f"{ctx.step}:{ctx.saga_id}"

    def undo(self, ctx: StepContext) -> None:
        base = ctx.idempotency_key.rsplit("/", 1)[0]
        if self.state.get(base) == "applied":
            self.effects[("undo", base)] = self.effects.get(("undo", base), 0) + 1
        self.state[base] = "undone"


@attrs.define
class _Faults:
    rng: random.Random
    p_retryable: float
    p_permanent: float
    p_late: float
    late_s: float

    def draw(self, step: str) -> str:
        x = self.rng.random()
        permanent = self.p_permanent if step in ("stock", "charge", "ship") else 0.0
        for what, p in (("permanent", permanent), ("retryable", self.p_retryable),
                        ("late", self.p_late)):
            if x < p:
                return what
            x -= p
        return "ok"


def order_definition(resources: Resources, faults: _Faults | None = None, *,
                     step_timeout_ms: int = 150) -> SagaDefinition:
    """The order saga over ``resources`` (with random failures from ``faults``)."""

    def action(step: str) -> Callable[[StepContext], Any]:
        async def run(ctx: StepContext) -> str:
            await asyncio.sleep(0.001)
            what = faults.draw(step) if faults is not None else "ok"
            if what == "retryable":
                raise ConnectionError(f"{step}: service unavailable")
            result = resources.do(ctx, what == "permanent")
            if what == "late" and faults is not None:
                await asyncio.sleep(faults.late_s)
            return result
        return run

    async def undo(ctx: StepContext) -> None:
        await asyncio.sleep(0.001)
        if faults is not None and faults.rng.random() < faults.p_retryable:
            raise ConnectionError(f"undo {ctx.step}: service unavailable")
        resources.undo(ctx)

    retry = RetryPolicy(max_attempts=4, base_ms=5, cap_ms=50)
    kw: dict[str, Any] = {"retry": retry, "timeout_ms": step_timeout_ms}
    return SagaDefinition(
        name="order",
        stages=[
            Step(name="order", action=action("order"), compensation=undo, **kw),
            Parallel([Step(name="stock", action=action("stock"), compensation=undo, **kw),
                      Step(name="credit", action=action("credit"), compensation=undo, **kw)]),
            Step(name="charge", action=action("charge"), pivot=True, **kw),
            Step(name="ship", action=action("ship"), **kw),
            Step(name="notify", action=action("notify"), **kw),
        ],
        timeout_ms=60_000,
        compensation_retry=RetryPolicy(max_attempts=10, base_ms=5, cap_ms=50),
    )


def check_saga(saga_id: str, log: Sequence[Record] | None, resources: Resources) -> list[str]:
    """The invariants of the module docstring for one saga; the violations found."""
    if log is None:
        return [f"{saga_id}: no log"]
    out: list[str] = []
    kinds = [r.kind for r in log]
    terminal = [k for k in kinds if k in TERMINAL]
    if len(terminal) != 1 or kinds[-1] not in TERMINAL:
        return [f"{saga_id}: did not end exactly once: {terminal}"]
    outcome = terminal[0]
    epochs = [r.epoch for r in log]
    if epochs != sorted(epochs):
        out.append(f"{saga_id}: coordinators interleaved (epochs {epochs})")
    owners: dict[int, set[str]] = {}
    for r in log:
        owners.setdefault(r.epoch, set()).add(r.by)
    if any(len(v) > 1 for v in owners.values()):
        out.append(f"{saga_id}: two owners in one epoch")
    completed: set[str] = set()
    started: set[str] = set()
    compensating = pivot_done = False
    for r in log:
        step = str(r.fields.get("step", ""))
        if r.kind == R_STEP_STARTED:
            if step in completed:
                out.append(f"{saga_id}: {step} started again after it completed")
            if compensating:
                out.append(f"{saga_id}: {step} started after the decision to compensate")
            started.add(step)
        elif r.kind == R_STEP_COMPLETED:
            completed.add(step)
            pivot_done = pivot_done or step == PIVOT
        elif r.kind == R_COMPENSATING:
            compensating = True
        elif r.kind == R_COMP_STARTED:
            if step not in started:
                out.append(f"{saga_id}: compensation of {step}, which never started")
            if pivot_done:
                out.append(f"{saga_id}: compensation of {step} after the pivot")
    prefix = saga_id + "/"
    net = {k[len(prefix):]: v for k, v in resources.state.items() if k.startswith(prefix)}
    for (what, key), n in resources.effects.items():
        if key.startswith(prefix) and n > 1:
            out.append(f"{saga_id}: {what} of {key} applied {n} times")
    if outcome == R_COMPLETED and any(net.get(s) != "applied" for s in STEPS):
        out.append(f"{saga_id}: completed but resources are {net}")
    if outcome == R_COMPENSATED and (any(v == "applied" for v in net.values())
                                     or "ship" in net or "notify" in net):
        out.append(f"{saga_id}: compensated but resources are {net}")
    if outcome == R_STUCK and not log[-1].fields.get("reason"):
        out.append(f"{saga_id}: stuck without a reason")
    return out


@attrs.frozen(kw_only=True)
class SagaRun:
    """What :func:`run_saga_scenario` measured and found."""

    log: str
    seed: int
    sagas: int
    outcomes: dict[str, int]
    violations: tuple[str, ...]
    stats: dict[str, int]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return not self.violations and sum(self.outcomes.values()) == self.sagas


class _PartitionableLog:
    """A coordinator's view of the shared log: while ``cut`` it cannot reach it."""

    def __init__(self, inner: SagaLog) -> None:
        self.inner = inner
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise LogUnavailable("partitioned from the log")

    async def load(self, saga_id: str) -> list[Record] | None:
        self._check()
        return await self.inner.load(saga_id)

    async def append(self, saga_id: str, expected: int, records: Sequence[Record]) -> bool:
        self._check()
        return await self.inner.append(saga_id, expected, records)

    async def saga_ids(self, *, active_only: bool = False) -> list[str]:
        self._check()
        return await self.inner.saga_ids(active_only=active_only)

    async def settle(self, saga_id: str) -> None:
        self._check()
        await self.inner.settle(saga_id)


async def _load_retrying(log: SagaLog, saga_id: str, attempts: int = 20) -> list[Record] | None:
    """``log.load`` retried while the log is unreachable (a KV electing a leader)."""
    for attempt in range(attempts):
        try:
            return await log.load(saga_id)
        except (ConnectionError, TimeoutError, OSError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


@attrs.define(kw_only=True)
class ScenarioBackend:
    """Where the scenario's shared log lives and how its faults strike (the transport).

    ``make_log(role)`` gives a fresh client of the shared log for a coordinator, the
    submitting client or the checker (``role`` names which). ``kv_fault`` (optional)
    strikes the log's own replicas once and heals them (a KV leader crash). ``restart``
    (optional) is what a crashed coordinator's replacement process connects with: a new
    log client for that coordinator. ``pace`` stretches every fault interval and
    duration (1.0 suits the in-process logs; slower transports want more), and
    ``lease_ms`` / ``step_timeout_ms`` / ``late_s`` are the coordinators' lease, the
    steps' timeout and how late a late answer comes. The run fails as ``stalled`` when
    no saga ends for ``stall_s``, or when the last recoveries after the clients are done
    take longer than ``final_timeout_s``; ``health`` (optional) says how the log's own
    replicas are doing, for that report."""

    name: str
    make_log: Callable[[str], SagaLog]
    kv_fault: Callable[[random.Random, Callable[[str], None]], Awaitable[None]] | None = None
    restart: Callable[[str], Awaitable[SagaLog]] | None = None
    pace: float = 1.0
    lease_ms: int = 400
    step_timeout_ms: int = 150
    late_s: float = 0.2
    final_timeout_s: float = 60.0
    stall_s: float = 30.0
    health: Callable[[], Awaitable[str]] | None = None


def _open_log(kind: str, seed: int, workdir: Path) -> ScenarioBackend:
    if kind == "kv":
        kv = SimulatedRaftKV(seed=seed)

        async def kv_fault(frng: random.Random, say: Callable[[str], None]) -> None:
            leader = kv.leader or kv.nodes[0]
            say(f"  crash KV leader {leader}, partition {kv.nodes[-1]}")
            kv.sim.crash(leader)
            kv.sim.partition([kv.nodes[-1]])
            await asyncio.sleep(frng.uniform(0.05, 0.2))
            kv.sim.restart(leader)
            kv.sim.heal()

        return ScenarioBackend(name=kind, make_log=lambda _role: KVSagaLog(kv),
                               kv_fault=kv_fault)
    if kind == "sqlite":
        path = workdir / f"sagas-{seed}.db"
        return ScenarioBackend(name=kind, make_log=lambda _role: StorageSagaLog(
            SQLiteStorage(path, synchronous="NORMAL")))
    store = MemoryStorage()
    return ScenarioBackend(name=kind, make_log=lambda _role: StorageSagaLog(store))


#: A progress report: sagas ended so far, sagas in all, the fault and recovery counts.
ProgressFn = Callable[[int, int, dict[str, int]], None]


async def describe_saga(log: SagaLog, saga_id: str, clock_ms: Callable[[], int],
                        listed: Collection[str]) -> str:
    """One line on why ``saga_id`` has not ended, from its log: its state, its owner
    and lease (held or expired, by how long), its last record, and whether the log
    lists it for recovery (an unfinished saga that is not listed is one no recovery
    scan can find)."""
    try:
        records = await log.load(saga_id)
    except (ConnectionError, TimeoutError, OSError) as exc:
        return f"{saga_id}: its log did not answer ({type(exc).__name__}: {exc})"
    if records is None:
        return f"{saga_id}: no log (never started)"
    now_ms = clock_ms()
    view = fold(records)
    last = records[-1]
    what = last.kind + (f" {last.fields['step']}" if "step" in last.fields else "")
    if view.terminal:
        return f"{saga_id}: ended {view.outcome} (last record by {last.by})"
    state = "compensating" if view.compensating is not None else "running"
    left = view.lease_until - now_ms
    lease = (f"lease held by {view.owner} (epoch {view.epoch}) for {left} ms more"
             if left > 0 else
             f"lease of {view.owner} (epoch {view.epoch}) expired {-left} ms ago")
    scan = ("listed for recovery" if saga_id in listed
            else "NOT listed: no recovery scan can find it")
    return (f"{saga_id}: {state}, {lease}, last record {what} by {last.by} "
            f"{now_ms - last.at} ms ago, {scan}")


async def run_scenario_on(backend: ScenarioBackend, *, seed: int, sagas: int,
                          concurrency: int, faults: bool = True,
                          say: Callable[[str], None] = lambda _line: None,
                          progress: ProgressFn | None = None,
                          progress_every_s: float = 2.0) -> SagaRun:
    """The scenario (module docstring) over ``backend``'s log, in the running loop;
    ``progress`` is called every ``progress_every_s`` (default: a ``say`` line).

    It cannot hang: when no saga has ended for ``backend.stall_s`` (each saga is
    counted once, whether its coordinator reported it or its log shows it ended), or
    the final recovery takes longer than ``backend.final_timeout_s``, it stops and
    returns a run whose violations say so and describe every unfinished saga
    (:func:`describe_saga`)."""
    rng = random.Random(f"{seed}/saga-scenario")
    resources = Resources()
    pace = backend.pace
    fault_model = _Faults(random.Random(f"{seed}/faults"), p_retryable=0.08 if faults else 0,
                          p_permanent=0.06 if faults else 0, p_late=0.02 if faults else 0,
                          late_s=backend.late_s)
    definition = order_definition(resources, fault_model,
                                  step_timeout_ms=backend.step_timeout_ms)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def clock() -> int:
        return 1_000_000 + int((loop.time() - t0) * 1000)

    names = ["n1", "n2", "n3"]
    views = {n: _PartitionableLog(backend.make_log(n)) for n in names}
    stats = {"crashes": 0, "partitions": 0, "recovered": 0, "abandoned": 0,
             "kv_faults": 0, "recover_errors": 0, "resubmitted": 0}
    lease_ms = backend.lease_ms

    def orchestrator(name: str) -> SagaOrchestrator:
        return SagaOrchestrator(views[name], name, [definition], lease_ms=lease_ms,
                                clock_ms=clock, rng=random.Random(f"{seed}/{name}"))

    orchs = {n: orchestrator(n) for n in names}
    tasks: dict[str, set[asyncio.Task[Any]]] = {n: set() for n in names}
    up = dict.fromkeys(names, True)
    ids = [f"s{seed}-{i:04d}" for i in range(sagas)]
    outcomes: dict[str, str] = {}  # what the coordinators reported
    ended: set[str] = set()  # every saga known to have ended, reported or seen in its log
    where = dict.fromkeys(ids, "waiting for a client slot")
    sem = asyncio.Semaphore(concurrency)

    def report_end(saga_id: str, outcome: str) -> None:
        outcomes[saga_id] = outcome
        ended.add(saga_id)

    def track(name: str, coro: Any) -> asyncio.Task[Any]:
        task = loop.create_task(coro, name=f"{name}:{getattr(coro, '__qualname__', '')}")
        tasks[name].add(task)
        task.add_done_callback(tasks[name].discard)
        return task

    client_log = backend.make_log("client")  # the client's own view (never partitioned)

    async def start(saga_id: str) -> None:
        async with sem:
            while True:
                name = rng.choice([n for n in names if up[n]] or names)
                where[saga_id] = f"run by {name}"
                try:
                    r = await track(name, orchs[name].run(definition, {"order": saga_id},
                                                          saga_id=saga_id))
                except asyncio.CancelledError:
                    me = asyncio.current_task()
                    if me is not None and me.cancelling():
                        raise  # the run itself is being torn down
                    # the coordinator crashed. If the saga reached the log, recovery
                    # finishes it; if not, the client submits it again elsewhere.
                    where[saga_id] = f"{name} crashed: checking the log"
                    await asyncio.sleep(0.05 * pace)
                    if await _load_retrying(client_log, saga_id) is None:
                        stats["resubmitted"] += 1
                        continue
                    where[saga_id] = f"left to recovery ({name} crashed)"
                    return
                if r.outcome == ABANDONED:
                    stats["abandoned"] += 1
                    where[saga_id] = f"left to recovery ({name} lost it)"
                else:
                    report_end(saga_id, r.outcome)
                return

    scan_errors: dict[str, str] = {}  # each coordinator's last failed recovery scan

    def took_over(r: SagaResult) -> None:
        stats["recovered"] += 1
        if r.outcome == ABANDONED:  # another coordinator took it from us meanwhile
            stats["abandoned"] += 1
        else:
            report_end(r.saga_id, r.outcome)

    async def take_over(orch: SagaOrchestrator, saga_id: str) -> None:
        try:
            r = await orch.resume(saga_id)
        except LeaseHeld:
            return  # another coordinator was faster
        except (ConnectionError, TimeoutError, OSError):
            return  # the log is unreachable: a later scan tries again
        took_over(r)

    async def scan(name: str) -> None:
        orch = orchs[name]
        try:
            todo = await orch.expired()
        except Exception as exc:  # the log is unreachable mid-scan: a later scan retries
            stats["recover_errors"] += 1
            scan_errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            return
        for saga_id in todo:
            track(name, take_over(orch, saga_id))

    async def recoverer(name: str, stop: asyncio.Event) -> None:
        """Every half lease, a recovery scan; each saga it finds is resumed in its own
        task, so driving taken-over sagas never delays the next scan, and a saga whose
        owner died is resumed within about 1.5 leases (plus a scan's duration)."""
        while not stop.is_set():
            await asyncio.sleep(lease_ms / 2000)
            if up[name] and not views[name].cut and not stop.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await track(name, scan(name))  # cancelled: the coordinator crashed
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError

    async def nemesis(stop: asyncio.Event) -> None:
        frng = random.Random(f"{seed}/nemesis")
        kinds = ["crash", "partition", "kv"] if backend.kv_fault else ["crash", "partition"]
        while not stop.is_set():
            await asyncio.sleep(frng.uniform(0.15, 0.4) * pace)
            if stop.is_set() or not faults:
                break
            victim = frng.choice(names)
            what = frng.choice(kinds)
            if what == "crash" and up[victim]:
                stats["crashes"] += 1
                say(f"  crash {victim} ({len(orchs[victim].driving)} sagas in flight)")
                up[victim] = False
                for t in list(tasks[victim]):
                    t.cancel()
                await asyncio.sleep(frng.uniform(0.1, 0.5) * pace)
                if backend.restart is not None:  # a new process: a new connection
                    views[victim].inner = await backend.restart(victim)
                orchs[victim] = orchestrator(victim)  # a new process, same node id
                up[victim] = True
            elif what == "partition" and not views[victim].cut:
                stats["partitions"] += 1
                say(f"  partition {victim} from the log")
                views[victim].cut = True
                await asyncio.sleep(frng.uniform(0.3, 0.8) * pace)  # longer than the lease
                views[victim].cut = False
            elif what == "kv" and backend.kv_fault is not None:
                stats["kv_faults"] += 1
                await backend.kv_fault(frng, say)

    def report() -> None:
        if progress is not None:
            progress(len(ended), sagas, stats)
        else:
            say(f"  {len(ended)}/{sagas} sagas ended")

    async def refresh(log: SagaLog) -> None:
        """Count the sagas whose logs show them ended (their reports may be lost with
        a crashed coordinator)."""
        todo = [i for i in ids if i not in ended and not where[i].startswith("waiting")]

        async def one(saga_id: str) -> None:
            with contextlib.suppress(ConnectionError, TimeoutError, OSError):
                records = await log.load(saga_id)
                if records is not None and records[-1].kind in TERMINAL:
                    ended.add(saga_id)

        await asyncio.gather(*(one(i) for i in todo))

    stalled: list[str] = []  # set once: why the run stopped waiting

    async def watchdog() -> None:
        """Fail the run when no saga has ended for ``stall_s``, saying which are
        unfinished and why."""
        seen, since = -1, loop.time()
        while True:
            await asyncio.sleep(min(backend.stall_s / 4, 5.0))
            if len(ended) != seen:
                seen, since = len(ended), loop.time()
                continue
            if loop.time() - since < backend.stall_s / 2:
                continue
            await refresh(client_log)
            if len(ended) != seen or loop.time() - since < backend.stall_s:
                continue
            await stall(f"no saga ended for {loop.time() - since:.0f} s")
            return

    async def stall(why: str) -> None:
        """Stop waiting: say why, and describe every unfinished saga (its log read
        concurrently, each read bounded, so the report itself cannot stall)."""
        left = [i for i in ids if i not in ended]
        bound = max(1.0, backend.stall_s / 2)
        try:
            listed = set(await asyncio.wait_for(client_log.saga_ids(active_only=True),
                                                bound))
        except (ConnectionError, TimeoutError, OSError):
            listed = set()

        async def one(saga_id: str) -> str:
            try:
                line = await asyncio.wait_for(
                    describe_saga(client_log, saga_id, clock, listed), bound)
            except TimeoutError:
                line = f"{saga_id}: its log did not answer in {bound:.0f} s"
            return f"  {line}; client: {where[saga_id]}"

        lines = [f"stalled: {why}; {len(left)} sagas unfinished "
                 f"(coordinators up: {', '.join(n for n in names if up[n]) or 'none'})"]
        if backend.health is not None:
            try:
                lines.append(f"  the log: {await asyncio.wait_for(backend.health(), bound)}")
            except (ConnectionError, TimeoutError, OSError) as exc:
                lines.append(f"  the log: no health report ({type(exc).__name__})")
        lines.extend(await asyncio.gather(*(one(i) for i in left[:40])))
        if len(left) > 40:
            lines.append(f"  ... and {len(left) - 40} more")
        lines.extend(f"  last failed recovery scan of {n}: {e}"
                     for n, e in sorted(scan_errors.items()))
        stalled.extend(lines)
        for line in lines:
            say(line)

    stop = asyncio.Event()
    background = [loop.create_task(recoverer(n, stop), name=f"recoverer-{n}")
                  for n in names]
    background.append(loop.create_task(nemesis(stop), name="nemesis"))
    progress_at = time.monotonic()
    starters = [loop.create_task(start(i), name=f"client-{i}") for i in ids]
    dog = loop.create_task(watchdog(), name="watchdog")
    try:
        while not all(s.done() for s in starters) and not stalled:
            await asyncio.sleep(0.1)
            if time.monotonic() - progress_at > progress_every_s:
                progress_at = time.monotonic()
                report()
        for s in starters:
            if s.done():
                s.result()  # a client that failed (not a crash: those are retried) fails
        stop.set()
        await asyncio.gather(*background)
    finally:
        stop.set()
        for task in [*starters, *background]:
            task.cancel()
        await asyncio.gather(*starters, *background, return_exceptions=True)
    for v in views.values():
        v.cut = False
    for n in names:
        up[n] = True
    views["checker"] = _PartitionableLog(backend.make_log("checker"))
    checker = orchestrator("checker")
    deadline = loop.time() + backend.final_timeout_s
    while not stalled:  # the last recoveries: sagas whose driver died late
        try:
            await refresh(checker.log)
            if len(ended) == sagas:
                break
            if loop.time() > deadline:
                await stall(f"the final recovery took over {backend.final_timeout_s:.0f} s")
                break
            await asyncio.sleep(lease_ms / 2000)
            for r in await checker.recover():
                took_over(r)
        except (ConnectionError, TimeoutError, OSError):  # the log is electing a leader
            stats["recover_errors"] += 1
            await asyncio.sleep(0.2)
        report()
    dog.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dog
    leftovers = [t for n in names for t in tasks[n]]
    for t in leftovers:  # scans still settling or abandoning: done with
        t.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    violations: list[str] = list(stalled)
    if not stalled:
        violations.extend(await _settled_check(checker))
    log = backend.make_log("checker")
    counts = {R_COMPLETED: 0, R_COMPENSATED: 0, R_STUCK: 0}
    takeovers = 0
    # a stalled run may have lost its log: one bounded try per saga, not twenty
    read = await _read_logs(log, ids, attempts=1 if stalled else 20)
    for saga_id in ids:
        records = read[saga_id]
        if isinstance(records, BaseException):
            violations.append(f"{saga_id}: its log could not be read "
                              f"({type(records).__name__}: {records})")
            continue
        violations.extend(check_saga(saga_id, records, resources))
        if records is not None and records[-1].kind in TERMINAL:
            counts[records[-1].kind] += 1
            takeovers += len({r.by for r in records if r.kind == R_CLAIMED}) - 1
            if outcomes.get(saga_id, records[-1].kind) != records[-1].kind:
                violations.append(f"{saga_id}: reported {outcomes[saga_id]}, log says "
                                  f"{records[-1].kind}")
        elif records is not None:
            state = "compensating" if fold(records).compensating is not None else "running"
            violations.append(f"{saga_id}: still {state}")
    stats["takeovers"] = takeovers
    return SagaRun(log=backend.name, seed=seed, sagas=sagas, outcomes=counts,
                   violations=tuple(violations), stats=stats,
                   elapsed_s=loop.time() - t0)


async def _read_logs(log: SagaLog, ids: Sequence[str], *, attempts: int
                     ) -> dict[str, list[Record] | BaseException | None]:
    """Every saga's log, read 32 at a time (each retried ``attempts`` times while the
    log is unreachable; then the error in its place)."""
    sem = asyncio.Semaphore(32)

    async def one(saga_id: str) -> list[Record] | BaseException | None:
        async with sem:
            try:
                return await _load_retrying(log, saga_id, attempts)
            except (ConnectionError, TimeoutError, OSError) as exc:
                return exc

    return dict(zip(ids, await asyncio.gather(*(one(i) for i in ids)), strict=True))


async def _settled_check(checker: SagaOrchestrator, attempts: int = 5) -> list[str]:
    """Once every saga has ended, one recovery scan must leave the log listing none as
    unfinished (it settles those whose removal a crash interrupted); the violations."""
    left: list[str] = []
    for _ in range(attempts):
        try:
            await checker.recover()
            left = await checker.log.saga_ids(active_only=True)
        except (ConnectionError, TimeoutError, OSError):
            await asyncio.sleep(0.2)
            continue
        if not left:
            return []
    return [f"the log still lists {len(left)} ended sagas as unfinished: {left[:10]}"]


def run_saga_scenario(*, log: str = "kv", seed: int = 0, sagas: int = 200,
                      concurrency: int = 20, faults: bool = True,
                      workdir: Path | None = None,
                      say: Callable[[str], None] = lambda _line: None) -> SagaRun:
    """Run the scenario (see the module docstring) and check every saga."""
    if log not in LOGS:
        raise InvalidArgument(f"log must be one of {', '.join(LOGS)}")
    if type(sagas) is not int or sagas < 1 or type(concurrency) is not int or concurrency < 1:
        raise InvalidArgument("sagas and concurrency must be positive ints")
    with tempfile.TemporaryDirectory(prefix="vsm-saga-") as tmp:
        where = workdir if workdir is not None else Path(tmp)
        backend = _open_log(log, seed, where)
        return asyncio.run(run_scenario_on(backend, seed=seed, sagas=sagas,
                                           concurrency=concurrency, faults=faults, say=say))
