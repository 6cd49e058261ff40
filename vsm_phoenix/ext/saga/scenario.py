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

Every coordinator runs :meth:`~SagaOrchestrator.recover` periodically (what a node does
at start and as a background duty), so every saga whose driver died is resumed. At the
end :func:`check_saga` checks each saga's log and resources: it ended exactly once
(completed, compensated or stuck with a reason); the log's epochs never interleave;
no step was started after it completed or after the decision to compensate; no
compensation for a step that never started or after the pivot; no effect applied
twice; a completed saga has every step applied, a compensated one none.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.ext.saga.core import fold
from vsm_phoenix.ext.saga.definition import (
    Parallel,
    PermanentError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)
from vsm_phoenix.ext.saga.log import KVSagaLog, SagaLog, StorageSagaLog
from vsm_phoenix.ext.saga.orchestrator import SagaOrchestrator
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

__all__ = ["LOGS", "Resources", "SagaRun", "check_saga", "order_definition",
           "run_saga_scenario"]

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


def _open_log(kind: str, seed: int, workdir: Path) -> tuple[Callable[[], SagaLog],
                                                          SimulatedRaftKV | None]:
    if kind == "kv":
        kv = SimulatedRaftKV(seed=seed)
        return (lambda: KVSagaLog(kv)), kv
    if kind == "sqlite":
        path = workdir / f"sagas-{seed}.db"
        return (lambda: StorageSagaLog(SQLiteStorage(path, synchronous="NORMAL"))), None
    store = MemoryStorage()
    return (lambda: StorageSagaLog(store)), None


