"""The circuit breaker: a Hypothesis state machine against a plain-list reference model,
plus the behaviours the model does not reach (threads, asyncio, listeners, bad input)."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError
from vsm_phoenix.ext.breaker import (
    BreakerConfig,
    BreakerEvent,
    BreakerRegistry,
    BreakerState,
    CallNotPermittedError,
    CallOutcome,
    CallRejected,
    CircuitBreaker,
    CountWindow,
    Outcome,
    Permit,
    StaleResult,
    StateChanged,
    TimeWindow,
    Trigger,
)

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kw: Any) -> CircuitBreaker:
    base: dict[str, Any] = dict(
        window=CountWindow(4),
        minimum_calls=2,
        failure_rate_threshold=50,
        slow_call_rate_threshold=100,
        slow_call_duration_ms=500,
        wait_in_open_ms=1000,
        half_open_permits=2,
    )
    base.update(kw)
    return CircuitBreaker("t", BreakerConfig(**base), clock_ms=clock)


# -- reference model ------------------------------------------------------------------
class Reference:
    """The specification written the slow, obvious way: lists of outcomes."""

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.state = CLOSED
        self.gen = 0
        self.since = 0.0
        self.calls: list[tuple[float, bool, bool]] = []  # (end ms, failed, slow)
        self.trials: list[tuple[bool, bool]] = []
        self.permits = 0

    def go(self, state: BreakerState, now: float) -> None:
        self.state, self.gen, self.since = state, self.gen + 1, now
        if state is CLOSED:
            self.calls = []
        if state is HALF:
            self.permits, self.trials = self.cfg.half_open_permits, []

    def expire(self, now: float) -> None:
        if self.state is OPEN and now - self.since >= self.cfg.wait_in_open_ms:
            self.go(HALF, now)
        elif (
            self.state is HALF
            and self.cfg.max_wait_in_half_open_ms > 0
            and now - self.since >= self.cfg.max_wait_in_half_open_ms
        ):
            self.go(OPEN, now)

    def window(self, now: float) -> list[tuple[bool, bool]]:
        w = self.cfg.window
        if isinstance(w, CountWindow):
            return [(f, s) for _, f, s in self.calls[-w.calls :]]
        second = int(now // 1000)
        return [(f, s) for t, f, s in self.calls if int(t // 1000) > second - w.seconds]

    def over(self, outcomes: list[tuple[bool, bool]], minimum: int) -> bool:
        n = len(outcomes)
        if n == 0 or n < minimum:
            return False
        failed = sum(f for f, _ in outcomes)
        slow = sum(s for _, s in outcomes)
        return (
            100 * failed >= self.cfg.failure_rate_threshold * n
            or 100 * slow >= self.cfg.slow_call_rate_threshold * n
        )

    def minimum(self) -> int:
        w = self.cfg.window
        m = self.cfg.minimum_calls
        return min(m, w.calls) if isinstance(w, CountWindow) else m

    def acquire(self, now: float) -> bool:
        self.expire(now)
        if self.state is CLOSED:
            return True
        if self.state is HALF and self.permits > 0:
            self.permits -= 1
            return True
        return False

    def finish(self, gen: int, outcome: Outcome, slow: bool, now: float) -> None:
        if gen == self.gen:
            failed = outcome is Outcome.FAILURE
            if self.state is CLOSED and outcome is not Outcome.IGNORED:
                self.calls.append((now, failed, slow))
                if self.over(self.window(now), self.minimum()):
                    self.go(OPEN, now)
            elif self.state is HALF:
                if outcome is Outcome.IGNORED:
                    self.permits += 1
                else:
                    self.trials.append((failed, slow))
                    if len(self.trials) >= self.cfg.half_open_permits:
                        bad = self.over(self.trials, self.cfg.half_open_permits)
                        self.go(OPEN if bad else CLOSED, now)
        self.expire(now)


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        window=st.one_of(
            st.builds(CountWindow, st.integers(1, 6)), st.builds(TimeWindow, st.integers(1, 4))
        ),
        minimum=st.integers(1, 5),
        failure=st.sampled_from([25.0, 50.0, 100.0]),
        slow=st.sampled_from([50.0, 100.0]),
        permits=st.integers(1, 3),
        half_open_max=st.sampled_from([0.0, 2500.0]),
    )
    def setup(
        self,
        window: CountWindow | TimeWindow,
        minimum: int,
        failure: float,
        slow: float,
        permits: int,
        half_open_max: float,
    ) -> None:
        self.clock = Clock()
        cfg = BreakerConfig(
            window=window,
            minimum_calls=minimum,
            failure_rate_threshold=failure,
            slow_call_rate_threshold=slow,
            slow_call_duration_ms=400,
            wait_in_open_ms=1000,
            half_open_permits=permits,
            max_wait_in_half_open_ms=half_open_max,
        )
        self.breaker = CircuitBreaker("m", cfg, clock_ms=self.clock)
        self.events: list[BreakerEvent] = []
        self.breaker.add_listener(self.events.append)
        self.ref = Reference(cfg)
        self.held: list[Permit] = []

    @rule(ms=st.sampled_from([0, 1, 150, 450, 999, 1000, 2600]))
    def advance(self, ms: int) -> None:
        self.clock.now += ms

    @rule()
    def acquire(self) -> None:
        allowed = self.ref.acquire(self.clock.now)
        try:
            permit = self.breaker.acquire()
        except CallNotPermittedError as e:
            assert not allowed
            assert e.state is self.ref.state
            return
        assert allowed
        assert permit.generation == self.ref.gen
        self.held.append(permit)

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 10), outcome=st.sampled_from(list(Outcome)))
    def finish(self, i: int, outcome: Outcome) -> None:
        permit = self.held.pop(i % len(self.held))
        slow = self.clock.now - permit.started_ms > 400
        state_before = self.breaker.state
        self.events.clear()
        {
            Outcome.SUCCESS: self.breaker.on_success,
            Outcome.FAILURE: lambda p: self.breaker.on_error(p, RuntimeError("x")),
            Outcome.IGNORED: self.breaker.release,
        }[outcome](permit)
        stale = permit.generation != self.ref.gen
        self.ref.finish(permit.generation, outcome, slow, self.clock.now)
        if stale:  # a late result never flips the state by itself
            assert any(isinstance(e, StaleResult) for e in self.events)
            changes = [e for e in self.events if isinstance(e, StateChanged)]
            assert all(
                e.trigger in (Trigger.WAIT_ELAPSED, Trigger.HALF_OPEN_TIMEOUT) for e in changes
            ), (state_before, changes)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.ref.go(CLOSED, self.clock.now)

    @rule()
    def trip(self) -> None:
        self.breaker.trip()
        self.ref.go(OPEN, self.clock.now)

    @rule()
    def trip_and_wait(self) -> None:  # reach half-open often: its rules are the subtle ones
        self.trip()
        self.clock.now += 1000

    @invariant()
    def agrees_with_reference(self) -> None:
        m = self.breaker.metrics()
        self.ref.expire(self.clock.now)
        assert m.state is self.ref.state
        assert m.generation == self.ref.gen
        if m.state is HALF:
            assert m.half_open_permits_left == self.ref.permits
            outstanding = sum(p.generation == m.generation for p in self.held)
            assert outstanding + len(self.ref.trials) + m.half_open_permits_left == (
                self.breaker.config.half_open_permits
            )
        if m.state is CLOSED:
            window = self.ref.window(self.clock.now)
            assert m.buffered_calls == len(window)
            assert m.failed_calls == sum(f for f, _ in window)
            assert m.slow_calls == sum(s for _, s in window)

    @invariant()
    def transitions_are_legal(self) -> None:
        legal = {
            (CLOSED, OPEN),
            (OPEN, HALF),
            (HALF, CLOSED),
            (HALF, OPEN),
        }
        for e in self.events:
            if isinstance(e, StateChanged) and e.trigger is not Trigger.MANUAL:
                assert (e.previous, e.state) in legal


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(settings.default, stateful_step_count=100)


@pytest.mark.parametrize("seed", range(40))
def test_seeded_walk_matches_reference(seed: int) -> None:
    """Long random walks of the same machine: the Hypothesis machine shrinks failures,
    these reach deep states (windows wrapping, seconds evicted) cheaply."""
    rng = random.Random(seed)
    m = BreakerMachine()
    m.setup(
        window=rng.choice([CountWindow(rng.randint(1, 6)), TimeWindow(rng.randint(1, 4))]),
        minimum=rng.randint(1, 5),
        failure=rng.choice([25.0, 50.0, 100.0]),
        slow=rng.choice([50.0, 100.0]),
        permits=rng.randint(1, 3),
        half_open_max=rng.choice([0.0, 2500.0]),
    )
    for _ in range(300):
        r = rng.random()
        if r < 0.3:
            m.advance(rng.choice([0, 1, 150, 450, 999, 1000, 2600]))
        elif r < 0.6:
            m.acquire()
        elif r < 0.95:
            if m.held:
                m.finish(rng.randrange(11), rng.choice(list(Outcome)))
        elif r < 0.97:
            m.trip_and_wait()
        else:
            m.reset()
        m.agrees_with_reference()
        m.transitions_are_legal()


# -- examples -------------------------------------------------------------------------
def test_opens_on_failure_rate_and_recovers_through_half_open() -> None:
    clock = Clock()
    b = make(clock)
    seen: list[BreakerEvent] = []
    b.add_listener(seen.append)
    b.call(lambda: 1)
    with pytest.raises(ZeroDivisionError):
        b.call(lambda: 1 / 0)
    assert b.state is OPEN  # 1 of 2 failed: 50 % >= 50 %
    with pytest.raises(CallNotPermittedError) as err:
        b.call(lambda: 1)
    assert err.value.retry_after_ms == 1000 and err.value.breaker == "t"
    clock.now = 1000
    assert b.call(lambda: 2) == 2 and b.state is HALF
    assert b.call(lambda: 3) == 3 and b.state is CLOSED
    triggers = [e.trigger for e in seen if isinstance(e, StateChanged)]
    assert triggers == [Trigger.FAILURE_RATE, Trigger.WAIT_ELAPSED, Trigger.TRIALS_PASSED]
    assert any(isinstance(e, CallRejected) for e in seen)


def test_slow_calls_open_the_circuit() -> None:
    clock = Clock()
    b = make(clock, slow_call_rate_threshold=100)

    def slow() -> int:
        clock.now += 600
        return 1

    seen: list[BreakerEvent] = []
    b.add_listener(seen.append)
    b.call(slow)
    assert b.state is CLOSED
    b.call(slow)
    assert b.state is OPEN
    assert [e.trigger for e in seen if isinstance(e, StateChanged)] == [Trigger.SLOW_CALL_RATE]
    assert [e.slow for e in seen if isinstance(e, CallOutcome)] == [True, True]


def test_minimum_calls_and_count_window_evicts() -> None:
    clock = Clock()
    b = make(clock, window=CountWindow(3), minimum_calls=3, failure_rate_threshold=100)
    for _ in range(2):
        with pytest.raises(KeyError):
            b.call(lambda: {}[0])
    assert b.state is CLOSED and b.metrics().failure_rate is None
    b.call(lambda: 0)  # 2/3 failed < 100 %
    assert b.metrics().failure_rate == pytest.approx(200 / 3)
    for _ in range(3):
        b.call(lambda: 0)
    assert b.metrics().failed_calls == 0  # the failures were evicted


def test_minimum_calls_above_the_count_window_is_capped() -> None:
    clock = Clock()
    b = make(clock, window=CountWindow(2), minimum_calls=50)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            b.call(lambda: 1 / 0)
    assert b.state is OPEN  # a 2-call window can never hold 50 calls: judge at 2


def test_time_window_forgets_old_seconds() -> None:
    clock = Clock()
    b = make(clock, window=TimeWindow(2), minimum_calls=2)
    with pytest.raises(ValueError):
        b.call(int, "x")
    clock.now = 2500  # second 2: the failure of second 0 has left the 2 s window
    b.call(lambda: 0)
    assert b.metrics().buffered_calls == 1 and b.state is CLOSED


def test_half_open_reopens_on_failed_trial_and_reserves_permits() -> None:
    clock = Clock()
    b = make(clock, half_open_permits=2)
    b.trip()
    clock.now = 1000
    p1, p2 = b.acquire(), b.acquire()
    with pytest.raises(CallNotPermittedError) as err:
        b.acquire()
    assert err.value.state is HALF and err.value.retry_after_ms == 0
    b.on_error(p1, RuntimeError())
    b.on_success(p2)
    assert b.state is OPEN


def test_ignored_trial_gives_its_permit_back() -> None:
    clock = Clock()
    b = make(clock, half_open_permits=1)
    b.trip()
    clock.now = 1000
    p = b.acquire()
    b.release(p)
    assert b.metrics().half_open_permits_left == 1
    b.on_success(b.acquire())
    assert b.state is CLOSED


def test_late_result_of_an_old_generation_is_dropped() -> None:
    clock = Clock()
    b = make(clock, half_open_permits=1)
    old = b.acquire()  # generation 0, closed
    b.trip()
    clock.now = 1000
    trial = b.acquire()  # half-open, generation 2
    b.on_error(old, RuntimeError("late"))  # would re-open if it counted
    assert b.state is HALF and b.metrics().stale_results == 1
    b.on_success(trial)
    assert b.state is CLOSED


def test_half_open_times_out() -> None:
    clock = Clock()
    b = make(clock, max_wait_in_half_open_ms=300)
    b.trip()
    clock.now = 1000
    b.acquire()  # half-open, the trial never reports
    clock.now = 1300
    assert b.state is OPEN


def test_classifier_and_result_predicate() -> None:
    clock = Clock()

    def classify(exc: BaseException) -> Outcome:
        return Outcome.SUCCESS if isinstance(exc, LookupError) else Outcome.FAILURE

    b = make(clock, classify=classify, failure_on_result=lambda v: v == 503)
    for _ in range(3):
        with pytest.raises(KeyError):
            b.call(lambda: {}[1])
    assert b.state is CLOSED and b.metrics().successes == 3
    b.call(lambda: 503)
    assert b.metrics().failures == 1


def test_broken_classifier_releases_the_permit() -> None:
    clock = Clock()

    def bad(exc: BaseException) -> Outcome:
        return "failure"  # type: ignore[return-value]

    b = make(clock, classify=bad, half_open_permits=1)
    b.trip()
    clock.now = 1000
    with pytest.raises(TypeMismatch):
        b.call(lambda: 1 / 0)
    assert b.state is HALF and b.metrics().half_open_permits_left == 1


def test_permit_is_handed_back_once() -> None:
    b = make(Clock())
    p = b.acquire()
    b.on_success(p)
    before = b.metrics()
    with pytest.raises(InvalidArgument):
        b.on_success(p)
    with pytest.raises(TypeMismatch):
        b.on_success("permit")  # type: ignore[arg-type]
    assert b.metrics() == before


def test_listener_errors_do_not_change_the_call() -> None:
    b = make(Clock())

    def boom(event: BreakerEvent) -> None:
        raise RuntimeError("listener")

    b.add_listener(boom)
    assert b.call(lambda: 7) == 7
    b.remove_listener(boom)


@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"minimum_calls": 0}, InvalidArgument),
        ({"minimum_calls": 1.5}, TypeMismatch),
        ({"failure_rate_threshold": 0}, InvalidArgument),
        ({"failure_rate_threshold": 101}, InvalidArgument),
        ({"slow_call_rate_threshold": float("nan")}, InvalidArgument),
        ({"wait_in_open_ms": -1}, InvalidArgument),
        ({"wait_in_open_ms": float("inf")}, InvalidArgument),
        ({"half_open_permits": True}, TypeMismatch),
        ({"window": 10}, TypeMismatch),
        ({"window": CountWindow}, TypeMismatch),
    ],
)
def test_bad_config_is_refused(kw: dict[str, Any], err: type[Exception]) -> None:
    with pytest.raises(err):
        BreakerConfig(**kw)
    assert issubclass(err, VsmPhoenixError)


def test_bad_construction_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        CircuitBreaker("")
    with pytest.raises(TypeMismatch):
        CircuitBreaker("x", {"minimum_calls": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeMismatch):
        TimeWindow(0.5)  # type: ignore[arg-type]


def test_backward_clock_is_clamped() -> None:
    clock = Clock()
    b = make(clock)
    b.trip()
    clock.now = 1000
    assert b.state is HALF
    clock.now = 0  # a stepped-back clock must not re-open or un-expire anything
    assert b.state is HALF


# -- concurrency: the lock is never held during the call --------------------------------
def test_threads_run_protected_calls_concurrently() -> None:
    b = CircuitBreaker("threads")
    inside = threading.Barrier(4, timeout=5)

    def work() -> None:
        inside.wait()  # deadlocks (BrokenBarrierError) if calls were serialised

    threads = [threading.Thread(target=b.call, args=(work,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.metrics().successes == 4


def test_half_open_permits_are_reserved_atomically_across_threads() -> None:
    clock = Clock()
    b = make(clock, half_open_permits=3)
    b.trip()
    clock.now = 1000
    got: list[Permit] = []
    refused = []
    start = threading.Barrier(16)

    def grab() -> None:
        start.wait()
        try:
            got.append(b.acquire())
        except CallNotPermittedError:
            refused.append(1)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and len(refused) == 13


def test_asyncio_calls_overlap_and_cancellation_is_ignored() -> None:
    b = CircuitBreaker("aio", BreakerConfig(minimum_calls=1, window=CountWindow(1)))
    outcomes: list[CallOutcome] = []
    b.add_listener(lambda e: outcomes.append(e) if isinstance(e, CallOutcome) else None)

    @b
    async def wait_for(event: asyncio.Event) -> str:
        await event.wait()
        return "ok"

    async def main() -> None:
        ev = asyncio.Event()
        tasks = [asyncio.create_task(wait_for(ev)) for _ in range(3)]
        await asyncio.sleep(0)
        ev.set()  # all three are inside the protected call at once
        assert await asyncio.gather(*tasks) == ["ok"] * 3
        blocked = asyncio.create_task(wait_for(asyncio.Event()))
        await asyncio.sleep(0)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked

    asyncio.run(main())
    assert [o.outcome for o in outcomes] == [Outcome.SUCCESS] * 3 + [Outcome.IGNORED]
    assert b.state is CLOSED


def test_decorator_keeps_sync_functions_sync() -> None:
    b = CircuitBreaker("dec")

    @b
    def add(x: int, y: int) -> int:
        return x + y

    assert add(2, 3) == 5
    assert add.__name__ == "add"


def test_registry_shares_breakers_by_name() -> None:
    reg = BreakerRegistry(BreakerConfig(minimum_calls=5))
    a = reg.get("model-a")
    assert reg.get("model-a") is a and a.config.minimum_calls == 5
    c = reg.get("model-c", BreakerConfig(minimum_calls=2))
    assert c.config.minimum_calls == 2 and reg.names() == ["model-a", "model-c"]


def test_the_amqp_publish_goes_through_a_breaker_and_is_never_dropped() -> None:
    """A broker that fails publishes opens the endpoint's publish breaker; retries then
    wait for it instead of hammering; the publish still goes out once the broker is back."""
    pytest.importorskip("aio_pika")
    import aiormq

    from vsm_phoenix.ext.amqp.endpoint import AmqpConfig, Endpoint, publish_breaker

    calls: list[float] = []

    class Exchange:
        async def publish(self, message: object, routing_key: str, mandatory: bool) -> object:
            calls.append(time.monotonic())
            if len(calls) <= 6:
                raise ConnectionError("broker down")
            return aiormq.spec.Basic.Ack()

    ep = Endpoint.__new__(Endpoint)
    ep.name, ep.config, ep._closing = "n1", AmqpConfig(retry_delay_s=0.01), False
    ep.stats = {"publishes": 0, "publish_retries": 0}
    ep.exchange = Exchange()  # type: ignore[assignment]
    ep.publish_breaker = publish_breaker("n1", ep.config)
    asyncio.run(ep._publish("k", b"body", 1))
    assert ep.stats["publishes"] == 1
    assert ep.publish_breaker.state is BreakerState.CLOSED  # the trial publish closed it
    # five failures open the breaker: the next attempt waited for it (>= 1 s), not 10 ms
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps) >= 0.9 and min(gaps) < 0.5
    assert len(calls) == 7
