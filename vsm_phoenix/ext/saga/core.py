"""The saga coordinator as a sans-IO state machine: events in, effects out.

Theory of operation
-------------------
A :class:`SagaCore` drives one saga for one coordinator (its *owner*). It never
touches a log, a clock, a timer or a step: the driver (the asyncio
:class:`~vsm_phoenix.ext.saga.orchestrator.SagaOrchestrator`, a test, the model
checker) hands it events and carries out the effects it returns.

=====================  ==============================================================
event                  meaning
=====================  ==============================================================
:class:`Begin`         start a new saga (the log is empty)
:class:`TakeOver`      drive a saga whose log exists (resume after a crash, takeover)
:class:`Appended`      the outstanding :class:`Append` was applied (``ok``) or its
                       compare-and-set lost (``ok=False``, with the log as it is now)
:class:`AppendFailed`  the log did not answer (the append may or may not be applied)
:class:`ActionDone`    an invoked action/compensation returned ``result``
:class:`ActionFailed`  it raised (``failure``: retryable/fatal) or timed out
:class:`TimerFired`    a timer the core set expired
=====================  ==============================================================

=====================  ==============================================================
effect                 the driver must
=====================  ==============================================================
:class:`Append`        append ``records`` iff the log holds exactly ``expected``
                       records (compare-and-set), then answer with :class:`Appended`
:class:`Invoke`        call the step's action or compensation with the idempotency
                       key, bounded by ``timeout_ms``; answer with ActionDone/Failed
:class:`SetTimer`      fire :class:`TimerFired` after ``delay_ms``
:class:`Finished`      report the saga's end (its terminal record is durable)
:class:`Abandoned`     stop driving: another coordinator owns the saga now
=====================  ==============================================================

**Log before effect.** Decisions become records; at most one :class:`Append` is
outstanding; an action is invoked only after its ``step-started`` record is durable,
and :class:`Finished` only after the terminal record is. Outcomes that arrive while
an append is outstanding wait and go into the next one.

**One driver at a time.** Every append is a compare-and-set on the log length, so
two coordinators can never both extend a log: the loser's append fails, it sees a log
it did not write and abandons the saga. Ownership is a *lease*: a ``claimed`` record
``until`` a reading of the owner's clock. Another coordinator takes over only once
the lease has expired on its clock (:class:`TakeOver` raises :class:`LeaseHeld`
before), appending its own ``claimed`` record with the next epoch. The owner renews
the lease so that it covers every action it invokes (lease end >= now + the step's
timeout), so with clocks that agree to within the lease margin a deposed owner's
actions have ended before a new owner starts; with clocks that do not, the
idempotency keys still make each action apply at most once.

**Recovery.** A taker closes every attempt the log shows started but not ended with a
``step-failed``/``comp-failed`` record of failure kind ``timeout`` ("in doubt": the
action may have run), then decides as if that attempt had timed out.

**Decisions** (made only with no append outstanding, over the log plus the outcomes
waiting to be logged):

* *Forward, before the pivot commits.* A step that failed permanently (or, except
  the pivot, used up its attempts), or the saga's deadline, makes the saga decide
  ``compensating`` -- once no action is in flight. The pivot is retried (without
  attempt limit, and past the deadline) until it answers definitely: success, or a
  permanent failure, which under its idempotency key means "this key will never
  commit". A retryable error or a timeout is no such answer -- an earlier attempt may
  still commit -- so it cannot justify compensating.
* *Forward, after the pivot.* Steps are retried until they are done (no attempt
  limit); a permanent failure parks the saga as ``stuck``.
* Otherwise the first stage with unfinished steps starts every step that is neither
  done, running nor waiting for its backoff; when every stage is done: ``completed``.
* *Compensating.* The steps that may have taken effect (any attempt not ending in a
  permanent failure), except the pivot and steps without compensation, are
  compensated one at a time in reverse order of their last log record (reverse order
  of completion). A compensation is retried with backoff until it succeeds or has
  used ``compensation_retry.max_attempts``: then ``stuck``. All done: ``compensated``.

Invariants (checked by tests/ext/test_ext_saga_model.py over every crash point):
every saga ends completed, compensated or stuck; no step is started after its
compensation or after the decision to compensate; no compensation runs for a step
that never started, nor once the pivot is done.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument, VsmPhoenixError
from vsm_phoenix.ext.saga.definition import SagaDefinition, idempotency_key
from vsm_phoenix.ext.saga.records import (
    F_FATAL,
    F_RETRYABLE,
    F_TIMEOUT,
    R_CLAIMED,
    R_COMP_COMPLETED,
    R_COMP_FAILED,
    R_COMP_STARTED,
    R_COMPENSATED,
    R_COMPENSATING,
    R_COMPLETED,
    R_STARTED,
    R_STEP_COMPLETED,
    R_STEP_FAILED,
    R_STEP_STARTED,
    R_STUCK,
    TERMINAL,
    Record,
    check_name,
    encode_record,
)

__all__ = [
    "ActionDone",
    "ActionFailed",
    "Abandoned",
    "Append",
    "AppendFailed",
    "Appended",
    "Begin",
    "Finished",
    "Invoke",
    "LeaseHeld",
    "SagaCore",
    "SagaView",
    "SetTimer",
    "StepView",
    "TakeOver",
    "TimerFired",
    "fold",
]

#: Outcomes of a saga (the kinds of its terminal record).
OUTCOMES: Final = TERMINAL
LEASE_TIMER: Final = "lease"
DEADLINE_TIMER: Final = "deadline"
APPEND_TIMER: Final = "append"
APPEND_RETRY_MS: Final = 100


class LeaseHeld(VsmPhoenixError):
    """The saga's lease has not expired: another coordinator may still drive it."""

    def __init__(self, saga_id: str, owner: str, until: int) -> None:
        super().__init__(f"saga {saga_id} is leased by {owner} until {until}")
        self.saga_id, self.owner, self.until = saga_id, owner, until


