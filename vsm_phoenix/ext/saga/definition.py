"""What a saga is: steps (an action and its compensation), parallel groups, one
optional pivot, retry policies and timeouts.

A :class:`SagaDefinition` is a sequence of *stages*; a stage is one :class:`Step` or a
:class:`Parallel` group of steps that run concurrently (the stage ends when every
member has). At most one step is the **pivot** (Garcia-Molina & Salem 1987; the
flexible-transaction literature): the steps before it are *compensatable*, the pivot
itself is the point of no return (it has no compensation: its action commits or
fails, atomically), and the steps after it are *retriable*: retried until they are
done, never compensated. Without a pivot every step is compensatable.

Actions and compensations are plain async callables taking a :class:`StepContext`.
They are called **at least once** (a coordinator may crash after invoking one and
before logging its outcome), always with the same :attr:`StepContext.idempotency_key`
for the same step and direction, so the resource they touch can apply each at most
once. A compensation must tolerate "nothing to undo": it is registered before its
step runs, and runs for every step that may have taken effect (a step that timed out
may have).

The contract of an idempotency key, as a resource must keep it (and as the tests'
resources do): the first *definite* answer for a key is the answer for every later
call with that key -- a success is not applied again, a :class:`PermanentError` means
the key will never apply -- and once a step's compensation key has been seen, a late
call of its action key (an attempt of a crashed coordinator, still on the wire) does
nothing. Retryable errors and timeouts are not definite: the call may still apply.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from vsm_phoenix.errors import InvalidArgument, TypeMismatch, VsmPhoenixError
from vsm_phoenix.ext.saga.records import check_name

__all__ = [
    "Action",
    "Parallel",
    "PermanentError",
    "RetryPolicy",
    "SagaDefinition",
    "Stage",
    "Step",
    "StepContext",
    "idempotency_key",
]


class PermanentError(VsmPhoenixError):
    """Raise from an action to say "this will not succeed if retried" (a declined card,
    an unknown item). Before the pivot the saga compensates at once; after it the saga
    is parked as stuck. The default classifier calls every other exception retryable."""


@attrs.frozen(kw_only=True)
class StepContext:
    """What an action or compensation is called with."""

    saga_id: str
    step: str
    attempt: int
    compensation: bool
    idempotency_key: str
    context: Mapping[str, Any]
    results: Mapping[str, Any]  # results of the steps completed so far, by step name


Action = Callable[[StepContext], Awaitable[Any]]


def idempotency_key(saga_id: str, step: str, compensation: bool) -> str:
    """The deterministic key of a step's action (``do``) or compensation (``undo``):
    the same for every attempt and every coordinator."""
    return f"{saga_id}/{step}/{'undo' if compensation else 'do'}"


def _positive(name: str) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if type(value) is not int:
            raise TypeMismatch(f"{name} must be an int, not {type(value).__name__}")
        if value < 1:
            raise InvalidArgument(f"{name} must be at least 1: {value}")

    return check


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with jitter: attempt ``n`` failed, wait a random
    time in ``[d/2, d]`` with ``d = min(cap_ms, base_ms * 2**(n-1))`` ("equal jitter"),
    then try again, up to ``max_attempts`` attempts in all (the steps after a pivot
    ignore the limit: they are retried until they are done)."""

    max_attempts: int = attrs.field(default=3, validator=_positive("max_attempts"))
    base_ms: int = attrs.field(default=50, validator=_positive("base_ms"))
    cap_ms: int = attrs.field(default=2_000, validator=_positive("cap_ms"))

    def delay_ms(self, attempt: int, rng: random.Random) -> int:
        d = min(self.cap_ms, self.base_ms << min(attempt - 1, 40))
        return d - rng.randint(0, d // 2)


DEFAULT_RETRY: Final = RetryPolicy()
DEFAULT_COMPENSATION_RETRY: Final = RetryPolicy(max_attempts=8)


@attrs.frozen(kw_only=True)
class Step:
    """One step: ``action`` and its ``compensation`` (``None``: nothing to undo)."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_name(v, "step name"))
    action: Action
    compensation: Action | None = None
    pivot: bool = False
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_ms: int = attrs.field(default=5_000, validator=_positive("timeout_ms"))

    def __attrs_post_init__(self) -> None:
        if not callable(self.action):
            raise TypeMismatch(f"step {self.name}: action must be callable")
        if self.compensation is not None and not callable(self.compensation):
            raise TypeMismatch(f"step {self.name}: compensation must be callable or None")
        if self.pivot and self.compensation is not None:
            raise InvalidArgument(f"step {self.name}: a pivot has no compensation")


def _step_tuple(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


@attrs.frozen
class Parallel:
    """Steps that run concurrently as one stage."""

    steps: tuple[Step, ...] = attrs.field(converter=_step_tuple)

    def __attrs_post_init__(self) -> None:
        if len(self.steps) < 1:
            raise InvalidArgument("a parallel group needs at least one step")
        for s in self.steps:
            if not isinstance(s, Step):
                raise TypeMismatch("a parallel group holds Steps")
            if s.pivot:
                raise InvalidArgument(f"step {s.name}: the pivot cannot be in a parallel group")


Stage = Step | Parallel


def _stages(value: Sequence[Stage]) -> tuple[Stage, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class SagaDefinition:
    """A named saga: its stages, the whole-saga timeout (before the pivot commits, a
    saga past it compensates) and the compensations' retry policy (a compensation that
    still fails after ``compensation_retry.max_attempts`` parks the saga as stuck)."""

    name: str = attrs.field(validator=lambda _i, _a, v: check_name(v, "saga name"))
    stages: tuple[Stage, ...] = attrs.field(converter=_stages)
    timeout_ms: int = attrs.field(default=60_000, validator=_positive("timeout_ms"))
    compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY

    def __attrs_post_init__(self) -> None:
        if not self.stages:
            raise InvalidArgument(f"saga {self.name} has no steps")
        names: list[str] = []
        pivots = 0
        for stage in self.stages:
            if not isinstance(stage, Step | Parallel):
                raise TypeMismatch(f"saga {self.name}: a stage is a Step or a Parallel")
            for s in self.stage_steps(stage):
                names.append(s.name)
                pivots += s.pivot
        if len(set(names)) != len(names):
            raise InvalidArgument(f"saga {self.name}: step names must be unique")
        if pivots > 1:
            raise InvalidArgument(f"saga {self.name}: at most one pivot")
        after = False
        for s in self.steps:
            if after and s.compensation is not None:
                raise InvalidArgument(f"saga {self.name}: step {s.name} comes after the pivot "
                                      "and is never compensated; drop its compensation")
            after = after or s.pivot

    @staticmethod
    def stage_steps(stage: Stage) -> tuple[Step, ...]:
        return stage.steps if isinstance(stage, Parallel) else (stage,)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step, in stage order."""
        return tuple(s for stage in self.stages for s in self.stage_steps(stage))

    @property
    def pivot(self) -> str | None:
        return next((s.name for s in self.steps if s.pivot), None)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise InvalidArgument(f"saga {self.name} has no step {name[:40]!r}")
