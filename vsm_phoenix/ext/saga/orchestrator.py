"""The asyncio driver of saga cores: run sagas, resume them, report on them.

:class:`SagaOrchestrator` is one coordinator (``node_id``) over a
:class:`~vsm_phoenix.ext.saga.log.SagaLog`. ``await run(definition, context)`` starts
a saga and returns its :class:`SagaResult` once the saga has ended (its terminal record
is durable). Any number of orchestrators on any number of nodes may share one log
(a SQLite file, the Raft KV): :meth:`recover` takes over every unfinished saga whose
lease has expired -- a coordinator that crashed -- and drives it to its end, which is
what a node does when it starts (:meth:`expired` is its scan alone, for a driver that
resumes each saga in its own task). A saga that ends is settled
(:meth:`~vsm_phoenix.ext.saga.log.SagaLog.settle`: off the log's list of unfinished
sagas) by the coordinator that sees it end, and again by any scan that finds it still
listed. Definitions are registered by name, because a log
names the definition its saga runs.

The driver carries out the :class:`~vsm_phoenix.ext.saga.core.SagaCore`'s effects:
appends (one at a time, an exception from the log becomes ``AppendFailed`` and is
retried), actions as tasks bounded by their step's timeout (an exception is classified
retryable or permanent by ``classify``), and timers on the event loop. Time is the
injected ``clock_ms`` (default: wall-clock milliseconds, because leases are compared
across nodes; see the core for why safety does not depend on clocks agreeing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.ext.saga.core import (
    Abandoned,
    ActionDone,
    ActionFailed,
    Append,
    Appended,
    AppendFailed,
    Begin,
    Effect,
    Event,
    Finished,
    Invoke,
    LeaseHeld,
    SagaCore,
    SagaView,
    SetTimer,
    TakeOver,
    TimerFired,
    fold,
)
from vsm_phoenix.ext.saga.definition import PermanentError, SagaDefinition, StepContext
from vsm_phoenix.ext.saga.log import SagaLog
from vsm_phoenix.ext.saga.records import (
    F_FATAL,
    F_RETRYABLE,
    F_TIMEOUT,
    R_COMPENSATED,
    R_COMPLETED,
    R_STUCK,
    TERMINAL,
    check_name,
)

__all__ = ["ABANDONED", "SagaOrchestrator", "SagaResult", "SagaStatus", "default_classify"]

#: The outcome of a :class:`SagaResult` when this coordinator lost the saga to another.
ABANDONED: Final = "abandoned"


def default_classify(exc: BaseException) -> str:
    """:class:`PermanentError` is permanent; every other exception is retryable."""
    return F_FATAL if isinstance(exc, PermanentError) else F_RETRYABLE


@attrs.frozen(kw_only=True)
class SagaResult:
    """How a saga ended for this coordinator: ``outcome`` is ``completed``,
    ``compensated``, ``stuck`` or :data:`ABANDONED`."""

    saga_id: str
    outcome: str
    reason: str = ""
    results: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SagaStatus:
    """A saga as its log tells it: ``state`` is ``running``, ``compensating``,
    ``completed``, ``compensated`` or ``stuck``; ``steps`` maps each step that started
    to its attempts, whether it is done, and its compensation attempts/done."""

    saga_id: str
    saga: str
    state: str
    reason: str
    owner: str
    epoch: int
    lease_until: int
    steps: Mapping[str, Mapping[str, Any]]

    @classmethod
    def of(cls, saga_id: str, view: SagaView) -> SagaStatus:
        state = view.outcome or ("compensating" if view.compensating is not None
                                 else "running")
        steps = {name: {"attempts": s.attempts, "done": s.done,
                        "compensation_attempts": s.comp_attempts,
                        "compensated": s.comp_done, "last_error": s.last_error}
                 for name, s in view.steps.items()}
        return cls(saga_id=saga_id, saga=view.saga, state=state,
                   reason=view.reason or (view.compensating or ""), owner=view.owner,
                   epoch=view.epoch, lease_until=view.lease_until, steps=steps)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class SagaOrchestrator:
    """One saga coordinator (see the module docstring)."""

    def __init__(
        self,
        log: SagaLog,
        node_id: str,
        definitions: Iterable[SagaDefinition] = (),
        *,
        lease_ms: int = 10_000,
        clock_ms: Callable[[], int] = _wall_ms,
        rng: random.Random | None = None,
        classify: Callable[[BaseException], str] = default_classify,
    ) -> None:
        if not isinstance(log, SagaLog):
            raise TypeMismatch("log must be a SagaLog")
        check_name(node_id, "node id")
        if type(lease_ms) is not int or lease_ms < 1:
            raise InvalidArgument("lease_ms must be a positive int")
        self.log = log
        self.node_id = node_id
        self.lease_ms = lease_ms
        self.clock_ms = clock_ms
        self.rng = rng if rng is not None else random.Random()
        self.classify = classify
        self.definitions: dict[str, SagaDefinition] = {}
        self._driving: set[str] = set()
        self._lease_seen: dict[str, int] = {}  # saga id -> a lease end a scan saw
        for d in definitions:
            self.register(d)

    def register(self, definition: SagaDefinition) -> None:
        """Make ``definition`` runnable and resumable by this coordinator."""
        if not isinstance(definition, SagaDefinition):
            raise TypeMismatch("register a SagaDefinition")
        self.definitions[definition.name] = definition

    # -- running ----------------------------------------------------------------------
    async def run(self, saga: SagaDefinition | str, context: Mapping[str, Any] | None = None,
                  *, saga_id: str | None = None) -> SagaResult:
        """Start a saga and drive it to its end. ``context`` (a CBOR-encodable map) is
        logged with the saga and handed to every step."""
        definition = self.definitions.get(saga) if isinstance(saga, str) else saga
        if not isinstance(definition, SagaDefinition):
            raise InvalidArgument(f"unknown saga {str(saga)[:40]!r}")
        self.definitions.setdefault(definition.name, definition)
        ctx = dict(context or {})
        if saga_id is None:
            saga_id = f"{self.node_id}-{self.rng.getrandbits(64):016x}"
        if saga_id in self._driving:
            raise LeaseHeld(saga_id, self.node_id, 0)
        core = SagaCore(definition, saga_id, self.node_id, rng=self.rng,
                        lease_ms=self.lease_ms)
        effects = core.step(Begin(now_ms=self.clock_ms(), context=ctx))
        self._driving.add(saga_id)
        return await self._drive(core, effects)

    async def resume(self, saga_id: str) -> SagaResult:
        """Take over ``saga_id`` (its lease must have expired: :class:`LeaseHeld`
        otherwise) and drive it to its end; a finished saga just reports its end."""
        check_name(saga_id, "saga id")
        if saga_id in self._driving:
            raise LeaseHeld(saga_id, self.node_id, 0)
        self._driving.add(saga_id)  # before the first await: one driver per saga here
        try:
            log = await self.log.load(saga_id)
            if log is None:
                raise InvalidArgument(f"no saga {saga_id!r} in the log")
            name = fold(log).saga
            definition = self.definitions.get(name)
            if definition is None:
                raise InvalidArgument(f"saga {saga_id} runs {name!r}, which is not "
                                      "registered")
            core = SagaCore(definition, saga_id, self.node_id, rng=self.rng,
                            lease_ms=self.lease_ms)
            effects = core.step(TakeOver(now_ms=self.clock_ms(), log=tuple(log)))
        except BaseException:
            self._driving.discard(saga_id)
            raise
        return await self._drive(core, effects)

    async def expired(self) -> list[str]:
        """The unfinished sagas this coordinator may take over now: listed by the log,
        not driven here, their lease expired on this coordinator's clock, their
        definition registered. A listed saga found ended is settled on the way
        (:meth:`SagaLog.settle`: a crash interrupted its removal from the list).

        This is the scan of :meth:`recover`, for a driver that resumes each saga in its
        own task (so that driving taken-over sagas never delays the next scan). A saga
        whose lease was seen to run until ``T`` is not read again before ``T`` on this
        coordinator's clock (a lease only moves forward), so frequent scans cost about
        one read per saga per lease, not one per saga per scan."""
        todo = []
        listed = await self.log.saga_ids(active_only=True)
        still = set(listed)
        seen = {i: t for i, t in self._lease_seen.items() if i in still}
        self._lease_seen = seen  # bounded by what the log lists
        for saga_id in listed:
            if saga_id in self._driving or seen.get(saga_id, 0) > self.clock_ms():
                continue
            log = await self.log.load(saga_id)
            if log is None:
                continue
            view = fold(log)
            if view.terminal:
                await self._settle(saga_id)
                continue
            if view.lease_until > self.clock_ms():
                seen[saga_id] = view.lease_until
                continue
            if view.saga in self.definitions:
                todo.append(saga_id)
        return todo

    async def recover(self) -> list[SagaResult]:
        """Resume, concurrently, every saga :meth:`expired` lists, and wait for them;
        the results of those this coordinator drove to their end.

        A saga whose log cannot be reached (``ConnectionError``, ``TimeoutError``,
        ``OSError``) is skipped: the next call tries it again. Any other error is
        raised once every resume has ended; cancelling the call cancels them all."""
        todo = await self.expired()

        async def one(saga_id: str) -> SagaResult | None:
            try:
                return await self.resume(saga_id)
            except LeaseHeld:
                return None  # someone renewed or took it first
            except (ConnectionError, TimeoutError, OSError):
                return None  # the log is unreachable: the next scan tries again

        results = await asyncio.gather(*(one(s) for s in todo), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return [r for r in results if isinstance(r, SagaResult)]

    # -- queries ----------------------------------------------------------------------
    async def status(self, saga_id: str) -> SagaStatus | None:
        """The saga's state as its log tells it (``None``: no such saga)."""
        log = await self.log.load(saga_id)
        return None if log is None else SagaStatus.of(saga_id, fold(log))

    async def sagas(self, *, state: str | None = None) -> list[SagaStatus]:
        """Every saga the log lists (only those in ``state``: ``running``,
        ``compensating``, ``completed``, ``compensated``, ``stuck``). Every unfinished
        and every stuck saga is listed; a :class:`~vsm_phoenix.ext.saga.log.KVSagaLog`
        lists no completed or compensated saga (:meth:`status` still answers for one)."""
        if state not in (None, "running", "compensating", R_COMPLETED, R_COMPENSATED,
                         R_STUCK):
            raise InvalidArgument(f"unknown saga state {state!r}")
        active = state in ("running", "compensating")
        out = []
        for saga_id in await self.log.saga_ids(active_only=active):
            st = await self.status(saga_id)
            if st is not None and (state is None or st.state == state):
                out.append(st)
        return out

    @property
    def driving(self) -> frozenset[str]:
        """The sagas this coordinator is driving now."""
        return frozenset(self._driving)

    # -- the driver -------------------------------------------------------------------
    async def _drive(self, core: SagaCore, effects: list[Effect]) -> SagaResult:
        """Carry out ``effects`` and every later one until the saga ends here; the
        caller has put the saga in :attr:`_driving`, which this empties."""
        saga_id = core.saga_id
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Callable[[int], Event]] = asyncio.Queue()
        timers: dict[str, asyncio.TimerHandle] = {}
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                end = await self._effects(core, effects, events, timers, tasks, loop)
                if end is not None:
                    return end
                make = await events.get()
                effects = core.step(make(self.clock_ms()))
        finally:
            self._driving.discard(saga_id)
            for handle in timers.values():
                handle.cancel()
            if tasks:  # abandoned actions: bounded by their timeouts, their results unused
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _effects(self, core: SagaCore, effects: list[Effect],
                       events: asyncio.Queue[Callable[[int], Event]],
                       timers: dict[str, asyncio.TimerHandle],
                       tasks: set[asyncio.Task[None]],
                       loop: asyncio.AbstractEventLoop) -> SagaResult | None:
        queue = list(effects)
        wrote_end = False  # whether our own acknowledged append wrote the terminal record
        while queue:
            e = queue.pop(0)
            if isinstance(e, Append):
                answer = await self._append(core, e)
                wrote_end = isinstance(answer, Appended) and answer.ok and any(
                    r.kind in TERMINAL for r in e.records)
                queue.extend(core.step(answer))
            elif isinstance(e, Invoke):
                task = loop.create_task(self._invoke(core, e, events))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif isinstance(e, SetTimer):
                old = timers.pop(e.name, None)
                if old is not None:
                    old.cancel()
                name = e.name
                timers[name] = loop.call_later(
                    e.delay_ms / 1000, events.put_nowait,
                    lambda now, name=name: TimerFired(now_ms=now, name=name))
            elif isinstance(e, Finished):
                if not wrote_end:  # a lost answer, or an ended saga taken over
                    await self._settle(core.saga_id)
                view = core.view()
                results = {n: s.result for n, s in view.steps.items() if s.done}
                return SagaResult(saga_id=core.saga_id, outcome=e.outcome, reason=e.reason,
                                  results=results)
            else:
                assert isinstance(e, Abandoned)
                return SagaResult(saga_id=core.saga_id, outcome=ABANDONED, reason=e.reason)
        return None

    async def _settle(self, saga_id: str) -> None:
        """:meth:`SagaLog.settle`, best effort: the saga has ended whatever the log's
        list says, and the next recovery scan settles it if this fails."""
        with contextlib.suppress(Exception):
            await self.log.settle(saga_id)

    async def _append(self, core: SagaCore, e: Append) -> Event:
        try:
            ok = await self.log.append(core.saga_id, e.expected, e.records)
            log = None if ok else await self.log.load(core.saga_id)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the log's outcome is unknown: the core retries
            return AppendFailed(now_ms=self.clock_ms(), error=f"{type(exc).__name__}: {exc}")
        return Appended(now_ms=self.clock_ms(), ok=ok,
                        log=None if log is None else tuple(log))

    async def _invoke(self, core: SagaCore, e: Invoke,
                      events: asyncio.Queue[Callable[[int], Event]]) -> None:
        step = core.definition.step(e.step)
        fn = step.compensation if e.compensation else step.action
        assert fn is not None
        view = core.view()
        ctx = StepContext(
            saga_id=core.saga_id, step=e.step, attempt=e.attempt,
            compensation=e.compensation, idempotency_key=e.idempotency_key,
            context=view.context,
            results={n: s.result for n, s in view.steps.items() if s.done})
        try:
            result = await asyncio.wait_for(fn(ctx), e.timeout_ms / 1000)
        except TimeoutError:
            events.put_nowait(lambda now: ActionFailed(
                now_ms=now, error=f"no answer in {e.timeout_ms} ms", failure=F_TIMEOUT,
                step=e.step, compensation=e.compensation, attempt=e.attempt))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = self.classify(exc)
            if kind not in (F_RETRYABLE, F_FATAL):
                kind = F_RETRYABLE
            message = f"{type(exc).__name__}: {exc}"
            events.put_nowait(lambda now: ActionFailed(now_ms=now, error=message,
                                                       failure=kind, step=e.step,
                                                       compensation=e.compensation,
                                                       attempt=e.attempt))
            return
        events.put_nowait(lambda now: ActionDone(now_ms=now, result=result, step=e.step,
                                                 compensation=e.compensation,
                                                 attempt=e.attempt))