# -- events ---------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Begin:
    now_ms: int
    context: dict[str, Any]


@attrs.frozen(kw_only=True)
class TakeOver:
    now_ms: int
    log: tuple[Record, ...]


@attrs.frozen(kw_only=True)
class Appended:
    now_ms: int
    ok: bool
    log: tuple[Record, ...] | None = None  # the log as it is now, when ok is False


@attrs.frozen(kw_only=True)
class AppendFailed:
    now_ms: int
    error: str


@attrs.frozen(kw_only=True)
class ActionDone:
    now_ms: int
    step: str
    compensation: bool
    attempt: int
    result: Any = None


@attrs.frozen(kw_only=True)
class ActionFailed:
    now_ms: int
    step: str
    compensation: bool
    attempt: int
    error: str
    failure: str  # F_RETRYABLE, F_FATAL or F_TIMEOUT


@attrs.frozen(kw_only=True)
class TimerFired:
    now_ms: int
    name: str


Event = Begin | TakeOver | Appended | AppendFailed | ActionDone | ActionFailed | TimerFired


# -- effects --------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Append:
    expected: int
    records: tuple[Record, ...]


@attrs.frozen(kw_only=True)
class Invoke:
    step: str
    compensation: bool
    attempt: int
    idempotency_key: str
    timeout_ms: int


@attrs.frozen(kw_only=True)
class SetTimer:
    name: str
    delay_ms: int


@attrs.frozen(kw_only=True)
class Finished:
    outcome: str  # R_COMPLETED, R_COMPENSATED or R_STUCK
    reason: str


@attrs.frozen(kw_only=True)
class Abandoned:
    reason: str


Effect = Append | Invoke | SetTimer | Finished | Abandoned


# -- the log, folded ------------------------------------------------------------------
@attrs.define
class StepView:
    """One step as the log tells it."""

    attempts: int = 0  # highest step-started attempt
    open_attempt: int = 0  # a step-started without its outcome (0: none)
    done: bool = False
    result: Any = None
    failures: list[str] = attrs.field(factory=list)  # failure kind per failed attempt
    last_error: str = ""
    last_index: int = -1  # index of the last record about this step's action
    comp_attempts: int = 0
    comp_open: int = 0
    comp_done: bool = False
    comp_failures: int = 0
    comp_error: str = ""

    @property
    def maybe_applied(self) -> bool:
        """Some attempt may have taken effect (it did not end in a permanent failure)."""
        return self.attempts > self.failures.count(F_FATAL)


@attrs.define
class SagaView:
    """A saga's log folded into its current state."""

    saga: str = ""
    context: dict[str, Any] = attrs.field(factory=dict)
    started_at: int = 0
    timeout_ms: int = 0
    owner: str = ""
    epoch: int = 0
    lease_until: int = 0
    compensating: str | None = None  # the reason, once decided
    outcome: str | None = None
    reason: str = ""
    steps: dict[str, StepView] = attrs.field(factory=dict)

    @property
    def terminal(self) -> bool:
        return self.outcome is not None


