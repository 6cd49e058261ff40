"""A cluster member: SWIM discovery and delta sync behind one node interface.

:class:`ClusterNode` composes a :class:`~vsm_phoenix.protocol.swim.SwimNode` and a
:class:`~vsm_phoenix.protocol.sync.SyncNode` that share one node id, one injected
``random.Random`` and one :class:`~vsm_phoenix.protocol.kit.Messenger` (so one hybrid
logical clock stamps all of the node's messages). Events are routed by name:
envelopes and timers whose names start with ``swim.`` go to membership, ``sync.`` to
synchronisation; client commands by their type.

Invariant: after every step the sync peer set equals SWIM's set of alive (or suspect)
members other than this node — sync talks to whoever discovery currently believes is
up. What sync knows of a member's state outlives its absence, so a member that comes
back after a partition is sent only what it lacks (full state only if it restarted
without its disk or the entries it lacks were trimmed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from vsm_phoenix.crdt import CRDT
from vsm_phoenix.protocol.kit import Messenger
from vsm_phoenix.protocol.node import (
    ClientRequest,
    Effect,
    Event,
    LocalProtocolError,
    Receive,
    RemoteProtocolError,
    Restart,
    Start,
    TimerFired,
)
from vsm_phoenix.protocol.swim import Leave, Match, SwimConfig, SwimNode, UpdateMetadata
from vsm_phoenix.protocol.sync import Merge, Mutate, Read, SyncConfig, SyncNode

__all__ = ["ClusterNode"]


class ClusterNode:
    """SWIM membership + delta anti-entropy for named replicas (sans-IO)."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        *,
        swim: SwimConfig | None = None,
        sync: SyncConfig | None = None,
        replicas: Mapping[str, CRDT] | None = None,
        capabilities: Iterable[str] = (),
        load: float = 0.0,
    ) -> None:
        self._id = node_id
        self.msg = Messenger(node_id, rng)
        self.swim = SwimNode(node_id, rng, swim, capabilities=capabilities, load=load,
                             messenger=self.msg)
        self.sync = SyncNode(node_id, rng, sync, replicas=replicas, messenger=self.msg)

    @property
    def node_id(self) -> str:
        return self._id

    def step(self, event: Event) -> list[Effect]:
        """Route ``event`` to membership and/or sync; see the module docstring."""
        out: list[Effect]
        if isinstance(event, Start | Restart):
            out = [*self.swim.step(event), *self.sync.step(event)]
        elif isinstance(event, Receive):
            t = event.envelope.type
            if t.startswith("swim."):
                out = self.swim.step(event)
            elif t.startswith("sync."):
                out = self.sync.step(event)
            else:
                raise RemoteProtocolError(f"no handler for message type {t!r}")
        elif isinstance(event, TimerFired):
            out = (self.swim if event.name.startswith("swim.") else self.sync).step(event)
        elif isinstance(event, ClientRequest):
            if isinstance(event.payload, Leave | Match | UpdateMetadata):
                out = self.swim.step(event)
            elif isinstance(event.payload, Mutate | Merge | Read):
                out = self.sync.step(event)
            else:
                raise LocalProtocolError(f"unknown command {event.payload!r}")
        else:  # pragma: no cover
            raise LocalProtocolError(f"unknown event {event!r}")
        self.sync.set_peers(self.swim.alive_members(include_self=False))
        return out
