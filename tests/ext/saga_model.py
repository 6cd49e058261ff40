"""An exhaustive explorer of the saga core (test tooling for test_ext_saga_model.py).

The world is one saga log (compare-and-append), one idempotent resource per step and
the coordinators driving :class:`~vsm_phoenix.ext.saga.core.SagaCore` s. From every
state the explorer tries every choice the environment has:

* the outstanding append is applied and acknowledged, applied with its answer lost,
  or not applied and answered with an error;
* an in-flight action or compensation succeeds, fails permanently, fails retryably,
  or times out having taken effect or not;
* a coordinator's earliest timer fires (virtual time jumps to it; one coordinator's
  timers share a clock, so they fire in deadline order);
* the driving coordinator **crashes** (its in-flight actions become zombies that may
  still take effect later) or is **partitioned** (it lives on, unaware), and a new
  coordinator takes the saga over once the lease has expired;
* a zombie action takes effect (only where it can make a difference: next to an
  invocation of the same step, or once no coordinator is left -- see ``choices``).

Faults are bounded by budgets so the space is finite; states are memoised. Safety is
checked on every transition, the end states at every leaf (see :class:`Violation`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from vsm_phoenix.ext.saga.core import (
    Abandoned,
    ActionDone,
    ActionFailed,
    Append,
    Appended,
    AppendFailed,
    Event,
    Finished,
    Invoke,
    SagaCore,
    SetTimer,
    TakeOver,
    TimerFired,
    fold,
)
from vsm_phoenix.ext.saga.core import Begin as BeginEvent
from vsm_phoenix.ext.saga.definition import SagaDefinition, idempotency_key
from vsm_phoenix.ext.saga.records import (
    F_FATAL,
    F_RETRYABLE,
    F_TIMEOUT,
    R_COMPENSATED,
    R_COMPENSATING,
    R_COMPLETED,
    R_STEP_COMPLETED,
    R_STEP_STARTED,
    R_STUCK,
    Record,
    decode_record,
    encode_record,
)

SAGA_ID = "s1"


class Violation(AssertionError):
    pass


@attrs.define
class Resource:
    """One step's resource under the idempotency-key contract
    (:mod:`vsm_phoenix.ext.saga.definition`): ``refused`` is a definite permanent
    failure of the action key, ``undone`` the compensation key seen (a late action
    does nothing)."""

    state: str = "none"  # none / applied / refused / undone
    do_effects: int = 0
    undo_effects: int = 0

    def do(self) -> None:
        if self.state == "none":
            self.state = "applied"
            self.do_effects += 1

    def refuse(self) -> None:
        if self.state == "none":
            self.state = "refused"

    def undo(self) -> None:
        if self.state == "applied":
            self.undo_effects += 1
        self.state = "undone"


@attrs.define
class Budget:
    failures: int = 2
    crashes: int = 1
    partitions: int = 1
    append_faults: int = 1
    lease_timers: int = 1


@attrs.define
class World:
    definition: SagaDefinition
    log: list[bytes] = attrs.field(factory=list)
    recs: list[Record] = attrs.field(factory=list)  # the log, decoded
    resources: dict[str, Resource] = attrs.field(factory=dict)
    cores: dict[str, SagaCore] = attrs.field(factory=dict)  # live (possibly deposed)
    appends: dict[str, Append] = attrs.field(factory=dict)  # outstanding, per core
    inflight: dict[str, list[Invoke]] = attrs.field(factory=dict)
    timers: dict[str, dict[str, int]] = attrs.field(factory=dict)
    zombies: list[Invoke] = attrs.field(factory=list)
    finished: list[Finished] = attrs.field(factory=list)
    now: int = 0
    owners: int = 0
    budget: Budget = attrs.field(factory=Budget)
    invoked_do: set[str] = attrs.field(factory=set)

    def key(self) -> Any:
        return (
            tuple(self.log),
            tuple((n, r.state, r.do_effects, r.undo_effects)
                  for n, r in sorted(self.resources.items())),
            tuple((n, _core_key(c)) for n, c in sorted(self.cores.items())),
            tuple(sorted((n, a.expected, len(a.records)) for n, a in self.appends.items())),
            tuple((n, tuple(sorted(map(_inv_key, v)))) for n, v in sorted(self.inflight.items())),
            tuple((n, tuple(sorted(t.items()))) for n, t in sorted(self.timers.items())),
            tuple(sorted(map(_inv_key, self.zombies))), tuple(self.finished),
            self.now, self.budget.failures, self.budget.crashes, self.budget.partitions,
            self.budget.append_faults, self.budget.lease_timers,
        )

    def clone(self) -> World:
        return World(
            definition=self.definition, log=list(self.log), recs=list(self.recs),
            resources={n: Resource(r.state, r.do_effects, r.undo_effects)
                       for n, r in self.resources.items()},
            cores={n: _copy_core(c) for n, c in self.cores.items()},
            appends=dict(self.appends),
            inflight={n: list(v) for n, v in self.inflight.items()},
            timers={n: dict(t) for n, t in self.timers.items()},
            zombies=list(self.zombies), finished=list(self.finished), now=self.now,
            owners=self.owners,
            budget=Budget(self.budget.failures, self.budget.crashes, self.budget.partitions,
                          self.budget.append_faults, self.budget.lease_timers),
            invoked_do=set(self.invoked_do))

    def records(self) -> list[Record]:
        return list(self.recs)


class _NoJitter(random.Random):
    """A random source without state: backoff jitter is always zero (the explorer
    chooses when timers fire anyway), so cores share it instead of copying one."""

    def randint(self, a: int, b: int) -> int:
        return a

    def random(self) -> float:
        return 0.0


_NO_JITTER = _NoJitter(0)

#: Encodings of records by identity: records are frozen and shared between cloned
#: worlds, so each is encoded once (kept alive here so an id is never reused).
_ENCODED: dict[int, tuple[Record, bytes]] = {}


def _enc(r: Record) -> bytes:
    hit = _ENCODED.get(id(r))
    if hit is None:
        hit = _ENCODED[id(r)] = (r, encode_record(r))
    return hit[1]


_DECODED: dict[bytes, Record] = {}


def _dec(data: bytes) -> Record:
    """What a reader gets back from the log (decoded once per distinct record)."""
    hit = _DECODED.get(data)
    if hit is None:
        hit = _DECODED[data] = decode_record(data)
    return hit


def _core_key(c: SagaCore) -> tuple[Any, ...]:
    """``SagaCore.state_key()`` with cached record encodings (same content)."""
    return (
        tuple(map(_enc, c.durable)),
        None if c.pending is None else tuple(map(_enc, c.pending)),
        tuple(map(_enc, c.queue)),
        tuple(sorted(c.in_flight.items())),
        tuple(sorted(c.retry_at.items())),
        c.epoch, c.lease_until, c.started, c.lost, c.finished,
    )


def _copy_core(c: SagaCore) -> SagaCore:
    """``SagaCore.__deepcopy__`` without copying the (stateless) random source."""
    if c.rng is not _NO_JITTER:
        return copy.deepcopy(c)
    new = object.__new__(SagaCore)
    new.__dict__.update(c.__dict__)
    new.durable = list(c.durable)
    new.queue = list(c.queue)
    new.in_flight = dict(c.in_flight)
    new.retry_at = dict(c.retry_at)
    return new


def _inv_key(i: Invoke) -> tuple[str, bool, int]:
    return (i.step, i.compensation, i.attempt)


def new_world(definition: SagaDefinition, budget: Budget) -> World:
    w = World(definition=definition, budget=budget)
    w.resources = {s.name: Resource() for s in definition.steps}
    _spawn(w)
    _feed(w, "n1", BeginEvent(now_ms=0, context={"x": 1}))
    return w


def _spawn(w: World) -> str:
    w.owners += 1
    name = f"n{w.owners}"
    w.cores[name] = SagaCore(w.definition, SAGA_ID, name, rng=_NO_JITTER, lease_ms=1_000)
    w.inflight[name] = []
    w.timers[name] = {}
    return name


def _check_invoke(w: World, inv: Invoke) -> None:
    recs = w.records()
    pivot = w.definition.pivot
    if inv.idempotency_key != idempotency_key(SAGA_ID, inv.step, inv.compensation):
        raise Violation(f"non-deterministic idempotency key {inv.idempotency_key}")
    if not inv.compensation:
        if any(r.kind == R_STEP_COMPLETED and r.get("step") == inv.step for r in recs):
            raise Violation(f"{inv.step} invoked again after it completed")
        if any(r.kind == R_COMPENSATING for r in recs):
            raise Violation(f"{inv.step} invoked after the decision to compensate")
        w.invoked_do.add(inv.step)
    else:
        if not any(r.kind == R_STEP_STARTED and r.get("step") == inv.step for r in recs):
            raise Violation(f"compensation of {inv.step}, which never started")
        if inv.step == pivot:
            raise Violation("the pivot was compensated")
        if pivot is not None and any(r.kind == R_STEP_COMPLETED and r.get("step") == pivot
                                     for r in recs):
            raise Violation(f"compensation of {inv.step} after the pivot committed")


def _feed(w: World, owner: str, event: Event) -> None:
    core = w.cores[owner]
    for e in core.step(event):
        if isinstance(e, Append):
            w.appends[owner] = e
        elif isinstance(e, Invoke):
            _check_invoke(w, e)
            w.inflight[owner].append(e)
        elif isinstance(e, SetTimer):
            w.timers[owner][e.name] = w.now + e.delay_ms
        elif isinstance(e, Finished):
            w.finished.append(e)
            if not any(r.kind == e.outcome for r in w.recs):
                raise Violation("finished before its terminal record was durable")
            _retire(w, owner)
        else:
            assert isinstance(e, Abandoned)
            _retire(w, owner, zombify=True)


def _retire(w: World, owner: str, *, zombify: bool = False) -> None:
    if zombify:
        w.zombies.extend(w.inflight[owner])
    del w.cores[owner]
    w.appends.pop(owner, None)
    w.inflight.pop(owner)
    w.timers.pop(owner)


def _apply(w: World, inv: Invoke) -> None:
    res = w.resources[inv.step]
    if inv.compensation:
        res.undo()
    else:
        res.do()


def choices(w: World) -> Iterator[tuple[str, Any]]:
    b = w.budget
    for owner in sorted(w.appends):
        yield ("append-ok", owner)
        if b.append_faults:
            yield ("append-lost-answer", owner)
            yield ("append-error", owner)
    for owner, invs in sorted(w.inflight.items()):
        for i, inv in enumerate(invs):
            state = w.resources[inv.step].state
            if inv.compensation or state != "refused":
                yield ("done", (owner, i))  # a refused key answers its refusal again
            if not inv.compensation and state == "refused":
                yield ("refused-again", (owner, i))  # the key's cached answer: no budget
            if b.failures:
                if not inv.compensation and state == "none":
                    yield ("fail-fatal", (owner, i))
                yield ("fail-retryable", (owner, i))
                yield ("timeout-applied", (owner, i))
                yield ("timeout-not-applied", (owner, i))
    for owner, timers in sorted(w.timers.items()):
        enabled = {name: at for name, at in timers.items()
                   if not (name == "lease" and not b.lease_timers)
                   # a saga timing out counts as a failure
                   and not (name == "deadline" and b.failures == 0)}
        # One coordinator's timers run on one clock: they fire in deadline order (a
        # timer the budget holds back never fires). Across coordinators, any order.
        first = min(enabled.values(), default=None)
        for name in sorted(enabled):
            if enabled[name] == first:
                yield ("timer", (owner, name))
    # A zombie touches only its step's resource, which no core reads: its effect
    # commutes with every transition but those on the same resource (an invocation of
    # that step answering) and the end check. So it may take effect only where one of
    # those is enabled, or once no coordinator is left; and dying early is the same as
    # dying at the end (partial-order reduction: every distinguishable order is kept).
    ending = not w.cores
    busy = {inv.step for invs in w.inflight.values() for inv in invs}
    for i, z in enumerate(w.zombies):
        if ending or z.step in busy:
            yield ("zombie-applies", i)
        if ending:
            yield ("zombie-dies", i)
    if w.cores:
        live = sorted(w.cores)
        if b.crashes and len(live) == 1:
            yield ("crash", live[0])
        if b.partitions and len(live) == 1:
            yield ("partition", live[0])


def step(w: World, choice: tuple[str, Any]) -> World:
    w = w.clone()
    kind, arg = choice
    b = w.budget
    if kind.startswith("append"):
        owner = arg
        a = w.appends.pop(owner)
        if kind != "append-error":
            if len(w.log) == a.expected:
                encoded = [_enc(r) for r in a.records]
                w.log.extend(encoded)
                w.recs.extend(_dec(data) for data in encoded)
                applied = True
            else:
                applied = False
        else:
            applied = False
        if kind == "append-ok":
            if applied:
                _feed(w, owner, Appended(now_ms=w.now, ok=True))
            else:
                _feed(w, owner, Appended(now_ms=w.now, ok=False, log=tuple(w.records())))
        else:
            b.append_faults -= 1
            _feed(w, owner, AppendFailed(now_ms=w.now, error=kind))
        _check_log(w)
        return w
    if kind in ("done", "fail-fatal", "refused-again", "fail-retryable", "timeout-applied",
                "timeout-not-applied"):
        owner, i = arg
        inv = w.inflight[owner].pop(i)
        common = {"step": inv.step, "compensation": inv.compensation, "attempt": inv.attempt}
        if kind == "done":
            _apply(w, inv)
            ev: Event = ActionDone(now_ms=w.now, result=f"r-{inv.step}", **common)
        else:
            if kind != "refused-again":
                b.failures -= 1
            if kind == "timeout-applied":
                _apply(w, inv)
            if kind == "fail-fatal" and not inv.compensation:
                w.resources[inv.step].refuse()
            f = {"fail-fatal": F_FATAL, "refused-again": F_FATAL,
                 "fail-retryable": F_RETRYABLE}.get(kind, F_TIMEOUT)
            if inv.compensation and f == F_FATAL:
                f = F_RETRYABLE  # a compensation is retried whatever it raised
            ev = ActionFailed(now_ms=w.now, error=kind, failure=f, **common)
        _feed(w, owner, ev)
        _check_log(w)
        return w
    if kind == "timer":
        owner, name = arg
        at = w.timers[owner].pop(name)
        w.now = max(w.now, at)
        if name == "lease":
            b.lease_timers -= 1
        if name == "deadline":
            b.failures -= 1
        _feed(w, owner, TimerFired(now_ms=w.now, name=name))
        _check_log(w)
        return w
    if kind.startswith("zombie"):
        inv = w.zombies.pop(arg)
        if kind == "zombie-applies":
            _apply(w, inv)
        return w
    # crash or partition, then a takeover by a new coordinator once the lease expired
    owner = arg
    if kind == "crash":
        b.crashes -= 1
        w.zombies.extend(w.inflight[owner])
        _retire(w, owner)
    else:
        b.partitions -= 1
        w.timers[owner] = {}  # a partitioned coordinator's timers fire no sooner than ours
    recs = w.records()
    if not recs:
        return w  # crashed before the saga's first record: it never existed
    view = fold(recs)
    w.now = max(w.now, view.lease_until + 1)
    new = _spawn(w)
    _feed(w, new, TakeOver(now_ms=w.now, log=tuple(recs)))
    _check_log(w)
    return w


def _check_log(w: World) -> None:
    epochs = [r.epoch for r in w.recs]
    if epochs != sorted(epochs):
        raise Violation(f"two coordinators interleaved in the log: epochs {epochs}")


def check_end(w: World) -> str:
    """The saga's outcome at a leaf; raises :class:`Violation` when it is wrong."""
    recs = w.records()
    if not recs:
        if any(r.state != "none" for r in w.resources.values()):
            raise Violation("a saga that never logged a record touched a resource")
        return "never-started"
    terminal = [r for r in recs if r.kind in (R_COMPLETED, R_COMPENSATED, R_STUCK)]
    if len(terminal) != 1 or (recs[-1] is not terminal[0] and recs[-1] != terminal[0]):
        raise Violation(f"saga did not end exactly once: {[r.kind for r in recs]}")
    outcome = terminal[0].kind
    for name, res in w.resources.items():
        if res.do_effects > 1 or res.undo_effects > 1:
            raise Violation(f"{name} applied twice: {res}")
    pivot = w.definition.pivot
    after = False
    for s in w.definition.steps:
        res = w.resources[s.name]
        if outcome == R_COMPLETED and res.state != "applied":
            raise Violation(f"completed but {s.name} is {res.state}")
        if outcome == R_COMPENSATED:
            if after and s.name in w.invoked_do:
                raise Violation(f"compensated but {s.name} after the pivot ran")
            if (s.compensation is not None or s.pivot) and res.state == "applied":
                raise Violation(f"compensated but {s.name} is still applied")
        after = after or s.name == pivot
    if outcome == R_STUCK and not terminal[0].get("reason"):
        raise Violation("stuck without a reason")
    return outcome


