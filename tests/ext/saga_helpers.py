"""Shared by the saga tests: resources that keep the idempotency-key contract, fault
injection, a controllable clock, and invariant checks over a finished saga."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import attrs

from vsm_phoenix.ext.saga import (
    Parallel,
    PermanentError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)


class Clock:
    """A wall clock the test can move forward (leases are compared across nodes)."""

    def __init__(self, start_ms: int = 1_000_000, skew_ms: int = 0) -> None:
        self.base = start_ms
        self.skew_ms = skew_ms
        self.loop_start: float | None = None

    def __call__(self) -> int:
        loop = asyncio.get_running_loop()
        if self.loop_start is None:
            self.loop_start = loop.time()
        return self.base + self.skew_ms + int((loop.time() - self.loop_start) * 1000)

    def skewed(self, skew_ms: int) -> Clock:
        other = Clock(self.base, skew_ms)
        other.loop_start = self.loop_start
        return other


@attrs.define
class Ledger:
    """Resources under the idempotency-key contract: per action key, the first definite
    answer sticks; a compensation key tombstones its action key. Counts every effect."""

    state: dict[str, str] = attrs.field(factory=dict)  # step key -> applied/refused/undone
    effects: list[tuple[str, str]] = attrs.field(factory=list)  # (do/undo, saga/step)
    calls: dict[str, int] = attrs.field(factory=dict)

    def do(self, ctx: StepContext, *, refuse: bool = False) -> str:
        base = ctx.idempotency_key.rsplit("/", 1)[0]
        self.calls[ctx.idempotency_key] = self.calls.get(ctx.idempotency_key, 0) + 1
        st = self.state.get(base)
        if st == "refused":
            raise PermanentError(f"{ctx.step} refused (cached)")
        if st in ("applied", "undone"):
            return f"{ctx.step}-ok"
        if refuse:
            self.state[base] = "refused"
            raise PermanentError(f"{ctx.step} refused")
        self.state[base] = "applied"
        self.effects.append(("do", base))
        return f"{ctx.step}-ok"

    def undo(self, ctx: StepContext) -> None:
        base = ctx.idempotency_key.rsplit("/", 1)[0]
        self.calls[ctx.idempotency_key] = self.calls.get(ctx.idempotency_key, 0) + 1
        if self.state.get(base) == "applied":
            self.effects.append(("undo", base))
        self.state[base] = "undone"

    def net(self, saga_id: str) -> dict[str, str]:
        """Per step of ``saga_id``: its resource state."""
        prefix = saga_id + "/"
        return {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}

    def applied_twice(self) -> list[str]:
        seen: dict[tuple[str, str], int] = {}
        for e in self.effects:
            seen[e] = seen.get(e, 0) + 1
        return [f"{k}" for k, n in seen.items() if n > 1]


@attrs.define
class Faults:
    """Random step failures for a run (seeded): per call, a retryable error with
    ``p_retryable``, a permanent one with ``p_permanent``, a slow answer (past the
    step's timeout, still applied) with ``p_slow``."""

    rng: random.Random
    p_retryable: float = 0.0
    p_permanent: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 0.2
    compensation_p_retryable: float = 0.0

    def draw(self) -> str:
        x = self.rng.random()
        if x < self.p_permanent:
            return "permanent"
        x -= self.p_permanent
        if x < self.p_retryable:
            return "retryable"
        x -= self.p_retryable
        if x < self.p_slow:
            return "slow"
        return "ok"


def order_saga(ledger: Ledger, faults: Faults | None = None, *, name: str = "order",
               timeout_ms: int = 100, gate: Callable[[StepContext], Any] | None = None
               ) -> SagaDefinition:
    """order -> reserve stock | reserve credit (parallel) -> charge (pivot) -> ship ->
    notify: the shape of the demo, over ``ledger``."""

    def action(step: str) -> Callable[[StepContext], Any]:
        async def run(ctx: StepContext) -> str:
            if gate is not None:
                await gate(ctx)
            what = faults.draw() if faults is not None else "ok"
            if what == "retryable":
                raise ConnectionError(f"{step} unavailable")
            if what == "permanent":
                return ledger.do(ctx, refuse=True)
            result = ledger.do(ctx)
            if what == "slow":
                await asyncio.sleep(faults.slow_s if faults else 0.2)
            return result
        return run

    async def undo(ctx: StepContext) -> None:
        if gate is not None:
            await gate(ctx)
        if faults is not None and faults.rng.random() < faults.compensation_p_retryable:
            raise ConnectionError(f"undo {ctx.step} unavailable")
        ledger.undo(ctx)

    fast = RetryPolicy(max_attempts=3, base_ms=1, cap_ms=5)
    return SagaDefinition(
        name=name,
        stages=[
            Step(name="order", action=action("order"), compensation=undo, retry=fast,
                 timeout_ms=timeout_ms),
            Parallel([
                Step(name="stock", action=action("stock"), compensation=undo, retry=fast,
                     timeout_ms=timeout_ms),
                Step(name="credit", action=action("credit"), compensation=undo, retry=fast,
                     timeout_ms=timeout_ms),
            ]),
            Step(name="charge", action=action("charge"), pivot=True, retry=fast,
                 timeout_ms=timeout_ms),
            Step(name="ship", action=action("ship"), retry=fast, timeout_ms=timeout_ms),
            Step(name="notify", action=action("notify"), retry=fast, timeout_ms=timeout_ms),
        ],
        timeout_ms=30_000,
        compensation_retry=RetryPolicy(max_attempts=6, base_ms=1, cap_ms=5),
    )


ORDER_STEPS = ("order", "stock", "credit", "charge", "ship", "notify")
BEFORE_PIVOT = ("order", "stock", "credit")


def check_outcome(ledger: Ledger, saga_id: str, outcome: str) -> None:
    """The resources agree with how the saga ended (completed: every step applied;
    compensated: nothing left applied, nothing after the pivot ran)."""
    net = ledger.net(saga_id)
    if outcome == "completed":
        assert all(net.get(s) == "applied" for s in ORDER_STEPS), net
    elif outcome == "compensated":
        assert all(v != "applied" for v in net.values()), net
        assert "ship" not in net and "notify" not in net, net
    else:
        assert outcome == "stuck", outcome
    assert not ledger.applied_twice(), ledger.applied_twice()