async def _scenario(kind: str, seed: int, sagas: int, concurrency: int, faults: bool,
                    workdir: Path, say: Callable[[str], None]) -> SagaRun:
    rng = random.Random(f"{seed}/saga-scenario")
    resources = Resources()
    fault_model = _Faults(random.Random(f"{seed}/faults"), p_retryable=0.08 if faults else 0,
                          p_permanent=0.06 if faults else 0, p_late=0.02 if faults else 0,
                          late_s=0.2)
    definition = order_definition(resources, fault_model)
    make_log, kv = _open_log(kind, seed, workdir)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def clock() -> int:
        return 1_000_000 + int((loop.time() - t0) * 1000)

    names = ["n1", "n2", "n3"]
    views = {n: _PartitionableLog(make_log()) for n in names}
    stats = {"crashes": 0, "partitions": 0, "recovered": 0, "abandoned": 0,
             "kv_faults": 0, "recover_errors": 0, "resubmitted": 0}
    lease_ms = 400

    def orchestrator(name: str) -> SagaOrchestrator:
        return SagaOrchestrator(views[name], name, [definition], lease_ms=lease_ms,
                                clock_ms=clock, rng=random.Random(f"{seed}/{name}"))

    orchs = {n: orchestrator(n) for n in names}
    tasks: dict[str, set[asyncio.Task[Any]]] = {n: set() for n in names}
    up = dict.fromkeys(names, True)
    ids = [f"s{seed}-{i:04d}" for i in range(sagas)]
    outcomes: dict[str, str] = {}
    sem = asyncio.Semaphore(concurrency)

    def track(name: str, coro: Any) -> asyncio.Task[Any]:
        task = loop.create_task(coro)
        tasks[name].add(task)
        task.add_done_callback(tasks[name].discard)
        return task

    client_log = make_log()  # the client's own view of the log (never partitioned)

    async def start(saga_id: str) -> None:
        async with sem:
            while True:
                name = rng.choice([n for n in names if up[n]] or names)
                try:
                    r = await track(name, orchs[name].run(definition, {"order": saga_id},
                                                          saga_id=saga_id))
                except asyncio.CancelledError:
                    # the coordinator crashed. If the saga reached the log, recovery
                    # finishes it; if not, the client submits it again elsewhere.
                    await asyncio.sleep(0.05)
                    if await client_log.load(saga_id) is None:
                        stats["resubmitted"] += 1
                        continue
                    return
                if r.outcome == "abandoned":
                    stats["abandoned"] += 1
                else:
                    outcomes[saga_id] = r.outcome
                return

    async def recoverer(name: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(lease_ms / 2000)
            if not up[name] or views[name].cut:
                continue
            try:
                results = await track(name, orchs[name].recover())
            except asyncio.CancelledError:
                continue
            except Exception:  # the log is unreachable mid-scan: try again later
                stats["recover_errors"] += 1
                continue
            for r in results:
                stats["recovered"] += 1
                if r.outcome == "abandoned":
                    stats["abandoned"] += 1
                else:
                    outcomes[r.saga_id] = r.outcome

    async def nemesis(stop: asyncio.Event) -> None:
        frng = random.Random(f"{seed}/nemesis")
        while not stop.is_set():
            await asyncio.sleep(frng.uniform(0.15, 0.4))
            if stop.is_set() or not faults:
                break
            victim = frng.choice(names)
            what = frng.choice(["crash", "partition", "kv"] if kv else ["crash", "partition"])
            if what == "crash" and up[victim]:
                stats["crashes"] += 1
                say(f"  crash {victim} ({len(orchs[victim].driving)} sagas in flight)")
                up[victim] = False
                for t in list(tasks[victim]):
                    t.cancel()
                await asyncio.sleep(frng.uniform(0.1, 0.5))
                orchs[victim] = orchestrator(victim)  # a new process, same node id
                up[victim] = True
            elif what == "partition" and not views[victim].cut:
                stats["partitions"] += 1
                say(f"  partition {victim} from the log")
                views[victim].cut = True
                await asyncio.sleep(frng.uniform(0.3, 0.8))  # longer than the lease
                views[victim].cut = False
            elif what == "kv" and kv is not None:
                stats["kv_faults"] += 1
                leader = kv.leader or kv.nodes[0]
                say(f"  crash KV leader {leader}, partition {kv.nodes[-1]}")
                kv.sim.crash(leader)
                kv.sim.partition([kv.nodes[-1]])
                await asyncio.sleep(frng.uniform(0.05, 0.2))
                kv.sim.restart(leader)
                kv.sim.heal()

    stop = asyncio.Event()
    background = [loop.create_task(recoverer(n, stop)) for n in names]
    background.append(loop.create_task(nemesis(stop)))
    progress_at = time.monotonic()
    starters = [loop.create_task(start(i)) for i in ids]
    while not all(s.done() for s in starters):
        await asyncio.sleep(0.1)
        if time.monotonic() - progress_at > 2:
            progress_at = time.monotonic()
            say(f"  {len(outcomes)}/{sagas} sagas ended")
    stop.set()
    await asyncio.gather(*background)
    for v in views.values():
        v.cut = False
    for n in names:
        up[n] = True
    views["checker"] = _PartitionableLog(make_log())
    checker = orchestrator("checker")
    deadline = loop.time() + 60
    while loop.time() < deadline:  # the last recoveries: sagas whose driver died late
        left = await checker.log.saga_ids(active_only=True)
        if not left:
            break
        await asyncio.sleep(lease_ms / 1000)
        for r in await checker.recover():
            stats["recovered"] += 1
            outcomes[r.saga_id] = r.outcome
    log = make_log()
    violations: list[str] = []
    counts = {R_COMPLETED: 0, R_COMPENSATED: 0, R_STUCK: 0}
    takeovers = 0
    for saga_id in ids:
        records = await log.load(saga_id)
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
    return SagaRun(log=kind, seed=seed, sagas=sagas, outcomes=counts,
                   violations=tuple(violations), stats=stats,
                   elapsed_s=loop.time() - t0)


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
        return asyncio.run(_scenario(log, seed, sagas, concurrency, faults, where, say))
