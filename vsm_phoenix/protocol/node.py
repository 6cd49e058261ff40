"""The node interface: events in, effects out.

Theory of operation
-------------------
A protocol node is a pure state machine (ARCHITECTURE.md, principle 2, after h11 and etcd's
raft). Its one entry point is :meth:`Node.step`, which takes an :data:`Event` and
returns a list of :data:`Effect` for the caller to carry out, in order:

=====================  ===========================================================
event                  meaning
=====================  ===========================================================
:class:`Start`         first boot; no persisted state
:class:`Restart`       boot after a crash; ``persisted`` is what :class:`Persist`
                       effects wrote before it (memory is gone, this is not)
:class:`Receive`       an envelope arrived (already decoded from bytes)
:class:`TimerFired`    a timer set with :class:`SetTimer` expired
:class:`ClientRequest` the application asks something; answered by a
                       :class:`Deliver` carrying the same ``request_id``
=====================  ===========================================================

=====================  ===========================================================
effect                 the caller must ...
=====================  ===========================================================
:class:`Send`          put the envelope on the network (to ``recipient``/``topic``)
:class:`SetTimer`      fire ``TimerFired(name)`` after ``delay_ms``; setting a name
                       again replaces the pending timer of that name
:class:`CancelTimer`   forget the pending timer of that name (no-op when none)
:class:`Persist`       durably store ``value`` under ``key`` (``None`` deletes)
                       *before* carrying out any later effect of the same batch
:class:`Deliver`       hand ``payload`` to the application
=====================  ===========================================================

Every event carries ``now``: the node's local clock in (virtual) milliseconds, which
may be skewed against other nodes' clocks. Nodes never read a clock, socket, file or
the global :mod:`random` generator: they are constructed with an injected
``random.Random``, and all time comes from events. Given the same constructor
arguments and the same event sequence a node returns the same effects — which is
what lets the simulator, a model checker and a real network runner share one node.

Errors say who is at fault (the h11 idea): :class:`RemoteProtocolError` (a
:class:`~vsm_phoenix.errors.DecodeError`) means a peer sent something invalid — distrust
the peer; :class:`LocalProtocolError` (an
:class:`~vsm_phoenix.errors.InvalidArgument`) means the caller misused the node — fix
the calling code. Either way the node's state is unchanged (ARCHITECTURE.md, principle 5).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from vsm_phoenix.errors import DecodeError, InvalidArgument
from vsm_phoenix.protocol.envelope import Envelope

__all__ = [
    "CancelTimer",
    "ClientRequest",
    "Deliver",
    "Effect",
    "Event",
    "LocalProtocolError",
    "Node",
    "NodeFactory",
    "Persist",
    "Receive",
    "RemoteProtocolError",
    "Restart",
    "Send",
    "SetTimer",
    "Start",
    "TimerFired",
]


class RemoteProtocolError(DecodeError):
    """A peer sent a well-formed envelope whose content violates the protocol."""


class LocalProtocolError(InvalidArgument):
    """The caller drove the node incorrectly (e.g. an event before ``Start``)."""


def _frozen_mapping(value: Mapping[str, bytes]) -> Mapping[str, bytes]:
    return dict(sorted(value.items()))


# -- events ---------------------------------------------------------------------------
@attrs.frozen
class Start:
    """First boot of a node that has never persisted anything."""

    now: int


@attrs.frozen
class Restart:
    """Boot after a crash. ``persisted`` holds the latest value of every key written
    by :class:`Persist` (deleted keys absent); in-memory state is lost."""

    now: int
    persisted: Mapping[str, bytes] = attrs.field(converter=_frozen_mapping, factory=dict)


@attrs.frozen
class Receive:
    """An envelope addressed to this node (or to a topic it listens to) arrived."""

    now: int
    envelope: Envelope


@attrs.frozen
class TimerFired:
    """The timer ``name`` expired (it is no longer pending)."""

    now: int
    name: str


@attrs.frozen
class ClientRequest:
    """An application request; the node answers with ``Deliver(request_id=...)``.

    ``payload`` is node-specific: each node documents the commands it accepts.
    """

    now: int
    request_id: str
    payload: Any


Event = Start | Restart | Receive | TimerFired | ClientRequest


# -- effects --------------------------------------------------------------------------
@attrs.frozen
class Send:
    """Transmit ``envelope`` to ``envelope.recipient`` (or everyone on its topic)."""

    envelope: Envelope


@attrs.frozen
class SetTimer:
    """Arrange ``TimerFired(name)`` after ``delay_ms`` (≥ 0); replaces a pending one."""

    name: str
    delay_ms: int = attrs.field(validator=attrs.validators.ge(0))


@attrs.frozen
class CancelTimer:
    """Drop the pending timer ``name``, if any."""

    name: str


@attrs.frozen
class Persist:
    """Durably store ``value`` under ``key`` (delete when ``value`` is ``None``)."""

    key: str
    value: bytes | None


@attrs.frozen
class Deliver:
    """Hand something to the application: a reply to ``request_id`` or a notification
    of ``kind`` (e.g. ``"swim.member"``, ``"sync.updated"``)."""

    kind: str
    payload: Any = None
    request_id: str | None = None


Effect = Send | SetTimer | CancelTimer | Persist | Deliver


@runtime_checkable
class Node(Protocol):
    """What every protocol node provides."""

    @property
    def node_id(self) -> str:
        """This node's address; also its replica id in CRDTs and clocks."""
        ...

    def step(self, event: Event) -> list[Effect]:
        """Apply one event and return the effects to carry out, in order.

        Raises :class:`RemoteProtocolError` / :class:`DecodeError` for invalid peer
        input and :class:`LocalProtocolError` for misuse, leaving state unchanged.
        """
        ...


class NodeFactory(Protocol):
    """Builds a fresh node (empty memory) — at first start and at every restart."""

    def __call__(self, node_id: str, rng: random.Random, /) -> Node: ...


