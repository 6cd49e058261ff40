"""A circuit breaker after resilience4j: failure-rate and slow-call windows, reserved
half-open permits, generations, sync and asyncio wrapping.

Theory of operation
-------------------
A :class:`CircuitBreaker` guards calls to something that can fail (a broker, a model
endpoint). It is a three-state machine; every transition bumps a **generation**:

==============  =================================================================
state           behaviour
==============  =================================================================
``CLOSED``      every call is let through; each outcome goes into a sliding window
                (:class:`CountWindow`: the last *n* calls; :class:`TimeWindow`: the
                calls of the last *n* seconds, one bucket per clock second). Once
                the window holds ``minimum_calls`` outcomes, a failure rate
                ``>= failure_rate_threshold`` or a slow-call rate
                ``>= slow_call_rate_threshold`` (percent) opens the circuit.
``OPEN``        every call is refused with :class:`CallNotPermittedError` until
                ``wait_in_open_ms`` has passed; the first call after that moves the
                breaker to ``HALF_OPEN``.
``HALF_OPEN``   exactly ``half_open_permits`` trial calls are let through (permits
                are reserved atomically; callers beyond them are refused). When all
                trial outcomes are in, the same thresholds decide: ``CLOSED`` (fresh
                window) or ``OPEN`` again. With ``max_wait_in_half_open_ms > 0`` a
                half-open state whose trials do not finish in time re-opens.
==============  =================================================================

A call is ``acquire`` (reserve a :class:`Permit`, or be refused), then the protected
call, then ``on_success`` / ``on_error`` with the permit. The lock guards only those
bookkeeping steps -- **it is never held while the protected call runs**, so one slow
call never serialises the others (pybreaker holds its lock across the call).

**Generations.** A permit remembers the generation it was issued in. An outcome whose
permit is from an older generation (the call started before the breaker opened,
half-opened or was reset) is counted in :attr:`BreakerMetrics.stale_results` and
otherwise dropped: a late success from before an outage cannot close a half-open
circuit, and a late failure cannot re-open a freshly closed one.

**Classification.** ``classify(exc)`` maps an exception to :class:`Outcome`:
``FAILURE`` (counted), ``SUCCESS`` (e.g. a "not found" that proves the service is up)
or ``IGNORED`` (not counted; a half-open permit is given back). The default counts every
:class:`Exception` and ignores other :class:`BaseException` (cancellation, interrupts).
``failure_on_result(value)`` can mark returned values as failures (e.g. HTTP 503).

**Time** comes from the injected ``clock_ms`` (default: :func:`time.monotonic` in
milliseconds); a clock that steps backwards is clamped to the latest reading, so time
never runs backwards inside the breaker. Durations are measured with the same clock.

**Listeners** receive :data:`BreakerEvent` objects *after* the lock is released, in the
order the events happened; an exception in a listener is logged and swallowed so it
never changes the outcome of a protected call.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload

import attrs

from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError

__all__ = [
    "BreakerConfig",
    "BreakerEvent",
    "BreakerMetrics",
    "BreakerRegistry",
    "BreakerState",
    "CallNotPermittedError",
    "CallOutcome",
    "CallRejected",
    "CircuitBreaker",
    "CountWindow",
    "Outcome",
    "Permit",
    "StaleResult",
    "StateChanged",
    "TimeWindow",
    "Trigger",
    "default_classify",
]

_log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.Enum):
    """How a finished call counts."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"


class Trigger(enum.Enum):
    """Why a state transition happened."""

    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    WAIT_ELAPSED = "wait_elapsed"
    TRIALS_PASSED = "trials_passed"
    HALF_OPEN_TIMEOUT = "half_open_timeout"
    MANUAL = "manual"


class CallNotPermittedError(VsmPhoenixError):
    """The breaker refused a call (open, or half-open with every permit taken).

    ``retry_after_ms`` is how long until the open state ends (0 when half-open: a
    permit may come back at any moment).
    """

    def __init__(self, breaker: str, state: BreakerState, retry_after_ms: float) -> None:
        super().__init__(
            f"circuit breaker {breaker!r} is {state.value}; retry after {retry_after_ms:.0f} ms"
        )
        self.breaker = breaker
        self.state = state
        self.retry_after_ms = retry_after_ms