def fold(log: Sequence[Record]) -> SagaView:
    """The :class:`SagaView` of ``log`` (records in log order).

    Refuses (:class:`InvalidArgument`) a log that does not start with ``started`` or
    that names an attempt out of order -- what no coordinator writes."""
    v = SagaView()
    if not log or log[0].kind != R_STARTED:
        raise InvalidArgument("a saga log starts with a started record")
    for i, r in enumerate(log):
        k = r.kind
        if k == R_STARTED:
            if i:
                raise InvalidArgument("a saga log has one started record")
            v.saga, v.context = r.get("saga"), dict(r.get("ctx"))
            v.started_at, v.timeout_ms = r.at, r.get("timeout_ms")
        elif k == R_CLAIMED:
            if r.epoch < v.epoch:
                raise InvalidArgument("saga log epochs go backwards")
            v.owner, v.epoch, v.lease_until = r.by, r.epoch, r.get("until")
        elif k == R_COMPENSATING:
            v.compensating = r.get("reason")
        elif k in TERMINAL:
            v.outcome, v.reason = k, r.fields.get("reason", "")
        else:
            s = v.steps.setdefault(r.get("step"), StepView())
            n = r.get("n")
            if k == R_STEP_STARTED:
                if n != s.attempts + 1 or s.open_attempt or s.done:
                    raise InvalidArgument(f"saga log: bad attempt {n} of {r.get('step')}")
                s.attempts = s.open_attempt = n
                s.last_index = i
            elif k in (R_STEP_COMPLETED, R_STEP_FAILED):
                if n != s.open_attempt:
                    raise InvalidArgument(f"saga log: outcome of attempt {n} never started")
                s.open_attempt = 0
                s.last_index = i
                if k == R_STEP_COMPLETED:
                    s.done, s.result = True, r.get("result")
                else:
                    s.failures.append(r.get("f"))
                    s.last_error = r.get("error")
            elif k == R_COMP_STARTED:
                if n != s.comp_attempts + 1 or s.comp_open or s.comp_done:
                    raise InvalidArgument(f"saga log: bad compensation {n} of {r.get('step')}")
                s.comp_attempts = s.comp_open = n
            else:  # comp completed / failed
                if n != s.comp_open:
                    raise InvalidArgument(f"saga log: compensation {n} never started")
                s.comp_open = 0
                if k == R_COMP_COMPLETED:
                    s.comp_done = True
                else:
                    s.comp_failures += 1
                    s.comp_error = r.get("error")
    return v


def _same_log(a: Sequence[Record], b: Sequence[Record]) -> bool:
    """Whether two logs hold the same records (equal objects, else equal bytes: a
    record read back may carry a list where ours has a tuple)."""
    return len(a) == len(b) and all(
        x is y or x == y or encode_record(x) == encode_record(y) for x, y in zip(a, b, strict=True))


