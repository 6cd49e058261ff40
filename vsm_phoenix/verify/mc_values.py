"""What the model checker takes and gives: requests, traces, results, the view an
invariant sees, message keys and the checker's errors.

The search itself is :mod:`vsm_phoenix.verify.model_checker` (which re-exports all of
this); these are plain values, so reports and tests can use them without it.
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Hashable,
    ItemsView,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from typing import Any, Final

import attrs

from vsm_phoenix.errors import DecodeError, TypeMismatch, VsmPhoenixError
from vsm_phoenix.protocol.envelope import Envelope, decode_cbor
from vsm_phoenix.protocol.node import Deliver, Effect, Node, Send
from vsm_phoenix.verify.symmetry import freeze

__all__ = [
    "DEPTH_BOUND",
    "STATE_BOUND",
    "ClusterView",
    "Counterexample",
    "Invariant",
    "ModelCheckResult",
    "ModelCheckerError",
    "ReplayDivergedError",
    "Request",
    "Step",
    "default_message_key",
    "describe_effect",
    "describe_payload",
    "node_state_key",
]

#: An invariant sees the cluster and returns ``None``/``True`` (holds), ``False`` or a
#: non-empty message / list of messages (violated); raising ``AssertionError`` also
#: reports a violation.
Invariant = Callable[["ClusterView"], Any]

#: Reasons a search ends without exhausting the space (besides the budget's
#: ``"timeout"`` and ``"memory limit"``).
DEPTH_BOUND: Final = "depth bound"
STATE_BOUND: Final = "state bound"


class ModelCheckerError(VsmPhoenixError):
    """The model checker cannot carry on (not a property violation)."""


class ReplayDivergedError(ModelCheckerError):
    """Replaying a trace on fresh nodes did not reach the explored states: a node key
    leaves out state the node's behaviour depends on. ``step`` is the first step (1-based)
    after which the replayed and explored local states differ."""

    def __init__(self, step: int, detail: str) -> None:
        super().__init__(f"replay diverged after step {step}: {detail}; node_key must "
                         "cover everything that influences a node's future behaviour")
        self.step = step


# -- public value types --------------------------------------------------------------
@attrs.frozen
class Request:
    """A scripted client request that may be submitted once, at any point.

    ``targets`` restricts which nodes may receive it (``None``: any node). The request
    id defaults to ``"req-<index>"``.
    """

    payload: Any
    request_id: str | None = None
    targets: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )


@attrs.frozen
class Step:
    """One action of a trace and what it caused.

    ``kind`` is ``"deliver"``, ``"drop"``, ``"duplicate"``, ``"timer"``, ``"request"``
    or ``"crash"``; ``node`` is the node that acted (the recipient, for network actions).
    """

    kind: str
    node: str
    detail: str
    effects: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = f"{self.kind:<9} {self.node:<6} {self.detail}"
        if not self.effects:
            return head
        return head + "".join(f"\n{'':16}→ {e}" for e in self.effects)


@attrs.frozen
class Counterexample:
    """A shortest path from the initial state to a state violating ``invariant``."""

    invariant: str
    message: str
    steps: tuple[Step, ...]
    final_state: tuple[str, ...] = ()

    def render(self) -> str:
        """The trace as numbered lines, readable as a story of the run."""
        lines = [
            f"invariant {self.invariant!r} violated after {len(self.steps)} step(s): "
            f"{self.message}"
        ]
        if not self.steps:
            lines.append("  (in the initial state)")
        width = len(str(len(self.steps)))
        for i, step in enumerate(self.steps, 1):
            lines.append(f"  {i:>{width}}. {step}")
        if self.final_state:
            lines.append("  final state:")
            lines.extend(f"    {s}" for s in self.final_state)
        return "\n".join(lines)

    __str__ = render


@attrs.frozen
class ModelCheckResult:
    """What a run found. ``exhausted`` means every reachable state (within the fault
    budgets) was explored: the invariants hold in all of them, not just up to
    ``max_depth``. Otherwise ``reason`` says what cut the search (``"depth bound"``,
    ``"state bound"``, ``"timeout"``, ``"memory limit"``; empty after a violation) and
    ``depth_complete`` up to which depth every reachable state was checked."""

    counterexample: Counterexample | None
    states: int
    transitions: int
    depth: int
    exhausted: bool
    elapsed_s: float
    reason: str = ""
    depth_complete: int = 0

    @property
    def ok(self) -> bool:
        return self.counterexample is None

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed_s if self.elapsed_s > 0 else float(self.states)

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"VIOLATION of {self.counterexample.invariant!r}"  # type: ignore[union-attr]
        if self.exhausted:
            scope = "exhausted"
        else:
            scope = f"{self.reason or 'stopped'} at depth {self.depth}, " \
                    f"complete to depth {self.depth_complete}"
        return (
            f"{verdict}: {self.states} states, {self.transitions} transitions, {scope}, "
            f"{self.elapsed_s:.2f} s ({self.states_per_second:,.0f} states/s)"
        )

    def __str__(self) -> str:
        if self.counterexample is None:
            return self.summary()
        return self.summary() + "\n" + self.counterexample.render()


class ClusterView(Mapping[str, Node]):
    """What an invariant sees: a read-only mapping ``node id -> node`` plus the network.

    ``in_flight`` lists ``(recipient, envelope, copies)``; ``timers`` maps each node id
    to its pending timer names. Invariants must not modify the nodes. ``read_network``
    tells whether ``in_flight``, ``timers`` or ``quiescent`` was read (the checker
    reuses the verdict of an invariant that read only the nodes, see
    :class:`ModelChecker`).
    """

    __slots__ = ("_flight", "_in_flight", "_nodes", "_timers", "_timers_fn", "read_network")

    def __init__(
        self,
        nodes: dict[str, Node],
        in_flight: list[tuple[str, Envelope, int]] | Callable[[], list[tuple[str, Envelope, int]]],
        timers: dict[str, frozenset[str]] | Callable[[], dict[str, frozenset[str]]],
    ) -> None:
        self._nodes = nodes
        self._flight = in_flight if callable(in_flight) else None
        self._in_flight = None if callable(in_flight) else in_flight
        self._timers_fn = timers if callable(timers) else None
        self._timers = None if callable(timers) else timers
        self.read_network = False

    def __getitem__(self, key: str) -> Node:
        return self._nodes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def keys(self) -> KeysView[str]:
        return self._nodes.keys()

    def values(self) -> ValuesView[Node]:
        return self._nodes.values()

    def items(self) -> ItemsView[str, Node]:
        return self._nodes.items()

    @property
    def in_flight(self) -> list[tuple[str, Envelope, int]]:
        self.read_network = True
        if self._in_flight is None:
            assert self._flight is not None
            self._in_flight = self._flight()
        return self._in_flight

    @property
    def timers(self) -> dict[str, frozenset[str]]:
        self.read_network = True
        if self._timers is None:
            assert self._timers_fn is not None
            self._timers = self._timers_fn()
        return self._timers

    @property
    def quiescent(self) -> bool:
        """No message in flight."""
        return not self.in_flight


# -- keys and copies -------------------------------------------------------------------
def default_message_key(envelope: Envelope) -> Hashable:
    """Everything of an envelope except its message id, correlation id and timestamp;
    the payload decoded from CBOR (so node ids in it can be renamed) when possible."""
    try:
        body: Hashable = freeze(decode_cbor(envelope.payload))
    except (DecodeError, TypeError):
        body = envelope.payload
    return (
        envelope.type,
        envelope.sender,
        envelope.recipient,
        envelope.topic,
        envelope.hop_limit,
        envelope.causal_context,
        body,
    )


def node_state_key(node: Node) -> Hashable:
    method = getattr(node, "state_key", None)
    if method is None or not callable(method):
        raise TypeMismatch(
            f"{type(node).__name__} has no state_key() method; pass node_key=... to say "
            "what of a node's state matters"
        )
    return method()  # type: ignore[no-any-return]


def describe_payload(envelope: Envelope, limit: int = 160) -> str:
    try:
        text = repr(decode_cbor(envelope.payload))
    except DecodeError:
        text = envelope.payload.hex()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_effect(effect: Effect) -> str | None:
    if isinstance(effect, Send):
        env = effect.envelope
        to = env.recipient if env.recipient is not None else f"topic {env.topic}"
        return f"send {env.type} to {to} {describe_payload(env)}"
    if isinstance(effect, Deliver):
        rid = f" [{effect.request_id}]" if effect.request_id is not None else ""
        text = repr(effect.payload)
        if len(text) > 160:
            text = text[:159] + "…"
        return f"deliver {effect.kind}{rid} {text}"
    return None  # timers and persistence are shown in the state, not in the story
