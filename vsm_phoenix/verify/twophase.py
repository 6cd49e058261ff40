"""Two-phase commit as sans-IO nodes: a reference workload for the model checker.

Theory of operation
-------------------
The protocol of Gray and Lamport's TLA+ specification ``TwoPhase`` (the one
Stateright ships as its ``2pc`` example): one transaction manager (TM) and resource
managers (RMs), every action an event of a real :class:`~vsm_phoenix.protocol.node.Node`.

======================  =============================================================
node, event             what happens
======================  =============================================================
RM ``TimerFired       ``working`` → ``prepared``; sends ``2pc.prepared`` to the TM
("prepare")``
RM ``TimerFired       ``working`` → ``aborted`` (the RM chooses to abort on its own)
("abort")``
RM receives            ``2pc.commit`` → ``committed``; ``2pc.abort`` → ``aborted``
TM receives            ``2pc.prepared`` from an RM while ``init``: remember it
``2pc.prepared``
TM ``TimerFired        ``init`` and every RM prepared → ``committed``; tells every RM
("commit")``
TM ``TimerFired        ``init`` → ``aborted``; tells every RM
("abort")``
======================  =============================================================

A node's internal choices are timers that stay pending while the choice is enabled
(the model checker fires any pending timer at any point), so the state space is the
TLA+ one. Run on the checker's ``network="set"`` (a sent message stays deliverable,
as in the TLA+ message set) the reachable states are exactly the specification's:
288 with 3 RMs, 8,832 with 5 — the counts Stateright reports. On the default
consuming network there are more (a message in flight is state too).

:func:`two_phase_invariants` are the specification's safety properties: no RM has
committed while another has aborted, and the TM decides once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from vsm_phoenix.errors import InvalidArgument
from vsm_phoenix.protocol.envelope import Envelope
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    CancelTimer,
    Effect,
    Event,
    Node,
    Receive,
    RemoteProtocolError,
    Restart,
    SetTimer,
    Start,
    TimerFired,
)

__all__ = [
    "TM",
    "ResourceManager",
    "TransactionManager",
    "rm_ids",
    "two_phase_factory",
    "two_phase_invariants",
]

#: The transaction manager's node id.
TM: Final = "tm"

M_PREPARED: Final = "2pc.prepared"
M_COMMIT: Final = "2pc.commit"
M_ABORT: Final = "2pc.abort"
T_PREPARE: Final = "prepare"
T_COMMIT: Final = "commit"
T_ABORT: Final = "abort"


def rm_ids(n: int) -> tuple[str, ...]:
    """``("rm1", ..., "rmN")``."""
    if type(n) is not int or n < 1:
        raise InvalidArgument(f"need at least one RM, got {n!r}")
    return tuple(f"rm{i}" for i in range(1, n + 1))


class _Base:
    def __init__(self, node_id: str, rng: random.Random) -> None:
        self._id = node_id
        self.messenger = Messenger(node_id, rng)

    @property
    def node_id(self) -> str:
        return self._id

    def _check(self, env: Envelope, sender: Sequence[str], types: Sequence[str]) -> None:
        if env.recipient != self._id or env.sender not in sender or env.type not in types:
            raise RemoteProtocolError(f"{env.type} from {env.sender} is not for {self._id}")
        if env.payload != b"":
            raise RemoteProtocolError(f"{env.type}: payload must be empty")


class ResourceManager(_Base):
    """An RM: ``working``, then ``prepared``/``aborted``, then ``committed``/``aborted``."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        super().__init__(node_id, rng)
        self.state = "working"

    def __repr__(self) -> str:
        return f"RM({self._id}, {self.state})"

    def state_key(self) -> str:
        return self.state

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            return [SetTimer(T_PREPARE, 10), SetTimer(T_ABORT, 10)]
        if isinstance(event, TimerFired):
            if self.state != "working" or event.name not in (T_PREPARE, T_ABORT):
                return []
            other = T_ABORT if event.name == T_PREPARE else T_PREPARE
            if event.name == T_ABORT:
                self.state = "aborted"
                return [CancelTimer(other)]
            self.state = "prepared"
            return [CancelTimer(other), self.messenger.send(event.now, TM, M_PREPARED, b"")]
        if isinstance(event, Receive):
            env = event.envelope
            self._check(env, (TM,), (M_COMMIT, M_ABORT))
            self.messenger.accept(event.now, env)
            self.state = "committed" if env.type == M_COMMIT else "aborted"
            return [CancelTimer(T_PREPARE), CancelTimer(T_ABORT)]
        return []


class TransactionManager(_Base):
    """The TM: ``init`` (collecting ``prepared``), then ``committed`` or ``aborted``."""

    def __init__(self, node_id: str, rng: random.Random, rms: Sequence[str]) -> None:
        super().__init__(node_id, rng)
        self.rms = tuple(rms)
        self.state = "init"
        self.prepared: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"TM({self.state}, prepared={sorted(self.prepared)})"

    def state_key(self) -> tuple[str, frozenset[str]]:
        return (self.state, self.prepared)

    def _decide(self, now: int, outcome: str) -> list[Effect]:
        self.state = outcome
        msg = M_COMMIT if outcome == "committed" else M_ABORT
        return [CancelTimer(T_COMMIT), CancelTimer(T_ABORT),
                *(self.messenger.send(now, rm, msg, b"") for rm in self.rms)]

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Start | Restart):
            return [SetTimer(T_ABORT, 10)]
        if isinstance(event, TimerFired):
            if self.state != "init":
                return []
            if event.name == T_ABORT:
                return self._decide(event.now, "aborted")
            if event.name == T_COMMIT and self.prepared == frozenset(self.rms):
                return self._decide(event.now, "committed")
            return []
        if isinstance(event, Receive):
            env = event.envelope
            self._check(env, self.rms, (M_PREPARED,))
            self.messenger.accept(event.now, env)
            if self.state != "init" or env.sender in self.prepared:
                return []
            self.prepared = self.prepared | {env.sender}
            if self.prepared == frozenset(self.rms):
                return [SetTimer(T_COMMIT, 10)]
            return []
        return []


def two_phase_factory(rms: Sequence[str]) -> Callable[[str, random.Random], Node]:
    """Builds the TM for id :data:`TM` and an RM for every id in ``rms``."""
    names = tuple(rms)
    if TM in names or len(set(names)) != len(names) or not names:
        raise InvalidArgument(f"RM ids must be distinct, non-empty and not {TM!r}")

    def build(node_id: str, rng: random.Random) -> Node:
        if node_id == TM:
            return TransactionManager(node_id, rng, names)
        if node_id in names:
            return ResourceManager(node_id, rng)
        raise InvalidArgument(f"unknown 2PC node {node_id!r}")

    return build


def _consistent(view: Mapping[str, Any]) -> str | None:
    states = {n.state for nid, n in view.items() if nid != TM}
    if {"committed", "aborted"} <= states:
        return "an RM committed while another aborted"
    return None


def _tm_agrees(view: Mapping[str, Any]) -> str | None:
    tm = view[TM].state
    for nid, node in view.items():
        if nid == TM:
            continue
        if node.state == "committed" and tm != "committed":
            return f"{nid} committed but the TM is {tm}"
    return None


def two_phase_invariants() -> dict[str, Callable[[Mapping[str, Any]], str | None]]:
    """Name → invariant: RMs agree; an RM commits only after the TM decided to."""
    return {"2pc-consistent": _consistent, "2pc-tm-agrees": _tm_agrees}