@attrs.define
class Exploration:
    states: int = 0
    leaves: int = 0
    outcomes: dict[str, int] = attrs.field(factory=dict)
    complete: bool = True  # False: stopped at ``stop_at`` states, the rest unexplored


def explore(definition: SagaDefinition, budget: Budget, *, max_states: int = 200_000,
            stop_at: int | None = None,
            progress: Callable[[Exploration], None] | None = None) -> Exploration:
    """Visit every reachable state (memoised); raise :class:`Violation` on the first
    broken invariant, ``RuntimeError`` past ``max_states`` -- or, with ``stop_at``
    (which replaces ``max_states``), return what was checked after that many states
    (``complete=False``: a bounded search, not a proof). ``progress`` is called every
    10,000 states."""
    result = Exploration()
    # The memo holds 64-bit hashes of the state keys, not the keys (a key is a few KB:
    # millions of them exhaust memory). Two distinct states share a hash with
    # probability about n**2 / 2**65 -- under 1e-5 for ten million states.
    seen: set[int] = set()
    stack = [new_world(definition, budget)]
    while stack:
        w = stack.pop()
        k = hash(w.key())
        if k in seen:
            continue
        seen.add(k)
        result.states += 1
        if result.states <= 64:  # the cached key is the core's own (guards drift)
            for c in w.cores.values():
                assert _core_key(c) == c.state_key()
        if stop_at is not None and result.states > stop_at:
            result.states -= 1
            result.complete = False
            return result
        if stop_at is None and result.states > max_states:
            raise RuntimeError(f"state space over {max_states}")
        if progress is not None and result.states % 10_000 == 0:
            progress(result)
        options = list(choices(w))
        live = bool(w.cores) or bool(w.zombies)
        if not options or not live:
            if w.zombies:
                continue
            outcome = check_end(w)
            result.leaves += 1
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            continue
        for c in options:
            stack.append(step(w, c))
    return result