# -- the core -------------------------------------------------------------------------
class SagaCore:
    """Drives one saga for coordinator ``owner`` (see the module docstring)."""

    def __init__(
        self,
        definition: SagaDefinition,
        saga_id: str,
        owner: str,
        *,
        rng: random.Random,
        lease_ms: int = 10_000,
    ) -> None:
        check_name(saga_id, "saga id")
        check_name(owner, "owner")
        if type(lease_ms) is not int or lease_ms < 1:
            raise InvalidArgument("lease_ms must be a positive int")
        self.definition = definition
        self.saga_id = saga_id
        self.owner = owner
        self.rng = rng
        self.lease_ms = lease_ms
        self.epoch = 0
        self.lease_until = 0
        self.durable: list[Record] = []
        self.pending: tuple[Record, ...] | None = None
        self.queue: list[Record] = []  # outcomes waiting for the next append
        self.in_flight: dict[tuple[str, bool], int] = {}
        self.retry_at: dict[tuple[str, bool], int] = {}
        self.started = False
        self.lost = False
        self.finished: Finished | None = None
        self._steps = {s.name: s for s in definition.steps}
        self._pivot = definition.pivot

    def __deepcopy__(self, memo: dict[int, Any]) -> SagaCore:
        """A structural copy (for the model checker): the definition is shared (it is
        immutable), records are shared (frozen), containers and the rng are copied."""
        new = object.__new__(SagaCore)
        new.__dict__.update(self.__dict__)
        new.rng = random.Random()
        new.rng.setstate(self.rng.getstate())
        new.durable = list(self.durable)
        new.queue = list(self.queue)
        new.in_flight = dict(self.in_flight)
        new.retry_at = dict(self.retry_at)
        return new

    # -- inspection -------------------------------------------------------------------
    def state_key(self) -> tuple[Any, ...]:
        """Everything that determines the core's future behaviour (for tests and the
        model checker)."""
        return (
            tuple(encode_record(r) for r in self.durable),
            None if self.pending is None else tuple(encode_record(r) for r in self.pending),
            tuple(encode_record(r) for r in self.queue),
            tuple(sorted(self.in_flight.items())),
            tuple(sorted(self.retry_at.items())),
            self.epoch, self.lease_until, self.started, self.lost, self.finished,
        )

    def view(self) -> SagaView:
        """The saga as its durable log tells it."""
        return fold(self.durable)

    # -- the entry point --------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        """Handle ``event``; the effects to carry out, in order."""
        self._validate(event)
        if isinstance(event, Begin):
            return self._begin(event)
        if isinstance(event, TakeOver):
            return self._take_over(event)
        if self.lost or self.finished is not None:
            return []
        if isinstance(event, Appended):
            return self._appended(event)
        if isinstance(event, AppendFailed):
            return [SetTimer(name=APPEND_TIMER, delay_ms=APPEND_RETRY_MS)]
        if isinstance(event, ActionDone | ActionFailed):
            return self._outcome(event)
        return self._timer(event)

    def _validate(self, event: Event) -> None:
        if not isinstance(event, Begin | TakeOver | Appended | AppendFailed | ActionDone
                          | ActionFailed | TimerFired):
            raise InvalidArgument(f"not a saga event: {type(event).__name__}")
        if type(event.now_ms) is not int or event.now_ms < 0:
            raise InvalidArgument("now_ms must be a non-negative int")
        if isinstance(event, Begin | TakeOver) and self.started:
            raise InvalidArgument(f"saga {self.saga_id} is already being driven")
        if not isinstance(event, Begin | TakeOver) and not self.started:
            raise InvalidArgument(f"saga {self.saga_id} has not begun")
        if isinstance(event, Appended) and self.pending is None and not self.lost:
            raise InvalidArgument("no append is outstanding")
        if isinstance(event, ActionDone | ActionFailed):
            if event.step not in self._steps:
                raise InvalidArgument(f"saga {self.saga_id} has no step {event.step[:40]!r}")
            if isinstance(event, ActionFailed) and event.failure not in (
                    F_RETRYABLE, F_FATAL, F_TIMEOUT):
                raise InvalidArgument(f"unknown failure kind {event.failure!r}")
        if isinstance(event, TakeOver):
            view = fold(event.log)  # raises on a malformed log
            if view.saga != self.definition.name:
                raise InvalidArgument(f"saga {self.saga_id} runs {view.saga!r}, not "
                                      f"{self.definition.name!r}")
            unknown = set(view.steps) - set(self._steps)
            if unknown:
                raise InvalidArgument(f"saga {self.saga_id} log names unknown steps")
            if not view.terminal and view.lease_until > event.now_ms and view.owner != self.owner:
                raise LeaseHeld(self.saga_id, view.owner, view.lease_until)

    # -- helpers ----------------------------------------------------------------------
    def _record(self, kind: str, now: int, **fields: Any) -> Record:
        return Record(kind, now, self.owner, self.epoch, fields)

    def _claim(self, now: int, cover_ms: int = 0) -> Record:
        self.lease_until = now + max(self.lease_ms, 2 * cover_ms)
        return self._record(R_CLAIMED, now, until=self.lease_until)

    def _begin(self, event: Begin) -> list[Effect]:
        now = event.now_ms
        self.started = True
        self.epoch = 1
        first = self._record(R_STARTED, now, saga=self.definition.name,
                             ctx=dict(event.context), timeout_ms=self.definition.timeout_ms)
        encode_record(first)  # the context must be encodable: refuse before mutating
        self.queue = [first, self._claim(now)]
        return [SetTimer(name=DEADLINE_TIMER, delay_ms=self.definition.timeout_ms),
                *self._decide(now)]

    def _take_over(self, event: TakeOver) -> list[Effect]:
        now = event.now_ms
        view = fold(event.log)
        self.started = True
        self.durable = list(event.log)
        if view.terminal:
            self.finished = Finished(outcome=view.outcome or "", reason=view.reason)
            return [self.finished]
        self.epoch = view.epoch + 1
        self.queue = [self._claim(now)]
        for name, s in view.steps.items():  # close the attempts a lost owner left open
            if s.open_attempt:
                self.queue.append(self._record(
                    R_STEP_FAILED, now, step=name, n=s.open_attempt, f=F_TIMEOUT,
                    error=f"in doubt: {view.owner} stopped driving"))
            if s.comp_open:
                self.queue.append(self._record(
                    R_COMP_FAILED, now, step=name, n=s.comp_open,
                    error=f"in doubt: {view.owner} stopped driving"))
        left = view.started_at + view.timeout_ms - now
        return [SetTimer(name=DEADLINE_TIMER, delay_ms=max(1, left)), *self._decide(now)]

    def _appended(self, event: Appended) -> list[Effect]:
        assert self.pending is not None
        batch = self.pending
        if not event.ok and not _same_log(event.log or (), (*self.durable, *batch)):
            self.pending = None
            self.lost = True
            self.in_flight.clear()
            return [Abandoned(reason=f"saga {self.saga_id}: another coordinator "
                                     "extended the log")]
        self.pending = None
        self.durable.extend(batch)
        effects: list[Effect] = []
        for r in batch:
            if r.kind in (R_STEP_STARTED, R_COMP_STARTED):
                comp = r.kind == R_COMP_STARTED
                spec = self._steps[r.get("step")]
                self.in_flight[(spec.name, comp)] = r.get("n")
                effects.append(Invoke(
                    step=spec.name, compensation=comp, attempt=r.get("n"),
                    idempotency_key=idempotency_key(self.saga_id, spec.name, comp),
                    timeout_ms=spec.timeout_ms))
            elif r.kind == R_CLAIMED:
                effects.append(SetTimer(name=LEASE_TIMER,
                                        delay_ms=max(1, (r.get("until") - r.at) * 2 // 3)))
            elif r.kind in TERMINAL:
                self.finished = Finished(outcome=r.kind, reason=r.fields.get("reason", ""))
                effects.append(self.finished)
        if self.finished is None:
            effects.extend(self._decide(event.now_ms))
        return effects

    def _outcome(self, event: ActionDone | ActionFailed) -> list[Effect]:
        key = (event.step, event.compensation)
        if self.in_flight.get(key) != event.attempt:
            return []  # a late answer from an attempt that is no longer in flight
        del self.in_flight[key]
        now = event.now_ms
        if isinstance(event, ActionDone):
            if event.compensation:
                rec = self._record(R_COMP_COMPLETED, now, step=event.step, n=event.attempt)
            else:
                rec = self._record(R_STEP_COMPLETED, now, step=event.step, n=event.attempt,
                                   result=event.result)
                try:
                    encode_record(rec)
                except InvalidArgument as exc:  # an unloggable result is a step failure
                    rec = self._record(R_STEP_FAILED, now, step=event.step,
                                       n=event.attempt, f=F_FATAL, error=str(exc)[:500])
            self.queue.append(rec)
            return self._decide(now)
        error = event.error[:1000]
        if event.compensation:
            rec = self._record(R_COMP_FAILED, now, step=event.step, n=event.attempt,
                               error=error)
            policy = self.definition.compensation_retry
        else:
            rec = self._record(R_STEP_FAILED, now, step=event.step, n=event.attempt,
                               f=event.failure, error=error)
            policy = self._steps[event.step].retry
        self.queue.append(rec)
        delay = policy.delay_ms(event.attempt, self.rng)
        self.retry_at[key] = now + delay
        return [SetTimer(name=f"retry:{'undo' if event.compensation else 'do'}:{event.step}",
                         delay_ms=delay), *self._decide(now)]

    def _timer(self, event: TimerFired) -> list[Effect]:
        now = event.now_ms
        if event.name == APPEND_TIMER:
            if self.pending is not None:
                return [Append(expected=len(self.durable), records=self.pending)]
            return []
        if event.name == LEASE_TIMER:
            if self.pending is None and not self.queue:
                self.queue.append(self._claim(now))
            return self._decide(now)
        if event.name.startswith("retry:"):
            _, direction, step = event.name.split(":", 2)
            key = (step, direction == "undo")
            if key in self.retry_at and self.retry_at[key] <= now:
                del self.retry_at[key]
        return self._decide(now)

    # -- decisions --------------------------------------------------------------------
    def _decide(self, now: int) -> list[Effect]:
        if self.pending is not None or self.lost or self.finished is not None:
            return []
        for key, at in list(self.retry_at.items()):
            if at <= now:
                del self.retry_at[key]
        view = fold(self.durable + self.queue)
        records = list(self.queue)
        records.extend(self._decisions(view, now))
        if not records:
            return []
        self.queue = []
        self.pending = tuple(records)
        return [Append(expected=len(self.durable), records=self.pending)]

    def _decisions(self, v: SagaView, now: int) -> list[Record]:
        if v.terminal:
            return []
        busy = bool(self.in_flight)
        if v.compensating is not None:
            return [] if busy else self._compensate(v, now)
        pivot_done = self._pivot is not None and v.steps.get(self._pivot, StepView()).done
        if pivot_done:
            for name, s in v.steps.items():
                if not s.done and s.failures and s.failures[-1] == F_FATAL and not busy:
                    return [self._record(R_STUCK, now, reason=f"step {name} failed "
                                         f"permanently after the pivot: {s.last_error}")]
        else:
            reason = self._rollback_reason(v, now)
            if reason is not None:
                return [] if busy else [self._record(R_COMPENSATING, now, reason=reason)]
        for stage in self.definition.stages:
            steps = SagaDefinition.stage_steps(stage)
            if all(v.steps.get(spec.name, StepView()).done for spec in steps):
                continue
            out: list[Record] = []
            for spec in steps:
                sv = v.steps.get(spec.name, StepView())
                key = (spec.name, False)
                if sv.done or key in self.in_flight or key in self.retry_at:
                    continue
                if sv.failures and sv.failures[-1] == F_FATAL:
                    continue  # handled above once nothing is in flight
                out.extend(self._start(spec.name, False, sv.attempts + 1, spec.timeout_ms,
                                       now))
            return out
        return [] if busy else [self._record(R_COMPLETED, now)]

    def _rollback_reason(self, v: SagaView, now: int) -> str | None:
        pivot_in_doubt = False
        for name, s in v.steps.items():
            if s.done or not s.failures:
                continue
            last = s.failures[-1]
            if last == F_FATAL:
                return f"step {name} failed permanently: {s.last_error}"
            if name == self._pivot:
                pivot_in_doubt = True  # retried until it answers definitely
            elif s.attempts >= self._steps[name].retry.max_attempts:
                return f"step {name} failed after {s.attempts} attempts: {s.last_error}"
        if now >= v.started_at + v.timeout_ms and not pivot_in_doubt:
            return f"saga timed out after {v.timeout_ms} ms"
        return None

    def compensation_order(self, v: SagaView) -> list[str]:
        """The steps to compensate, first to last: every step that may have taken
        effect and has a compensation, latest log record first."""
        candidates = [
            (s.last_index, name) for name, s in v.steps.items()
            if s.maybe_applied and name != self._pivot
            and self._steps[name].compensation is not None
        ]
        return [name for _, name in sorted(candidates, reverse=True)]

    def _compensate(self, v: SagaView, now: int) -> list[Record]:
        policy = self.definition.compensation_retry
        for name in self.compensation_order(v):
            s = v.steps[name]
            if s.comp_done:
                continue
            key = (name, True)
            if key in self.in_flight or key in self.retry_at:
                return []
            if s.comp_failures >= policy.max_attempts:
                return [self._record(R_STUCK, now, reason=f"compensation of {name} failed "
                                     f"{s.comp_failures} times: {s.comp_error}")]
            return self._start(name, True, s.comp_attempts + 1,
                               self._steps[name].timeout_ms, now)
        return [self._record(R_COMPENSATED, now, reason=v.compensating or "")]

    def _start(self, step: str, comp: bool, attempt: int, timeout_ms: int,
               now: int) -> list[Record]:
        out: list[Record] = []
        if self.lease_until - now < timeout_ms + self.lease_ms // 4:
            out.append(self._claim(now, timeout_ms))
        kind = R_COMP_STARTED if comp else R_STEP_STARTED
        out.append(self._record(kind, now, step=step, n=attempt))
        return out
