"""Evidence sync: two replicas exchange what differs, not the graph (sans-IO).

Theory of operation
-------------------
A sync is a short conversation between two :class:`EvidenceSync` sessions, one per
side. Every message is the same record, :class:`SyncMessage`:

=========  ======================================================================
field      meaning
=========  ======================================================================
heads      the sender's heads: it holds these and (normally) all their ancestors
haves      a sample of O(log n) more ids it holds (one at heights top-1, -2, -4, ...)
want       ids the sender lacks: the peer's unknown heads and its own missing parents
events     events the sender believes the peer lacks, parents first
=========  ======================================================================

On a message the receiver (1) verifies and adds the events, all or nothing; (2) takes
every id the peer is known to hold -- its heads, its haves, the events it just sent --
and computes, with :meth:`EvidenceGraph.difference`, the events it holds outside their
ancestry: a walk from both frontiers in decreasing height that stops once everything
queued is known to the peer, so it costs the difference, not the graph; (3) adds what
the peer asked for; (4) asks for the peer's unknown heads and its own missing parents.
It answers when it has something to send or to ask, or when the message carried
events (so a sender limited by ``max_events`` learns the new heads and sends the
rest); it never sends an event or asks for an id twice in one session, so a sync ends.

Cost: when replicas differ by ``k`` events, the messages carry those ``k`` events, the
heads and ``O(log n)`` sample ids per message; the sample lets a replica that lacks
the peer's heads still bound what the peer holds, so concurrent histories are pushed
in one round trip and over-send at most the events between the divergence and the
nearest sampled height. ``bench`` measures bytes sent against the bytes of the
differing events.

Messages are outside bytes: :meth:`SyncMessage.from_bytes` is strict (``DecodeError``),
events are verified under the graph's keys (``AuthenticationError`` naming the event),
and a refused message leaves the graph and the session unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Final

import attrs

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError, InvalidArgument, TypeMismatch
from vsm_phoenix.ext.evidence.event import ID_SIZE, MAX_EVENT_BYTES
from vsm_phoenix.ext.evidence.graph import EvidenceGraph

__all__ = ["MAX_SYNC_BYTES", "EvidenceSync", "SyncMessage", "SyncStats", "sync_pair"]

SYNC_TAG: Final = "vsm-phoenix/evidence-sync"
SYNC_VERSION: Final = 1
MAX_IDS: Final = 4096
MAX_EVENTS: Final = 4096
MAX_SYNC_BYTES: Final = 48 * 1024 * 1024


def _ids(value: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_IDS:
        raise DecodeError(f"sync {what} must be a list of at most {MAX_IDS} ids")
    for item in value:
        if not isinstance(item, bytes) or len(item) != ID_SIZE:
            raise DecodeError(f"sync {what} must hold {ID_SIZE}-byte ids")
    return tuple(value)


@attrs.frozen
class SyncMessage:
    """One sync message (see the module docstring); ``events`` are event bytes."""

    heads: tuple[bytes, ...] = ()
    haves: tuple[bytes, ...] = ()
    want: tuple[bytes, ...] = ()
    events: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        return cbor.dumps([SYNC_TAG, SYNC_VERSION, list(self.heads), list(self.haves),
                           list(self.want), list(self.events)])

    @classmethod
    def from_bytes(cls, data: object) -> SyncMessage:
        """Strict decode (``DecodeError``); events stay bytes until the graph checks
        them."""
        doc = cbor.loads(data, max_size=MAX_SYNC_BYTES, wire=True)
        if not (isinstance(doc, list) and len(doc) == 6):
            raise DecodeError("sync message must be a 6-item array")
        tag, version, heads, haves, want, events = doc
        if tag != SYNC_TAG or type(version) is not int or version != SYNC_VERSION:
            raise DecodeError("not a version-1 evidence sync message")
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise DecodeError(f"sync events must be a list of at most {MAX_EVENTS}")
        for raw in events:
            if not isinstance(raw, bytes) or not 0 < len(raw) <= MAX_EVENT_BYTES:
                raise DecodeError("sync events must be event byte strings")
        return cls(_ids(heads, "heads"), _ids(haves, "haves"), _ids(want, "want"),
                   tuple(events))


@attrs.frozen
class SyncStats:
    """What one :func:`sync_pair` run cost."""

    messages: int
    bytes_sent: int
    events_sent: int
    event_bytes: int


class EvidenceSync:
    """One side of one sync conversation over ``graph`` (see the module docstring).

    ``max_events`` bounds the events per message (the rest follow in later rounds)."""

    __slots__ = ("_asked", "_owed", "_sent", "graph", "max_events", "max_haves")

    def __init__(self, graph: EvidenceGraph, *, max_events: int = 1024,
                 max_haves: int = 64) -> None:
        if not isinstance(graph, EvidenceGraph):
            raise TypeMismatch("graph must be an EvidenceGraph")
        if type(max_events) is not int or not 1 <= max_events <= MAX_EVENTS:
            raise InvalidArgument(f"max_events must be in 1..{MAX_EVENTS}")
        if type(max_haves) is not int or not 0 <= max_haves <= MAX_IDS:
            raise InvalidArgument(f"max_haves must be in 0..{MAX_IDS}")
        self.graph = graph
        self.max_events = max_events
        self.max_haves = max_haves
        self._asked: set[bytes] = set()
        self._sent: set[bytes] = set()
        # Ids the peer asked for that this side holds and has not sent yet. The peer
        # asks once per session, so a request cut by ``max_events`` must be kept here
        # and served first in the next messages.
        self._owed: set[bytes] = set()

    def state_key(self) -> tuple[bytes, frozenset[bytes], frozenset[bytes], frozenset[bytes]]:
        return (self.graph.digest(), frozenset(self._asked), frozenset(self._sent),
                frozenset(self._owed))

    def start(self) -> bytes:
        """The opening message: heads and sample, nothing pushed yet."""
        g = self.graph
        want = [m for m in g.missing() if m not in self._asked][:MAX_IDS]
        self._asked.update(want)
        return SyncMessage(tuple(g.heads()[:MAX_IDS]), tuple(g.sample(self.max_haves)),
                           tuple(want)).to_bytes()

    def receive(self, data: bytes) -> bytes | None:
        """Take the peer's message; return the answer, or ``None`` when there is
        nothing left to send or ask."""
        msg = SyncMessage.from_bytes(data)
        g = self.graph
        g.add_many(msg.events)  # all or nothing: a bad event leaves g unchanged
        received = {hashlib.sha256(raw).digest() for raw in msg.events}
        theirs = set(msg.heads) | set(msg.haves) | received
        owed = self._owed | {w for w in msg.want if w in g and w not in self._sent}
        push = sorted(owed, key=lambda i: (g.height(i), i))  # asked for: served first
        push += [i for i in g.difference(theirs) if i not in self._sent and i not in owed]
        push = sorted(push[: self.max_events], key=lambda i: (g.height(i), i))
        need = [h for h in msg.heads if h not in g]
        need += g.missing()
        want: list[bytes] = []
        for i in need:
            if i not in self._asked and i not in want and len(want) < MAX_IDS:
                want.append(i)
        if not push and not want and not msg.events:
            return None  # nothing owed is left either: owed ids come first in push
        self._sent.update(push)
        self._owed = owed.difference(push)
        self._asked.update(want)
        return SyncMessage(tuple(g.heads()[:MAX_IDS]), tuple(g.sample(self.max_haves)),
                           tuple(want), tuple(g[i].raw for i in push)).to_bytes()


def sync_pair(a: EvidenceGraph, b: EvidenceGraph, *, max_rounds: int = 10_000,
              max_events: int = 1024) -> SyncStats:
    """Run a whole sync between two local replicas (``a`` opens) and count its cost.

    ``InvalidArgument`` if it does not end within ``max_rounds`` messages."""
    left = EvidenceSync(a, max_events=max_events)
    right = EvidenceSync(b, max_events=max_events)
    message: bytes | None = left.start()
    messages = bytes_sent = events_sent = event_bytes = 0
    turn = right
    while message is not None:
        messages += 1
        bytes_sent += len(message)
        decoded = SyncMessage.from_bytes(message)
        events_sent += len(decoded.events)
        event_bytes += sum(len(e) for e in decoded.events)
        if messages > max_rounds:
            raise InvalidArgument(f"sync did not end within {max_rounds} messages")
        message = turn.receive(message)
        turn = left if turn is right else right
    return SyncStats(messages, bytes_sent, events_sent, event_bytes)