def default_classify(exc: BaseException) -> Outcome:
    """Count every :class:`Exception` as a failure; ignore cancellation and other
    :class:`BaseException` (they say nothing about the remote side)."""
    return Outcome.FAILURE if isinstance(exc, Exception) else Outcome.IGNORED


# -- configuration --------------------------------------------------------------------
def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int:
        raise TypeMismatch(f"{attribute.name} must be an int")
    if value < 1:
        raise InvalidArgument(f"{attribute.name} must be >= 1")


def _percent(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeMismatch(f"{attribute.name} must be a number")
    if not 0 < value <= 100:
        raise InvalidArgument(f"{attribute.name} must be in (0, 100]")


def _non_negative_ms(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeMismatch(f"{attribute.name} must be a number")
    if not 0 <= value < float("inf"):
        raise InvalidArgument(f"{attribute.name} must be a finite number >= 0")


@attrs.frozen
class CountWindow:
    """Aggregate the outcomes of the last ``calls`` calls."""

    calls: int = attrs.field(default=100, validator=_positive_int)


@attrs.frozen
class TimeWindow:
    """Aggregate the outcomes of the calls that ended in the last ``seconds`` clock
    seconds (one bucket per second of ``clock_ms``)."""

    seconds: int = attrs.field(default=60, validator=_positive_int)


def _window(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, CountWindow | TimeWindow):
        raise TypeMismatch(f"{attribute.name} must be a CountWindow or a TimeWindow")


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """Settings of one breaker; the defaults are resilience4j's."""

    window: CountWindow | TimeWindow = attrs.field(factory=CountWindow, validator=_window)
    minimum_calls: int = attrs.field(default=100, validator=_positive_int)
    failure_rate_threshold: float = attrs.field(default=50.0, validator=_percent)
    slow_call_rate_threshold: float = attrs.field(default=100.0, validator=_percent)
    slow_call_duration_ms: float = attrs.field(default=60_000.0, validator=_non_negative_ms)
    wait_in_open_ms: float = attrs.field(default=60_000.0, validator=_non_negative_ms)
    half_open_permits: int = attrs.field(default=10, validator=_positive_int)
    max_wait_in_half_open_ms: float = attrs.field(default=0.0, validator=_non_negative_ms)
    classify: Callable[[BaseException], Outcome] = default_classify
    failure_on_result: Callable[[Any], bool] | None = None


# -- events and metrics ---------------------------------------------------------------
@attrs.frozen
class StateChanged:
    breaker: str
    previous: BreakerState
    state: BreakerState
    trigger: Trigger
    generation: int
    at_ms: float


@attrs.frozen
class CallOutcome:
    """A call finished and was counted (``outcome`` is not ``IGNORED`` unless the call
    was ignored; ``slow`` says whether it exceeded ``slow_call_duration_ms``)."""

    breaker: str
    outcome: Outcome
    slow: bool
    duration_ms: float
    generation: int


@attrs.frozen
class CallRejected:
    breaker: str
    state: BreakerState
    retry_after_ms: float


@attrs.frozen
class StaleResult:
    """An outcome from an older generation arrived and was dropped."""

    breaker: str
    outcome: Outcome
    permit_generation: int
    generation: int


BreakerEvent = StateChanged | CallOutcome | CallRejected | StaleResult


@attrs.frozen
class BreakerMetrics:
    """A snapshot. Rates are percentages of the current window (closed) or of the
    trial calls (half-open), or ``None`` while fewer than the minimum calls are in."""

    state: BreakerState
    generation: int
    failure_rate: float | None
    slow_call_rate: float | None
    buffered_calls: int
    failed_calls: int
    slow_calls: int
    half_open_permits_left: int
    successes: int
    failures: int
    ignored: int
    not_permitted: int
    stale_results: int


# -- sliding windows ------------------------------------------------------------------
class _Totals:
    __slots__ = ("calls", "failures", "slow")

    def __init__(self) -> None:
        self.calls = self.failures = self.slow = 0

    def add(self, failed: bool, slow: bool, sign: int = 1) -> None:
        self.calls += sign
        self.failures += sign * failed
        self.slow += sign * slow


class _CountAggregate:
    """A ring of the last ``size`` outcomes, totals kept by subtract-on-evict."""

    __slots__ = ("_next", "_ring", "totals")

    def __init__(self, size: int) -> None:
        self._ring: list[tuple[bool, bool] | None] = [None] * size
        self._next = 0
        self.totals = _Totals()

    def record(self, failed: bool, slow: bool, now_ms: float) -> None:
        old = self._ring[self._next]
        if old is not None:
            self.totals.add(*old, sign=-1)
        self._ring[self._next] = (failed, slow)
        self._next = (self._next + 1) % len(self._ring)
        self.totals.add(failed, slow)

    def snapshot(self, now_ms: float) -> _Totals:
        return self.totals


class _TimeAggregate:
    """``size`` one-second buckets in a ring; bucket ``s % size`` holds clock second
    ``s``. Advancing to a new second clears the buckets skipped over."""

    __slots__ = ("_buckets", "_head", "totals")

    def __init__(self, size: int) -> None:
        self._buckets = [_Totals() for _ in range(size)]
        self._head: int | None = None  # the newest second seen
        self.totals = _Totals()

    def _advance(self, now_ms: float) -> int:
        second = int(now_ms // 1000)
        size = len(self._buckets)
        if self._head is None or second - self._head >= size:
            for b in self._buckets:
                b.calls = b.failures = b.slow = 0
            self.totals = _Totals()
        else:
            for s in range(self._head + 1, second + 1):
                b = self._buckets[s % size]
                self.totals.calls -= b.calls
                self.totals.failures -= b.failures
                self.totals.slow -= b.slow
                b.calls = b.failures = b.slow = 0
        self._head = second if self._head is None else max(self._head, second)
        return self._head

    def record(self, failed: bool, slow: bool, now_ms: float) -> None:
        head = self._advance(now_ms)
        self._buckets[head % len(self._buckets)].add(failed, slow)
        self.totals.add(failed, slow)

    def snapshot(self, now_ms: float) -> _Totals:
        self._advance(now_ms)
        return self.totals


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


# -- the breaker ----------------------------------------------------------------------
class Permit:
    """The right to make one call, issued by :meth:`CircuitBreaker.acquire`. Hand it
    back exactly once through ``on_success``, ``on_error`` or ``release``."""

    __slots__ = ("_used", "generation", "started_ms")

    def __init__(self, generation: int, started_ms: float) -> None:
        self.generation = generation
        self.started_ms = started_ms
        self._used = False


class CircuitBreaker:
    """One breaker (see module doc). Thread-safe and asyncio-safe; the lock is held
    only for bookkeeping, never during the protected call."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock_ms: Callable[[], float] = _monotonic_ms,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument("a breaker needs a non-empty name")
        if config is not None and not isinstance(config, BreakerConfig):
            raise TypeMismatch("config must be a BreakerConfig")
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self._clock = clock_ms
        self._lock = threading.Lock()
        self._listeners: list[Callable[[BreakerEvent], None]] = []
        self._now = float("-inf")
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._since_ms = 0.0  # when the current state began
        self._window: _CountAggregate | _TimeAggregate = self._fresh_window()
        self._permits_left = 0  # half-open: permits not yet handed out
        self._trials = _Totals()  # half-open: outcomes of this generation's trials
        self._counts = {o: 0 for o in Outcome}
        self._not_permitted = 0
        self._stale = 0

    # -- listeners ----------------------------------------------------------------
    def add_listener(self, listener: Callable[[BreakerEvent], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[BreakerEvent], None]) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def _emit(self, events: list[BreakerEvent]) -> None:
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    _log.exception("breaker %r: listener %r failed", self.name, listener)

    # -- internals (lock held) ------------------------------------------------------
    def _tick(self) -> float:
        self._now = max(self._now, float(self._clock()))
        return self._now

    def _fresh_window(self) -> _CountAggregate | _TimeAggregate:
        w = self.config.window
        if isinstance(w, CountWindow):
            return _CountAggregate(w.calls)
        return _TimeAggregate(w.seconds)

    def _transition(
        self, state: BreakerState, trigger: Trigger, now: float, events: list[BreakerEvent]
    ) -> None:
        previous = self._state
        self._state = state
        self._generation += 1
        self._since_ms = now
        if state is BreakerState.CLOSED:
            self._window = self._fresh_window()
        elif state is BreakerState.HALF_OPEN:
            self._permits_left = self.config.half_open_permits
            self._trials = _Totals()
        events.append(StateChanged(self.name, previous, state, trigger, self._generation, now))

    def _verdict(self, totals: _Totals, minimum: int) -> Trigger | None:
        """Which threshold the totals cross, if they are enough to judge."""
        if totals.calls < minimum or totals.calls == 0:
            return None
        cfg = self.config
        if totals.failures * 100 >= cfg.failure_rate_threshold * totals.calls:
            return Trigger.FAILURE_RATE
        if totals.slow * 100 >= cfg.slow_call_rate_threshold * totals.calls:
            return Trigger.SLOW_CALL_RATE
        return None

    def _minimum(self) -> int:
        w = self.config.window
        if isinstance(w, CountWindow):
            return min(self.config.minimum_calls, w.calls)
        return self.config.minimum_calls

    def _expire(self, now: float, events: list[BreakerEvent]) -> None:
        """Apply the transitions that time alone causes."""
        cfg = self.config
        if self._state is BreakerState.OPEN and now - self._since_ms >= cfg.wait_in_open_ms:
            self._transition(BreakerState.HALF_OPEN, Trigger.WAIT_ELAPSED, now, events)
        elif (
            self._state is BreakerState.HALF_OPEN
            and cfg.max_wait_in_half_open_ms > 0
            and now - self._since_ms >= cfg.max_wait_in_half_open_ms
        ):
            self._transition(BreakerState.OPEN, Trigger.HALF_OPEN_TIMEOUT, now, events)

    # -- the permit protocol ----------------------------------------------------------
    def acquire(self) -> Permit:
        """Reserve the right to make one call, or raise :class:`CallNotPermittedError`."""
        events: list[BreakerEvent] = []
        try:
            with self._lock:
                now = self._tick()
                self._expire(now, events)
                if self._state is BreakerState.CLOSED:
                    return Permit(self._generation, now)
                if self._state is BreakerState.HALF_OPEN and self._permits_left > 0:
                    self._permits_left -= 1
                    return Permit(self._generation, now)
                self._not_permitted += 1
                retry = 0.0
                if self._state is BreakerState.OPEN:
                    retry = max(0.0, self.config.wait_in_open_ms - (now - self._since_ms))
                events.append(CallRejected(self.name, self._state, retry))
                raise CallNotPermittedError(self.name, self._state, retry)
        finally:
            self._emit(events)

    def _finish(self, permit: Permit, outcome: Outcome) -> None:
        if not isinstance(permit, Permit):
            raise TypeMismatch("permit must be a Permit from this breaker's acquire()")
        events: list[BreakerEvent] = []
        with self._lock:
            if permit._used:
                raise InvalidArgument("this permit was already handed back")
            permit._used = True
            now = self._tick()
            duration = now - permit.started_ms
            slow = duration > self.config.slow_call_duration_ms
            self._counts[outcome] += 1
            if permit.generation != self._generation:
                self._stale += 1
                events.append(StaleResult(self.name, outcome, permit.generation, self._generation))
            else:
                self._count(outcome, slow, duration, now, events)
            self._expire(now, events)
        self._emit(events)

    def _count(
        self,
        outcome: Outcome,
        slow: bool,
        duration: float,
        now: float,
        events: list[BreakerEvent],
    ) -> None:
        events.append(CallOutcome(self.name, outcome, slow, duration, self._generation))
        failed = outcome is Outcome.FAILURE
        if self._state is BreakerState.CLOSED:
            if outcome is Outcome.IGNORED:
                return
            self._window.record(failed, slow, now)
            trigger = self._verdict(self._window.snapshot(now), self._minimum())
            if trigger is not None:
                self._transition(BreakerState.OPEN, trigger, now, events)
        elif self._state is BreakerState.HALF_OPEN:
            if outcome is Outcome.IGNORED:
                self._permits_left += 1  # the trial said nothing: let someone else try
                return
            self._trials.add(failed, slow)
            permits = self.config.half_open_permits
            if self._trials.calls >= permits:
                trigger = self._verdict(self._trials, permits)
                if trigger is None:
                    self._transition(BreakerState.CLOSED, Trigger.TRIALS_PASSED, now, events)
                else:
                    self._transition(BreakerState.OPEN, trigger, now, events)

    def on_success(self, permit: Permit) -> None:
        """The call returned normally (it may still count as slow)."""
        self._finish(permit, Outcome.SUCCESS)

    def on_error(self, permit: Permit, exc: BaseException) -> Outcome:
        """The call raised ``exc``; classify it and record. Returns the outcome."""
        try:
            outcome = self.config.classify(exc)
            if not isinstance(outcome, Outcome):
                raise TypeMismatch("classify must return an Outcome")
        except BaseException:
            self._finish(permit, Outcome.IGNORED)  # a broken classifier judges nothing
            raise
        self._finish(permit, outcome)
        return outcome

    def on_result(self, permit: Permit, value: object) -> Outcome:
        """The call returned ``value``; ``failure_on_result`` may count it as a failure."""
        judge = self.config.failure_on_result
        try:
            failed = judge is not None and bool(judge(value))
        except BaseException:
            self._finish(permit, Outcome.IGNORED)
            raise
        outcome = Outcome.FAILURE if failed else Outcome.SUCCESS
        self._finish(permit, outcome)
        return outcome

    def release(self, permit: Permit) -> None:
        """The call was abandoned before it said anything (counts as ignored)."""
        self._finish(permit, Outcome.IGNORED)

    # -- wrapping -------------------------------------------------------------------
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the synchronous ``fn`` under the breaker."""
        permit = self.acquire()
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            self.on_error(permit, exc)
            raise
        self.on_result(permit, value)
        return value

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` under the breaker. Cancellation counts as
        ignored (with the default classifier) and is re-raised."""
        permit = self.acquire()
        try:
            value = await fn(*args, **kwargs)
        except BaseException as exc:
            self.on_error(permit, exc)
            raise
        self.on_result(permit, value)
        return value

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function or coroutine function so every call goes through
        :meth:`call` / :meth:`call_async`."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return wrapper

    # -- inspection and manual control ------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The state now (time-driven transitions applied)."""
        events: list[BreakerEvent] = []
        with self._lock:
            self._expire(self._tick(), events)
            state = self._state
        self._emit(events)
        return state

    def metrics(self) -> BreakerMetrics:
        events: list[BreakerEvent] = []
        with self._lock:
            now = self._tick()
            self._expire(now, events)
            if self._state is BreakerState.HALF_OPEN:
                totals, minimum = self._trials, self.config.half_open_permits
            elif self._state is BreakerState.CLOSED:
                totals, minimum = self._window.snapshot(now), self._minimum()
            else:
                totals, minimum = _Totals(), 1
            judged = totals.calls >= minimum and totals.calls > 0
            m = BreakerMetrics(
                state=self._state,
                generation=self._generation,
                failure_rate=100.0 * totals.failures / totals.calls if judged else None,
                slow_call_rate=100.0 * totals.slow / totals.calls if judged else None,
                buffered_calls=totals.calls,
                failed_calls=totals.failures,
                slow_calls=totals.slow,
                half_open_permits_left=(
                    self._permits_left if self._state is BreakerState.HALF_OPEN else 0
                ),
                successes=self._counts[Outcome.SUCCESS],
                failures=self._counts[Outcome.FAILURE],
                ignored=self._counts[Outcome.IGNORED],
                not_permitted=self._not_permitted,
                stale_results=self._stale,
            )
        self._emit(events)
        return m

    def reset(self) -> None:
        """Close the circuit with an empty window (a new generation)."""
        events: list[BreakerEvent] = []
        with self._lock:
            self._transition(BreakerState.CLOSED, Trigger.MANUAL, self._tick(), events)
        self._emit(events)

    def trip(self) -> None:
        """Open the circuit now, for ``wait_in_open_ms`` (a new generation)."""
        events: list[BreakerEvent] = []
        with self._lock:
            self._transition(BreakerState.OPEN, Trigger.MANUAL, self._tick(), events)
        self._emit(events)


class BreakerRegistry:
    """Breakers by name, created on first use with a shared default config (one per
    remote endpoint, e.g. per model or per exchange)."""

    def __init__(
        self,
        default: BreakerConfig | None = None,
        *,
        clock_ms: Callable[[], float] = _monotonic_ms,
    ) -> None:
        self.default = default if default is not None else BreakerConfig()
        self._clock = clock_ms
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker:
        """The breaker called ``name``; ``config`` applies only when it is created."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name, config or self.default, clock_ms=self._clock)
                self._breakers[name] = breaker
            return breaker

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._breakers)
